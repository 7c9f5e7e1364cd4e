//! `cdp replay rebuild`: the resolver's whole read model (identity decisions, profiles, computed traits,
//! tags, segments and their history) rebuilt from the log into shadow tables while the service keeps
//! serving the old ones, then switched in atomically once caught up with the live resolver.
//!
//! The shadow is a second SQLite database next to the live one, whose connections attach the live one
//! (unqualified names find the shadow's model tables first and the log in the live database), or a
//! PostgreSQL schema first on the search path. The resolver runs there unchanged — the same handlers as
//! live processing — and never passes the live resolver's checkpoint. At the switch the live resolver
//! is held (SQLite: the write lock; PostgreSQL: its checkpoint row), the shadow catches up to exactly
//! its position, and every model table is replaced by the shadow's in one transaction. The outbox is not
//! among them: what the live resolver published up to that position stands, and nothing the rebuild
//! computes is published — this crate cannot reach a publisher (NATS is a dependency of `cdp-api` only,
//! checked by the tidy test). Interrupted, a rebuild resumes from the shadow's own checkpoint.

mod shadow;
mod slices;
mod sql;
mod switch;

#[cfg(test)]
pub(crate) use shadow::kept_while_written;
use shadow::{build_deferred_indexes, shadow_path, shadow_store_sqlite, Shadow};

use std::path::PathBuf;
use std::time::Instant;

use cdp_domain::event::Position;
use cdp_domain::identity::ProfileId;
use cdp_domain::store::sql::{query, verbatim};
use cdp_domain::store::{EventStore, PostgresStore, SqliteStore, Store};
use cdp_projections::catalog::tag_of;
use cdp_projections::evaluation::derive::{membership_change, tag_change};
use cdp_projections::identity::{IdentityResolver, WARM_AT_MOST};
use cdp_projections::model_tx::{record_version, ModelTx};
use cdp_projections::partitions::Part;
use cdp_projections::pipeline::{drive_grouped, Committed};
use cdp_projections::projection::parts_pattern;
use cdp_projections::runner::{checkpoint, run_once_through, Projection, ProjectionError};
use cdp_projections::stages::StageWrites;
use sqlx::Connection;

pub use cdp_projections::model_tx::built_version;
pub use slices::{largest_slice, slices_for};

/// The PostgreSQL schema of a rebuild in progress.
pub const SHADOW_SCHEMA: &str = sql::SHADOW_SCHEMA;
/// The SQLite database of a rebuild in progress, next to the live one.
pub const SHADOW_FILE: &str = "cdp-rebuild.db";

/// The resolver's read model, rebuilt together — `identity_rules` too: the rules in force are put there
/// by the resolver as it decides the log's rules commands, so the shadow starts with none (Segment's
/// defaults) and meets each change in its place. Not the outbox (see the module's documentation).
pub const MODEL_TABLES: &[&str] = &[
    "identity_rules",
    "identity_events",
    "profiles",
    "event_profiles",
    "identifier_owners",
    "profile_aliases",
    "definitions",
    "catalog_jobs",
    "profile_tags",
    "profile_spend",
    "profile_due",
    "rfm_thresholds",
    "segment_members",
    "segment_history",
];

/// The model tables whose rows the switch does not replace with the shadow's; see below.
const RECONCILED_TABLES: &[&str] = &["profile_tags", "segment_members", "segment_history"];

/// The model tables whose rows the switch replaces with the shadow's: all but [`RECONCILED_TABLES`].
fn replaced_tables() -> impl Iterator<Item = &'static str> {
    MODEL_TABLES
        .iter()
        .copied()
        .filter(|t| !RECONCILED_TABLES.contains(t))
}
// `profile_tags` and `segment_members` are reconciled instead: a tag or membership the rebuild agrees
// with keeps its row (its time and cause: what subscribers were told); one it does not is changed
// like any other change — the row, an enter or exit in `segment_history`, a message in the outbox
// (cause `rebuild`). `segment_history`, like the outbox, is the record of what was published and only
// grows. A rebuild by the same code changes none of them.

/// The cause of the changes a switch makes.
pub const REBUILD_CAUSE: &str = "rebuild";

/// The shadow resolver's own bookkeeping: in the shadow so that it never touches the live one's, and
/// never switched.
const SHADOW_BOOKKEEPING: &[&str] = &["projection_checkpoints", "projection_tokens", "outbox"];

/// Events a rebuild reads and prepares at a time (the live resolver's batch). Small, so that the writer
/// starts after the first batch instead of after a long one, and the fold and the writes overlap from
/// the start; large writes come from the groups ([`REBUILD_GROUP`]): a profile touched by many events
/// of the history is written once per commit, not once per batch. A batch holds its events parsed in
/// memory: ~5 KB each for a retail event.
pub const REBUILD_BATCH: u32 = 10_000;

/// Events a rebuild may prepare ahead of its writer (waiting in memory): when the fold runs ahead, the
/// writer's next commit takes them all, and a profile's state, tags, segments, spend and due time are
/// written once per commit, not once per batch.
pub const REBUILD_GROUP: usize = 400_000;

/// What a rebuild holds in memory, for its estimate: a profile's state (BENCHMARKS.md, memory) and what
/// its deferred rows take until they are written (a key, a cause, its identifiers' holders), an event
/// parsed in a batch being prepared, and an event's prepared writes waiting for their commit.
const BYTES_PER_PROFILE: u64 = 2_000 + 400;
/// What a profile held decoded while the rebuild defers takes beyond its binary form (up to
/// `WARM_AT_MOST` profiles; BENCHMARKS.md, the ninth step).
const BYTES_PER_WARM_PROFILE: u64 = 2_000;
const BYTES_PER_PARSED_EVENT: u64 = 5_000;
const BYTES_PER_PREPARED_EVENT: u64 = 400;

/// What a rebuild of a model with `profiles` profiles holds in memory at most, in bytes, when a
/// resolver holds up to `held` profiles' states (the others are read back from the shadow when
/// touched, slower but in the same memory).
pub fn memory_needed(profiles: u64, held: u64) -> u64 {
    profiles.min(held) * BYTES_PER_PROFILE
        + profiles.min(held).min(WARM_AT_MOST as u64) * BYTES_PER_WARM_PROFILE
        + 2 * u64::from(REBUILD_BATCH) * BYTES_PER_PARSED_EVENT
        + REBUILD_GROUP as u64 * BYTES_PER_PREPARED_EVENT
}

/// How often (100 ms apart) a rebuild asks for the lock before it reports another one running.
const LOCK_TRIES: usize = 20;

/// An arbitrary constant: the PostgreSQL advisory lock that keeps two rebuilds from sharing a shadow.
const REBUILD_LOCK: i64 = 0x0cdb_5eb1;

/// Where a rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Following the log behind the live resolver.
    CatchingUp,
    /// The live resolver is held; the last events and the table switch.
    Switching,
    /// Switched; the shadow is dropped.
    Done,
}

/// What a rebuild reports as it goes.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    pub phase: Phase,
    /// Events the shadow applied in this run.
    pub applied: u64,
    /// The shadow's position in the log (sequence).
    pub position: i64,
    /// The live resolver's position, which the shadow catches up to.
    pub target: i64,
    /// Where the shadow started in this run (0 unless it resumed an interrupted rebuild).
    pub resumed_from: i64,
    /// The profiles of the live model, and the memory the rebuild will hold at most ([`memory_needed`]
    /// of its largest slice; the identity graphs of the slices done stay in memory beside it, not
    /// counted).
    pub profiles: u64,
    pub memory_bytes: u64,
    /// The slice being rebuilt (from 1) of how many: a model with more profiles than the resolver may
    /// hold is rebuilt in slices of workspaces, one after the other (`rebuild/slices.rs`).
    pub slice: u32,
    pub slices: u32,
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// Events applied by this run (not counting those of an interrupted run it resumed).
    pub applied: u64,
    pub resumed_from: Position,
    /// The log position the switched model reflects.
    pub through: Position,
    /// Rows of the switched model.
    pub rows: u64,
    pub seconds: f64,
}

/// A rebuild in progress, as `cdp replay status` shows it.
#[derive(Debug, Clone, Copy)]
pub struct ShadowStatus {
    pub position: Position,
    pub version: i64,
    pub started_at_ms: i64,
}

/// Rebuilds the resolver's read model with a resolver on the wall clock; see [`rebuild_with`].
pub async fn rebuild(
    store: &Store,
    on_progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    rebuild_with(store, &IdentityResolver::default(), on_progress).await
}

/// Rebuilds the resolver's read model from the log with `resolver` (a fresh one: its in-memory state is
/// the shadow's), resuming an interrupted rebuild of the same code version, and switches to it. A
/// profile erased while the shadow was built may have been rebuilt from events that could still be
/// read then: the switch sees the erasure (under the same lock) and the rebuild starts over.
pub async fn rebuild_with(
    store: &Store,
    resolver: &IdentityResolver,
    on_progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    let sizes = Sizes {
        batch: REBUILD_BATCH,
        group: REBUILD_GROUP,
    };
    rebuild_sized(store, resolver, sizes, on_progress).await
}

/// The events of a rebuild's batches and of its commits' groups.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub batch: u32,
    pub group: usize,
}

/// [`rebuild_with`] in batches and groups of other sizes (tests cut small logs in many).
pub async fn rebuild_sized(
    store: &Store,
    resolver: &IdentityResolver,
    sizes: Sizes,
    on_progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    loop {
        match rebuild_once(store, resolver, sizes, on_progress).await {
            Err(ProjectionError::Stale(why)) => {
                tracing::info!(why, "rebuild: starting over");
                let shadow = Shadow::open(store, resolver.version()).await?;
                shadow.drop_it(store).await?;
            }
            done => return done,
        }
    }
}

fn erased_meanwhile() -> ProjectionError {
    ProjectionError::Stale("a profile was erased while the shadow was built".into())
}

#[tracing::instrument(name = "rebuild", skip_all)]
async fn rebuild_once(
    store: &Store,
    resolver: &IdentityResolver,
    sizes: Sizes,
    on_progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<RebuildReport, ProjectionError> {
    let started = Instant::now();
    let mut shadow = Shadow::open(store, resolver.version()).await?;
    let resumed_from = checkpoint(&shadow.store, IdentityResolver::NAME).await?;
    let mut progress = RebuildProgress {
        phase: Phase::CatchingUp,
        applied: 0,
        position: resumed_from.seq,
        target: checkpoint(store, IdentityResolver::NAME).await?.seq,
        resumed_from: resumed_from.seq,
        profiles: 0,
        memory_bytes: 0,
        slice: 1,
        slices: 1,
    };
    let counts = cdp_projections::profiles::count_by_workspace(store).await?;
    let held = resolver.held_bound() as u64;
    progress.profiles = counts.iter().map(|c| c.1).sum();
    // Cut into slices when the model's profiles are more than the resolver may hold; an interrupted
    // rebuild keeps the slices it started with.
    progress.slices = match slices::stored_slices(&shadow.store).await? {
        Some(count) => count,
        None => slices::slices_for(&counts, held),
    };
    progress.memory_bytes = memory_needed(slices::largest_slice(&counts, progress.slices), held);
    tracing::info!(
        profiles = progress.profiles,
        held,
        slices = progress.slices,
        memory_mb = progress.memory_bytes / 1_000_000,
        "rebuild: the memory it will hold at most"
    );
    on_progress(&progress);
    // One shadow resolver a slice, each with a state of its own; the shadow publishes nothing (see
    // the module's documentation): it writes no outbox and no membership history either.
    let parts: Vec<IdentityResolver> = if progress.slices <= 1 {
        vec![resolver.without_output()]
    } else {
        Part::all(progress.slices)
            .into_iter()
            .map(|part| resolver.without_output().in_part(part))
            .collect()
    };
    for (i, part) in parts.iter().enumerate() {
        progress.slice = i as u32 + 1;
        if i > 0 {
            // A slice begins: it reads the log from its own checkpoint.
            progress.position = checkpoint(&shadow.store, part.name()).await?.seq;
            on_progress(&progress);
        }
        // Behind the live resolver, never past it: what it has not applied yet it will apply itself.
        loop {
            let target = checkpoint(store, IdentityResolver::NAME).await?;
            progress.target = target.seq;
            let mut committed = |c: &Committed| {
                progress.applied += c.progress.applied as u64;
                progress.position = c.progress.position.seq;
                on_progress(&progress);
            };
            let applied = drive_grouped(
                &shadow.store,
                part,
                sizes.batch,
                sizes.group,
                target,
                &mut committed,
                None,
            )
            .await?;
            if applied == 0 {
                break;
            }
        }
        // What the slice's plain batches left to write, written once for every profile.
        part.flush(&shadow.store).await?;
        if parts.len() > 1 {
            // The next slice has the memory; this one's graphs stay for the switch.
            part.release_profiles();
        }
    }
    // The indexes left out while the shadow was written, built over its rows at once.
    if let Some((lock, _)) = &mut shadow.postgres {
        build_deferred_indexes(lock).await?;
    }
    progress.phase = Phase::Switching;
    on_progress(&progress);
    let (through, rows, applied) = match (store, &shadow.store) {
        (Store::Sqlite(live), Store::Sqlite(_)) => {
            switch::switch_sqlite(live, &shadow, &parts).await?
        }
        (Store::Postgres(live), Store::Postgres(_)) => {
            switch::switch_postgres(live, &shadow, &parts).await?
        }
        _ => unreachable!("the shadow is on the live store's backend"),
    };
    progress.applied += applied;
    progress.position = through.seq;
    progress.target = through.seq;
    shadow.drop_it(store).await?;
    progress.phase = Phase::Done;
    on_progress(&progress);
    tracing::info!(
        applied = progress.applied,
        through = through.seq,
        rows,
        "rebuild: switched to the rebuilt model"
    );
    Ok(RebuildReport {
        applied: progress.applied,
        resumed_from,
        through,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// At start: rebuilds the resolver's model when the code declares another version than the one that
/// built it, or when a rebuild was interrupted (it resumes). `None` when nothing was to do.
pub async fn rebuild_if_outdated(
    store: &Store,
    resolver: &IdentityResolver,
    on_progress: &(dyn Fn(&RebuildProgress) + Send + Sync),
) -> Result<Option<RebuildReport>, ProjectionError> {
    if !needs_rebuild(store, resolver).await? {
        return Ok(None);
    }
    Ok(Some(rebuild_with(store, resolver, on_progress).await?))
}

/// Whether the stored model was built by another code version than `resolver`'s or a rebuild was
/// interrupted. An empty log is recorded as built by this version at once. `serve` asks before it
/// accepts traffic, so that events ingested right after the start never make a current model look
/// outdated.
pub async fn needs_rebuild(
    store: &Store,
    resolver: &IdentityResolver,
) -> Result<bool, ProjectionError> {
    let built = built_version(store, IdentityResolver::NAME).await?;
    let interrupted = shadow_status(store).await?.is_some();
    if built == resolver.version() && !interrupted {
        return Ok(false);
    }
    if !interrupted && store.read_after(Position::START, 1).await?.is_empty() {
        // An empty log: the (empty) model is this version's already.
        record_version(store, IdentityResolver::NAME, resolver.version()).await?;
        return Ok(false);
    }
    tracing::info!(
        built,
        code = resolver.version(),
        interrupted,
        "rebuilding the resolver's model from the log while serving the current one"
    );
    Ok(true)
}

/// The rebuild in progress (or interrupted), if any.
pub async fn shadow_status(store: &Store) -> Result<Option<ShadowStatus>, ProjectionError> {
    /// Two numbers of a row: (version, started_at) or (tx, seq).
    type Pair = Option<(i64, i64)>;
    let (meta, at): (Pair, Pair) = match store {
        Store::Sqlite(s) => {
            let path = shadow_path(s).await?;
            if !path.exists() {
                return Ok(None);
            }
            let shadow = shadow_store_sqlite(s).await?;
            let has_meta: Option<String> = query(sql::SQLITE_HAS_META)
                .scalar_optional(shadow.reader())
                .await?;
            if has_meta.is_none() {
                return Ok(None);
            }
            let meta = query(sql::SQLITE_META)
                .fetch_optional(shadow.reader())
                .await?;
            let at = query(sql::SQLITE_SHADOW_CHECKPOINT)
                .bind(parts_pattern())
                .fetch_optional(shadow.reader())
                .await?;
            (meta, at)
        }
        Store::Postgres(_) => {
            let exists: Option<String> = verbatim(sql::POSTGRES_TABLE_EXISTS)
                .bind(sql::POSTGRES_META_TABLE)
                .scalar(store.reader())
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let meta = verbatim(sql::POSTGRES_META)
                .fetch_optional(store.reader())
                .await?;
            let at = verbatim(sql::POSTGRES_SHADOW_CHECKPOINT)
                .bind(parts_pattern())
                .fetch_optional(store.reader())
                .await?;
            (meta, at)
        }
    };
    Ok(meta.map(|(version, started_at_ms)| ShadowStatus {
        position: at.map_or(Position::START, |(tx, seq)| Position { tx, seq }),
        version,
        started_at_ms,
    }))
}
