//! Scenario `traits`: what computed traits and tags cost the OneID resolver, which folds every customer
//! event into its profile's trait states and evaluates the tags of the profiles a batch touched.
//!
//! Three figures, three rows, all on the workload's events appended straight into the store with
//! `EventStore::append` (not timed) and then applied by the resolver:
//! - `resolve-plain`: events/s of `runner::catch_up` of the resolver over the whole log, no catalog.
//! - `traits`: the same on a fresh store where 8 computed traits and 4 tags (rule, value, RFM with
//!   fixed cut points, manual) were defined through the API *before* the events were appended, so every
//!   event is folded live. Its reference is `resolve-plain`: the ratio is the figure.
//! - `traits-backfill`: on the store of `resolve-plain` (history resolved, no catalog), the service is
//!   started and the same definitions are `PUT`; the time from the first `PUT` until every definition's
//!   job reports `ready` gives profiles/s (and, in the summary, events of history/s).
//!
//! Verified, after the live run and after the backfill alike: the resolver applied exactly the events
//! appended; for up to [`CHECKED`] identified customers (those with a phone number of their own), every
//! computed trait of `GET /v1/profiles/lookup` is complete and equal to `computed::recompute` over the
//! customer's events, `spend_30d` equals the sum of the `total`s of their generated orders, and their
//! `big_spender`, `spend_level` and `rfm` (recency 5) tags are what that spend implies; each tag has a
//! population.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cdp_api::provision::random_secret;
use cdp_api::{AppState, Application};
use cdp_domain::computed::{recompute, RawEvent, TraitDef};
use cdp_domain::event::NewEvent;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::EventStore;
use cdp_projections::identity::IdentityResolver;
use cdp_projections::runner;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::ingest_http::{close, stop};
use super::report::{Outcome, Row};
use super::target::{Backend, FreshStore};
use super::workload::Workload;
use crate::numbers::thousands;

pub const NAME: &str = "traits";
/// The row of the resolver without a catalog (the reference of [`NAME`]).
const PLAIN: &str = "resolve-plain";
const BACKFILL: &str = "traits-backfill";
const WORKSPACE: &str = "bench";
/// Customers whose traits and tags are checked against a recomputation.
const CHECKED: usize = 1_000;
/// A backfill is given up on when no job moves for this long.
const STALLED: Duration = Duration::from_secs(120);
/// The rule tag's threshold on `spend_30d`, and the value tag's buckets.
const BIG_SPENDER: f64 = 1000.0;

/// The computed traits: every kind of function the workload can feed, line items, a filter, windows.
fn trait_definitions() -> Vec<(&'static str, Value)> {
    let order = |function: &str, property: &str| {
        let mut definition = json!({"event": "Order Completed", "property": property});
        definition["function"] = json!(function);
        definition
    };
    vec![
        (
            "spend_30d",
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total",
                   "window": "30d"}),
        ),
        (
            "orders",
            json!({"event": "Order Completed", "function": "count"}),
        ),
        ("biggest_order", order("max", "properties.total")),
        ("average_order", order("average", "properties.total")),
        (
            "top_category",
            order("most_frequent", "properties.products[].category"),
        ),
        (
            "categories",
            order("unique_list", "properties.products[].category"),
        ),
        (
            "cart_days_90d",
            json!({"event": "Product Added", "function": "days_active", "window": "90d"}),
        ),
        (
            "tea_revenue",
            json!({"event": "Order Completed", "function": "sum",
                   "property": "properties.products[].price * properties.products[].quantity",
                   "where": [{"property": "properties.products[].category", "op": "eq", "value": "tea"}]}),
        ),
    ]
}

fn tag_definitions() -> Vec<(&'static str, Value)> {
    vec![
        (
            "big_spender",
            json!({"type": "rule",
                   "condition": {"computed": "spend_30d", "op": "gte", "value": BIG_SPENDER}}),
        ),
        (
            "spend_level",
            json!({"type": "value", "trait": "spend_30d", "buckets": [
                {"value": "low", "lt": 100}, {"value": "mid", "gte": 100, "lt": BIG_SPENDER},
                {"value": "high", "gte": BIG_SPENDER}]}),
        ),
        (
            "rfm",
            // Fixed cut points: quantile ones are measured when the tag is defined (and a day
            // later), so on a store without purchases yet no profile would be scored live.
            json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total",
                   "window": "365d", "scoring": {"recency": [7, 30, 90, 180],
                   "frequency": [1, 2, 4, 8], "monetary": [100, 500, 1000, 5000]}}),
        ),
        ("staff_pick", json!({"type": "manual"})),
    ]
}

/// The bucket of `spend_level` a spend falls in.
fn spend_level(spend: f64) -> &'static str {
    if spend < 100.0 {
        "low"
    } else if spend < BIG_SPENDER {
        "mid"
    } else {
        "high"
    }
}

/// What the backfill measured.
struct Backfilled {
    elapsed: Duration,
    /// The most profiles any job counted.
    profiles: u64,
    verified: Verified,
}

/// What a verification checked.
struct Verified {
    customers: usize,
    /// Of the checked customers, those whose spend made them `big_spender`.
    big_spenders: usize,
    /// Each tag's population as `GET /v1/tags/{name}` counts it.
    populations: Vec<(&'static str, i64)>,
}

pub async fn run(backend: &Backend, workload: &Workload) -> anyhow::Result<Outcome> {
    let batches = workload.new_events(&WorkspaceId::parse(WORKSPACE)?)?;
    let token = random_secret("tok");

    // Without a catalog, then the backfill on the same history.
    let fresh = FreshStore::create(backend).await?;
    let measured = async {
        start(&fresh, &token).await?.stop().await?;
        let plain = append_and_resolve(&fresh, &batches, workload).await?;
        let backfill = backfill(&fresh, &token, workload, &batches).await?;
        anyhow::Ok((plain, backfill))
    }
    .await;
    let removed = fresh.remove().await;
    let (plain, backfill) = measured
        .with_context(|| format!("{NAME} (plain, backfill) on {} failed", backend.name()))?;
    removed?;

    // With the catalog defined before the events arrive.
    let fresh = FreshStore::create(backend).await?;
    let measured = async {
        let service = start(&fresh, &token).await?;
        let defined = define(&service).await;
        service.stop().await?;
        defined?;
        let live = append_and_resolve(&fresh, &batches, workload).await?;
        let service = start(&fresh, &token).await?;
        let verified = verify(&service, workload, &batches).await;
        service.stop().await?;
        anyhow::Ok((live, verified?))
    }
    .await;
    let removed = fresh.remove().await;
    let (live, verified) =
        measured.with_context(|| format!("{NAME} (live) on {} failed", backend.name()))?;
    removed?;

    let events = workload.events as u64;
    let per_s = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    let row = |scenario, count, unit, elapsed: Duration, reference_rate| Row {
        scenario,
        backend: backend.name(),
        count,
        unit,
        seconds: elapsed.as_secs_f64(),
        rate: per_s(count, elapsed),
        p50: None,
        p99: None,
        reference_rate,
    };
    let plain_row = row(PLAIN, events, "events", plain, None);
    let live_row = row(NAME, events, "events", live, Some(plain_row.rate));
    let backfill_row = row(
        BACKFILL,
        backfill.profiles,
        "profiles",
        backfill.elapsed,
        None,
    );
    let populations = |v: &Verified| {
        v.populations
            .iter()
            .map(|(tag, n)| format!("{tag} {}", thousands(*n as u64)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = format!(
        "{NAME} on {backend}: the resolver caught up on {events} appended events in {plain_s:.2} s = \
         {plain_rate} events/s without a catalog and in {live_s:.2} s = {live_rate} events/s with {traits} \
         computed traits and {tags} tags defined beforehand ({ratio:.2}x); backfilling the same definitions \
         over the resolved history took {backfill_s:.2} s = {profiles_rate} profiles/s ({profiles} \
         profiles) = {history_rate} events of history/s. Verified: every event applied; live and after \
         the backfill, {live_checked} and {backfill_checked} customers' traits equal to a recomputation \
         from their events, spend_30d to their orders' totals, big_spender ({live_big} and {backfill_big} \
         of them), spend_level and rfm to that spend; tag populations live: {live_pop}; after the \
         backfill: {backfill_pop}.",
        backend = backend.name(),
        events = thousands(events),
        plain_s = plain_row.seconds,
        plain_rate = thousands(plain_row.rate.round() as u64),
        live_s = live_row.seconds,
        live_rate = thousands(live_row.rate.round() as u64),
        traits = trait_definitions().len(),
        tags = tag_definitions().len(),
        ratio = live_row.ratio().unwrap_or_default(),
        backfill_s = backfill_row.seconds,
        profiles_rate = thousands(backfill_row.rate.round() as u64),
        profiles = thousands(backfill.profiles),
        history_rate = thousands(per_s(events, backfill.elapsed).round() as u64),
        live_checked = thousands(verified.customers as u64),
        backfill_checked = thousands(backfill.verified.customers as u64),
        live_big = thousands(verified.big_spenders as u64),
        backfill_big = thousands(backfill.verified.big_spenders as u64),
        live_pop = populations(&verified),
        backfill_pop = populations(&backfill.verified),
    );
    Ok(Outcome {
        rows: vec![plain_row, live_row, backfill_row],
        summary,
    })
}

/// Appends every event straight into the store (not timed), then times `runner::catch_up` of a new
/// resolver over them. The service must be stopped, so nothing else applies them.
async fn append_and_resolve(
    fresh: &FreshStore,
    batches: &[Vec<NewEvent>],
    workload: &Workload,
) -> anyhow::Result<Duration> {
    let store = fresh.open().await?;
    let outcome = async {
        for (i, batch) in batches.iter().enumerate() {
            let report = store
                .append(batch)
                .await
                .with_context(|| format!("appending batch {i} failed"))?;
            ensure!(
                report.inserted == batch.len() as u64,
                "batch {i}: {} of {} events inserted",
                report.inserted,
                batch.len()
            );
        }
        let started = Instant::now();
        let applied = runner::catch_up(&store, &IdentityResolver::default())
            .await
            .context("the resolver failed")?;
        let elapsed = started.elapsed();
        ensure!(
            applied == workload.events as u64,
            "the resolver applied {applied} events but {} were appended",
            workload.events
        );
        let last = runner::has_applied(
            &store,
            IdentityResolver::NAME,
            &WorkspaceId::parse(WORKSPACE)?,
            &workload.last_message_id,
        )
        .await?;
        ensure!(last, "the resolver's checkpoint is before the last event");
        Ok(elapsed)
    }
    .await;
    close(&store).await;
    outcome
}

/// Starts the service on the resolved history, defines the catalog and waits for every job.
async fn backfill(
    fresh: &FreshStore,
    token: &str,
    workload: &Workload,
    batches: &[Vec<NewEvent>],
) -> anyhow::Result<Backfilled> {
    let service = start(fresh, token).await?;
    let outcome = async {
        let started = Instant::now();
        define(&service).await?;
        let profiles = service.ready().await?;
        let elapsed = started.elapsed();
        let verified = verify(&service, workload, batches).await?;
        Ok(Backfilled {
            elapsed,
            profiles,
            verified,
        })
    }
    .await;
    service.stop().await?;
    outcome
}

/// `PUT`s every trait, then every tag (a value tag needs its trait).
async fn define(service: &Service) -> anyhow::Result<()> {
    for (kind, definitions) in [("traits", trait_definitions()), ("tags", tag_definitions())] {
        for (name, definition) in definitions {
            let path = format!("/v1/{kind}/{name}");
            let (status, body) = service.call(Method::PUT, &path, Some(&definition)).await?;
            // 202: in the log, not yet applied (the resolver is busy backfilling).
            ensure!(
                status == StatusCode::OK || status == StatusCode::ACCEPTED,
                "PUT {path} answered {status}: {body}"
            );
        }
    }
    Ok(())
}

/// The service on a store, with an admin token.
struct Service {
    base: String,
    token: String,
    client: reqwest::Client,
    state: Arc<AppState>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(fresh: &FreshStore, token: &str) -> anyhow::Result<Service> {
    let mut config = fresh.config();
    config.bootstrap_workspace = Some(WORKSPACE.into());
    config.bootstrap_admin_token = Some(token.to_owned());
    let app = Application::build(config)
        .await
        .context("failed to start the service")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("failed to build the HTTP client")?;
    Ok(Service {
        base: format!("http://{}", app.local_addr()),
        token: token.to_owned(),
        client,
        state: app.state(),
        server: tokio::spawn(app.run_until_stopped()),
    })
}

impl Service {
    async fn stop(self) -> anyhow::Result<()> {
        stop(self.server, self.state).await
    }

    /// A request with the admin token; the status and the JSON answer (`null` if none).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path} failed"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {path} failed"))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// `GET` that must answer 200.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        ensure!(
            status == StatusCode::OK,
            "GET {path} answered {status}: {body}"
        );
        Ok(body)
    }

    /// Waits until every definition is applied and its job `ready`; returns the most profiles a job
    /// counted. Fails when the resolver reports errors or no job moves for [`STALLED`].
    async fn ready(&self) -> anyhow::Result<u64> {
        let paths: Vec<String> = trait_definitions()
            .iter()
            .map(|(name, _)| format!("/v1/traits/{name}"))
            .chain(
                tag_definitions()
                    .iter()
                    .map(|(name, _)| format!("/v1/tags/{name}")),
            )
            .collect();
        let mut last_progress = Vec::new();
        let mut moved = Instant::now();
        loop {
            let mut progress = Vec::with_capacity(paths.len());
            let mut profiles = 0;
            for path in &paths {
                let (status, body) = self.call(Method::GET, path, None).await?;
                match status {
                    // Not applied yet.
                    StatusCode::NOT_FOUND => progress.push(None),
                    StatusCode::OK => {
                        let done = body["profiles_done"].as_u64();
                        profiles = profiles.max(body["profiles_total"].as_u64().unwrap_or(0));
                        progress.push(Some((body["status"] == "ready", done)));
                    }
                    _ => bail!("GET {path} answered {status}: {body}"),
                }
            }
            if progress.iter().all(|p| matches!(p, Some((true, _)))) {
                return Ok(profiles);
            }
            let errors = self
                .state
                .identity
                .errors
                .load(std::sync::atomic::Ordering::Relaxed);
            ensure!(errors == 0, "the resolver reported {errors} failed steps");
            if progress != last_progress {
                last_progress = progress;
                moved = Instant::now();
            } else if moved.elapsed() > STALLED {
                bail!(
                    "no backfill moved for {} s: {last_progress:?}",
                    STALLED.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Equal JSON, numbers to 1e-12 relative: serde_json (without `float_roundtrip`) may parse a printed
/// float one unit in the last place off (`425.90000000000003` came back as `425.9`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        _ => a == b,
    }
}

/// Checks the traits and tags of up to [`CHECKED`] customers against their events, and that every tag
/// but the manual one has a population.
async fn verify(
    service: &Service,
    workload: &Workload,
    batches: &[Vec<NewEvent>],
) -> anyhow::Result<Verified> {
    let definitions: Vec<(&str, TraitDef)> = trait_definitions()
        .into_iter()
        .map(|(name, v)| Ok((name, TraitDef::parse(&v)?)))
        .collect::<Result<_, cdp_domain::computed::DefinitionError>>()
        .context("the benchmark's own trait definitions must parse")?;
    let mut payloads: HashMap<&str, Vec<(&NewEvent, Value)>> = HashMap::new();
    for event in batches.iter().flatten() {
        if let Some(user) = event.user_id.as_deref() {
            let payload = serde_json::from_str(&event.payload).context("a stored payload")?;
            payloads.entry(user).or_default().push((event, payload));
        }
    }
    let mut phones: HashMap<&str, usize> = HashMap::new();
    for p in &workload.people {
        *phones.entry(p.phone.as_str()).or_default() += 1;
    }
    let customers: Vec<&str> = workload
        .people
        .iter()
        .filter(|p| p.identified() && phones[p.phone.as_str()] == 1)
        .map(|p| p.user_id.as_str())
        .take(CHECKED)
        .collect();
    ensure!(!customers.is_empty(), "no customer to check");
    let mut big_spenders = 0;
    for user in &customers {
        let events = payloads.get(user).map_or(&[][..], Vec::as_slice);
        let raw: Vec<RawEvent<'_>> = events
            .iter()
            .map(|(e, payload)| RawEvent {
                kind: e.kind,
                name: e.name.as_deref(),
                payload,
                event_time: e.event_time,
                message_id: &e.message_id,
            })
            .collect();
        let profile = service
            .get(&format!("/v1/profiles/lookup?type=user_id&value={user}"))
            .await?;
        let now = Utc::now();
        for (name, def) in &definitions {
            let computed = &profile["computed_traits"][name];
            let expected = recompute(def, &raw, now);
            ensure!(
                computed["complete"] == true && same(&computed["value"], &expected),
                "{user}'s {name} is {computed}, but recomputed from its events it is {expected}"
            );
        }
        // Straight from the generated orders (every one is within the last hour).
        let spend_cents: i64 = events
            .iter()
            .filter(|(e, _)| e.name.as_deref() == Some("Order Completed"))
            .map(|(_, p)| {
                (p["properties"]["total"].as_f64().unwrap_or(f64::NAN) * 100.0).round() as i64
            })
            .sum();
        let spend = profile["computed_traits"]["spend_30d"]["value"]
            .as_f64()
            .unwrap_or(f64::NAN);
        ensure!(
            (spend * 100.0).round() as i64 == spend_cents,
            "{user}'s orders total {spend_cents} cents but spend_30d is {spend}"
        );
        let tags = &profile["tags"];
        let big = spend >= BIG_SPENDER;
        big_spenders += usize::from(big);
        ensure!(
            (tags["big_spender"]["value"] == true) == big
                && tags["spend_level"]["value"] == spend_level(spend)
                // Every order is within the hour: the best recency score.
                && (spend_cents == 0 || tags["rfm"]["detail"]["r"] == 5),
            "{user} spent {spend} but has the tags {tags}"
        );
    }
    let mut populations = Vec::new();
    for (tag, _) in tag_definitions() {
        let body = service.get(&format!("/v1/tags/{tag}")).await?;
        let profiles = body["profiles"].as_i64().unwrap_or(0);
        ensure!(
            profiles > 0 || tag == "staff_pick",
            "tag {tag} has no population: {body}"
        );
        populations.push((tag, profiles));
    }
    Ok(Verified {
        customers: customers.len(),
        big_spenders,
        populations,
    })
}
