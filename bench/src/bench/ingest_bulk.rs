//! Scenario `ingest-bulk`: `cdp backfill` of a generated POS export (CSV, one order a row, mapped to
//! `Order Completed` tracks with the member number, phone, till time and total) into a fresh store,
//! through the real backfill code (`cdp_replay::backfill`: parse, map, validate, derive ids, batched
//! `EventStore::append`): events/s. The reference, in the same run: the events the backfill stored,
//! loaded raw into a scratch table shaped like `events` (same columns and indexes) — on PostgreSQL one
//! `COPY … FROM STDIN` (text format), on SQLite one transaction of multi-row `INSERT`s — and the ratio.
//!
//! Verified: every row stored once and none refused, the log holds exactly the rows, and a second run
//! (`--restart`: every row read again) stores nothing new and finds every row already present.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use cdp_domain::event::{to_millis, NewEvent, Position};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::{EventStore, Store};
use cdp_replay::backfill::{backfill, BackfillReport, Format, Mapping, Options, Source};
use chrono::{TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ingest_http::close;
use super::report::{Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "ingest-bulk";
const WORKSPACE: &str = "bench";
/// Rows per batch: the CLI's default.
const BATCH: usize = 5_000;
const MAPPING: &str = "userId=member_no,traits.phone=mobile,event='Order Completed',\
    timestamp=paid_at,properties.order_id=receipt,properties.total=amount:number,\
    properties.items=items:number,properties.store=store";
const STORES: [&str; 6] = [
    "Shanghai Jing'an",
    "Beijing Sanlitun",
    "Shenzhen Futian",
    "Hangzhou West Lake",
    "Chengdu Taikoo Li",
    "Guangzhou Tianhe",
];
const RAW_COLUMNS: &str =
    "workspace, message_id, kind, name, user_id, anonymous_id, event_time, received_at, payload";

/// What one measurement found.
struct Measured {
    first: BackfillReport,
    first_elapsed: Duration,
    second: BackfillReport,
    second_elapsed: Duration,
    raw_elapsed: Duration,
    file_bytes: u64,
}

pub async fn run(backend: &Backend, rows: usize, seed: u64) -> anyhow::Result<Outcome> {
    ensure!(rows > 0, "--events must be at least 1");
    let dir = tempfile::Builder::new()
        .prefix("cdp-bench-bulk-")
        .tempdir()
        .context("failed to create a temporary directory")?;
    let path = dir.path().join("pos-export.csv");
    std::fs::write(&path, pos_export(rows, seed))
        .with_context(|| format!("failed to write {}", path.display()))?;
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, &path, rows).await;
    let removed = fresh.remove().await;
    let m = measured.with_context(|| format!("{NAME} on {} failed", backend.name()))?;
    removed?;

    let count = rows as u64;
    let seconds = m.first_elapsed.as_secs_f64();
    let raw_rate = count as f64 / m.raw_elapsed.as_secs_f64();
    let (raw_name, raw_what) = match backend {
        Backend::Postgres { .. } => (
            "ingest-bulk raw COPY",
            "COPY … FROM STDIN (text) in one statement",
        ),
        Backend::Sqlite => (
            "ingest-bulk raw INSERT",
            "multi-row INSERTs (1,000 rows each) in one transaction",
        ),
    };
    let row = Row {
        scenario: NAME,
        backend: backend.name(),
        count,
        unit: "events",
        seconds,
        rate: count as f64 / seconds,
        p50: None,
        p99: None,
        reference_rate: Some(raw_rate),
    };
    let raw_row = Row {
        scenario: raw_name,
        backend: backend.name(),
        count,
        unit: "rows",
        seconds: m.raw_elapsed.as_secs_f64(),
        rate: raw_rate,
        p50: None,
        p99: None,
        reference_rate: None,
    };
    let summary = format!(
        "{NAME} on {backend}: cdp backfill of a {rows}-row POS export (CSV, {mb:.1} MB, mapped to Order \
         Completed tracks; parsed, validated, ids derived, appended in batches of {BATCH}) in \
         {seconds:.2} s = {rate} events/s; {raw_what} of the same {rows} stored rows into a scratch table \
         shaped like events (same indexes): {raw_s:.2} s = {raw_rate} rows/s; ratio {ratio:.2}. \
         Verified: {stored} stored, none refused, the log holds {rows}; a second run (--restart) read \
         every row again in {second_s:.2} s and stored {again} new ({present} already present).",
        backend = backend.name(),
        rows = thousands(count),
        mb = m.file_bytes as f64 / 1e6,
        rate = thousands(row.rate.round() as u64),
        raw_s = raw_row.seconds,
        raw_rate = thousands(raw_rate.round() as u64),
        ratio = row.ratio().unwrap_or_default(),
        stored = thousands(m.first.progress.stored),
        second_s = m.second_elapsed.as_secs_f64(),
        again = m.second.progress.stored,
        present = thousands(m.second.progress.duplicates),
    );
    dir.close().context("failed to delete the export")?;
    Ok(Outcome {
        rows: vec![row, raw_row],
        summary,
    })
}

async fn measure(
    fresh: &FreshStore,
    path: &std::path::Path,
    rows: usize,
) -> anyhow::Result<Measured> {
    let store = fresh.open().await?;
    let outcome = async {
        store.ensure_workspace(WORKSPACE).await?;
        let source = || -> anyhow::Result<Source> {
            Ok(Source {
                path: path.to_path_buf(),
                format: Format::Csv(Mapping::parse(MAPPING)?),
            })
        };
        let options = |restart| Options {
            batch_size: BATCH,
            restart,
            received_at: Utc::now(),
            phone_region: Default::default(),
        };
        let workspace = WorkspaceId::parse(WORKSPACE)?;
        let started = Instant::now();
        let first = backfill(&store, &workspace, source()?, &options(false), &|_| {}).await?;
        let first_elapsed = started.elapsed();
        let n = rows as u64;
        let p = first.progress;
        ensure!(
            p.rows == n && p.stored == n && p.rejected == 0 && p.duplicates == 0,
            "the backfill read {} rows, stored {}, found {} present and refused {}; expected {n} stored",
            p.rows,
            p.stored,
            p.duplicates,
            p.rejected
        );
        let logged = store.count_events(WORKSPACE).await?;
        ensure!(logged == rows as i64, "the log holds {logged} events, not {rows}");

        let started = Instant::now();
        let second = backfill(&store, &workspace, source()?, &options(true), &|_| {}).await?;
        let second_elapsed = started.elapsed();
        ensure!(
            second.progress.stored == 0 && second.progress.duplicates == n,
            "the second run stored {} and found {} present; expected 0 and {n}",
            second.progress.stored,
            second.progress.duplicates
        );
        ensure!(
            store.count_events(WORKSPACE).await? == rows as i64,
            "the second run changed the log"
        );

        let events = stored_events(&store).await?;
        ensure!(events.len() == rows, "read back {} events, not {rows}", events.len());
        let raw_elapsed = raw_load(&store, &events).await?;
        Ok(Measured {
            first,
            first_elapsed,
            second,
            second_elapsed,
            raw_elapsed,
            file_bytes: std::fs::metadata(path)?.len(),
        })
    }
    .await;
    close(&store).await;
    outcome
}

/// A POS export: one order a row, members with phones, till times over 2024, totals with cents.
fn pos_export(rows: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let members = (rows / 8).max(1);
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 8, 0, 0)
        .single()
        .unwrap_or_default();
    let mut out = String::with_capacity(rows * 110);
    out.push_str("receipt,member_no,mobile,paid_at,amount,items,store\n");
    for i in 0..rows {
        let member = rng.gen_range(0..members);
        let paid_at = start + chrono::Duration::seconds(rng.gen_range(0..365 * 24 * 3600));
        let cents: u32 = rng.gen_range(500..50_000);
        let _ = writeln!(
            out,
            "R{i:09},M{member:07},139{member:08},{},{}.{:02},{},\"{}\"",
            paid_at.format("%Y-%m-%d %H:%M:%S"),
            cents / 100,
            cents % 100,
            rng.gen_range(1..8),
            STORES[rng.gen_range(0..STORES.len())],
        );
    }
    out
}

/// Every event of the log, as stored.
async fn stored_events(store: &Store) -> anyhow::Result<Vec<NewEvent>> {
    let mut out = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_after(after, 10_000).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.position;
        out.extend(page.into_iter().map(|e| e.event));
    }
}

/// Loads the events raw into a scratch table shaped like `events`, timed from the first byte to the
/// commit; the data is encoded before the clock starts.
async fn raw_load(store: &Store, events: &[NewEvent]) -> anyhow::Result<Duration> {
    match store {
        Store::Postgres(s) => {
            sqlx::query(
                "CREATE TABLE bench_raw (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)",
            )
            .execute(s.pool())
            .await?;
            let data = copy_text(events);
            let mut conn = s.pool().acquire().await?;
            let started = Instant::now();
            let mut copy = conn
                .copy_in_raw(&format!("COPY bench_raw ({RAW_COLUMNS}) FROM STDIN"))
                .await?;
            for chunk in data.chunks(1 << 20) {
                copy.send(chunk).await?;
            }
            let copied = copy.finish().await?;
            let elapsed = started.elapsed();
            ensure!(copied == events.len() as u64, "COPY loaded {copied} rows");
            Ok(elapsed)
        }
        Store::Sqlite(s) => {
            sqlx::query(
                "CREATE TABLE bench_raw (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 workspace TEXT NOT NULL, message_id TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, \
                 user_id TEXT, anonymous_id TEXT, event_time INTEGER NOT NULL, \
                 received_at INTEGER NOT NULL, format INTEGER NOT NULL DEFAULT 1, \
                 payload TEXT NOT NULL, UNIQUE (workspace, message_id))",
            )
            .execute(s.write_pool())
            .await?;
            let started = Instant::now();
            let mut tx = s.write_pool().begin().await?;
            let mut loaded = 0;
            for chunk in events.chunks(1_000) {
                let mut q: sqlx::QueryBuilder<sqlx::Sqlite> =
                    sqlx::QueryBuilder::new(format!("INSERT INTO bench_raw ({RAW_COLUMNS}) "));
                q.push_values(chunk, |mut row, e| {
                    row.push_bind(&e.workspace)
                        .push_bind(&e.message_id)
                        .push_bind(e.kind.as_str())
                        .push_bind(&e.name)
                        .push_bind(&e.user_id)
                        .push_bind(&e.anonymous_id)
                        .push_bind(to_millis(e.event_time))
                        .push_bind(to_millis(e.received_at))
                        .push_bind(&e.payload);
                });
                loaded += q.build().execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            let elapsed = started.elapsed();
            ensure!(loaded == events.len() as u64, "INSERT loaded {loaded} rows");
            Ok(elapsed)
        }
    }
}

/// The events in COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_text(events: &[NewEvent]) -> Vec<u8> {
    fn field(out: &mut String, value: Option<&str>) {
        let Some(value) = value else {
            out.push_str("\\N");
            return;
        };
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
    }
    let mut out = String::new();
    for e in events {
        let event_time = to_millis(e.event_time).to_string();
        let received_at = to_millis(e.received_at).to_string();
        let cells = [
            Some(e.workspace.as_str()),
            Some(e.message_id.as_str()),
            Some(e.kind.as_str()),
            e.name.as_deref(),
            e.user_id.as_deref(),
            e.anonymous_id.as_deref(),
            Some(event_time.as_str()),
            Some(received_at.as_str()),
            Some(e.payload.as_str()),
        ];
        for (i, cell) in cells.into_iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            field(&mut out, cell);
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_has_a_header_and_one_line_a_row() {
        let csv = pos_export(50, 7);
        assert_eq!(csv.lines().count(), 51);
        assert!(csv.starts_with("receipt,member_no,mobile,paid_at,amount,items,store\n"));
        assert_eq!(csv, pos_export(50, 7), "deterministic");
    }

    #[test]
    fn copy_text_escapes_what_copy_would_misread() {
        let event = NewEvent {
            workspace: "w".into(),
            message_id: "m".into(),
            kind: cdp_domain::message::MessageKind::Track,
            name: None,
            user_id: Some("a\tb".into()),
            anonymous_id: None,
            event_time: Utc.timestamp_millis_opt(5).unwrap(),
            received_at: Utc.timestamp_millis_opt(6).unwrap(),
            payload: "{\"x\":\"1\\\\n\"}\n".into(),
        };
        let text = String::from_utf8(copy_text(&[event])).unwrap();
        assert_eq!(
            text,
            "w\tm\ttrack\t\\N\ta\\tb\t\\N\t5\t6\t{\"x\":\"1\\\\\\\\n\"}\\n\n"
        );
    }
}
