//! Scenario `segment-preview`: how long `POST /v1/segments/preview` takes to evaluate a 4-condition
//! segment over every profile, from the audience index, and a breakdown by two fields.
//!
//! The computed trait `spend_30d` (sum of `properties.total` of `Order Completed` in 30 days) is
//! defined first, so it is folded as the events arrive. `--customers` customers (each one `identify`
//! with the traits `city` and `vip`, 0–4 `Order Completed` with `properties.total` and 0–2 `Product
//! Added`, stamped over the last [`DAYS`] days) are then loaded fast — checked by `ingest::check` and
//! appended to the log in batches of `--batch` messages, as the NATS and bulk paths do, not over HTTP —
//! and resolved by the service's own resolver. Once the service's background builder has built the
//! index (`Audiences::keep_built`, after the resolver caught up), one whole read of it is timed apart; then
//! the preview of [`condition`] (city is Shanghai, spend_30d ≥ 100, at least one Product Added in 30
//! days, not vip) is asked [`RUNS`] times in a row — the figure is the median wall time of a request
//! (ms) and the profiles evaluated per second — and [`RUNS`] times the preview of spend_30d ≥ 100 broken
//! down by city × vip, and [`RUNS`] times the preview of [`with_shoes`] (an event condition with a
//! `where` filter on the events' properties); last, the 4-condition definition is saved as a segment and
//! the time until its members are filled (from the index, at its job's first step) is measured. The
//! reference is the status quo: one SQL query over a plain events table
//! answering the same question (JSON extraction, group by user), timed in the same run. cdp's own
//! `events` table holds customer events sealed (`domain::shred`), so the plain table is the log as a
//! system without sealing would keep it: filled from `read_after` before the clock starts.
//!
//! Verified: every event stored once; every preview answered from the index, over every profile, with
//! exactly the count computed from the generated data, and every breakdown group's count too; the SQL
//! query agrees.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::message::rfc3339;
use cdp_domain::store::{EventStore, Store};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::freshness::{bootstrapped, resolved, start, stopped_and_stored, WORKSPACE};
use super::ingest_http::stop;
use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "segment-preview";
const TRAIT: &str = "spend_30d";
/// The events are spread over this many days before now, at half-days and none 29.5 days old: a
/// 30-day window is 30 UTC calendar days counting today (`domain::computed`), the SQL query's is the
/// last 30 × 24 hours, and they disagree only on events 29–30 days old (before noon UTC, an event
/// 29.5 days old is on the 31st calendar day).
const DAYS: u32 = 60;
const WINDOW_DAYS: u32 = 30;
const CITIES: [&str; 5] = ["Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu"];
/// Previews asked, in a row.
const RUNS: usize = 5;

/// The flags of the scenario.
pub struct Settings {
    pub customers: usize,
    /// Messages appended to the log at a time.
    pub batch: usize,
    pub seed: u64,
}

/// The audience broken down: who spent at least 100 in 30 days, by city × vip.
fn broken_down() -> Value {
    json!({"condition": {"computed": TRAIT, "op": "gte", "value": 100},
           "breakdown": [{"trait": "city"}, {"trait": "vip"}]})
}

/// The segment under test.
fn condition() -> Value {
    json!({"condition": {"all": [
        {"trait": "city", "op": "eq", "value": "Shanghai"},
        {"computed": TRAIT, "op": "gte", "value": 100},
        {"event": "Product Added", "count": {"op": "gte", "value": 1}, "window": "30d"},
        {"not": {"trait": "vip", "op": "is_true"}},
    ]}})
}

/// An event condition with a `where` filter on the events' properties, answered from their facets:
/// in Shanghai, and a pair of shoes added in 30 days.
fn with_shoes() -> Value {
    json!({"condition": {"all": [
        {"trait": "city", "op": "eq", "value": "Shanghai"},
        {"event": "Product Added", "count": {"op": "gte", "value": 1}, "window": "30d",
         "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}]},
    ]}})
}

/// One generated customer: its traits and its events as days before now.
struct Customer {
    city: &'static str,
    vip: bool,
    /// (half-days before now, total) per order.
    orders: Vec<(u32, u32)>,
    /// Half-days before now per Product Added, and whether its category is shoes (else tea).
    added: Vec<(u32, bool)>,
}

fn recent(half_days: u32) -> bool {
    half_days < 2 * WINDOW_DAYS
}

impl Customer {
    fn spend_30d(&self) -> u32 {
        self.orders
            .iter()
            .filter(|(h, _)| recent(*h))
            .map(|(_, t)| t)
            .sum()
    }

    fn matches(&self) -> bool {
        self.city == "Shanghai"
            && self.spend_30d() >= 100
            && self.added.iter().any(|(h, _)| recent(*h))
            && !self.vip
    }

    /// Whether [`with_shoes`] holds: in Shanghai, a pair of shoes added in 30 days.
    fn added_shoes(&self) -> bool {
        self.city == "Shanghai" && self.added.iter().any(|(h, shoes)| recent(*h) && *shoes)
    }

    fn events(&self) -> usize {
        1 + self.orders.len() + self.added.len()
    }
}

fn generate(settings: &Settings) -> (String, Vec<Customer>) {
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x0070_7265_7669_6577);
    let run = format!("pv-{:08x}", rng.gen::<u32>());
    // Odd half-days: 12 h off every whole day; none on the 30-day window's last day (see DAYS).
    let half_day = |rng: &mut StdRng| {
        let days = rng.gen_range(0..DAYS - 1);
        let days = if days >= WINDOW_DAYS - 1 {
            days + 1
        } else {
            days
        };
        2 * days + 1
    };
    let customers = (0..settings.customers)
        .map(|_| {
            let city = CITIES[rng.gen_range(0..CITIES.len())];
            let vip = rng.gen_ratio(1, 10);
            let orders = (0..rng.gen_range(0..=4))
                .map(|_| (half_day(&mut rng), rng.gen_range(10..=120)))
                .collect();
            let added = (0..rng.gen_range(0..=2))
                .map(|_| (half_day(&mut rng), rng.gen_bool(0.5)))
                .collect();
            Customer {
                city,
                vip,
                orders,
                added,
            }
        })
        .collect();
    (run, customers)
}

/// Every customer's messages, as JSON text.
fn messages(run: &str, customers: &[Customer]) -> Vec<String> {
    let now = Utc::now();
    let at = |half_days: u32| rfc3339(now - chrono::Duration::hours(12 * i64::from(half_days)));
    let mut messages: Vec<String> = Vec::new();
    for (c, customer) in customers.iter().enumerate() {
        let user = format!("{run}-u{c:07}");
        messages.push(
            json!({"type": "identify", "userId": user, "messageId": format!("{run}-i{c}"),
                             "timestamp": rfc3339(now - chrono::Duration::days(i64::from(DAYS))),
                             "traits": {"city": customer.city, "vip": customer.vip}})
            .to_string(),
        );
        for (i, (h, total)) in customer.orders.iter().enumerate() {
            messages.push(
                json!({"type": "track", "userId": user, "event": "Order Completed",
                                 "messageId": format!("{run}-o{c}-{i}"), "timestamp": at(*h),
                                 "properties": {"order_id": format!("{run}-o{c}-{i}"),
                                                "total": total}})
                .to_string(),
            );
        }
        for (i, (h, shoes)) in customer.added.iter().enumerate() {
            let category = if *shoes { "shoes" } else { "tea" };
            messages.push(
                json!({"type": "track", "userId": user, "event": "Product Added",
                                 "messageId": format!("{run}-a{c}-{i}"), "timestamp": at(*h),
                                 "properties": {"product_id": "sku-1", "price": 10,
                                                "category": category}})
                .to_string(),
            );
        }
    }
    messages
}

pub async fn run(backend: &Backend, settings: &Settings) -> anyhow::Result<Outcome> {
    ensure!(settings.customers > 0, "--customers must be at least 1");
    ensure!(settings.batch > 0, "--batch must be at least 1");
    let (run, customers) = generate(settings);
    let expected = customers.iter().filter(|c| c.matches()).count() as u64;
    let shoes = customers.iter().filter(|c| c.added_shoes()).count() as u64;
    let mut groups: BTreeMap<(String, bool), u64> = BTreeMap::new();
    for c in customers.iter().filter(|c| c.spend_30d() >= 100) {
        *groups.entry((c.city.to_owned(), c.vip)).or_default() += 1;
    }
    let events: usize = customers.iter().map(Customer::events).sum();
    let messages = messages(&run, &customers);
    drop(customers);
    let fresh = FreshStore::create(backend).await?;
    let expect = Expected {
        events: events as u64,
        count: expected,
        shoes,
        groups,
        profiles: settings.customers as u64,
    };
    let measured = measure(&fresh, messages, &expect, settings).await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let profiles = settings.customers as u64;
    let median = quantile(&m.took, 0.5).unwrap_or_default();
    let broken = quantile(&m.breakdown, 0.5).unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rate = profiles as f64 / median.as_secs_f64();
    let row = Row {
        scenario: NAME,
        backend: backend.name(),
        count: profiles,
        unit: "profiles",
        seconds: median.as_secs_f64(),
        rate,
        p50: quantile(&m.took, 0.5),
        p99: quantile(&m.took, 1.0),
        reference_rate: Some(profiles as f64 / m.sql.as_secs_f64()),
    };
    let summary = format!(
        "{NAME} on {backend}: {profiles} profiles ({events} events over {DAYS} days, appended to the log \
         in {load:.1} s and resolved by the service in {resolve:.1} s, computed trait {TRAIT} folded as \
         they came); the audience index read whole in {build:.0} ms; then POST \
         /v1/segments/preview of city = Shanghai ∧ {TRAIT} ≥ 100 ∧ Product Added ≥ 1 in 30d ∧ ¬vip, \
         {RUNS} times: median {median:.1} ms ({rate} profiles/s; min {min:.1} ms, max {max:.1} ms, \
         service's took_ms median {took_ms} ms; goal ≤ 200 ms at 1M); {TRAIT} ≥ 100 broken down by \
         city × vip ({groups} groups), {RUNS} times: median {broken:.1} ms (goal ≤ 400 ms); city = \
         Shanghai ∧ Product Added with category shoes ≥ 1 in 30d (a where filter, from the events' \
         facets; {shoes} profiles), {RUNS} times: median {filtered:.1} ms; the 4-condition \
         definition saved as a segment: its {count} members filled from the index {fill:.2} s after \
         the PUT; the status \
         quo, one SQL query over the events table: {sql:.1} ms (preview {ratio:.1}x faster; goal ≥ 10x). \
         Verified: every event stored once, every preview answered from the index over {profiles} \
         profiles with {count} matching profiles, equal to the count computed from the generated data \
         and to the SQL query's, and every breakdown group equal to the generated data's.",
        backend = backend.name(),
        profiles = thousands(profiles),
        events = thousands(events as u64),
        load = m.load.as_secs_f64(),
        resolve = m.resolve.as_secs_f64(),
        build = ms(m.build),
        median = ms(median),
        rate = thousands(rate as u64),
        min = ms(quantile(&m.took, 0.0).unwrap_or_default()),
        max = ms(quantile(&m.took, 1.0).unwrap_or_default()),
        took_ms = m.took_ms,
        groups = expect.groups.len(),
        broken = ms(broken),
        filtered = ms(quantile(&m.filtered, 0.5).unwrap_or_default()),
        shoes = thousands(expect.shoes),
        fill = m.fill.as_secs_f64(),
        sql = ms(m.sql),
        ratio = m.sql.as_secs_f64() / median.as_secs_f64(),
        count = thousands(expected),
    );
    Ok(Outcome {
        rows: vec![row],
        summary,
    })
}

/// What the generated data says the service must answer.
struct Expected {
    events: u64,
    count: u64,
    /// Customers [`with_shoes`] holds for.
    shoes: u64,
    /// Customers with spend_30d ≥ 100 by (city, vip).
    groups: BTreeMap<(String, bool), u64>,
    profiles: u64,
}

/// What one run measured.
struct Measured {
    load: Duration,
    resolve: Duration,
    /// One whole read of the workspace into the index.
    build: Duration,
    /// Sorted wall times of the previews.
    took: Vec<Duration>,
    /// The median of the service's own `took_ms`.
    took_ms: u64,
    /// Sorted wall times of the breakdowns.
    breakdown: Vec<Duration>,
    /// Sorted wall times of the previews with a `where` filter ([`with_shoes`]).
    filtered: Vec<Duration>,
    /// From saving [`condition`] as a segment to its members counted as the generated data's.
    fill: Duration,
    /// The SQL query's time.
    sql: Duration,
}

async fn measure(
    fresh: &FreshStore,
    messages: Vec<String>,
    expected: &Expected,
    settings: &Settings,
) -> anyhow::Result<Measured> {
    let (config, _write_key, token) = bootstrapped(fresh);
    let (state, base, server) = start(config).await?;
    let outcome = async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .context("failed to build the HTTP client")?;
        // The trait first: folded as the events arrive, no backfill.
        let definition = json!({"event": "Order Completed", "function": "sum",
                                "property": "properties.total", "window": "30d"});
        let url = format!("{base}/v1/traits/{TRAIT}");
        let (status, body) = call(&client, Method::PUT, &url, &token, Some(&definition)).await?;
        ensure!(
            status == StatusCode::OK || status == StatusCode::ACCEPTED,
            "PUT /v1/traits/{TRAIT} answered {status}: {body}"
        );
        resolved(&state, 1).await?;
        let total = expected.events + 1;

        let started = Instant::now();
        let sent_at = Value::String(rfc3339(Utc::now()));
        let workspace = WorkspaceId::parse(WORKSPACE)?;
        for chunk in messages.chunks(settings.batch) {
            let checked = cdp_api::ingest::check(
                &workspace,
                Default::default(),
                chunk.iter().map(String::as_str),
                Some(&sent_at),
                None,
                Utc::now(),
            );
            if let Some(r) = checked.rejected.first() {
                bail!("the generated message {} was refused: {}", r.raw, r.error);
            }
            let report = state.store.append(&checked.events).await?;
            ensure!(report.inserted == checked.events.len() as u64);
            for w in &state.wakers {
                w.notify_one();
            }
        }
        drop(messages);
        let load = started.elapsed();
        resolved(&state, total).await?;
        let resolve = started.elapsed() - load;

        let url = format!("{base}/v1/segments/preview");
        let condition = condition();
        let mut took = Vec::with_capacity(RUNS);
        let mut took_ms = Vec::with_capacity(RUNS);
        // The service builds the index in the background once the resolver has caught up; the
        // bench waits for it, then times one whole read of the workspace apart.
        let waited = Instant::now();
        loop {
            let status = state.audiences.status();
            if status.started && status.building.is_none() {
                break;
            }
            ensure!(
                waited.elapsed() < Duration::from_secs(3_600),
                "the audience index was not built within an hour"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let built = Instant::now();
        state
            .audiences
            .build(&state.store, &WorkspaceId::parse(WORKSPACE)?, Utc::now())
            .await?;
        let build = built.elapsed();
        for i in 0..=RUNS {
            let sent = Instant::now();
            let (status, body) =
                call(&client, Method::POST, &url, &token, Some(&condition)).await?;
            let elapsed = sent.elapsed();
            ensure!(
                status == StatusCode::OK,
                "preview {i} answered {status}: {body}"
            );
            ensure!(
                body["count"] == expected.count,
                "preview {i} counted {} but {} customers match in the generated data",
                body["count"],
                expected.count
            );
            ensure!(
                body["evaluated_by"] == "index",
                "preview {i} was not answered from the index: {body}"
            );
            let profiles = body["profiles"].as_u64().unwrap_or_default();
            ensure!(
                profiles == expected.profiles,
                "preview {i} evaluated {profiles} profiles but {} customers were sent",
                expected.profiles
            );
            ensure!(
                body["index"]["ready"] == true,
                "preview {i} found the index not ready: {body}"
            );
            if i > 0 {
                took.push(elapsed);
                took_ms.push(body["took_ms"].as_u64().unwrap_or_default());
            }
        }
        took.sort_unstable();
        took_ms.sort_unstable();

        let mut breakdown = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let sent = Instant::now();
            let (status, body) =
                call(&client, Method::POST, &url, &token, Some(&broken_down())).await?;
            breakdown.push(sent.elapsed());
            ensure!(
                status == StatusCode::OK,
                "breakdown {i} answered {status}: {body}"
            );
            let mut answered: BTreeMap<(String, bool), u64> = BTreeMap::new();
            for g in body["breakdown"]["groups"].as_array().into_iter().flatten() {
                let city = g["values"][0].as_str().unwrap_or_default().to_owned();
                let vip = g["values"][1].as_bool().unwrap_or_default();
                answered.insert((city, vip), g["count"].as_u64().unwrap_or_default());
            }
            ensure!(
                answered == expected.groups,
                "breakdown {i} answered {answered:?} but the generated data has {:?}",
                expected.groups
            );
        }
        breakdown.sort_unstable();

        let mut filtered = Vec::with_capacity(RUNS);
        for i in 0..RUNS {
            let sent = Instant::now();
            let (status, body) =
                call(&client, Method::POST, &url, &token, Some(&with_shoes())).await?;
            filtered.push(sent.elapsed());
            ensure!(
                status == StatusCode::OK,
                "the where preview {i} answered {status}: {body}"
            );
            ensure!(
                body["evaluated_by"] == "index" && body["count"] == expected.shoes,
                "the where preview {i} counted {} (evaluated by {}) but {} customers added shoes \
                 in Shanghai in the generated data",
                body["count"],
                body["evaluated_by"],
                expected.shoes
            );
        }
        filtered.sort_unstable();

        plain_copy(&state.store).await?;
        let (sql, counted) = sql_reference(&state.store).await?;
        ensure!(
            counted == expected.count as i64,
            "the SQL query counted {counted} but {} customers match in the generated data",
            expected.count
        );
        stopped_and_stored(tokio::task::JoinSet::new(), &state, total).await?;

        // Saving the segment: its members are published from the index at the job's first step
        // (then the job backfills its event condition's hidden trait into every state, untimed).
        let segment = format!("{base}/v1/segments/bench_preview");
        let saved = Instant::now();
        let mut body = condition.clone();
        body["name"] = json!("The previewed segment, saved");
        let (status, answer) = call(&client, Method::PUT, &segment, &token, Some(&body)).await?;
        ensure!(
            status.is_success(),
            "saving the segment answered {status}: {answer}"
        );
        let fill = loop {
            let (_, got) = call(&client, Method::GET, &segment, &token, None).await?;
            let filled = got["members_filled"] == true || got["status"] == "ready";
            if filled && got["members"] == expected.count {
                break saved.elapsed();
            }
            ensure!(
                saved.elapsed() < Duration::from_secs(600),
                "the saved segment's members were not filled within 10 minutes: {got}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Measured {
            load,
            resolve,
            build,
            took,
            took_ms: took_ms[took_ms.len() / 2],
            breakdown,
            filtered,
            sql,
            fill,
        })
    }
    .await;
    stop(server, state).await?;
    outcome
}

/// A request with the admin token: the status and the JSON answer.
async fn call(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = client.request(method.clone(), url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url} failed"))?;
    let status = response.status();
    let value = response.json().await.unwrap_or(Value::Null);
    Ok((status, value))
}

/// The plain table the status quo queries: every event of the log as read back (opened), untimed.
const PLAIN: &str = "bench_plain_events";

async fn plain_copy(store: &Store) -> anyhow::Result<()> {
    use cdp_domain::event::{to_millis, Position};
    use cdp_domain::store::EventStore;
    let create = format!(
        "CREATE TABLE {PLAIN} (workspace TEXT NOT NULL, user_id TEXT, kind TEXT NOT NULL, \
         name TEXT, event_time BIGINT NOT NULL, payload TEXT NOT NULL)"
    );
    match store {
        Store::Sqlite(s) => {
            sqlx::query(&create).execute(s.write_pool()).await?;
        }
        Store::Postgres(s) => {
            sqlx::query(&create).execute(s.pool()).await?;
        }
    }
    let mut after = Position::START;
    loop {
        let page = store.read_after(after, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        macro_rules! insert {
            ($db:ty, $pool:expr) => {{
                let mut q: sqlx::QueryBuilder<$db> = sqlx::QueryBuilder::new(format!(
                    "INSERT INTO {PLAIN} (workspace, user_id, kind, name, event_time, payload) "
                ));
                q.push_values(&page, |mut row, e| {
                    let e = &e.event;
                    row.push_bind(&e.workspace)
                        .push_bind(&e.user_id)
                        .push_bind(e.kind.as_str())
                        .push_bind(&e.name)
                        .push_bind(to_millis(e.event_time))
                        .push_bind(&e.payload);
                });
                q.build().execute($pool).await?;
            }};
        }
        match store {
            Store::Sqlite(s) => insert!(sqlx::Sqlite, s.write_pool()),
            Store::Postgres(s) => insert!(sqlx::Postgres, s.pool()),
        }
    }
    Ok(())
}

/// The status quo: the same segment as one SQL query over a plain events table; its time and count.
async fn sql_reference(store: &Store) -> anyhow::Result<(Duration, i64)> {
    let since = Utc::now().timestamp_millis() - i64::from(WINDOW_DAYS) * 86_400_000;
    let query = |number: &str, city: &str, vip: &str, p: [&str; 3]| {
        format!(
            "SELECT COUNT(*) FROM (SELECT user_id FROM {PLAIN} \
             WHERE workspace = {ws} AND user_id IS NOT NULL GROUP BY user_id HAVING \
             SUM(CASE WHEN kind = 'identify' AND {city} = 'Shanghai' THEN 1 ELSE 0 END) > 0 \
             AND COALESCE(SUM(CASE WHEN name = 'Order Completed' AND event_time >= {t} \
                 THEN {number} END), 0) >= 100 \
             AND SUM(CASE WHEN name = 'Product Added' AND event_time >= {t2} THEN 1 ELSE 0 END) >= 1 \
             AND SUM(CASE WHEN kind = 'identify' AND {vip} THEN 1 ELSE 0 END) = 0) AS matching",
            ws = p[0],
            t = p[1],
            t2 = p[2],
            number = number,
            city = city,
            vip = vip,
        )
    };
    let started = Instant::now();
    let count: i64 = match store {
        Store::Sqlite(s) => {
            let q = query(
                "json_extract(payload, '$.properties.total')",
                "json_extract(payload, '$.traits.city')",
                "json_extract(payload, '$.traits.vip') = 1",
                ["?1", "?2", "?2"],
            );
            sqlx::query_scalar(&q)
                .bind(WORKSPACE)
                .bind(since)
                .fetch_one(s.read_pool())
                .await?
        }
        Store::Postgres(s) => {
            let q = query(
                "(payload::jsonb #>> '{properties,total}')::float8",
                "(payload::jsonb #>> '{traits,city}')",
                "(payload::jsonb #>> '{traits,vip}') = 'true'",
                ["$1", "$2", "$2"],
            );
            sqlx::query_scalar(&q)
                .bind(WORKSPACE)
                .bind(since)
                .fetch_one(s.pool())
                .await?
        }
    };
    Ok((started.elapsed(), count))
}
