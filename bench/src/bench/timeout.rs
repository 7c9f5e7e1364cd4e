//! Scenario `time-out`: how late a "not done within T" trigger fires after T.
//!
//! The segment `abandoned_cart` (`Product Added` then no `Order Completed`, `within` [`WITHIN`]) is
//! defined on an empty workspace; then `--customers` customers each send one `Product Added`, spread
//! evenly over [`SPREAD`] (one `/v1/batch` request per [`TICK`], every event stamped with its send
//! time), and every [`PAYING_EVERY`]th of them an `Order Completed` 10–30 s after it. Nobody sends
//! anything later: a customer who did not pay enters when the resolver's clock passes the deadline. The
//! figure, per abandoned cart: the arrival of its `segment.abandoned_cart.entered` message on the
//! in-process bus (`AppState::bus`) minus (the `Product Added` timestamp + [`WITHIN`]).
//!
//! Verified: every request 200 and every event stored once; every abandoned cart entered exactly once,
//! with `caused_by` "clock", on a profile of its own, never before its deadline; no paying customer
//! entered (listened to until [`QUIET`] after the last deadline), nobody exited; the segment ends with
//! exactly the abandoned carts as members; the resolver reported no failed step.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cdp_domain::message::rfc3339;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::freshness::{
    admin, bootstrapped, define, listen_bus, lock, resolved, start, stopped_and_stored, until,
    Inbox,
};
use super::ingest_http::stop;
use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "time-out";
const SEGMENT: &str = "abandoned_cart";
/// The segment's `within`, and the same as a duration.
const WITHIN_TEXT: &str = "1m";
const WITHIN: Duration = Duration::from_secs(60);
/// The carts are spread over this long.
const SPREAD: Duration = Duration::from_secs(10);
/// One request per tick, carrying the messages due in it.
const TICK: Duration = Duration::from_millis(100);
/// One customer in this many pays, between 10 and 30 s after adding to the cart.
const PAYING_EVERY: usize = 3;
/// After the last deadline (of paying customers too), how long to keep listening for messages that
/// should not come.
const QUIET: Duration = Duration::from_secs(3);

/// The flags of the scenario.
pub struct Settings {
    pub customers: usize,
    pub clients: usize,
    pub seed: u64,
}

pub async fn run(backend: &Backend, settings: &Settings) -> anyhow::Result<Outcome> {
    ensure!(
        settings.customers >= PAYING_EVERY,
        "--customers must be at least {PAYING_EVERY}"
    );
    ensure!(settings.clients > 0, "--clients must be at least 1");
    let plan = Plan::generate(settings);
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, &plan, settings).await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let abandoned = plan.abandoned() as u64;
    let ms = |q| quantile(&m.lateness, q).unwrap_or_default().as_secs_f64() * 1000.0;
    let row = Row {
        scenario: NAME,
        backend: backend.name(),
        count: abandoned,
        unit: "triggers",
        seconds: m.elapsed.as_secs_f64(),
        rate: abandoned as f64 / m.elapsed.as_secs_f64(),
        p50: quantile(&m.lateness, 0.50),
        p99: quantile(&m.lateness, 0.99),
        reference_rate: None,
    };
    let summary = format!(
        "{NAME} on {backend}: {customers} customers added to a cart over {spread} s ({requests} \
         /v1/batch requests), {paying} of them paid 10–30 s later; segment {SEGMENT} (within \
         {WITHIN_TEXT}): lateness of the {abandoned} entered messages (on the in-process bus) after \
         Product Added + {within} s: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms \
         (min {min:.1} ms). Verified: every event stored once, every abandoned cart entered exactly once \
         by the clock and never early, no paying customer entered ({quiet} s after the last deadline), \
         nobody exited, {abandoned} members at the end, no failed resolver step.",
        backend = backend.name(),
        customers = thousands(settings.customers as u64),
        spread = SPREAD.as_secs(),
        requests = thousands(m.requests as u64),
        paying = thousands(plan.paying() as u64),
        abandoned = thousands(abandoned),
        within = WITHIN.as_secs(),
        p50 = ms(0.50),
        p90 = ms(0.90),
        p99 = ms(0.99),
        max = ms(1.0),
        min = ms(0.0),
        quiet = QUIET.as_secs(),
    );
    Ok(Outcome {
        rows: vec![row],
        summary,
    })
}

/// Who sends what when, decided before the clock starts.
struct Plan {
    /// The run's prefix of user ids and message ids.
    run: String,
    /// Per customer: when it adds to the cart (from the start) and, if it pays, when.
    customers: Vec<(Duration, Option<Duration>)>,
}

impl Plan {
    fn generate(s: &Settings) -> Self {
        let mut rng = StdRng::seed_from_u64(s.seed ^ 0x0074_696d_656f_7574);
        let run = format!("to-{:08x}", rng.gen::<u32>());
        let customers = (0..s.customers)
            .map(|i| {
                let added = SPREAD * i as u32 / s.customers as u32;
                let paid = (i % PAYING_EVERY == 0)
                    .then(|| added + Duration::from_millis(rng.gen_range(10_000..=30_000)));
                (added, paid)
            })
            .collect();
        Self { run, customers }
    }

    fn paying(&self) -> usize {
        self.customers.iter().filter(|(_, p)| p.is_some()).count()
    }

    fn abandoned(&self) -> usize {
        self.customers.len() - self.paying()
    }

    fn user(&self, customer: usize) -> String {
        format!("{}-u{customer:06}", self.run)
    }

    /// The messages to send, by request: each one's customer and whether it is the payment.
    fn schedule(&self) -> Vec<(Duration, Vec<(usize, bool)>)> {
        let mut due: Vec<(Duration, usize, bool)> = Vec::with_capacity(self.customers.len() * 2);
        for (c, (added, paid)) in self.customers.iter().enumerate() {
            due.push((*added, c, false));
            if let Some(paid) = paid {
                due.push((*paid, c, true));
            }
        }
        due.sort_unstable();
        let mut requests: Vec<(Duration, Vec<(usize, bool)>)> = Vec::new();
        for (at, c, paid) in due {
            let tick = TICK * (at.as_millis() / TICK.as_millis()) as u32;
            match requests.last_mut() {
                Some((t, messages)) if *t == tick => messages.push((c, paid)),
                _ => requests.push((tick, vec![(c, paid)])),
            }
        }
        requests
    }
}

/// What one run measured.
struct Measured {
    /// Sorted lateness of the abandoned carts' entered messages.
    lateness: Vec<Duration>,
    /// From the first request to the last entered message.
    elapsed: Duration,
    requests: usize,
}

async fn measure(fresh: &FreshStore, plan: &Plan, settings: &Settings) -> anyhow::Result<Measured> {
    let (config, write_key, token) = bootstrapped(fresh);
    let (state, base, server) = start(config).await?;

    let outcome = async {
        let mut listeners: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let inbox = listen_bus(&mut listeners, &state);
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.clients)
            .timeout(Duration::from_secs(120))
            .build()
            .context("failed to build the HTTP client")?;
        let definition = json!({
            "name": "abandoned cart",
            "condition": {"sequence": [{"event": "Product Added"},
                                       {"not_event": "Order Completed"}],
                          "within": WITHIN_TEXT},
        });
        define(&client, &base, &token, SEGMENT, &definition).await?;

        let schedule = plan.schedule();
        let started = Instant::now();
        let added = send_scheduled(&client, &base, &write_key, plan, &schedule, settings).await?;
        // With the segment's definition: an operator command in the log, applied by the resolver too.
        let total = (plan.customers.len() + plan.paying() + 1) as u64;
        resolved(&state, total).await?;

        // Every abandoned cart's message, then quiet until after the last deadline of anyone.
        let expected = plan.abandoned();
        until(
            "the in-process bus",
            || lock(&inbox).len(),
            |n| *n >= expected,
        )
        .await?;
        let last_deadline = added.iter().map(|(_, d)| *d).max().unwrap_or(started);
        tokio::time::sleep_until((last_deadline + QUIET).into()).await;
        stopped_and_stored(listeners, &state, total).await?;
        let segment = admin(&client, Method::GET, &base, &token, SEGMENT, None).await?;
        ensure!(
            segment.1["members"] == expected,
            "the segment has {} members but {expected} carts were abandoned",
            segment.1["members"],
        );
        let profiles = profiles(&client, &base, &token, plan).await?;
        let (lateness, last) = lateness(&inbox, plan, &profiles, &added)?;
        Ok(Measured {
            lateness,
            elapsed: last - started,
            requests: schedule.len(),
        })
    }
    .await;
    stop(server, state).await?;
    outcome
}

/// Sends each request of `schedule` at its time (late ones at once), at most `clients` in flight, every
/// message stamped with the time it is sent; returns, per customer, the timestamp of its `Product Added`
/// and the instant its deadline falls on (the timestamp + [`WITHIN`], on the monotonic clock).
async fn send_scheduled(
    client: &reqwest::Client,
    base: &str,
    write_key: &str,
    plan: &Plan,
    schedule: &[(Duration, Vec<(usize, bool)>)],
    settings: &Settings,
) -> anyhow::Result<Vec<(DateTime<Utc>, Instant)>> {
    let url = format!("{base}/v1/batch");
    let slots = Arc::new(Semaphore::new(settings.clients));
    let mut tasks = JoinSet::new();
    // One anchor ties the wall clock of the timestamps to the monotonic clock of the arrivals.
    let (anchor_wall, anchor) = (Utc::now(), Instant::now());
    let start = tokio::time::Instant::now();
    let mut added: Vec<Option<(DateTime<Utc>, Instant)>> = vec![None; plan.customers.len()];
    for (i, (at, messages)) in schedule.iter().enumerate() {
        tokio::time::sleep_until(start + *at).await;
        let slot = slots.clone().acquire_owned().await?;
        // Whole milliseconds, as the timestamp is written.
        let now = anchor_wall + chrono::Duration::milliseconds(anchor.elapsed().as_millis() as i64);
        let timestamp = rfc3339(now);
        let batch: Vec<Value> = messages
            .iter()
            .map(|&(c, paid)| {
                let (event, kind) = if paid {
                    ("Order Completed", "o")
                } else {
                    ("Product Added", "a")
                };
                json!({"type": "track", "userId": plan.user(c), "event": event,
                       "messageId": format!("{}-{kind}{c:06}", plan.run),
                       "timestamp": timestamp,
                       "properties": {"product_id": "sku-1", "price": 10, "total": 10}})
            })
            .collect();
        for &(c, paid) in messages {
            if !paid {
                let offset = (now - anchor_wall)
                    .to_std()
                    .context("the clock went backwards")?;
                added[c] = Some((now, anchor + offset + WITHIN));
            }
        }
        let request = client
            .post(&url)
            .basic_auth(write_key, None::<&str>)
            .json(&json!({ "batch": batch }));
        tasks.spawn(async move {
            let answer = request.send().await;
            drop(slot);
            let response = answer.with_context(|| format!("request {i} failed"))?;
            let status = response.status();
            ensure!(
                status == StatusCode::OK,
                "request {i} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a request task failed")??;
    }
    added
        .into_iter()
        .enumerate()
        .map(|(c, a)| a.with_context(|| format!("customer {c} never added to the cart")))
        .collect()
}

/// The profile of each customer, by `GET /v1/profiles/lookup?type=user_id` (after the measurement).
async fn profiles(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plan: &Plan,
) -> anyhow::Result<HashMap<String, usize>> {
    let mut found = HashMap::with_capacity(plan.customers.len());
    for c in 0..plan.customers.len() {
        let user = plan.user(c);
        let url = format!("{base}/v1/profiles/lookup?type=user_id&value={user}");
        let response = client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("looking up user_id {user} failed"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        ensure!(
            status == StatusCode::OK,
            "the lookup of {user} answered {status}: {body}"
        );
        let profile = body["profile_id"]
            .as_str()
            .with_context(|| format!("the lookup of {user} answered no profile: {body}"))?;
        ensure!(
            found.insert(profile.to_owned(), c).is_none(),
            "customer {user} shares profile {profile} with another"
        );
    }
    Ok(found)
}

/// Checks what arrived against the plan; returns each abandoned cart's lateness, sorted, and the last
/// arrival.
fn lateness(
    inbox: &Inbox,
    plan: &Plan,
    profiles: &HashMap<String, usize>,
    added: &[(DateTime<Utc>, Instant)],
) -> anyhow::Result<(Vec<Duration>, Instant)> {
    let messages = lock(inbox);
    let entered = format!(".segment.{SEGMENT}.entered");
    let mut seen: HashSet<usize> = HashSet::new();
    let mut lateness = Vec::with_capacity(plan.abandoned());
    let mut last = None;
    for (arrival, subject, payload) in messages.iter() {
        ensure!(
            subject.ends_with(&entered),
            "unexpected message: {subject} {payload}"
        );
        let payload: Value = serde_json::from_str(payload)
            .with_context(|| format!("a payload that is not JSON: {payload}"))?;
        ensure!(
            payload["segment"] == SEGMENT,
            "entered another segment: {payload}"
        );
        ensure!(
            payload["caused_by"] == "clock",
            "an entry not caused by the clock: {payload}"
        );
        let profile = payload["profile_id"].as_str().unwrap_or_default();
        let Some(&c) = profiles.get(profile) else {
            bail!("a profile that is no customer's entered: {payload}");
        };
        let user = plan.user(c);
        ensure!(
            plan.customers[c].1.is_none(),
            "customer {user} paid but entered: {payload}"
        );
        ensure!(seen.insert(c), "customer {user} entered twice");
        let (timestamp, deadline) = added[c];
        let Some(late) = arrival.checked_duration_since(deadline) else {
            bail!(
                "customer {user} entered {:?} before its deadline (Product Added at {}): {payload}",
                deadline - *arrival,
                rfc3339(timestamp)
            );
        };
        lateness.push(late);
        last = Some(last.map_or(*arrival, |l: Instant| l.max(*arrival)));
    }
    ensure!(
        seen.len() == plan.abandoned(),
        "{} of {} abandoned carts entered",
        seen.len(),
        plan.abandoned()
    );
    lateness.sort_unstable();
    let last = last.context("nothing entered")?;
    Ok((lateness, last))
}
