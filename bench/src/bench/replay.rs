//! Scenario `replay`: how fast `cdp replay rebuild` rebuilds the resolver's whole read model (identity
//! decisions, profiles, computed traits, tags, segments) from the log, against a plain sequential scan
//! of the same log in the same run.
//!
//! The log: the catalog first — [`definitions`]: two computed traits, a rule tag on one of them and a
//! segment on the tag and an event condition, appended as the operator commands `PUT /v1/traits|tags|
//! segments` append — then the workload's events, appended straight into the store with
//! `EventStore::append` (not timed) and resolved live by `runner::catch_up` of a new resolver (timed, in
//! the summary). Defined before the history, the catalog makes every event folded into its profile's
//! trait states and every touched profile's tag and segments evaluated, by the live resolver and by the
//! rebuild alike.
//!
//! Three rows:
//! - `replay-scan`: the reference — every event of the log read in log order through
//!   `EventStore::read_after` in pages of [`PAGE`], each payload parsed as the resolver parses it; the
//!   faster of a scan before and one after the rebuild (the caches are as warm for it as for the rebuild).
//! - `replay-count`: one `SELECT count(*)` and sum of payload lengths over the events, what the database alone
//!   reads per second (for scale; no ratio).
//! - `replay`: `cdp_replay::rebuild::rebuild_with` timed from the call to its return (shadow set up,
//!   caught up, switched in, shadow dropped): events/s, and the ratio to `replay-scan`. The live resolver
//!   and the rebuild's read one fixed clock (the default is the wall clock): a membership's `since` is
//!   when the resolver evaluated it, so only then can the rebuilt rows be compared with the live ones.
//!
//! Verified, or the scenario fails: the rebuild started from the beginning and applied every event of the
//! log (as many as the scan read, and as were appended); it reflects the live resolver's checkpoint
//! exactly; the `profiles` rows (document included) and the `segment_members` rows (`since` and
//! `caused_by` included) are the same before and after, compared as SHA-256 digests of the sorted rows;
//! the segment has members.
//!
//! `CDP_HELD_PROFILES`, when set, bounds the profiles both resolvers hold in memory, as it does for
//! `cdp serve` and `cdp replay rebuild` (default `identity::HELD_PROFILES`). `CDP_BENCH_WORKSPACES=W`
//! appends the workload (and the catalog) once in each of W workspaces, side by side: a model past the
//! bound is then rebuilt in slices of workspaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use cdp_api::operate::command_event;
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::computed::TraitDef;
use cdp_domain::event::{NewEvent, Position};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::segments::SegmentDef;
use cdp_domain::store::{EventStore, Store};
use cdp_domain::tags::TagDef;
use cdp_projections::identity::{Clock, IdentityResolver};
use cdp_projections::runner;
use cdp_replay::rebuild::{rebuild_with, RebuildReport};
use chrono::Utc;
use futures::TryStreamExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::ingest_http::close;
use super::report::{Outcome, Row};
use super::target::{Backend, FreshStore};
use super::workload::Workload;
use crate::numbers::thousands;

pub const NAME: &str = "replay";
/// The scenario of the live resolver's catch-up alone.
pub const RESOLVE: &str = "resolve";
/// The row of the `read_after` scan (the reference of [`NAME`]).
const SCAN: &str = "replay-scan";
/// The row of the bare SQL scan.
const COUNT: &str = "replay-count";
pub(super) const WORKSPACE: &str = "bench";
/// Events per `read_after` page of the reference scan.
const PAGE: u32 = 5_000;
/// The segment of [`definitions`], which must have members after the rebuild.
const SEGMENT: &str = "big_shoppers";
/// The rule tag's threshold on `spend_30d`.
const BIG_SPENDER: f64 = 500.0;
/// Separates the columns of a row in [`digest`] (ASCII unit separator; no column holds it unescaped:
/// documents are hex).
const SEPARATOR: u8 = 0x1f;

/// The catalog of the log, in the order it is defined (a tag after its trait, the segment after its
/// tag), each definition in the canonical form the API stores.
pub(super) fn definitions() -> anyhow::Result<Vec<CatalogCommand>> {
    let actor = || "bench".to_owned();
    let traits = [
        (
            "spend_30d",
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total",
                   "window": "30d"}),
        ),
        (
            "top_category",
            json!({"event": "Order Completed", "function": "most_frequent",
                   "property": "properties.products[].category"}),
        ),
    ];
    let mut commands = Vec::new();
    for (name, definition) in traits {
        let def = TraitDef::parse(&definition).with_context(|| format!("trait {name}"))?;
        commands.push(CatalogCommand::PutTrait {
            name: name.into(),
            definition: def.to_json(),
            actor: actor(),
        });
    }
    let tag = json!({"type": "rule",
                     "condition": {"computed": "spend_30d", "op": "gte", "value": BIG_SPENDER}});
    commands.push(CatalogCommand::PutTag {
        name: "big_spender".into(),
        definition: TagDef::parse(&tag).context("tag big_spender")?.to_json(),
        actor: actor(),
    });
    let segment = json!({
        "name": "Big spenders still shopping",
        "condition": {"all": [
            {"tag": "big_spender", "op": "eq", "value": true},
            {"event": "Product Added", "window": "7d"},
        ]},
    });
    commands.push(CatalogCommand::PutSegment {
        id: SEGMENT.into(),
        definition: SegmentDef::parse(&segment)
            .with_context(|| format!("segment {SEGMENT}"))?
            .to_json(),
        actor: actor(),
    });
    Ok(commands)
}

/// Rows of a table, in a stable order, folded into a SHA-256 digest: equal digests, equal rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableDigest {
    rows: u64,
    sha256: [u8; 32],
}

/// Builds a [`TableDigest`] row by row.
struct Digester {
    rows: u64,
    hasher: Sha256,
}

impl Digester {
    fn new() -> Self {
        Self {
            rows: 0,
            hasher: Sha256::new(),
        }
    }

    /// Adds a row (its columns joined by [`SEPARATOR`]); rows are delimited by their length, so no
    /// two different sequences of rows hash alike by shifting bytes from one row to the next.
    fn add(&mut self, row: &str) {
        self.rows += 1;
        self.hasher.update((row.len() as u64).to_le_bytes());
        self.hasher.update(row.as_bytes());
    }

    fn finish(self) -> TableDigest {
        TableDigest {
            rows: self.rows,
            sha256: self.hasher.finalize().into(),
        }
    }
}

/// The rows a rebuild must leave as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    profiles: TableDigest,
    members: TableDigest,
}

async fn digest(
    store: &Store,
    table: &str,
    columns: &[&str],
    order: &str,
) -> anyhow::Result<TableDigest> {
    // Binary states are compared as hex text (`HEXSTATE`).
    let sql = |chr: &str, hex: &str| {
        let columns: Vec<&str> = columns
            .iter()
            .map(|c| if *c == "HEXSTATE" { hex } else { c })
            .collect();
        let joined = columns.join(&format!(" || {chr}({SEPARATOR}) || "));
        format!("SELECT {joined} FROM {table} ORDER BY {order}")
    };
    let mut digester = Digester::new();
    let failed = || format!("failed to read {table}");
    match store {
        Store::Sqlite(s) => {
            let sql = sql("char", "hex(state)");
            let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(s.read_pool());
            while let Some(row) = rows.try_next().await.with_context(failed)? {
                digester.add(&row);
            }
        }
        Store::Postgres(s) => {
            let sql = sql("chr", "encode(state, 'hex')");
            let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(s.pool());
            while let Some(row) = rows.try_next().await.with_context(failed)? {
                digester.add(&row);
            }
        }
    }
    Ok(digester.finish())
}

async fn model(store: &Store) -> anyhow::Result<Model> {
    Ok(Model {
        profiles: digest(
            store,
            "profiles",
            &["workspace", "profile", "HEXSTATE"],
            "workspace, profile",
        )
        .await?,
        members: digest(
            store,
            "segment_members",
            &[
                "workspace",
                "segment",
                "profile",
                "since",
                "coalesce(caused_by, '')",
            ],
            "workspace, segment, profile",
        )
        .await?,
    })
}

/// What a scan read.
struct Scanned {
    events: u64,
    bytes: u64,
    elapsed: Duration,
}

/// Reads the whole log in order through `read_after`, parsing every payload as the resolver does.
async fn scan(store: &Store) -> anyhow::Result<Scanned> {
    let started = Instant::now();
    let mut after = Position::START;
    let (mut events, mut bytes) = (0u64, 0u64);
    loop {
        let page = store
            .read_after(after, PAGE)
            .await
            .context("read_after failed")?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for stored in &page {
            let payload: Value = serde_json::from_str(&stored.event.payload)
                .with_context(|| format!("the payload at {:?} is not JSON", stored.position))?;
            ensure!(payload.is_object(), "the payload at {:?}", stored.position);
            bytes += stored.event.payload.len() as u64;
        }
        events += page.len() as u64;
    }
    Ok(Scanned {
        events,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// One `count(*)` and the sum of the stored payloads' lengths (plain or sealed) over the events table.
async fn count(store: &Store) -> anyhow::Result<Scanned> {
    let sql = "SELECT count(*), \
               CAST(coalesce(sum(length(payload) + coalesce(length(sealed), 0)), 0) AS BIGINT) \
               FROM events";
    let started = Instant::now();
    let (events, bytes): (i64, i64) = match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_one(s.read_pool()).await,
        Store::Postgres(s) => sqlx::query_as(sql).fetch_one(s.pool()).await,
    }
    .context("failed to count the events")?;
    Ok(Scanned {
        events: events as u64,
        bytes: bytes as u64,
        elapsed: started.elapsed(),
    })
}

/// What the scenario measured and checked on one store.
struct Measured {
    appended: u64,
    live: Duration,
    scan: Scanned,
    count: Scanned,
    rebuild: RebuildReport,
    rebuild_elapsed: Duration,
    model: Model,
    /// The slices the rebuild was cut into (1: whole).
    slices: u32,
}

pub async fn run(backend: &Backend, workload: &Workload) -> anyhow::Result<Outcome> {
    let catalog = definitions()?;
    let fresh = FreshStore::create(backend).await?;
    let measured = async {
        let store = fresh.open().await?;
        let measured = measure(&store, &catalog, workload).await;
        close(&store).await;
        measured
    }
    .await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let row = |scenario, count: u64, elapsed: Duration, reference_rate| Row {
        scenario,
        backend: backend.name(),
        count,
        unit: "events",
        seconds: elapsed.as_secs_f64(),
        rate: count as f64 / elapsed.as_secs_f64(),
        p50: None,
        p99: None,
        reference_rate,
    };
    let scan_row = row(SCAN, m.scan.events, m.scan.elapsed, None);
    let count_row = row(COUNT, m.count.events, m.count.elapsed, None);
    let rebuild_row = row(
        NAME,
        m.rebuild.applied,
        m.rebuild_elapsed,
        Some(scan_row.rate),
    );
    let live_rate = m.appended as f64 / m.live.as_secs_f64();
    let summary = format!(
        "{NAME} on {backend}: rebuilt the resolver's whole model ({traits} computed traits, a tag, a \
         segment defined before the history) from {events} events in {rebuild_s:.2} s = {rebuild_rate} \
         events/s, {ratio:.2} of a read_after scan of the log in the same run ({scan_rate} events/s, \
         {scan_mb:.0} MB of payloads parsed; a bare count(*) reads {count_rate} rows/s); the live \
         resolver had caught up on the same log at {live_rate} events/s. {sliced}The switched model \
         has {rows} rows. Verified: the rebuild started at the beginning and applied every event of the \
         log, reflects the live checkpoint {through}, and left the {profiles} profiles (documents \
         included) and the {members} members of {SEGMENT} as they were (SHA-256 of the sorted rows).",
        backend = backend.name(),
        traits = definitions()?
            .iter()
            .filter(|c| matches!(c, CatalogCommand::PutTrait { .. }))
            .count(),
        events = thousands(m.rebuild.applied),
        rebuild_s = rebuild_row.seconds,
        rebuild_rate = thousands(rebuild_row.rate.round() as u64),
        ratio = rebuild_row.ratio().unwrap_or_default(),
        scan_rate = thousands(scan_row.rate.round() as u64),
        scan_mb = m.scan.bytes as f64 / 1e6,
        count_rate = thousands(count_row.rate.round() as u64),
        live_rate = thousands(live_rate.round() as u64),
        sliced = if m.slices > 1 {
            format!(
                "Rebuilt in {} slices of workspaces (more profiles than the resolver may hold). ",
                m.slices
            )
        } else {
            String::new()
        },
        rows = thousands(m.rebuild.rows),
        through = m.rebuild.through.seq,
        profiles = thousands(m.model.profiles.rows),
        members = thousands(m.model.members.rows),
    );
    Ok(Outcome {
        rows: vec![rebuild_row, scan_row, count_row],
        summary,
    })
}

/// Appends the catalog and the workload's events to the log: how many were stored.
async fn append_log(
    store: &Store,
    catalog: &[CatalogCommand],
    workload: &Workload,
) -> anyhow::Result<u64> {
    let copies = bench_workspaces()?;
    let names: Vec<String> = if copies == 1 {
        vec![WORKSPACE.to_string()]
    } else {
        (0..copies).map(|i| format!("{WORKSPACE}{i}")).collect()
    };
    let mut workspaces = Vec::with_capacity(copies);
    for name in &names {
        store.ensure_workspace(name).await?;
        workspaces.push(WorkspaceId::parse(name)?);
    }
    let commands: Vec<NewEvent> = workspaces
        .iter()
        .flat_map(|w| catalog.iter().map(move |c| command_event(w, c.name(), c)))
        .collect();
    let mut appended = 0u64;
    // Each request once in every workspace, side by side.
    let mut streams: Vec<_> = workspaces
        .iter()
        .map(|w| workload.new_events_each(w))
        .collect();
    let side_by_side = std::iter::from_fn(move || {
        let mut events = Vec::new();
        for stream in &mut streams {
            match stream.next()? {
                Ok(batch) => events.extend(batch),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(events))
    });
    let requests = std::iter::once(Ok(commands)).chain(side_by_side);
    // The requests' events in appends of a few thousand, in order: the log is the same, and setting up
    // 10M events does not wait on 100,000 commits.
    let mut pending: Vec<NewEvent> = Vec::with_capacity(APPEND_EVENTS);
    let mut requests = requests.peekable();
    let mut i = 0usize;
    while let Some(batch) = requests.next() {
        pending.extend(batch?);
        if pending.len() < APPEND_EVENTS && requests.peek().is_some() {
            continue;
        }
        let report = store
            .append(&pending)
            .await
            .with_context(|| format!("append {i} failed"))?;
        ensure!(
            report.inserted == pending.len() as u64,
            "append {i}: {} of {} events inserted",
            report.inserted,
            pending.len()
        );
        appended += report.inserted;
        pending.clear();
        i += 1;
    }
    Ok(appended)
}

/// Events per append while a scenario sets up its log.
const APPEND_EVENTS: usize = 5_000;

/// `CDP_BENCH_WORKSPACES`: in how many workspaces `replay` and `resolve` append the workload, each a
/// copy of it side by side (default 1; a rebuild with more profiles than it may hold is cut into
/// slices of workspaces, `cdp_replay::rebuild`).
fn bench_workspaces() -> anyhow::Result<usize> {
    match std::env::var("CDP_BENCH_WORKSPACES") {
        Ok(n) => {
            let n: usize = n
                .parse()
                .with_context(|| format!("CDP_BENCH_WORKSPACES={n} is not a count"))?;
            ensure!(
                (1..=64).contains(&n),
                "CDP_BENCH_WORKSPACES must be from 1 to 64"
            );
            Ok(n)
        }
        Err(_) => Ok(1),
    }
}

/// A resolver on `clock`, holding at most `CDP_HELD_PROFILES` profiles in memory when that is set.
fn resolver_on(clock: Clock) -> anyhow::Result<IdentityResolver> {
    let resolver = IdentityResolver::with_clock(clock);
    Ok(match std::env::var("CDP_HELD_PROFILES") {
        Ok(bound) => resolver.holding(
            bound
                .parse()
                .with_context(|| format!("CDP_HELD_PROFILES={bound} is not a count of profiles"))?,
        ),
        Err(_) => resolver,
    })
}

/// A new live resolver on `clock` catches up on the whole log, timed; every event must be applied.
async fn live_catch_up(store: &Store, clock: Clock, appended: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let applied = runner::catch_up(store, &resolver_on(clock)?)
        .await
        .context("the live resolver failed")?;
    let live = started.elapsed();
    ensure!(
        applied == appended,
        "the live resolver applied {applied} events but {appended} were appended"
    );
    Ok(live)
}

/// This process's resident memory in bytes (Linux), if it can be read.
pub(super) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The bytes of every stored profile state.
pub(super) async fn stored_state_bytes(store: &Store) -> anyhow::Result<u64> {
    let sql = "SELECT CAST(coalesce(sum(length(state)), 0) AS BIGINT) FROM profiles";
    let bytes: i64 = match store {
        Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.read_pool()).await,
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
    }
    .context("failed to measure the stored states")?;
    Ok(bytes as u64)
}

/// The scenario `resolve`: the live resolver's catch-up against a `read_after` scan of the same log.
pub async fn run_resolve(backend: &Backend, workload: &Workload) -> anyhow::Result<Outcome> {
    let catalog = definitions()?;
    let fresh = FreshStore::create(backend).await?;
    let measured = async {
        let store = fresh.open().await?;
        let measured = async {
            let appended = append_log(&store, &catalog, workload).await?;
            let now = Utc::now();
            let resident_before = resident_bytes();
            let live = live_catch_up(&store, Arc::new(move || now), appended).await?;
            let resident_after = resident_bytes();
            let model = model(&store).await?;
            let stored = stored_state_bytes(&store).await?;
            ensure!(model.profiles.rows > 0, "the live resolver made no profile");
            ensure!(
                model.members.rows > 0,
                "segment {SEGMENT} has no member: the workload does not exercise it"
            );
            let scan = scan(&store).await?;
            ensure!(
                scan.events == appended,
                "the scan read {} events but {appended} were appended",
                scan.events
            );
            let resident = resident_after
                .zip(resident_before)
                .map(|(a, b)| a.saturating_sub(b));
            Ok((appended, live, scan, model, stored, resident))
        }
        .await;
        close(&store).await;
        measured
    }
    .await;
    let removed = fresh.remove().await;
    let (appended, live, scan, model, stored, resident) =
        measured.with_context(|| format!("{RESOLVE} on {} failed", backend.name()))?;
    removed?;
    let scan_rate = scan.events as f64 / scan.elapsed.as_secs_f64();
    let row = Row {
        scenario: RESOLVE,
        backend: backend.name(),
        count: appended,
        unit: "events",
        seconds: live.as_secs_f64(),
        rate: appended as f64 / live.as_secs_f64(),
        p50: None,
        p99: None,
        reference_rate: Some(scan_rate),
    };
    let summary = format!(
        "{RESOLVE} on {backend}: a new live resolver caught up on {events} events (the replay \
         scenario's catalog: 2 computed traits, a tag, a segment, defined before the history) in \
         {secs:.2} s = {rate} events/s, {ratio:.2} of a read_after scan of the same log ({scan_rate} \
         events/s). Stored state: {stored_per} bytes per profile (binary); the process grew by \
         {resident_per} bytes per profile while resolving (resident memory, the profiles held in memory \
         and everything else). Verified: every event applied once; {profiles} profiles, {members} \
         members of {SEGMENT}.",
        stored_per = thousands(stored / model.profiles.rows.max(1)),
        resident_per = resident.map_or("(unknown)".to_owned(), |r| thousands(r / model.profiles.rows.max(1))),
        backend = backend.name(),
        events = thousands(appended),
        secs = row.seconds,
        rate = thousands(row.rate.round() as u64),
        ratio = row.ratio().unwrap_or_default(),
        scan_rate = thousands(scan_rate.round() as u64),
        profiles = thousands(model.profiles.rows),
        members = thousands(model.members.rows),
    );
    Ok(Outcome {
        rows: vec![row],
        summary,
    })
}

async fn measure(
    store: &Store,
    catalog: &[CatalogCommand],
    workload: &Workload,
) -> anyhow::Result<Measured> {
    let appended = append_log(store, catalog, workload).await?;
    // One instant for the live resolver and the rebuild: a segment membership's `since` is the time
    // the resolver evaluated it (as is whatever a window decides), so on the wall clock a rebuild
    // minutes later would rightly differ. Every event is within the hour before it.
    let now = Utc::now();
    let clock: Clock = Arc::new(move || now);
    let live = live_catch_up(store, clock.clone(), appended).await?;
    let checkpoint = runner::checkpoint(store, IdentityResolver::NAME).await?;
    let before = model(store).await?;
    ensure!(
        before.profiles.rows > 0,
        "the live resolver made no profile"
    );
    ensure!(
        before.members.rows > 0,
        "segment {SEGMENT} has no member: the workload does not exercise it"
    );

    let first_scan = scan(store).await?;
    let count = count(store).await?;

    let started = Instant::now();
    let slices = std::sync::atomic::AtomicU32::new(1);
    let rebuild = rebuild_with(store, &resolver_on(clock)?, &|p| {
        slices.fetch_max(p.slices, std::sync::atomic::Ordering::Relaxed);
    })
    .await
    .context("the rebuild failed")?;
    let rebuild_elapsed = started.elapsed();

    let second_scan = scan(store).await?;
    for s in [&first_scan, &second_scan, &count] {
        ensure!(
            s.events == appended,
            "a scan read {} events but {appended} were appended",
            s.events
        );
    }
    ensure!(
        rebuild.resumed_from == Position::START,
        "the rebuild resumed from {:?} instead of starting at the beginning",
        rebuild.resumed_from
    );
    ensure!(
        rebuild.applied == appended,
        "the rebuild applied {} events but the log has {appended}",
        rebuild.applied
    );
    ensure!(
        rebuild.through == checkpoint,
        "the rebuilt model reflects {:?} but the live resolver is at {checkpoint:?}",
        rebuild.through
    );
    let live_now = runner::checkpoint(store, IdentityResolver::NAME).await?;
    ensure!(
        live_now == rebuild.through,
        "the live checkpoint is {live_now:?} after the rebuild, which reflects {:?}",
        rebuild.through
    );
    let after = model(store).await?;
    ensure!(
        after.profiles == before.profiles,
        "the rebuild changed the profiles: {} rows before, {} after, digests differ: {}",
        before.profiles.rows,
        after.profiles.rows,
        after.profiles.sha256 != before.profiles.sha256
    );
    ensure!(
        after.members == before.members,
        "the rebuild changed the members of {SEGMENT}: {} rows before, {} after, digests differ: {}",
        before.members.rows,
        after.members.rows,
        after.members.sha256 != before.members.sha256
    );

    let scan = if second_scan.elapsed < first_scan.elapsed {
        second_scan
    } else {
        first_scan
    };
    Ok(Measured {
        appended,
        live,
        scan,
        count,
        rebuild,
        rebuild_elapsed,
        model: after,
        slices: slices.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_and_defines_before_it_refers() {
        let commands = definitions().unwrap();
        let names: Vec<&str> = commands.iter().map(CatalogCommand::name).collect();
        assert_eq!(
            names,
            ["put_trait", "put_trait", "put_tag", "put_segment"],
            "traits, then the tag on a trait, then the segment on the tag"
        );
        // Stored as the log stores an operator's command.
        let workspace = WorkspaceId::parse(WORKSPACE).unwrap();
        let event = command_event(&workspace, commands[3].name(), &commands[3]);
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        assert!(CatalogCommand::is_catalog(&payload));
        assert_eq!(payload["id"], SEGMENT);
    }

    #[test]
    fn digests_tell_rows_apart() {
        let of = |rows: &[&str]| {
            let mut d = Digester::new();
            for r in rows {
                d.add(r);
            }
            d.finish()
        };
        assert_eq!(of(&["a", "b"]), of(&["a", "b"]));
        assert_eq!(of(&["a", "b"]).rows, 2);
        assert_ne!(of(&["a", "b"]), of(&["b", "a"]));
        assert_ne!(of(&["ab", ""]), of(&["a", "b"]));
        assert_ne!(of(&[]), of(&[""]));
    }
}
