//! Scenario `freshness`: how soon a segment change is published after the event that decided it.
//!
//! Customers first get a history of orders below the threshold (sent through `/v1/batch`, resolved), then
//! the segment "cumulative spend ≥ 1000" (`sum` of `properties.total` of `Order Completed`, all time) is
//! defined and its backfill awaited (nobody may enter). Then a steady stream of `--events` messages (page
//! views, carts, small orders of customers who stay below the threshold) is sent at `--rate` events/s,
//! one `/v1/batch` request every [`TICK`] from up to `--clients` requests in flight; every twentieth
//! message is the order that takes one "crosser" (a customer with no other message in the stream) over
//! the threshold. For each crossing order the figure is the time from the 200 of the request carrying
//! it to the arrival of the `segment.<id>.entered` message whose `caused_by` is its `messageId`: on NATS
//! JetStream when `--nats-url` is given (a namespace `bench_<random>` of its own, streams deleted
//! afterwards), on the in-process bus (`AppState::bus`) otherwise. The bus is listened to in both cases,
//! so with NATS the summary also gives the bus figures (the difference is the NATS hop). The summary
//! also splits the figure: from the 200 to the resolver's commit of the crossing (the resolver's
//! committed position, sampled every millisecond), the rest being the outbox publisher's.
//!
//! Verified: every request 200 and every event stored once; every crossing produced exactly one
//! `entered` message, for the segment, on a profile of its own; nothing else entered or exited (nobody
//! during the backfill, no customer staying below the threshold); the segment ends with exactly the
//! crossers as members; the resolver reported no failed step.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use axum::body::Bytes;
use cdp_api::provision::random_secret;
use cdp_api::{AppState, Application, Config};
use cdp_domain::event::Position;
use cdp_domain::message::rfc3339;
use cdp_domain::store::{EventStore, Store};
use chrono::{Duration as Days, Utc};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::ingest_http::{send_all, stop};
use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use super::workload::Workload;
use crate::numbers::thousands;
use crate::retail::{self, revenue_cents, Channel, Customer, Line, Who};

pub const NAME: &str = "freshness";
pub(super) const WORKSPACE: &str = "bench";
pub(super) const SEGMENT: &str = "spent_1000";
/// The segment's threshold, in cents.
const THRESHOLD: u32 = 100_000;
/// One stream request per tick, carrying `rate × TICK` messages.
const TICK: Duration = Duration::from_millis(10);
/// One message in this many of the stream is a crossing order.
const CROSSING_EVERY: usize = 20;
/// Waiting (for the resolver, a backfill, the messages) is given up when nothing moves for this long.
pub(super) const STALLED: Duration = Duration::from_secs(120);
/// After everything was resolved, how long to keep listening for messages that should not come
/// (several publisher polls).
const QUIET: Duration = Duration::from_millis(500);

/// The flags of the scenario.
pub struct Settings<'a> {
    pub events: usize,
    pub rate: usize,
    pub batch: usize,
    pub clients: usize,
    pub seed: u64,
    pub nats_url: Option<&'a str>,
}

pub async fn run(backend: &Backend, settings: &Settings<'_>) -> anyhow::Result<Outcome> {
    ensure!(settings.rate > 0, "--rate must be at least 1");
    ensure!(settings.clients > 0, "--clients must be at least 1");
    let plan = Plan::generate(settings)?;
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, &plan, settings).await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let name = match (backend, settings.nats_url) {
        (Backend::Sqlite, None) => "sqlite",
        (Backend::Sqlite, Some(_)) => "sqlite+nats",
        (Backend::Postgres { .. }, None) => "postgres",
        (Backend::Postgres { .. }, Some(_)) => "postgres+nats",
    };
    let events = plan.stream_events as u64;
    let seconds = m.stream.as_secs_f64();
    let primary = m.nats.as_ref().unwrap_or(&m.bus);
    let row = Row {
        scenario: NAME,
        backend: name,
        count: events,
        unit: "events",
        seconds,
        rate: events as f64 / seconds,
        p50: quantile(&primary.latencies, 0.50),
        p99: quantile(&primary.latencies, 0.99),
        reference_rate: None,
    };
    let figures = |l: &Latencies| {
        let ms = |q| quantile(&l.latencies, q).unwrap_or_default().as_secs_f64() * 1000.0;
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms{}",
            ms(0.50),
            ms(0.90),
            ms(0.99),
            ms(1.0),
            if l.early > 0 {
                format!(" ({} arrived before the 200, counted as 0)", l.early)
            } else {
                String::new()
            }
        )
    };
    let channel = if m.nats.is_some() {
        format!(
            "on NATS JetStream: {}; on the in-process bus: {}",
            figures(primary),
            figures(&m.bus)
        )
    } else {
        format!("on the in-process bus: {}", figures(primary))
    };
    let ms = |l: &[Duration], q| quantile(l, q).unwrap_or_default().as_secs_f64() * 1000.0;
    let channel = format!(
        "{channel}; of which from the 200 to the resolver's commit: p50 {:.1} ms, p90 {:.1} ms, \
         p99 {:.1} ms (the rest is the outbox publisher's)",
        ms(&m.committed, 0.50),
        ms(&m.committed, 0.90),
        ms(&m.committed, 0.99),
    );
    let summary = format!(
        "{NAME} on {name}: {events} events streamed at a target of {target}/s in {seconds:.2} s = \
         {rate} events/s sustained ({requests} /v1/batch requests of {per_request}, request p99 \
         {request_p99:.1} ms), {crossings} of them taking a customer over {threshold} of cumulative \
         spend (history of {history} events, {customers} customers, segment backfilled in {backfill:.2} s); \
         from the 200 to the segment.{SEGMENT}.entered message {channel}. Verified: every event stored \
         once, every crossing exactly one entered message on a profile of its own, nothing else entered \
         or exited, {crossings} members at the end, no failed resolver step.",
        events = thousands(events),
        target = thousands(settings.rate as u64),
        rate = thousands(row.rate.round() as u64),
        requests = thousands(plan.stream.len() as u64),
        per_request = plan.per_request,
        request_p99 = quantile(&m.requests, 0.99)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0,
        crossings = thousands(plan.crossers as u64),
        threshold = THRESHOLD / 100,
        history = thousands(plan.history.events as u64),
        customers = thousands(plan.history.customers as u64),
        backfill = m.backfill.as_secs_f64(),
    );
    Ok(Outcome {
        rows: vec![row],
        summary,
    })
}

/// The segment's definition: cumulative spend of at least the threshold, all time.
pub(super) fn definition() -> Value {
    json!({
        "name": "spent 1000",
        "condition": {"event": "Order Completed",
                      "aggregate": {"function": "sum", "property": "properties.total"},
                      "op": "gte", "value": THRESHOLD / 100},
    })
}

/// The messages of a run, generated before the clock starts.
pub(super) struct Plan {
    /// Orders below the threshold, sent and resolved before the segment is defined.
    pub(super) history: Workload,
    /// The stream's `/v1/batch` bodies, one per tick.
    pub(super) stream: Vec<Bytes>,
    pub(super) stream_events: usize,
    per_request: usize,
    /// For each stream request, the `messageId`s of the crossing orders it carries.
    pub(super) crossing: Vec<Vec<String>>,
    pub(super) crossers: usize,
}

impl Plan {
    pub(super) fn generate(s: &Settings<'_>) -> anyhow::Result<Self> {
        ensure!(
            s.events >= CROSSING_EVERY,
            "--events must be at least {CROSSING_EVERY}"
        );
        let mut rng = StdRng::seed_from_u64(s.seed ^ 0x6672_6573_6873);
        let crossers = s.events / CROSSING_EVERY;
        let stayers = (s.events / 10).max(100);
        let customers: Vec<Customer> = (0..crossers + stayers)
            .map(|i| Customer::generate(&mut rng, i))
            .collect();
        let run: u32 = rng.gen();
        let now = Utc::now();
        let mut history = Vec::new();
        let order = |c: &Customer, id: String, lines: &[Line], at| {
            let order_id = format!("O-{id}");
            retail::order_completed(c, Channel::MiniProgram, at, &id, &order_id, lines).to_string()
        };
        // Crossers: orders until the next one would reach the threshold, which is kept for the
        // stream; at least one order of history each.
        let mut crossing_orders = Vec::with_capacity(crossers);
        for c in &customers[..crossers] {
            let mut spent = 0;
            let crossing = loop {
                let lines: Vec<Line> = (0..rng.gen_range(1..=3))
                    .map(|_| Line::random(&mut rng))
                    .collect();
                let cents = revenue_cents(&lines);
                if spent + cents < THRESHOLD {
                    spent += cents;
                    let at = now - Days::minutes(rng.gen_range(60..60 * 24 * 60));
                    let id = format!("fresh-{run:08x}-h{:09}", history.len());
                    history.push(order(c, id, &lines, at));
                } else if spent > 0 {
                    break lines;
                }
            };
            crossing_orders.push(crossing);
        }
        // Stayers: one or two small orders of history; what they spend in the stream stays below.
        let mut spent = vec![0; stayers];
        for (c, spent) in customers[crossers..].iter().zip(&mut spent) {
            for _ in 0..rng.gen_range(1..=2) {
                let line = [Line::random(&mut rng)];
                if *spent + revenue_cents(&line) < THRESHOLD / 2 {
                    *spent += revenue_cents(&line);
                    let at = now - Days::minutes(rng.gen_range(60..60 * 24 * 60));
                    let id = format!("fresh-{run:08x}-h{:09}", history.len());
                    history.push(order(c, id, &line, at));
                }
            }
        }

        let per_request = ((s.rate as f64 * TICK.as_secs_f64()).round() as usize).max(1);
        let mut messages = Vec::with_capacity(s.events);
        let mut crossing_ids = Vec::with_capacity(crossers);
        for i in 0..s.events {
            let id = format!("fresh-{run:08x}-s{i:09}");
            let crosser = i / CROSSING_EVERY;
            let message = if i % CROSSING_EVERY == CROSSING_EVERY / 2 && crosser < crossers {
                crossing_ids.push((messages.len() / per_request, id.clone()));
                order(&customers[crosser], id, &crossing_orders[crosser], now)
            } else {
                let j = rng.gen_range(0..stayers);
                let c = &customers[crossers + j];
                let line = Line::random(&mut rng);
                let roll: f64 = rng.gen();
                if roll < 0.15 && spent[j] + revenue_cents(&[line]) < THRESHOLD {
                    spent[j] += revenue_cents(&[line]);
                    order(c, id, &[line], now)
                } else if roll < 0.45 {
                    let cart = format!("cart-{}", c.user_id);
                    retail::product_added(
                        Who::User(c),
                        Channel::MiniProgram,
                        now,
                        &id,
                        &cart,
                        &line,
                    )
                    .to_string()
                } else {
                    retail::page(Who::User(c), Channel::MiniProgram, now, &id, &mut rng).to_string()
                }
            };
            messages.push(message);
        }
        ensure!(
            crossing_ids.len() == crossers,
            "{} crossing orders planned for {crossers} crossers",
            crossing_ids.len()
        );
        let workload = |batches: Vec<Vec<String>>, events: usize| Workload {
            bytes: batches.iter().flatten().map(String::len).sum(),
            last_message_id: String::new(),
            batches,
            sent_at: rfc3339(now),
            events,
            customers: customers.len(),
            people: Vec::new(),
        };
        let chunks = |all: Vec<String>, size: usize| -> Vec<Vec<String>> {
            all.chunks(size).map(<[String]>::to_vec).collect()
        };
        let history_events = history.len();
        let history = workload(chunks(history, s.batch.max(1)), history_events);
        let stream = workload(chunks(messages, per_request), s.events);
        let mut crossing = vec![Vec::new(); stream.batches.len()];
        for (request, id) in crossing_ids {
            crossing[request].push(id);
        }
        Ok(Self {
            history,
            stream: stream.bodies(),
            stream_events: s.events,
            per_request,
            crossing,
            crossers,
        })
    }
}

impl Plan {
    /// When the 200 of each crossing order came, by its message id, from when each stream request's
    /// came (`answered`, in the order of `stream`).
    pub(super) fn answered_at<'p>(
        &'p self,
        answered: &[(Instant, Duration)],
    ) -> HashMap<&'p str, Instant> {
        self.crossing
            .iter()
            .zip(answered)
            .flat_map(|(ids, (at, _))| ids.iter().map(move |id| (id.as_str(), *at)))
            .collect()
    }
}

/// Checks that the segment at `base` has exactly the plan's crossers as members.
pub(super) async fn holds_the_crossers(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    plan: &Plan,
) -> anyhow::Result<()> {
    let segment = admin(client, Method::GET, base, token, SEGMENT, None).await?;
    ensure!(
        segment.1["members"] == plan.crossers,
        "the segment has {} members but {} customers crossed the threshold",
        segment.1["members"],
        plan.crossers
    );
    Ok(())
}

/// What one run measured.
struct Measured {
    /// From the first stream request to the last 200.
    stream: Duration,
    /// Sorted latencies of the stream requests.
    requests: Vec<Duration>,
    backfill: Duration,
    bus: Latencies,
    nats: Option<Latencies>,
    /// From the 200 of each crossing order to the resolver's commit of it, sorted: the part of the
    /// latency before the outbox publisher (the rest is publishing).
    committed: Vec<Duration>,
}

/// From the 200 of each crossing order to its entered message, sorted.
pub(super) struct Latencies {
    pub(super) latencies: Vec<Duration>,
    /// Messages that arrived before the client had seen the 200.
    pub(super) early: usize,
}

/// Messages as they arrive on one channel: arrival, subject, payload.
pub(super) type Inbox = Arc<Mutex<Vec<(Instant, String, String)>>>;

async fn measure(
    fresh: &FreshStore,
    plan: &Plan,
    settings: &Settings<'_>,
) -> anyhow::Result<Measured> {
    let (mut config, write_key, token) = bootstrapped(fresh);
    let namespace = format!("bench_{}", random_secret("ns").to_lowercase());
    if let Some(url) = settings.nats_url {
        config.nats_url = Some(url.to_owned());
        config.nats_namespace = namespace
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
    }
    let streams = [config.out_stream_name(), config.ingest_stream_name()];
    let subjects = format!("{}{WORKSPACE}.segment.>", config.out_subject_prefix());
    let (state, base, server) = start(config).await?;
    let nats = match settings.nats_url {
        Some(url) => Some(
            async_nats::connect(url)
                .await
                .with_context(|| format!("failed to connect to NATS at {url}"))?,
        ),
        None => None,
    };

    let outcome = async {
        let history = Arc::new(plan.history.bodies());
        send_all(
            &format!("{base}/v1/batch"),
            &write_key,
            history,
            settings.clients,
        )
        .await
        .context("sending the history failed")?;
        let history_events = plan.history.events as u64;
        resolved(&state, history_events).await?;

        // Listen before the segment exists: its backfill must not make anybody enter.
        let mut listeners: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let bus_inbox = listen_bus(&mut listeners, &state);
        let nats_inbox = match &nats {
            Some(client) => Some(listen_nats(&mut listeners, client, &subjects).await?),
            None => None,
        };

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(settings.clients)
            .timeout(Duration::from_secs(120))
            .build()
            .context("failed to build the HTTP client")?;
        let started = Instant::now();
        define(&client, &base, &token, SEGMENT, &definition()).await?;
        let backfill = started.elapsed();
        let before = lock(&bus_inbox).len();
        ensure!(
            before == 0,
            "{before} segment messages were published during the backfill, though nobody had reached \
             the threshold"
        );

        let commits = CommitWatch::start(state.identity.clone());
        let (stream, answered) = send_paced(&client, std::slice::from_ref(&base), &write_key, plan, settings).await?;
        let mut requests: Vec<Duration> = answered.iter().map(|(_, l)| *l).collect();
        requests.sort_unstable();
        // With the segment's definition: an operator command in the log, applied by the resolver too.
        let total = history_events + plan.stream_events as u64 + 1;
        resolved(&state, total).await?;
        let inboxes: Vec<(&str, &Inbox)> = std::iter::once(("the in-process bus", &bus_inbox))
            .chain(nats_inbox.as_ref().map(|i| ("NATS", i)))
            .collect();
        for (channel, inbox) in &inboxes {
            arrived(channel, inbox, plan.crossers).await?;
        }
        let commits = commits.stop();
        tokio::time::sleep(QUIET).await;
        stopped_and_stored(listeners, &state, total).await?;
        holds_the_crossers(&client, &base, &token, plan).await?;
        let answered_at = plan.answered_at(&answered);
        let bus = latencies("the in-process bus", &bus_inbox, &answered_at)?;
        let nats = match &nats_inbox {
            Some(inbox) => Some(latencies("NATS", inbox, &answered_at)?),
            None => None,
        };
        let committed = until_committed(&state.store, &commits, &answered_at).await?;
        Ok(Measured {
            stream,
            requests,
            backfill,
            bus,
            nats,
            committed,
        })
    }
    .await;

    if let Some(client) = &nats {
        let js = async_nats::jetstream::new(client.clone());
        for name in &streams {
            // The ingest stream exists only once its consumer was made; a missing one is fine.
            let _ = js.delete_stream(name).await;
        }
    }
    stop(server, state).await?;
    outcome
}

/// A configuration of `fresh` that bootstraps the workspace [`WORKSPACE`] with a new write key and admin
/// token (returned with it).
pub(super) fn bootstrapped(fresh: &FreshStore) -> (Config, String, String) {
    let write_key = random_secret("wk");
    let token = random_secret("tok");
    let mut config = fresh.config();
    config.bootstrap_workspace = Some(WORKSPACE.into());
    config.bootstrap_write_key = Some(write_key.clone());
    config.bootstrap_admin_token = Some(token.clone());
    (config, write_key, token)
}

/// Collects every segment message of [`WORKSPACE`] on the in-process bus, with its arrival, from a task
/// of `listeners` (which fails when the bus does).
pub(super) fn listen_bus(listeners: &mut JoinSet<anyhow::Result<()>>, state: &AppState) -> Inbox {
    let bus_inbox = Inbox::default();
    let mut receiver = state.bus.subscribe();
    let inbox = bus_inbox.clone();
    listeners.spawn(async move {
        loop {
            match receiver.recv().await {
                Ok(m) => {
                    let arrived = Instant::now();
                    if m.subject
                        .starts_with(&format!("cdp.out.{WORKSPACE}.segment."))
                    {
                        lock(&inbox).push((arrived, m.subject, m.payload));
                    }
                }
                Err(e) => bail!("the in-process bus failed: {e}"),
            }
        }
    });
    bus_inbox
}

/// Collects every message on `subjects` of NATS, with its arrival, from a task of `listeners` (which
/// fails when the subscription ends); subscribed before it returns.
pub(super) async fn listen_nats(
    listeners: &mut JoinSet<anyhow::Result<()>>,
    client: &async_nats::Client,
    subjects: &str,
) -> anyhow::Result<Inbox> {
    let mut subscriber = client
        .subscribe(subjects.to_owned())
        .await
        .with_context(|| format!("failed to subscribe to {subjects}"))?;
    client.flush().await.context("NATS flush failed")?;
    let inbox = Inbox::default();
    let into = inbox.clone();
    listeners.spawn(async move {
        while let Some(m) = subscriber.next().await {
            let arrived = Instant::now();
            let payload = String::from_utf8_lossy(&m.payload).into_owned();
            lock(&into).push((arrived, m.subject.to_string(), payload));
        }
        bail!("the NATS subscription ended")
    });
    Ok(inbox)
}

/// Starts the service with `config`: its state, base URL and server task.
pub(super) async fn start(
    config: Config,
) -> anyhow::Result<(Arc<AppState>, String, JoinHandle<anyhow::Result<()>>)> {
    let app = Application::build(config)
        .await
        .context("failed to start the service")?;
    let state = app.state();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());
    Ok((state, base, server))
}

/// Stops the listeners (failing with the first that failed), then checks that `total` events (with
/// the segment's definition) are stored and that the resolver reported no failed step.
pub(super) async fn stopped_and_stored(
    mut listeners: JoinSet<anyhow::Result<()>>,
    state: &AppState,
    total: u64,
) -> anyhow::Result<()> {
    listeners.abort_all();
    while let Some(joined) = listeners.join_next().await {
        if let Ok(Err(e)) = joined {
            return Err(e);
        }
    }
    let stored = state
        .store
        .count_events(WORKSPACE)
        .await
        .context("failed to count the stored events")?;
    ensure!(
        stored == total as i64,
        "{total} events were acknowledged (with the segment's definition) but {stored} are stored"
    );
    let errors = state
        .identity
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    ensure!(errors == 0, "the resolver reported {errors} failed steps");
    Ok(())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends the stream's requests one per tick (late ticks are caught up at once) to the services at
/// `bases` in turn, at most `clients` in flight; returns the time from the first send to the last 200
/// and, per request, when its 200 came and how long it took.
pub(super) async fn send_paced(
    client: &reqwest::Client,
    bases: &[String],
    write_key: &str,
    plan: &Plan,
    settings: &Settings<'_>,
) -> anyhow::Result<(Duration, Vec<(Instant, Duration)>)> {
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}/v1/batch")).collect();
    let slots = Arc::new(Semaphore::new(settings.clients));
    let mut tasks = JoinSet::new();
    let start = tokio::time::Instant::now();
    for (i, body) in plan.stream.iter().enumerate() {
        tokio::time::sleep_until(start + TICK * i as u32).await;
        let slot = slots.clone().acquire_owned().await?;
        let request = client
            .post(&urls[i % urls.len()])
            .basic_auth(write_key, None::<&str>)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = request.send().await;
            let at = Instant::now();
            drop(slot);
            let response = answer.with_context(|| format!("stream request {i} failed"))?;
            let status = response.status();
            ensure!(
                status == StatusCode::OK,
                "stream request {i} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            Ok((i, at, at - sent))
        });
    }
    let mut answered = vec![None; plan.stream.len()];
    while let Some(joined) = tasks.join_next().await {
        let (i, at, took) = joined.context("a stream request task failed")??;
        answered[i] = Some((at, took));
    }
    let answered: Vec<(Instant, Duration)> = answered.into_iter().flatten().collect();
    ensure!(
        answered.len() == plan.stream.len(),
        "{} of {} stream requests were answered",
        answered.len(),
        plan.stream.len()
    );
    let last = answered.iter().map(|(at, _)| *at).max();
    let elapsed = last.map_or_else(Duration::default, |l| l - start.into_std());
    Ok((elapsed, answered))
}

/// `PUT`s the segment `segment` with `definition` and waits for its backfill to be `ready` with nobody in
/// it.
pub(super) async fn define(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    segment: &str,
    definition: &Value,
) -> anyhow::Result<()> {
    let (status, body) = admin(client, Method::PUT, base, token, segment, Some(definition)).await?;
    ensure!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "PUT /v1/segments/{segment} answered {status}: {body}"
    );
    let mut last = Value::Null;
    let mut moved = Instant::now();
    loop {
        let (status, body) = admin(client, Method::GET, base, token, segment, None).await?;
        match status {
            StatusCode::NOT_FOUND => {}
            StatusCode::OK if body["status"] == "ready" => {
                ensure!(
                    body["members"] == 0,
                    "the segment has {} members after its backfill, though nobody had reached the \
                     threshold",
                    body["members"]
                );
                return Ok(());
            }
            StatusCode::OK => {}
            _ => bail!("GET /v1/segments/{segment} answered {status}: {body}"),
        }
        if body != last {
            last = body;
            moved = Instant::now();
        } else if moved.elapsed() > STALLED {
            bail!("the segment's backfill did not move for {STALLED:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request on the segment `segment` with the admin token: the status and the JSON answer.
pub(super) async fn admin(
    client: &reqwest::Client,
    method: Method,
    base: &str,
    token: &str,
    segment: &str,
    body: Option<&Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let path = format!("/v1/segments/{segment}");
    let mut request = client
        .request(method.clone(), format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {path} failed"))?;
    let status = response.status();
    let value = response.json().await.unwrap_or(Value::Null);
    Ok((status, value))
}

/// Waits until the resolver has applied exactly `expected` events.
pub(super) async fn resolved(state: &AppState, expected: u64) -> anyhow::Result<()> {
    let applied = || {
        state
            .identity
            .applied
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    until("the resolver", applied, |n| *n >= expected).await?;
    let errors = state
        .identity
        .errors
        .load(std::sync::atomic::Ordering::Relaxed);
    ensure!(errors == 0, "the resolver reported {errors} failed steps");
    let n = applied();
    ensure!(
        n == expected,
        "the resolver applied {n} events but {expected} were sent"
    );
    Ok(())
}

/// Waits until every crossing's message arrived on `channel`.
pub(super) async fn arrived(channel: &str, inbox: &Inbox, expected: usize) -> anyhow::Result<()> {
    until(channel, || lock(inbox).len(), |n| *n >= expected).await
}

/// Polls `progress` until `done` holds; fails when it stays the same for [`STALLED`].
pub(super) async fn until<T: PartialEq + std::fmt::Debug>(
    what: &str,
    progress: impl Fn() -> T,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<()> {
    let mut last = progress();
    let mut moved = Instant::now();
    while !done(&last) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = progress();
        if now != last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() > STALLED {
            bail!("{what} did not move for {STALLED:?} (at {last:?})");
        }
    }
    Ok(())
}

/// Samples the resolver's committed log position every millisecond from a thread of its own (the
/// publisher waits on the commit notification; a second waiter would take its wake-ups).
struct CommitWatch {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, i64)>>,
}

impl CommitWatch {
    fn start(status: Arc<cdp_projections::RunnerStatus>) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples: Vec<(Instant, i64)> = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let seq = status
                    .position_seq
                    .load(std::sync::atomic::Ordering::Relaxed);
                if samples.last().is_none_or(|(_, last)| *last != seq) {
                    samples.push((Instant::now(), seq));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            samples
        });
        CommitWatch { stop, thread }
    }

    /// When the committed position moved, and where to, in order.
    fn stop(self) -> Vec<(Instant, i64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// From each crossing's 200 to the first sample of `commits` at or past its log position (read back from
/// the log by message id), sorted.
async fn until_committed(
    store: &Store,
    commits: &[(Instant, i64)],
    answered: &HashMap<&str, Instant>,
) -> anyhow::Result<Vec<Duration>> {
    let mut seq_of: HashMap<String, i64> = HashMap::with_capacity(answered.len());
    let mut after = Position::START;
    loop {
        let page = store
            .read_after(after, 10_000)
            .await
            .context("failed to read the log back")?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page {
            if answered.contains_key(e.event.message_id.as_str()) {
                seq_of.insert(e.event.message_id, e.position.seq);
            }
        }
    }
    let mut latencies = Vec::with_capacity(answered.len());
    for (id, at) in answered {
        let seq = *seq_of
            .get(*id)
            .with_context(|| format!("crossing {id} is not in the log"))?;
        let (committed, _) = commits
            .iter()
            .find(|(_, s)| *s >= seq)
            .with_context(|| format!("no commit reached crossing {id}"))?;
        latencies.push(committed.saturating_duration_since(*at));
    }
    latencies.sort_unstable();
    Ok(latencies)
}

/// Checks what arrived on `channel` against the crossings, and measures each one's latency.
pub(super) fn latencies(
    channel: &str,
    inbox: &Inbox,
    answered: &HashMap<&str, Instant>,
) -> anyhow::Result<Latencies> {
    let messages = lock(inbox);
    let entered = format!(".segment.{SEGMENT}.entered");
    let mut seen: HashSet<String> = HashSet::new();
    let mut profiles: HashSet<String> = HashSet::new();
    let mut latencies = Vec::with_capacity(answered.len());
    let mut early = 0;
    for (arrival, subject, payload) in messages.iter() {
        ensure!(
            subject.ends_with(&entered),
            "unexpected message on {channel}: {subject} {payload}"
        );
        let payload: Value = serde_json::from_str(payload)
            .with_context(|| format!("{channel} carried a payload that is not JSON: {payload}"))?;
        let cause = payload["caused_by"].as_str().unwrap_or_default();
        let Some(answered) = answered.get(cause) else {
            bail!("{channel}: a customer entered who did not cross the threshold: {payload}");
        };
        ensure!(
            payload["segment"] == SEGMENT,
            "{channel}: entered another segment: {payload}"
        );
        ensure!(
            seen.insert(cause.to_owned()),
            "{channel}: the crossing {cause} produced more than one entered message"
        );
        let profile = payload["profile_id"].as_str().unwrap_or_default();
        ensure!(
            profiles.insert(profile.to_owned()),
            "{channel}: profile {profile} entered twice"
        );
        match arrival.checked_duration_since(*answered) {
            Some(latency) => latencies.push(latency),
            None => {
                early += 1;
                latencies.push(Duration::ZERO);
            }
        }
    }
    ensure!(
        seen.len() == answered.len(),
        "{channel}: {} of {} crossings produced an entered message",
        seen.len(),
        answered.len()
    );
    latencies.sort_unstable();
    Ok(Latencies { latencies, early })
}
