//! Scenario `ingest-http`: concurrent clients send Segment `/v1/batch` requests to the real service and
//! every 200 means the batch is committed; the figure is durable events/s from the first send to the
//! last 200. The physical reference appends the same events, in the same batches, from as many tasks,
//! straight into a fresh store of the same kind with `EventStore::append`; a second row, `append-sealed`,
//! is that append against the same rows appended unsealed (what sealing costs).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_domain::ident::WorkspaceId;

use anyhow::{bail, ensure, Context};
use axum::body::Bytes;
use cdp_api::provision::random_secret;
use cdp_api::Application;
use cdp_domain::event::NewEvent;
use cdp_domain::message::MessageKind;
use cdp_domain::store::{EventStore, Store};
use tokio::task::JoinSet;

use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use super::workload::Workload;
use crate::numbers::thousands;

pub const NAME: &str = "ingest-http";
/// The row of sealed `Store::append` against the same rows unsealed.
const SEALED: &str = "append-sealed";
const WORKSPACE: &str = "bench";

/// What the HTTP run measured and verified.
struct HttpRun {
    elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
    /// Events the profile projection had applied when the last 200 came back.
    projected: u64,
    /// Transactions the group-commit appender needed.
    commits: u64,
}

pub async fn run(
    backend: &Backend,
    workload: &Workload,
    clients: usize,
) -> anyhow::Result<Outcome> {
    ensure!(clients > 0, "--clients must be at least 1");
    let bodies = Arc::new(workload.bodies());
    let fresh = FreshStore::create(backend).await?;
    let measured = over_http(&fresh, bodies.clone(), clients, workload.events).await;
    let removed = fresh.remove().await;
    let http = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;
    drop(bodies);

    let batches = Arc::new(workload.new_events(&WorkspaceId::parse(WORKSPACE)?)?);
    let fresh = FreshStore::create(backend).await?;
    let measured = straight_into_store(&fresh, batches.clone(), clients, workload.events).await;
    let removed = fresh.remove().await;
    let reference =
        measured.with_context(|| format!("{NAME} reference on {} failed", backend.name()))?;
    removed?;

    // The price of sealing: the same rows appended unsealed (as operator commands, which the store keeps
    // plain: no subject keys, no encryption), into another fresh store.
    let plain: Arc<Vec<Vec<NewEvent>>> = Arc::new(
        batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|e| NewEvent {
                        kind: MessageKind::Operator,
                        ..e.clone()
                    })
                    .collect()
            })
            .collect(),
    );
    let fresh = FreshStore::create(backend).await?;
    let measured = straight_into_store(&fresh, plain, clients, workload.events).await;
    let removed = fresh.remove().await;
    let unsealed = measured
        .with_context(|| format!("{NAME} unsealed reference on {} failed", backend.name()))?;
    removed?;

    let events = workload.events as u64;
    let seconds = http.elapsed.as_secs_f64();
    let row = Row {
        scenario: NAME,
        backend: backend.name(),
        count: events,
        unit: "events",
        seconds,
        rate: events as f64 / seconds,
        p50: quantile(&http.latencies, 0.50),
        p99: quantile(&http.latencies, 0.99),
        reference_rate: Some(events as f64 / reference.as_secs_f64()),
    };
    let sealing = Row {
        scenario: SEALED,
        backend: backend.name(),
        count: events,
        unit: "events",
        seconds: reference.as_secs_f64(),
        rate: events as f64 / reference.as_secs_f64(),
        p50: None,
        p99: None,
        reference_rate: Some(events as f64 / unsealed.as_secs_f64()),
    };
    let batch = workload.batches.first().map_or(0, Vec::len);
    let summary = format!(
        "{NAME} on {}: {} events in {seconds:.2} s = {} durable events/s from {clients} clients sending \
         {batch}-message /v1/batch requests (p99 {:.1} ms, {} group commits); {:.2}x the {} events/s of Store::append \
         of the same batches from {clients} tasks; verified: every request 200, {} events stored once, \
         nothing quarantined; the profile projection had applied {} of them at the last 200. Sealed, \
         Store::append is {:.2}x the {} events/s of the same rows appended unsealed.",
        backend.name(),
        thousands(events),
        thousands(row.rate.round() as u64),
        row.p99.unwrap_or_default().as_secs_f64() * 1000.0,
        thousands(http.commits),
        row.ratio().unwrap_or_default(),
        thousands(row.reference_rate.unwrap_or_default().round() as u64),
        thousands(events),
        thousands(http.projected),
        sealing.ratio().unwrap_or_default(),
        thousands(sealing.reference_rate.unwrap_or_default().round() as u64),
    );
    Ok(Outcome {
        rows: vec![row, sealing],
        summary,
    })
}

async fn over_http(
    fresh: &FreshStore,
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
    expected: usize,
) -> anyhow::Result<HttpRun> {
    let write_key = random_secret("wk");
    let mut config = fresh.config();
    config.bootstrap_workspace = Some(WORKSPACE.into());
    config.bootstrap_write_key = Some(write_key.clone());
    let app = Application::build(config)
        .await
        .context("failed to start the service")?;
    let state = app.state();
    let url = format!("http://{}/v1/batch", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());

    let outcome = async {
        let (elapsed, mut latencies) = send_all(&url, &write_key, bodies, clients).await?;
        let projected = state.identity.applied.load(Ordering::Relaxed);
        let commits = state.appender.stats().commits.load(Ordering::Relaxed);
        latencies.sort_unstable();
        let stored = state
            .store
            .count_events(WORKSPACE)
            .await
            .context("failed to count the stored events")?;
        ensure!(
            stored == expected as i64,
            "{expected} events were acknowledged but {stored} are stored"
        );
        let duplicates = state.appender.stats().duplicates.load(Ordering::Relaxed);
        ensure!(
            duplicates == 0,
            "{duplicates} events were reported as duplicates though every messageId is unique"
        );
        let quarantined = state
            .store
            .list_quarantine(WORKSPACE, None, 1)
            .await
            .context("failed to read the quarantine")?;
        ensure!(
            quarantined.is_empty(),
            "messages were quarantined: {:?}",
            quarantined.first().map(|q| &q.reason)
        );
        Ok(HttpRun {
            elapsed,
            latencies,
            projected,
            commits,
        })
    }
    .await;

    stop(server, state).await?;
    outcome
}

/// Stops the in-process service of a scenario: aborts the server (reporting a panic inside it) and
/// closes its store before the database is dropped, so no connection is cut off mid-use.
pub(super) async fn stop(
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    state: std::sync::Arc<cdp_api::AppState>,
) -> anyhow::Result<()> {
    server.abort();
    if let Err(e) = server.await {
        if e.is_panic() {
            bail!("the service panicked: {e}");
        }
    }
    close(&state.store).await;
    Ok(())
}

/// Sends every body from `clients` concurrent clients; returns the time from the first send to the last
/// 200 and each request's latency. Stops at the first answer that is not 200.
pub(super) async fn send_all(
    url: &str,
    write_key: &str,
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(120))
        .build()
        .context("failed to build the HTTP client")?;
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (client, url, key) = (client.clone(), url.to_owned(), write_key.to_owned());
        let (bodies, next, stop) = (bodies.clone(), next.clone(), stop.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len() / clients + 1);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                if let Err(e) = post(&client, &url, &key, body.clone()).await {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.context(format!("request {i} of {}", bodies.len())));
                }
                latencies.push(sent.elapsed());
            }
            Ok(latencies)
        });
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a client task failed") {
            Ok(Ok(mut l)) => latencies.append(&mut l),
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    ensure!(
        latencies.len() == bodies.len(),
        "{} of {} requests were answered",
        latencies.len(),
        bodies.len()
    );
    Ok((elapsed, latencies))
}

async fn post(client: &reqwest::Client, url: &str, key: &str, body: Bytes) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .basic_auth(key, None::<&str>)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .context("the request failed")?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("failed to read the response")?;
    if status != reqwest::StatusCode::OK {
        bail!("the service answered {status}: {text}");
    }
    Ok(())
}

/// The physical reference: the same batches appended with `EventStore::append` from `tasks` tasks.
async fn straight_into_store(
    fresh: &FreshStore,
    batches: Arc<Vec<Vec<NewEvent>>>,
    tasks: usize,
    expected: usize,
) -> anyhow::Result<Duration> {
    let store = fresh.open().await?;
    let outcome = async {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..tasks {
            let (store, batches, next) = (store.clone(), batches.clone(), next.clone());
            set.spawn(async move {
                let mut inserted = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    inserted += store
                        .append(batch)
                        .await
                        .with_context(|| format!("appending batch {i} failed"))?
                        .inserted;
                }
                anyhow::Ok(inserted)
            });
        }
        let mut inserted = 0;
        while let Some(joined) = set.join_next().await {
            inserted += joined.context("an append task failed")??;
        }
        let elapsed = started.elapsed();
        let stored = store
            .count_events(WORKSPACE)
            .await
            .context("failed to count the stored events")?;
        ensure!(
            inserted == expected as u64 && stored == expected as i64,
            "the reference appended {expected} events but {inserted} were inserted and {stored} are stored"
        );
        Ok(elapsed)
    }
    .await;
    close(&store).await;
    outcome
}

pub(super) async fn close(store: &Store) {
    match store {
        Store::Sqlite(s) => {
            s.write_pool().close().await;
            s.read_pool().close().await;
        }
        Store::Postgres(s) => s.pool().close().await,
    }
}
