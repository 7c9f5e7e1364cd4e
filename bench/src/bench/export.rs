//! The `export` scenario: a segment of every profile exported over HTTP as a channel would take it.
//! `--customers` customers each send an identify (user id, email, phone, city; every other one grants
//! `sms:marketing` in `context.consent`) and an order; a segment "everyone with a city" is defined
//! first. Once the service's resolver has applied every event, two exports are streamed from
//! `GET /v1/segments/{id}/members`: CSV with `fields=` (phone, e-mail, city, a computed trait) and CSV
//! with `channel=sms` (the consenting members with a phone). Each is timed (members/s), and the live
//! heap's peak growth over the start of the export (`crate::heap`: bytes allocated less bytes freed,
//! client and service together) says whether the export streams (constant memory) or gathers; the
//! resident memory's peak growth is reported beside it, but it also moves with what mimalloc gave
//! back to the system after the catch-up and faults in again.
//! Verified: every member exported once with its phone, and exactly the consenting half on `sms`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::segments::SegmentDef;
use serde_json::json;

use super::freshness::{bootstrapped, start};
use super::ingest_http::stop;
use super::memory::{append_customers, messages};
use super::profile_read::wait_until_resolved;
use super::replay::{definitions, resident_bytes, WORKSPACE};
use super::report::{Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "export";
const SEGMENT: &str = "everyone";

/// Customer `i`'s identify (with its SMS choice: granted for even `i`) and order.
fn with_consent(i: usize, seed: u64) -> [String; 2] {
    let [identify, order] = messages(i, seed);
    let mut identify: serde_json::Value =
        serde_json::from_str(&identify).expect("a generated message is JSON");
    identify["context"] =
        json!({"consent": {"categoryPreferences": {"sms:marketing": i & 1 == 0}}});
    [identify.to_string(), order]
}

fn catalog() -> anyhow::Result<Vec<CatalogCommand>> {
    let mut commands = definitions()?;
    let segment = json!({"name": "Everyone with a city",
                         "condition": {"trait": "city", "op": "is_set"}});
    commands.push(CatalogCommand::PutSegment {
        id: SEGMENT.into(),
        definition: SegmentDef::parse(&segment)
            .context("segment everyone")?
            .to_json(),
        actor: "bench".into(),
    });
    Ok(commands)
}

/// One export streamed: its members, seconds and the process's peak resident growth meanwhile.
struct Streamed {
    members: u64,
    seconds: f64,
    /// The live heap's peak growth (client and service: one process).
    heap_growth: Option<u64>,
    /// The resident memory's (what the allocator keeps and faults in again counts too).
    peak_growth: Option<u64>,
    bytes: u64,
    phones: u64,
}

pub async fn run(backend: &Backend, customers: usize, seed: u64) -> anyhow::Result<Outcome> {
    ensure!(customers > 0, "--customers must be at least 1");
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, customers, seed).await;
    let removed = fresh.remove().await;
    let (all, sms) = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;
    let row = |scenario: &'static str, s: &Streamed| Row {
        scenario,
        backend: backend.name(),
        count: s.members,
        unit: "members",
        seconds: s.seconds,
        rate: s.members as f64 / s.seconds,
        p50: None,
        p99: None,
        reference_rate: None,
    };
    let mb = |g: Option<u64>| g.map_or("?".to_owned(), |g| format!("{:.1}", g as f64 / 1e6));
    let summary = format!(
        "{NAME} on {backend}: segment \"{SEGMENT}\" of {members} members streamed as CSV over HTTP: \
         with fields=profile_id,phone,email,traits.city,computed_traits.spend_30d in {all_s:.1} s \
         ({all_mb} MB of CSV; the live heap peaked {all_heap} MB above its start, the resident \
         memory {all_peak} MB), with channel=sms ({sms} consenting members, each with its phone) in \
         {sms_s:.1} s (heap peak {sms_heap} MB above its start, resident {sms_peak} MB). Verified: every member once, each with its phone (but customer \
         0's, a known test number), the SMS export exactly the members with a phone who granted \
         sms:marketing.",
        backend = backend.name(),
        members = thousands(all.members),
        all_s = all.seconds,
        all_mb = all.bytes / 1_000_000,
        all_heap = mb(all.heap_growth),
        all_peak = mb(all.peak_growth),
        sms = thousands(sms.members),
        sms_s = sms.seconds,
        sms_heap = mb(sms.heap_growth),
        sms_peak = mb(sms.peak_growth),
    );
    Ok(Outcome {
        rows: vec![row(NAME, &all), row("export-sms", &sms)],
        summary,
    })
}

async fn measure(
    fresh: &FreshStore,
    customers: usize,
    seed: u64,
) -> anyhow::Result<(Streamed, Streamed)> {
    let (config, _, token) = bootstrapped(fresh);
    let (state, base, server) = start(config).await?;
    let outcome = async {
        let events =
            append_customers(&state.store, &catalog()?, customers, seed, with_consent).await?;
        wait_until_resolved(&state, events).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3_600))
            .build()
            .context("failed to build the HTTP client")?;
        // The audience index is built in the background once the resolver has caught up: wait for
        // it, so that its memory is not counted as the export's.
        index_built(&state, customers as u64).await?;
        let url = format!("{base}/v1/segments/{SEGMENT}/members?format=csv");
        let fields = "profile_id,phone,email,traits.city,computed_traits.spend_30d";
        let all = stream(
            &client,
            &format!("{url}&fields={fields}"),
            &token,
            customers,
        )
        .await?;
        // Customer 0's phone, 13800000000, is a known test number: not an identifier.
        let with_phone = |n: u64| n.saturating_sub(1);
        ensure!(
            all.members == customers as u64 && all.phones == with_phone(all.members),
            "the export gave {} members ({} with a phone) of {customers}",
            all.members,
            all.phones
        );
        let sms = stream(&client, &format!("{url}&channel=sms"), &token, customers).await?;
        let consenting = with_phone(customers.div_ceil(2) as u64);
        ensure!(
            sms.members == consenting && sms.phones == consenting,
            "the SMS export gave {} members ({} with a phone); {consenting} with a phone granted \
             sms:marketing",
            sms.members,
            sms.phones
        );
        Ok((all, sms))
    }
    .await;
    stop(server, state).await?;
    outcome
}

/// Streams one CSV export of at most `expected` members: counts its members (each profile once) and
/// the phones among its cells, reading the process's resident memory at every chunk (the client's
/// own record of the ids is allocated and touched before, so it is not counted as growth).
async fn stream(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    expected: usize,
) -> anyhow::Result<Streamed> {
    let mut ids: Vec<u64> = Vec::with_capacity(expected);
    ids.resize(expected, u64::MAX);
    let growth = crate::heap::Growth::open();
    let before = resident_bytes();
    let mut peak = before;
    let started = Instant::now();
    let mut response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("GET {url} failed"))?;
    ensure!(
        response.status().is_success(),
        "GET {url} answered {}",
        response.status()
    );
    let mut bytes = 0u64;
    let mut pending: Vec<u8> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let (mut members, mut phones) = (0u64, 0u64);
    let mut header: Option<Vec<String>> = None;
    while let Some(chunk) = response
        .chunk()
        .await
        .context("reading the export failed")?
    {
        bytes += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let complete: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8(complete).context("the export is not UTF-8")?;
            lines.extend(text.lines().map(str::to_owned));
        }
        for line in lines.drain(..) {
            let cells: Vec<String> = line.split(',').map(str::to_owned).collect();
            let Some(names) = &header else {
                header = Some(cells);
                continue;
            };
            let at = |name: &str| names.iter().position(|n| n == name);
            let id = at("profile_id").and_then(|i| cells.get(i)).cloned();
            let id = id.context("an export line has no profile_id")?;
            let slot = ids
                .get_mut(members as usize)
                .with_context(|| format!("the export gave more than {expected} members"))?;
            *slot = hash(&id);
            members += 1;
            let phone = at("phone").or_else(|| at("address"));
            if phone
                .and_then(|i| cells.get(i))
                .is_some_and(|p| p.len() >= 11)
            {
                phones += 1;
            }
        }
        if let (Some(now), Some(p)) = (resident_bytes(), peak) {
            peak = Some(p.max(now));
        }
    }
    ensure!(pending.is_empty(), "the export ended inside a line");
    let seconds = started.elapsed().as_secs_f64();
    let heap_growth = growth.as_ref().map(crate::heap::Growth::peak);
    drop(growth);
    let peak_growth = peak.zip(before).map(|(p, b)| p.saturating_sub(b));
    ids.truncate(members as usize);
    ids.sort_unstable();
    let distinct = {
        let mut d = ids.clone();
        d.dedup();
        d.len()
    };
    ensure!(
        distinct == ids.len(),
        "{} members were exported more than once",
        ids.len() - distinct
    );
    Ok(Streamed {
        members,
        seconds,
        heap_growth,
        peak_growth,
        bytes,
        phones,
    })
}

/// Waits until the service's background builder has read the workspace's index whole with all its
/// `profiles` (it builds once the resolver has caught up).
async fn index_built(state: &cdp_api::AppState, profiles: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let status = state.audiences.status();
        let built = status.built.get(WORKSPACE).map(|b| b.profiles);
        if status.building.is_none() && built == Some(profiles) {
            return Ok(());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(3_600),
            "the audience index was not built within an hour ({built:?} of {profiles} profiles)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hash(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}
