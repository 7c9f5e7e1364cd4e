//! What a projection is: the `Projection` trait, its checkpoint (`checkpoint`, `has_applied`), what a
//! step of it did (`Progress`) and what a running one has done (`RunnerStatus`) — below both the
//! pipeline that drives a projection and the runner that starts it.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::sql::{query, query_each};
use cdp_domain::store::{EventStore, Store};
use chrono::Utc;
use tokio::sync::Notify;

use crate::error::ProjectionError;
use crate::model_sql as sql;
use crate::model_tx::ModelTx;

pub use crate::partitions::{parts_pattern, RESOLVER};

/// A read model built from the log. Handling a batch has two steps so that the write lock (SQLite has
/// one writer for the whole service) is held only while rows are written: `prepare` reads the current
/// model through the pools and computes the new rows; `write` stores them inside the transaction that
/// also moves the checkpoint. The runner guarantees no other batch of the same projection commits between
/// the two.
pub trait Projection: Send + Sync + 'static {
    /// What `prepare` computed and `write` stores.
    type Prepared: Send;

    /// Stable: the checkpoint is stored under it.
    fn name(&self) -> &'static str;

    /// The version of the code that builds the read model (`projection_versions` records the one that
    /// built the stored model). Raise it with a change that makes a model built so far wrong: the next
    /// `cdp serve` rebuilds it from the log while serving the old one (`replay::rebuild`).
    fn version(&self) -> i64 {
        1
    }

    /// Applies a batch of events, in log order, to the current read model, without writing.
    fn prepare(
        &self,
        store: &Store,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<Self::Prepared, ProjectionError>> + Send;

    /// Writes what `prepare` computed, inside `tx`.
    fn write(
        &self,
        tx: &mut ModelTx<'_>,
        prepared: Self::Prepared,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Writes a group of consecutive prepared batches, in log order, inside one transaction; a
    /// projection may leave out what a later batch of the group overwrites.
    fn write_group(
        &self,
        tx: &mut ModelTx<'_>,
        group: Vec<Self::Prepared>,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            for prepared in group {
                self.write(tx, prepared).await?;
            }
            Ok(())
        }
    }

    /// Whether the projection applies `event` (a part of the engine applies its workspaces' only):
    /// the others are read and passed, the checkpoint moving over them, never prepared.
    fn keeps(&self, _event: &StoredEvent) -> bool {
        true
    }

    /// Whether `events` may be prepared while batches prepared before them are still being written:
    /// only when preparing them reads nothing from the database that those batches change. The
    /// pipeline ([`crate::pipeline::drive`]) otherwise waits for the writes first.
    fn may_prepare_ahead(&self, _events: &[StoredEvent]) -> bool {
        false
    }

    /// Drops what the projection holds in memory of the model: a batch it prepared was not committed.
    fn forget(&self) {}

    /// The transaction of the last [`Projection::write_group`] ended, committed or not.
    fn ended(&self) {}

    /// Whether the projection has work to do although no event is new (a backfill, a time-driven
    /// change): the runner then prepares and writes an empty batch.
    fn has_pending_work(
        &self,
        _store: &Store,
    ) -> impl Future<Output = Result<bool, ProjectionError>> + Send {
        async { Ok(false) }
    }
}

/// What one step of the runner did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub applied: usize,
    pub position: Position,
    /// Arrival time (ms) of the last event applied.
    pub last_received_ms: Option<i64>,
    /// Whether the step did pending work without new events.
    pub worked: bool,
}

/// The resolver's stored token (`projection_tokens`): moved by every batch it commits and by every other
/// writer of the model (`identity::forget_state`). When the resolver runs in parts, each part's token
/// in name order, joined by `;` (a token holds none).
pub(crate) async fn resolver_token(store: &Store) -> Result<Option<String>, ProjectionError> {
    let tokens: Vec<String> = query(sql::RESOLVER_TOKENS)
        .bind(parts_pattern())
        .scalars(store.reader())
        .await?;
    Ok((!tokens.is_empty()).then(|| tokens.join(";")))
}

/// The checkpoint of a projection (the start of the log if it has none). Of [`RESOLVER`]: the lowest
/// of its parts' (`crate::partitions`), where every part has been.
pub async fn checkpoint(store: &Store, name: &str) -> Result<Position, ProjectionError> {
    let row: Option<(i64, i64)> = if name == RESOLVER {
        query(sql::LOWEST_RESOLVER_CHECKPOINT)
            .bind(parts_pattern())
            .fetch_optional(store.reader())
            .await?
    } else {
        query(sql::CHECKPOINT)
            .bind(name)
            .fetch_optional(store.reader())
            .await?
    };
    Ok(row.map_or(Position::START, |(tx, seq)| Position { tx, seq }))
}

/// Whether the projection has applied the event `message_id` of `workspace` (`false` when no such event
/// is in the log). Of [`RESOLVER`]: whether the part running `workspace` has (the others' progress does
/// not matter to it).
pub async fn has_applied(
    store: &Store,
    name: &str,
    workspace: &WorkspaceId,
    message_id: &str,
) -> Result<bool, ProjectionError> {
    let at: Option<(i64, i64)> =
        query_each(sql::EVENT_POSITION_SQLITE, sql::EVENT_POSITION_POSTGRES)
            .bind(workspace.as_str())
            .bind(message_id)
            .fetch_optional(store.reader())
            .await?;
    let Some((tx, seq)) = at else {
        return Ok(false);
    };
    let name = if name == RESOLVER {
        crate::partitions::part_of_workspace(store, workspace)
            .await?
            .name()
    } else {
        name
    };
    let stored: Option<(i64, i64)> = query(sql::CHECKPOINT)
        .bind(name)
        .fetch_optional(store.reader())
        .await?;
    Ok(stored.is_some_and(|(at_tx, at_seq)| {
        Position {
            tx: at_tx,
            seq: at_seq,
        } >= Position { tx, seq }
    }))
}

/// The events after `start`, up to `limit` and none after `through`.
pub(crate) async fn next_events(
    store: &Store,
    start: Position,
    limit: u32,
    through: Position,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let mut events = store.read_after(start, limit).await?;
    events.retain(|e| e.position <= through);
    Ok(events)
}

/// Where a step over `events` ends ([`finish`]), and the events of it `projection` keeps: the others
/// are dropped from `events`, and counted as passed, not applied.
pub(crate) fn finish_kept<P: Projection>(
    projection: &P,
    start: Position,
    events: &mut Vec<StoredEvent>,
) -> Progress {
    let mut end = finish(start, events);
    let read = events.len();
    events.retain(|e| projection.keeps(e));
    if events.len() != read {
        end.applied = events.len();
        end.last_received_ms = events
            .last()
            .map(|e| e.event.received_at.timestamp_millis());
        // Passing another part's events moved the checkpoint: a caller stepping on tries again.
        end.worked = true;
    }
    end
}

/// Where a step ends: after the last of `events`, or at `start` with `worked` set when there were none.
pub(crate) fn finish(start: Position, events: &[StoredEvent]) -> Progress {
    match events.last() {
        Some(last) => Progress {
            applied: events.len(),
            position: last.position,
            last_received_ms: Some(last.event.received_at.timestamp_millis()),
            worked: false,
        },
        None => Progress {
            position: start,
            worked: true,
            ..Progress::default()
        },
    }
}

/// What a running projection has done, for metrics and readiness.
#[derive(Debug, Default)]
pub struct RunnerStatus {
    pub applied: AtomicU64,
    pub errors: AtomicU64,
    /// How far behind the newest applied event's arrival the runner is, in ms (0 when caught up).
    pub lag_ms: AtomicI64,
    pub position_seq: AtomicI64,
    /// The partitions this runner holds the leases of (`crate::lease`), by name: empty while another
    /// instance runs them.
    pub partitions: std::sync::Mutex<Vec<String>>,
    /// Notified after each step that committed something (events applied or pending work done), so that
    /// readers of what the projection writes (the outbox publisher) need not poll.
    pub committed: Notify,
}

impl RunnerStatus {
    /// The partitions this runner holds the leases of now.
    pub fn owned(&self) -> Vec<String> {
        self.partitions.lock().expect("partitions lock").clone()
    }

    /// This runner took the lease of `part`.
    pub fn took(&self, part: &str) {
        let mut parts = self.partitions.lock().expect("partitions lock");
        if !parts.iter().any(|p| p == part) {
            parts.push(part.to_owned());
            parts.sort();
        }
    }

    /// This runner no longer holds the lease of `part`.
    pub fn gave_up(&self, part: &str) {
        self.partitions
            .lock()
            .expect("partitions lock")
            .retain(|p| p != part);
    }

    /// Whether this runner holds any partition's lease now: this instance runs the engine.
    pub fn runs_any(&self) -> bool {
        !self.partitions.lock().expect("partitions lock").is_empty()
    }

    /// A commit stored `progress`; `behind`: more of the log was waiting then.
    pub fn record_commit(&self, progress: &Progress, behind: bool) {
        self.applied
            .fetch_add(progress.applied as u64, Ordering::Relaxed);
        self.position_seq
            .store(progress.position.seq, Ordering::Relaxed);
        let lag = match progress.last_received_ms {
            Some(ms) if behind => Utc::now().timestamp_millis() - ms,
            _ => 0,
        };
        self.lag_ms.store(lag, Ordering::Relaxed);
        self.committed.notify_one();
    }
}
