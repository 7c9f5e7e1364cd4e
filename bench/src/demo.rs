//! `cdp demo`: generates a retail data set, ingests it through the real HTTP path of a service started
//! in-process (Segment `/v1/batch`, write key over HTTP Basic), waits for the identity resolver, and
//! prints what cdp made of it: ingestion rate, the quarantine, one customer's 360 profile (found by user
//! id and by email) with why OneID made it one customer, and an operator splitting one channel's
//! identifiers off the profile and merging them back, checked to lose and double nothing, and the four tag
//! families (natural attributes, product preference, consumption behaviour, RFM) with their populations,
//! and two segments: counted, then filled live by orders, as a subscriber of `GET /v1/stream` sees it.

pub mod dataset;
mod erasure;
mod oneid;
mod segments;
mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cdp_api::provision::random_secret;
use cdp_api::{Application, Config};
use cdp_domain::message::rfc3339;
use cdp_domain::store::{EventStore, Store};
use chrono::Utc;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::numbers::thousands;
use dataset::Dataset;
use oneid::{show_identity, split_and_merge, timeline};

const WORKSPACE: &str = "demo";
/// Messages per `/v1/batch` request.
const BATCH: usize = 100;
/// Concurrent HTTP clients.
const CLIENTS: usize = 4;
/// How long the identity resolver (which keeps the profiles) may take to catch up.
const PROJECTION_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Customers to generate.
    #[arg(long, default_value_t = 3000)]
    pub customers: usize,
    /// Seed of the data set: the same seed gives the same customers, orders and messageIds.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the data (SQLite) in this directory, to explore it afterwards with `cdp serve --data-dir`;
    /// a temporary directory, deleted at the end, when absent.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print the customer's whole 360 profile as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    ensure!(args.customers > 0, "--customers must be at least 1");
    let data = Dataset::generate(args.customers, args.seed);
    let temp = match &args.data_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("cdp-demo-")
                .tempdir()
                .context("failed to create a temporary directory")?,
        ),
    };
    let dir = args
        .data_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()))
        .context("no data directory")?;
    let credentials = Credentials {
        write_key: random_secret("wk"),
        token: random_secret("tok"),
    };
    let mut config = Config::local(dir.clone());
    config.bootstrap_workspace = Some(WORKSPACE.into());
    config.bootstrap_write_key = Some(credentials.write_key.clone());
    config.bootstrap_admin_token = Some(credentials.token.clone());
    let app = Application::build(config)
        .await
        .context("failed to start the service")?;
    let state = app.state();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());

    let shown = show(&args, &data, &state.store, &base, &credentials, &dir).await;

    server.abort();
    let _ = server.await;
    drop(state);
    if let Some(temp) = temp {
        temp.close()
            .context("failed to delete the temporary data directory")?;
    }
    shown
}

struct Credentials {
    write_key: String,
    token: String,
}

async fn show(
    args: &DemoArgs,
    data: &Dataset,
    store: &Store,
    base: &str,
    credentials: &Credentials,
    dir: &Path,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("failed to build the HTTP client")?;
    let before = store
        .count_events(WORKSPACE)
        .await
        .context("failed to count events")?;
    println!(
        "cdp demo — a tea shop's customers across POS, CRM, online shop and mini-program \
         (seed {}, {} store in {})",
        args.seed,
        store.backend_name(),
        dir.display()
    );
    println!();
    println!(
        "generated  {} customers, {} messages ({} of them deliberately invalid)",
        thousands(data.customers.len() as u64),
        thousands(data.messages.len() as u64),
        data.invalid
    );
    println!("  by type     {}", joined(&data.by_kind));
    println!("  by channel  {}", joined(&data.by_channel));
    println!(
        "  orders      {} worth CNY {}",
        thousands(data.orders as u64),
        thousands(data.revenue_cents / 100)
    );

    let sent = ingest(&http, base, &credentials.write_key, &data.messages).await?;
    let after = store
        .count_events(WORKSPACE)
        .await
        .context("failed to count events")?;
    let stored = u64::try_from(after - before).unwrap_or(0);
    let seconds = sent.elapsed.as_secs_f64();
    println!();
    println!(
        "ingested   {} events in {seconds:.2} s = {} events/s: {} POST /v1/batch requests of {BATCH} \
         messages from {CLIENTS} clients, each answered after its batch was committed",
        thousands(sent.accepted),
        thousands((sent.accepted as f64 / seconds).round() as u64),
        thousands(sent.requests as u64),
    );
    if stored != sent.accepted {
        println!(
            "  {} new in the log; {} were already there from an earlier run (same messageIds)",
            thousands(stored),
            thousands(sent.accepted.saturating_sub(stored))
        );
    }
    ensure!(
        sent.rejected.len() == data.invalid,
        "{} messages were refused but the data set has {} invalid ones: {:?}",
        sent.rejected.len(),
        data.invalid,
        sent.rejected
    );
    ensure!(
        sent.accepted + data.invalid as u64 == data.messages.len() as u64,
        "{} of {} valid messages were accepted",
        sent.accepted,
        data.messages.len() - data.invalid
    );

    let caught_up =
        wait_for_projection(store, cdp_projections::identity::IdentityResolver::NAME).await?;
    println!(
        "projected  the 360 views caught up {:.2} s after the last response",
        caught_up.as_secs_f64()
    );

    quarantine(&http, base, &credentials.token).await?;
    quality(&http, base, &credentials.token).await?;

    let customer = &data.customers[data.featured];
    let token = credentials.token.as_str();
    let view = lookup(&http, base, token, "user_id", &customer.user_id).await?;
    let profile = view["profile_id"]
        .as_str()
        .context("the lookup answered no profile_id")?
        .to_owned();
    println!();
    println!(
        "360 profile of {} ({}), by user_id — GET /v1/profiles/lookup?type=user_id&value={}",
        customer.user_id, customer.name, customer.user_id
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).context("failed to print the profile")?
        );
    } else {
        summarise(&view);
    }
    let timeline = timeline(&http, base, token, &profile).await?;
    let total = total_of(&view);
    ensure!(
        timeline.len() as u64 == total,
        "profile {profile} counts {total} events but its timeline has {}",
        timeline.len()
    );
    if before == 0 {
        check_featured_total(data, total)?;
    } else {
        println!(
            "  ({total} events, as many as its timeline GET /v1/profiles/{profile}/events holds; the \
             log already had events before this run, so they are not compared with the data set)"
        );
    }
    // Where each message of the profile came from, to explain the decisions it caused.
    let messages: BTreeMap<String, Value> = timeline
        .iter()
        .filter_map(|e| Some((e["message_id"].as_str()?.to_owned(), e.clone())))
        .collect();

    // As the CRM wrote it; the lookup normalises it the way ingestion did.
    let email = customer.email.to_uppercase();
    let by_email = lookup(&http, base, token, "email", &email).await?;
    println!();
    println!("Same customer by email — GET /v1/profiles/lookup?type=email&value={email}");
    ensure!(
        by_email["profile_id"] == view["profile_id"],
        "user_id and email resolve to different profiles: {} and {}",
        view["profile_id"],
        by_email["profile_id"]
    );
    ensure!(
        by_email["event_counts"] == view["event_counts"],
        "the same profile counts its events differently by email: {} and {}",
        by_email["event_counts"],
        view["event_counts"]
    );
    println!(
        "  matched {} {} → the same profile {profile}, the same {} events: the 360 view is per OneID \
         profile, whichever identifier finds it",
        plain(&by_email["matched"]["type"]),
        plain(&by_email["matched"]["value"]),
        total_of(&by_email)
    );

    show_identity(&http, base, token, &profile, &messages).await?;
    split_and_merge(&http, base, token, &view, &timeline, &messages).await?;
    tags::show_tags(&http, base, token, data, before == 0).await?;
    segments::show_segments(&http, base, credentials, data, args.seed, before == 0).await?;
    erasure::show_erasure(&http, base, token, store, data).await?;

    println!();
    if args.data_dir.is_some() {
        println!(
            "The data stays in {dir}. Explore it:\n  cargo run --release -- serve --data-dir {dir}\n  \
             curl -H 'Authorization: Bearer {token}' \
             'http://127.0.0.1:8080/v1/profiles/lookup?type=user_id&value={user}'\n  \
             (write key for more events: {key})",
            dir = dir.display(),
            token = credentials.token,
            user = customer.user_id,
            key = credentials.write_key,
        );
    } else {
        println!(
            "The data was in a temporary directory and is deleted now; keep it with --data-dir DIR."
        );
    }
    Ok(())
}

/// Checks the featured profile's event total against the data set. The profile must hold exactly the
/// customer's valid messages: those with their userId, and the online shop's page views before their
/// first login there, which carry only their anonymousId and join the profile when the login's
/// `identify` carries both ids. Exactly, unless another customer shares an identifier with them (only
/// the phone could, by chance): then only the messages with their userId are a sure lower bound.
fn check_featured_total(data: &Dataset, total: u64) -> anyhow::Result<()> {
    let c = &data.customers[data.featured];
    let with_user = data.featured_messages as u64;
    let anonymous = data.featured_anonymous_messages as u64;
    let shared = data.customers.iter().enumerate().any(|(i, o)| {
        i != data.featured
            && (o.phone == c.phone || o.email == c.email || o.anonymous_id == c.anonymous_id)
    });
    if shared {
        ensure!(
            total >= with_user,
            "the profile counts {total} events but {with_user} valid messages carried userId {}",
            c.user_id
        );
        println!(
            "  ({total} events, as many as its timeline holds; at least the {with_user} valid messages \
             with userId {} — not compared exactly: another customer shares an identifier with this one)",
            c.user_id
        );
    } else {
        ensure!(
            total == with_user + anonymous,
            "the profile counts {total} events but the data set has {with_user} valid messages with \
             userId {} and {anonymous} anonymous ones with anonymousId {}",
            c.user_id,
            c.anonymous_id
        );
        let joined = if anonymous == 0 {
            String::new()
        } else {
            format!(" + {anonymous} anonymous page views joined through anonymousId")
        };
        println!(
            "  ({total} events = exactly the customer's valid messages in the data set: {with_user} with \
             userId {}{joined}; the timeline GET /v1/profiles/{{id}}/events holds as many)",
            c.user_id
        );
    }
    Ok(())
}

/// What sending the data set did.
struct Sent {
    requests: usize,
    accepted: u64,
    /// (code, field) of every refused message.
    rejected: Vec<(String, String)>,
    elapsed: Duration,
}

async fn ingest(
    http: &reqwest::Client,
    base: &str,
    write_key: &str,
    messages: &[Value],
) -> anyhow::Result<Sent> {
    let batches: Arc<Vec<Value>> = Arc::new(
        messages
            .chunks(BATCH)
            .map(|chunk| json!({"batch": chunk}))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/batch");
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let (http, url, key) = (http.clone(), url.clone(), write_key.to_owned());
        let (batches, next) = (batches.clone(), next.clone());
        clients.spawn(async move {
            let mut accepted = 0u64;
            let mut rejected = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                let mut body = batch.clone();
                // Set as the sending library would, just before sending.
                body["sentAt"] = json!(rfc3339(Utc::now()));
                let n = body["batch"].as_array().map_or(0, Vec::len) as u64;
                let response = http
                    .post(&url)
                    .basic_auth(&key, None::<&str>)
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("POST /v1/batch (request {i}) failed"))?;
                let status = response.status();
                let answer: Value = response
                    .json()
                    .await
                    .with_context(|| format!("the answer to request {i} is not JSON"))?;
                match status {
                    reqwest::StatusCode::OK => accepted += n,
                    // A partial batch: the good messages were stored, the others quarantined.
                    reqwest::StatusCode::BAD_REQUEST if answer["accepted"].is_u64() => {
                        accepted += answer["accepted"].as_u64().unwrap_or(0);
                        for r in answer["rejected"].as_array().into_iter().flatten() {
                            rejected.push((
                                r["code"].as_str().unwrap_or("?").to_owned(),
                                r["field"].as_str().unwrap_or("").to_owned(),
                            ));
                        }
                    }
                    _ => bail!("POST /v1/batch answered {status}: {answer}"),
                }
            }
            anyhow::Ok((accepted, rejected))
        });
    }
    let mut sent = Sent {
        requests: batches.len(),
        accepted: 0,
        rejected: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = clients.join_next().await {
        let (accepted, mut rejected) = joined.context("a client task failed")??;
        sent.accepted += accepted;
        sent.rejected.append(&mut rejected);
    }
    sent.elapsed = started.elapsed();
    Ok(sent)
}

/// Waits until the projection `name` has applied every event in the log.
async fn wait_for_projection(store: &Store, name: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let at = cdp_projections::runner::checkpoint(store, name)
            .await
            .context("failed to read the projection checkpoint")?;
        let pending = store
            .read_after(at, 1)
            .await
            .context("failed to read the log")?;
        if pending.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > PROJECTION_DEADLINE {
            bail!(
                "the {name} projection had not caught up after {} s",
                PROJECTION_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    query: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .with_context(|| format!("GET {path} failed"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("the answer to GET {path} is not JSON"))?;
    ensure!(status.is_success(), "GET {path} answered {status}: {body}");
    Ok(body)
}

async fn quarantine(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    let body = get(http, base, token, "/v1/quarantine", &[("limit", "1000")]).await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let mut groups: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for item in &items {
        let key = (
            item["code"].as_str().unwrap_or("?").to_owned(),
            item["field"].as_str().unwrap_or("").to_owned(),
            item["reason"].as_str().unwrap_or("").to_owned(),
        );
        *groups.entry(key).or_default() += 1;
    }
    println!(
        "quarantine {} messages kept with their reason — GET /v1/quarantine",
        items.len()
    );
    for ((code, field, reason), n) in &groups {
        let field = if field.is_empty() {
            "-"
        } else {
            field.as_str()
        };
        println!("  {n:>3} × {code:<17} {field:<15} {}", clip(reason, 70));
    }
    Ok(())
}

/// The values kept but not used as identifiers: the junk phone and e-mail of the data set.
async fn quality(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    let body = get(http, base, token, "/v1/quality", &[("limit", "1")]).await?;
    println!(
        "quality    {} values kept with their message but not used as identifiers — GET /v1/quality",
        body["total"]
    );
    for reason in body["by_reason"].as_array().into_iter().flatten() {
        println!(
            "  {:>3} × {:<17} {}",
            reason["count"].as_i64().unwrap_or(0),
            reason["code"].as_str().unwrap_or("?"),
            reason["field"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

async fn lookup(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id_type: &str,
    value: &str,
) -> anyhow::Result<Value> {
    get(
        http,
        base,
        token,
        "/v1/profiles/lookup",
        &[("type", id_type), ("value", value)],
    )
    .await
}

/// The 360 profile in a couple of dozen lines.
fn summarise(view: &Value) {
    println!("  {:<12} {}", "profile", plain(&view["profile_id"]));
    for (i, id) in view["identifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let label = if i == 0 { "identifiers" } else { "" };
        println!(
            "  {label:<12} {:<13} {:<28} seen {} … {}",
            plain(&id["type"]),
            clip(&plain(&id["value"]), 28),
            day(&id["first_seen"]),
            day(&id["last_seen"])
        );
    }
    if let Some(traits) = view["traits"].as_object() {
        for (i, (name, t)) in traits.iter().enumerate() {
            let label = if i == 0 { "traits" } else { "" };
            println!(
                "  {label:<12} {name:<13} {:<28} from {} {} of {}",
                clip(&plain(&t["value"]), 28),
                plain(&t["channel"]),
                plain(&t["type"]),
                day(&t["set_at"])
            );
        }
    }
    let counts_of = &view["event_counts"];
    println!(
        "  {:<12} {} = {}",
        "events",
        total_of(view),
        counts(&counts_of["by_type"])
    );
    println!(
        "  {:<12} {}",
        "by channel",
        counts(&counts_of["by_channel"])
    );
    println!("  {:<12} {}", "tracked", counts(&counts_of["by_event"]));
    println!(
        "  {:<12} {} … {}",
        "seen",
        minute(&view["first_seen"]),
        minute(&view["last_seen"])
    );
    for (i, e) in view["recent_events"]
        .as_array()
        .into_iter()
        .flatten()
        .take(5)
        .enumerate()
    {
        let label = if i == 0 { "recent" } else { "" };
        println!(
            "  {label:<12} {}  {:<12} {:<8} {}",
            minute(&e["timestamp"]),
            plain(&e["channel"]),
            plain(&e["type"]),
            e["name"].as_str().unwrap_or("")
        );
    }
}

fn total_of(view: &Value) -> u64 {
    view["event_counts"]["total"].as_u64().unwrap_or(0)
}

/// `{"page": 3, "track": 2}` → `page 3 · track 2`.
fn counts(map: &Value) -> String {
    map.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_u64().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .unwrap_or_default()
}

fn joined<K: std::fmt::Display>(map: &BTreeMap<K, usize>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {}", thousands(*v as u64)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A JSON value as text, strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-11-20T18:40:12.000Z` → `2026-11-20 18:40`.
fn minute(v: &Value) -> String {
    v.as_str()
        .map(|s| s.get(..16).unwrap_or(s).replace('T', " "))
        .unwrap_or_else(|| "?".into())
}

/// `2026-11-20T18:40:12.000Z` → `2026-11-20`.
fn day(v: &Value) -> String {
    v.as_str()
        .map(|s| s.get(..10).unwrap_or(s).to_owned())
        .unwrap_or_else(|| "?".into())
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
