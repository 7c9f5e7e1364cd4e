//! Scenario `profile-read`: the retail workload is ingested through `/v1/batch`, the OneID resolver
//! follows it, and then concurrent clients read `GET /v1/profiles/{id}` on random profiles.
//!
//! Three figures, three rows:
//! - `identity-resolve`: events the resolver applied per second, from the first ingest request until it
//!   had applied the last event (its catch-up throughput under ingestion, not a physical figure).
//! - `profile-read`: requests/s and p50/p99 of `GET /v1/profiles/{id}` from `--clients` clients, on ids
//!   drawn (seeded) from the profiles of the workload's identified customers: the throughput with every
//!   client always waiting on an answer (closed loop: its latencies are those of a saturated service).
//!   The physical reference is the same reads as `profiles::load` straight from the store, from as many
//!   tasks, in the same run.
//! - `profile-read-paced`: the same reads sent at a fixed `--read-rate` (5,000/s by default, the figure
//!   the profile engine issue names), open loop: read `i` is released at `i / rate` after the start
//!   (on the timer's millisecond tick) whatever earlier reads are doing, up to 64 in flight on 64 warm
//!   connections, and its latency counts from its release, so a read that waits for a slot because
//!   the service fell behind counts against the service (no coordinated omission). Its p99 is "p99 at
//!   that rate". The service answers a profile it read lately from memory (`ViewCache`): the summary says
//!   what share of each phase's reads it did.
//! - `profile-read-cold`: every profile read once, in random order, at the same rate, the service's views
//!   emptied first: each read goes to the database (what a profile not read lately costs).
//!
//! Verified: every event stored once and applied by the resolver; every identified customer found by
//! `user_id`, on a profile of its own, whose `event_counts.total` is exactly what the messages sent about
//! that customer imply (customers sharing a random phone number are left out of that count check); every
//! read answered 200 with the `profile_id` asked for, not merged away; every reference read found the
//! document.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use axum::body::Bytes;
use cdp_api::provision::random_secret;
use cdp_api::{AppState, Application};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::EventStore;
use cdp_projections::identity::IdentityResolver;
use cdp_projections::{profiles, runner};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use tokio::task::JoinSet;

use super::ingest_http::{send_all, stop};
use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use super::workload::Workload;
use crate::numbers::thousands;

pub const NAME: &str = "profile-read";
/// The row of the resolver's catch-up throughput.
const RESOLVE: &str = "identity-resolve";
/// The row of the reads at a fixed rate.
const PACED: &str = "profile-read-paced";
/// The row of the reads at a fixed rate of profiles none of which is held in memory.
const COLD: &str = "profile-read-cold";

/// How profile-read reads.
pub struct Reads {
    /// Concurrent clients of the closed-loop phase (and tasks of its reference).
    pub clients: usize,
    /// Reads in each phase.
    pub requests: usize,
    /// Requests/s of the paced phase.
    pub rate: usize,
    pub seed: u64,
}
const WORKSPACE: &str = "bench";
/// The resolver is given up on when it applies nothing for this long.
const STALLED: Duration = Duration::from_secs(120);

/// What one run measured and verified.
struct Measured {
    /// From the first ingest request to the last 200.
    ingest: Duration,
    /// From the first ingest request until the resolver had applied the last event.
    resolved: Duration,
    /// Events the resolver had applied when the last 200 came back.
    applied_at_last_200: u64,
    /// Identified customers, each found on a profile of its own.
    profiles: usize,
    /// Of those, the ones whose event count was checked exactly.
    counts_checked: usize,
    /// The average size of a `GET /v1/profiles/{id}` answer's body.
    answer_bytes: u64,
    http: Timed,
    reference: Timed,
    paced: Timed,
    /// Each profile read once, in random order, at the paced rate, with the service's views emptied
    /// first: every read goes to the database.
    cold: Timed,
    /// After the cold phase: the views held, the bytes the cache's weigher counts for them, and how far
    /// the heap grew meanwhile (the views with the cache's own structures; `None` without the
    /// counting allocator).
    views_held: (u64, u64, Option<i64>),
    /// The share of the closed loop's and of the paced phase's reads the service answered from its
    /// profiles' views in memory (`ViewCache`), not from the database.
    from_memory: (f64, f64),
}

struct Timed {
    elapsed: Duration,
    /// Sorted.
    latencies: Vec<Duration>,
}

#[derive(Deserialize)]
struct ProfileAnswer {
    profile_id: String,
    merged_away: bool,
    event_counts: EventCounts,
}

#[derive(Deserialize)]
struct EventCounts {
    total: u64,
}

pub async fn run(backend: &Backend, workload: &Workload, reads: &Reads) -> anyhow::Result<Outcome> {
    let Reads {
        clients,
        requests,
        rate,
        ..
    } = *reads;
    ensure!(clients > 0, "--clients must be at least 1");
    ensure!(requests > 0, "--requests must be at least 1");
    ensure!(rate > 0, "--read-rate must be at least 1");
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, workload, reads).await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let events = workload.events as u64;
    let resolve = Row {
        scenario: RESOLVE,
        backend: backend.name(),
        count: events,
        unit: "events",
        seconds: m.resolved.as_secs_f64(),
        rate: events as f64 / m.resolved.as_secs_f64(),
        p50: None,
        p99: None,
        reference_rate: None,
    };
    let reads = requests as u64;
    let timed = |scenario: &'static str, t: &Timed, reference: Option<&Timed>| {
        let count = t.latencies.len() as u64;
        Row {
            scenario,
            backend: backend.name(),
            count,
            unit: "requests",
            seconds: t.elapsed.as_secs_f64(),
            rate: count as f64 / t.elapsed.as_secs_f64(),
            p50: quantile(&t.latencies, 0.50),
            p99: quantile(&t.latencies, 0.99),
            reference_rate: reference.map(|r| count as f64 / r.elapsed.as_secs_f64()),
        }
    };
    let read = timed(NAME, &m.http, Some(&m.reference));
    let paced = timed(PACED, &m.paced, None);
    let cold = timed(COLD, &m.cold, None);
    let ms = |d: Option<Duration>| d.unwrap_or_default().as_secs_f64() * 1000.0;
    let summary = format!(
        "{NAME} on {backend}: {reads} GET /v1/profiles/{{id}} on random profiles (of {profiles}) in \
         {read_s:.2} s = {read_rate} requests/s from {clients} clients (p50 {p50:.2} ms, p99 {p99:.2} ms, \
         {answer_bytes} bytes per answer); \
         {ratio:.2}x the {ref_rate} reads/s of profiles::load from {clients} tasks (p50 {rp50:.2} ms, \
         p99 {rp99:.2} ms). Sent at {rate} requests/s (open loop, latency from each read's due time): \
         {paced_rate} requests/s answered, p50 {pp50:.2} ms, p99 {pp99:.2} ms. Answered from the \
         profiles' views in memory: {closed_memory:.0} % of the closed loop's reads, {paced_memory:.0} % \
         of the paced ones; each profile read once at that rate with none in memory: p50 {cp50:.2} ms, \
         p99 {cp99:.2} ms; then {views_held} views held, weighed at {weighed} bytes each by the cache's \
         bound, the heap {heap_growth}. The resolver applied all {events} events {resolved_s:.2} s after the first \
         ingest request = {resolve_rate} events/s (ingestion: last 200 after {ingest_s:.2} s = \
         {ingest_rate} events/s, resolver at {at_200} then). Verified: every event stored and applied, \
         {profiles} identified customers each on a profile of its own ({checked} with exactly the events \
         their messages imply), every read 200 with the profile_id asked for, not merged away.",
        backend = backend.name(),
        reads = thousands(reads),
        profiles = thousands(m.profiles as u64),
        read_s = read.seconds,
        read_rate = thousands(read.rate.round() as u64),
        p50 = ms(read.p50),
        p99 = ms(read.p99),
        ratio = read.ratio().unwrap_or_default(),
        ref_rate = thousands(read.reference_rate.unwrap_or_default().round() as u64),
        rp50 = ms(quantile(&m.reference.latencies, 0.50)),
        rp99 = ms(quantile(&m.reference.latencies, 0.99)),
        rate = thousands(rate as u64),
        paced_rate = thousands(paced.rate.round() as u64),
        pp50 = ms(paced.p50),
        pp99 = ms(paced.p99),
        cp50 = ms(cold.p50),
        cp99 = ms(cold.p99),
        views_held = thousands(m.views_held.0),
        weighed = thousands(m.views_held.1 / m.views_held.0.max(1)),
        heap_growth = match m.views_held.2 {
            Some(bytes) => format!(
                "grew {} bytes a view meanwhile",
                thousands((bytes.max(0) as u64) / m.views_held.0.max(1))
            ),
            None => "not counted".to_owned(),
        },
        closed_memory = m.from_memory.0 * 100.0,
        paced_memory = m.from_memory.1 * 100.0,
        events = thousands(events),
        resolved_s = resolve.seconds,
        resolve_rate = thousands(resolve.rate.round() as u64),
        ingest_s = m.ingest.as_secs_f64(),
        ingest_rate = thousands((events as f64 / m.ingest.as_secs_f64()).round() as u64),
        at_200 = thousands(m.applied_at_last_200),
        checked = thousands(m.counts_checked as u64),
        answer_bytes = thousands(m.answer_bytes),
    );
    Ok(Outcome {
        rows: vec![resolve, read, paced, cold],
        summary,
    })
}

/// `GET /v1/profiles/{id}`, checked: the profile asked for, live, with events. The answer's size.
async fn read_profile(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<u64> {
    let body = get(client, &format!("{base}/v1/profiles/{id}"), token).await?;
    let answer: ProfileAnswer = serde_json::from_slice(&body)
        .with_context(|| format!("GET /v1/profiles/{id} answered no profile"))?;
    ensure!(
        answer.profile_id == id && !answer.merged_away,
        "GET /v1/profiles/{id} answered profile {} (merged_away {})",
        answer.profile_id,
        answer.merged_away
    );
    ensure!(answer.event_counts.total > 0, "profile {id} has no events");
    Ok(body.len() as u64)
}

/// A client for an open-loop phase, its [`PACED_IN_FLIGHT`] connections opened (by reading `first`)
/// before the clock starts, as a running client's would be.
async fn warm_client(
    base: &str,
    token: &str,
    first: impl Iterator<Item = String>,
) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(PACED_IN_FLIGHT)
        .timeout(Duration::from_secs(60))
        .build()
        .context("failed to build the HTTP client")?;
    let mut warm = JoinSet::new();
    for id in first {
        let (client, base, token) = (client.clone(), base.to_owned(), token.to_owned());
        warm.spawn(async move { read_profile(&client, &base, &token, &id).await });
    }
    while let Some(done) = warm.join_next().await {
        done.context("a warm-up read failed")??;
    }
    Ok(client)
}

/// Reads of the paced phase in flight at most (its client keeps as many connections): a service that
/// falls behind makes later reads start late, and their latency, counted from when they were due, says so.
const PACED_IN_FLIGHT: usize = 64;

/// Runs `op(0..n)` at `rate` per second, open loop: operation `i` is released when it is due (`i / rate`
/// after the start, on the timer's next tick), whether or not earlier ones have finished (up to
/// [`PACED_IN_FLIGHT`] at once), and its latency counts from that release.
async fn at_rate<F, Fut>(n: usize, rate: usize, op: F) -> anyhow::Result<Timed>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let in_flight = Arc::new(tokio::sync::Semaphore::new(PACED_IN_FLIGHT));
    let started = tokio::time::Instant::now();
    let mut set = JoinSet::new();
    for i in 0..n {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        // Counted from here: the timer releases reads on its millisecond ticks (a few at once at this
        // rate), which is the bench's pacing, not the service's; a wait for a free slot below is the
        // service's.
        let released = tokio::time::Instant::now();
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .context("the paced reads' semaphore closed")?;
        let work = op(i);
        set.spawn(async move {
            let done = work.await.map(|()| released.elapsed());
            drop(permit);
            done
        });
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        latencies.push(joined.context("a paced read failed")??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Timed { elapsed, latencies })
}

async fn measure(
    fresh: &FreshStore,
    workload: &Workload,
    reads: &Reads,
) -> anyhow::Result<Measured> {
    let Reads {
        clients,
        requests,
        rate,
        seed,
    } = *reads;
    let write_key = random_secret("wk");
    let token = random_secret("tok");
    let mut config = fresh.config();
    config.bootstrap_workspace = Some(WORKSPACE.into());
    config.bootstrap_write_key = Some(write_key.clone());
    config.bootstrap_admin_token = Some(token.clone());
    let app = Application::build(config)
        .await
        .context("failed to start the service")?;
    let state = app.state();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());

    let outcome = async {
        let bodies = Arc::new(workload.bodies());
        let started = Instant::now();
        send_all(&format!("{base}/v1/batch"), &write_key, bodies, clients).await?;
        let ingest = started.elapsed();
        let applied_at_last_200 = state.identity.applied.load(Ordering::Relaxed);
        wait_until_resolved(&state, workload.events as u64).await?;
        let resolved = started.elapsed();
        check_ingested(&state, workload).await?;

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .timeout(Duration::from_secs(60))
            .build()
            .context("failed to build the HTTP client")?;
        let (ids, counts_checked) = profile_ids(&client, &base, &token, workload, clients).await?;
        let ids = Arc::new(ids);
        // The same random sequence of profiles for the HTTP reads and the reference.
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7072_6f66_696c_6573);
        let plan: Arc<Vec<usize>> =
            Arc::new((0..requests).map(|_| rng.gen_range(0..ids.len())).collect());

        let hits_before = state.views.hits_and_misses();
        let (http, answers) = {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let (ids, plan) = (ids.clone(), plan.clone());
            concurrently(requests, clients, move |i| {
                let id = ids[plan[i]].clone();
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                async move { read_profile(&client, &base, &token, &id).await }
            })
            .await
            .context("reading profiles over HTTP failed")?
        };
        let answer_bytes = answers.iter().map(|(_, n)| n).sum::<u64>() / requests as u64;
        let hits_closed = state.views.hits_and_misses();

        let reference = {
            let store = state.store.clone();
            let (ids, plan) = (ids.clone(), plan.clone());
            concurrently(requests, clients, move |i| {
                let id = ids[plan[i]].clone();
                let store = store.clone();
                async move {
                    let doc = profiles::load(&store, &WorkspaceId::parse(WORKSPACE)?, &id)
                        .await
                        .with_context(|| format!("profiles::load of {id} failed"))?;
                    ensure!(doc.is_some(), "profiles::load found no document for {id}");
                    Ok(())
                }
            })
            .await
            .context("the reference reads failed")?
            .0
        };

        let paced = {
            let first = (0..PACED_IN_FLIGHT).map(|i| ids[plan[i % plan.len()]].clone());
            let client = warm_client(&base, &token, first).await?;
            let (base, token) = (base.clone(), token.clone());
            let (ids, plan) = (ids.clone(), plan.clone());
            let hits_warm = state.views.hits_and_misses();
            let paced = at_rate(requests, rate, move |i| {
                let id = ids[plan[i]].clone();
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                async move { read_profile(&client, &base, &token, &id).await.map(|_| ()) }
            })
            .await
            .context("reading profiles at a fixed rate failed")?;
            (paced, hits_warm, state.views.hits_and_misses())
        };
        let (paced, hits_warm, hits_paced) = paced;

        let cold = {
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.shuffle(&mut rng);
            let first = order.iter().take(PACED_IN_FLIGHT).map(|&i| ids[i].clone());
            let client = warm_client(&base, &token, first).await?;
            let (base, token) = (base.clone(), token.clone());
            state.views.clear(None);
            state.views.held();
            let growth = crate::heap::Growth::open();
            let ids = ids.clone();
            let cold = at_rate(order.len(), rate, move |i| {
                let id = ids[order[i]].clone();
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                async move { read_profile(&client, &base, &token, &id).await.map(|_| ()) }
            })
            .await
            .context("reading profiles not held in memory at a fixed rate failed")?;
            let (views, weighed) = state.views.held();
            let heap = growth.as_ref().map(crate::heap::Growth::now);
            (cold, (views, weighed, heap))
        };
        let (cold, views_held) = cold;
        let share = |(h0, m0): (u64, u64), (h1, m1): (u64, u64)| {
            (h1 - h0) as f64 / ((h1 - h0) + (m1 - m0)).max(1) as f64
        };
        let from_memory = (
            share(hits_before, hits_closed),
            share(hits_warm, hits_paced),
        );

        Ok(Measured {
            ingest,
            resolved,
            applied_at_last_200,
            profiles: ids.len(),
            counts_checked,
            answer_bytes,
            http,
            reference,
            paced,
            cold,
            views_held,
            from_memory,
        })
    }
    .await;

    stop(server, state).await?;
    outcome
}

/// Waits until the resolver has applied `expected` events; fails when it reports errors or stalls.
pub(super) async fn wait_until_resolved(state: &AppState, expected: u64) -> anyhow::Result<()> {
    let mut last = state.identity.applied.load(Ordering::Relaxed);
    let mut moved = Instant::now();
    loop {
        let applied = state.identity.applied.load(Ordering::Relaxed);
        if applied >= expected {
            ensure!(
                applied == expected,
                "the resolver applied {applied} events but {expected} were sent"
            );
            return Ok(());
        }
        let errors = state.identity.errors.load(Ordering::Relaxed);
        ensure!(
            errors == 0,
            "the resolver reported {errors} failed steps (see the log); it had applied {applied} of \
             {expected} events"
        );
        if applied != last {
            last = applied;
            moved = Instant::now();
        } else if moved.elapsed() > STALLED {
            bail!(
                "the resolver applied nothing for {} s; it had applied {applied} of {expected} events",
                STALLED.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every event stored once, none quarantined, the last one applied according to the checkpoint.
async fn check_ingested(state: &AppState, workload: &Workload) -> anyhow::Result<()> {
    let expected = workload.events as i64;
    let stored = state
        .store
        .count_events(WORKSPACE)
        .await
        .context("failed to count the stored events")?;
    ensure!(
        stored == expected,
        "{expected} events were acknowledged but {stored} are stored"
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
    let applied = runner::has_applied(
        &state.store,
        IdentityResolver::NAME,
        &WorkspaceId::parse(WORKSPACE)?,
        &workload.last_message_id,
    )
    .await
    .context("failed to read the resolver's checkpoint")?;
    ensure!(
        applied,
        "the resolver counted every event applied but its checkpoint is before the last message {}",
        workload.last_message_id
    );
    Ok(())
}

/// The profile of every identified customer, by `GET /v1/profiles/lookup?type=user_id`, checked: each
/// customer on a profile of its own, holding exactly the events the messages imply (unless the
/// customer's random phone number is shared with another, which may rightly join or split their events).
/// Returns the profile ids and how many event counts were checked.
async fn profile_ids(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    workload: &Workload,
    clients: usize,
) -> anyhow::Result<(Vec<String>, usize)> {
    let people: Arc<Vec<_>> = Arc::new(
        workload
            .people
            .iter()
            .filter(|p| p.identified())
            .cloned()
            .collect(),
    );
    ensure!(!people.is_empty(), "the workload identifies no customer");
    let (_, found) = {
        let (client, base, token) = (client.clone(), base.to_owned(), token.to_owned());
        let people = people.clone();
        concurrently(people.len(), clients, move |i| {
            let user_id = people[i].user_id.clone();
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            async move {
                let url = format!("{base}/v1/profiles/lookup?type=user_id&value={user_id}");
                let body = get(&client, &url, &token)
                    .await
                    .with_context(|| format!("looking up user_id {user_id}"))?;
                let answer: ProfileAnswer = serde_json::from_slice(&body)
                    .with_context(|| format!("the lookup of {user_id} answered no profile"))?;
                Ok((answer.profile_id, answer.event_counts.total))
            }
        })
        .await
        .context("looking up the customers' profiles failed")?
    };
    let mut phones: HashMap<&str, usize> = HashMap::new();
    for p in &workload.people {
        *phones.entry(p.phone.as_str()).or_default() += 1;
    }
    let mut ids = Vec::with_capacity(found.len());
    let mut seen = HashSet::with_capacity(found.len());
    let mut checked = 0;
    for (i, (profile, total)) in found {
        let person = &people[i];
        ensure!(
            seen.insert(profile.clone()),
            "two customers (one is {}) resolved to the same profile {profile}",
            person.user_id
        );
        if phones[person.phone.as_str()] == 1 {
            ensure!(
                total == person.profile_events(),
                "{} of the messages sent about {} belong on its profile (those carrying the userId, \
                 and the anonymous ones if its anonymousId came with it once) but profile {profile} \
                 counts {total} events",
                person.profile_events(),
                person.user_id
            );
            checked += 1;
        }
        ids.push(profile);
    }
    // Independent of the order the lookups finished in.
    ids.sort_unstable();
    Ok((ids, checked))
}

/// `GET` with the Bearer token; the body when the answer is 200, an error naming the answer otherwise.
async fn get(client: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Bytes> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .context("the request failed")?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .context("failed to read the response")?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "the service answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(body)
}

/// Runs `op(0..n)` from `tasks` concurrent tasks, each taking the next index when done with one. Returns
/// the time from the first call to the last answer with the sorted latencies, and every index's result.
/// Stops at the first error.
async fn concurrently<T, F, Fut>(
    n: usize,
    tasks: usize,
    op: F,
) -> anyhow::Result<(Timed, Vec<(usize, T)>)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (op, next, stop) = (op.clone(), next.clone(), stop.clone());
        set.spawn(async move {
            let mut done = Vec::with_capacity(n / tasks + 1);
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let sent = Instant::now();
                match op(i).await {
                    Ok(value) => done.push((sent.elapsed(), i, value)),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e.context(format!("operation {i} of {n}")));
                    }
                }
            }
            Ok(done)
        });
    }
    let mut done = Vec::with_capacity(n);
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined.context("a task failed") {
            Ok(Ok(mut d)) => done.append(&mut d),
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    ensure!(done.len() == n, "{} of {n} operations finished", done.len());
    let mut latencies: Vec<Duration> = done.iter().map(|(l, _, _)| *l).collect();
    latencies.sort_unstable();
    let results = done.into_iter().map(|(_, i, v)| (i, v)).collect();
    Ok((Timed { elapsed, latencies }, results))
}
