//! The `memory` scenario: what the resolver costs in memory per profile it holds, and in storage per
//! profile. `--customers` customers each send an identify (user id, email, phone, city) and one order
//! with two line items; the replay scenario's catalog (two computed traits, a tag, a segment) is defined
//! first. A new live resolver catches up on the log; the process's resident memory before and after,
//! divided by the profile states the resolver then holds in memory (at most its cache bound), is the
//! figure; the stored bytes per profile are the binary states' total over the profiles. Then the
//! workspace's audience index (`cdp_projections::audience`) is built from the tables: its bytes per
//! profile (its own count of what it holds) and the process's growth meanwhile.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use cdp_api::ingest;
use cdp_api::operate::command_event;
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::{EventStore, Store};
use cdp_projections::identity::IdentityResolver;
use cdp_projections::runner;
use chrono::Utc;
use serde_json::{json, Value};

use super::ingest_http::close;
use super::replay::{definitions, resident_bytes, stored_state_bytes, WORKSPACE};
use super::report::{Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "memory";
/// Customers whose messages are generated and appended at a time (the log is never whole in memory).
const CHUNK: usize = 5_000;

/// An identify and an order of customer `i`.
pub(super) fn messages(i: usize, seed: u64) -> [String; 2] {
    let user = format!("m{seed}-{i:08}");
    let city = ["Shanghai", "Beijing", "Hangzhou", "Shenzhen"][i % 4];
    let category = ["shoes", "bags", "tea"][i % 3];
    let identify = json!({
        "type": "identify", "messageId": format!("{user}-id"), "userId": user,
        "traits": {"email": format!("{user}@example.cn"), "phone": format!("138{i:08}"),
                   "city": city},
    });
    let total = 80 + (i * 37) % 900;
    let order = json!({
        "type": "track", "event": "Order Completed", "messageId": format!("{user}-order"), "userId": user,
        "properties": {"order_id": format!("o-{user}"), "total": total,
            "products": [{"sku": "s1", "category": category, "price": total - 30, "quantity": 1},
                         {"sku": "s2", "category": "socks", "price": 30, "quantity": 1}]},
    });
    [identify.to_string(), order.to_string()]
}

/// Runs the scenario on `backend` with `customers` customers.
pub async fn run(backend: &Backend, customers: usize, seed: u64) -> anyhow::Result<Outcome> {
    ensure!(customers > 0, "--customers must be at least 1");
    let fresh = FreshStore::create(backend).await?;
    let measured = async {
        let store = fresh.open().await?;
        let measured = measure(&store, customers, seed).await;
        close(&store).await;
        measured
    }
    .await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;
    let per_held = m.grew.map(|g| g / m.held.max(1) as u64);
    let row = Row {
        scenario: NAME,
        backend: backend.name(),
        count: m.profiles,
        unit: "profiles",
        seconds: m.seconds,
        rate: m.profiles as f64 / m.seconds,
        p50: None,
        p99: None,
        reference_rate: None,
    };
    let summary = format!(
        "{NAME} on {backend}: {profiles} profiles ({events} events: an identify and an order each, the \
         replay scenario's catalog) resolved by a new live resolver in {secs:.1} s; it then held {held} \
         profile states in memory and the process had grown by {grew} bytes = {per_held} bytes per profile \
         held (goal ≤ 2,048 at 1M profiles; the growth counts everything the process kept, the log \
         reader's and the database driver's buffers included). Stored: {stored} bytes of binary state per \
         profile. The audience index, built from the tables in {index_secs:.1} s: {index_bytes} bytes per \
         profile (the index's own count), the process grew by {index_grew} bytes per profile meanwhile.",
        backend = backend.name(),
        profiles = thousands(m.profiles),
        events = thousands(m.events),
        secs = m.seconds,
        held = thousands(m.held as u64),
        grew = m.grew.map_or("?".to_owned(), thousands),
        per_held = per_held.map_or("?".to_owned(), thousands),
        stored = thousands(m.stored / m.profiles.max(1)),
        index_secs = m.index_seconds,
        index_bytes = thousands(m.index_bytes / m.profiles.max(1)),
        index_grew = m
            .index_grew
            .map_or("?".to_owned(), |g| thousands(g / m.profiles.max(1))),
    );
    Ok(Outcome {
        rows: vec![row],
        summary,
    })
}

struct Measured {
    profiles: u64,
    events: u64,
    seconds: f64,
    held: usize,
    grew: Option<u64>,
    stored: u64,
    index_seconds: f64,
    index_bytes: u64,
    index_grew: Option<u64>,
}

/// Appends the catalog `commands`, then `customers` customers' messages (`message(i, seed)`), a chunk
/// at a time, checked as ingestion checks them; returns the events appended.
pub(super) async fn append_customers<const N: usize>(
    store: &Store,
    commands: &[CatalogCommand],
    customers: usize,
    seed: u64,
    message: impl Fn(usize, u64) -> [String; N],
) -> anyhow::Result<u64> {
    store.ensure_workspace(WORKSPACE).await?;
    let workspace = WorkspaceId::parse(WORKSPACE)?;
    let commands: Vec<_> = commands
        .iter()
        .map(|c| command_event(&workspace, c.name(), c))
        .collect();
    store.append(&commands).await?;
    let mut events = commands.len() as u64;
    let sent_at = Value::String(cdp_domain::message::rfc3339(Utc::now()));
    for start in (0..customers).step_by(CHUNK) {
        let raw: Vec<String> = (start..(start + CHUNK).min(customers))
            .flat_map(|i| message(i, seed))
            .collect();
        let checked = ingest::check(
            &workspace,
            Default::default(),
            raw.iter().map(String::as_str),
            Some(&sent_at),
            None,
            Utc::now(),
        );
        if let Some(r) = checked.rejected.first() {
            anyhow::bail!("the generated message {} was refused: {}", r.raw, r.error);
        }
        let report = store.append(&checked.events).await?;
        ensure!(report.inserted == checked.events.len() as u64);
        events += report.inserted;
    }
    Ok(events)
}

async fn measure(store: &Store, customers: usize, seed: u64) -> anyhow::Result<Measured> {
    let events = append_customers(store, &definitions()?, customers, seed, messages).await?;
    let now = Utc::now();
    let resolver = IdentityResolver::with_clock(Arc::new(move || now));
    let before = resident_bytes();
    let started = Instant::now();
    let applied = runner::catch_up(store, &resolver)
        .await
        .context("the live resolver failed")?;
    let seconds = started.elapsed().as_secs_f64();
    let after = resident_bytes();
    ensure!(
        applied == events,
        "the resolver applied {applied} of {events} events"
    );
    let profiles = cdp_projections::profiles::count_all(store).await?;
    ensure!(
        profiles as usize == customers,
        "{profiles} profiles for {customers} customers"
    );
    let held = resolver.held_profiles();
    let audiences = cdp_projections::audience::Audiences::default();
    let before_index = resident_bytes();
    let started = Instant::now();
    let workspace = WorkspaceId::parse(WORKSPACE)?;
    audiences.build(store, &workspace, now).await?;
    let (slot, _) = audiences
        .current(store, &workspace, now)
        .await?
        .context("the audience index just built is not current")?;
    let index_seconds = started.elapsed().as_secs_f64();
    let indexed = slot.index().map_or(0, |i| i.profiles());
    ensure!(
        indexed == profiles as u64,
        "the audience index holds {indexed} of {profiles} profiles"
    );
    let index_bytes = slot.index().map_or(0, |i| i.heap_bytes()) as u64;
    let after_index = resident_bytes();
    Ok(Measured {
        profiles: profiles as u64,
        events,
        seconds,
        held,
        grew: after.zip(before).map(|(a, b)| a.saturating_sub(b)),
        stored: stored_state_bytes(store).await?,
        index_seconds,
        index_bytes,
        index_grew: after_index
            .zip(before_index)
            .map(|(a, b)| a.saturating_sub(b)),
    })
}
