//! The projection pipeline: a reader reads the next batch of the log ahead, this task prepares batch
//! N+1 while a writer task commits what was prepared before it, in log order — every core busy: the
//! fold here, the database's writing there. Each commit is one transaction holding a group of
//! consecutive batches and the checkpoint after the last of them, so a crash at any point leaves the
//! model at a checkpoint it agrees with.
//!
//! A batch is prepared ahead of an uncommitted one only when the projection says preparing it reads
//! nothing from the database that the uncommitted writes change ([`Projection::may_prepare_ahead`]);
//! otherwise the pipeline first waits for the writes. When a write fails or finds the checkpoint moved,
//! everything prepared after it is dropped with the projection's in-memory state
//! ([`Projection::forget`]) and the pipeline starts again from the stored checkpoint.

use std::time::Duration;

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::store::Store;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::runner::{checkpoint, finish, next_events, ModelTx, Progress, Projection};
use crate::ProjectionError;

/// Batches prepared while the writer is busy are written together by its next commit; past this many
/// events the preparing waits for the writer, which bounds the memory of what is prepared.
const QUEUED_EVENTS: usize = 40_000;

/// What a commit of the pipeline stored.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The events of the commit, its new checkpoint and the arrival of its last event.
    pub progress: Progress,
    /// Whether the reader had more of the log waiting when the commit's last batch was read (the
    /// projection is behind, not caught up).
    pub behind: bool,
}

/// How a following pipeline waits when it has caught up: for `wake` or `poll`, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Idle<'a> {
    pub wake: &'a Notify,
    pub poll: Duration,
}

/// Batches prepared and not yet handed to the writer.
struct Group<P: Projection> {
    start: Position,
    progress: Progress,
    behind: bool,
    batches: Vec<P::Prepared>,
}

type Writing = JoinHandle<(Result<bool, ProjectionError>, Progress, bool)>;

/// Runs `projection` from its checkpoint through the pipeline, applying no event after `through`,
/// calling `on_commit` after each commit. Without `idle` it returns once the log (up to `through`) is
/// applied and no work is pending, with the number of events applied; with it, it follows the log and
/// returns only on an error.
pub async fn drive<P: Projection + Clone>(
    store: &Store,
    projection: &P,
    limit: u32,
    through: Position,
    on_commit: &mut (dyn FnMut(&Committed) + Send),
    idle: Option<Idle<'_>>,
) -> Result<u64, ProjectionError> {
    let mut pipeline = Pipeline {
        store,
        projection,
        limit,
        through,
        applied: 0,
        next: checkpoint(store, projection.name()).await?,
        queued: None,
        writing: None,
        ahead: None,
    };
    let result = pipeline.run(on_commit, idle).await;
    if result.is_err() {
        // What is in flight finishes (or fails) before the state is dropped, so that a next run starts
        // from a checkpoint nothing still moves.
        if let Some(writing) = pipeline.writing.take() {
            let _ = writing.await;
        }
        projection.forget();
    }
    result
}

struct Pipeline<'a, P: Projection> {
    store: &'a Store,
    projection: &'a P,
    limit: u32,
    through: Position,
    applied: u64,
    /// Where the next batch starts: after the last one prepared.
    next: Position,
    queued: Option<Group<P>>,
    writing: Option<Writing>,
    /// The read of the batch starting at the position, under way.
    ahead: Option<(
        Position,
        JoinHandle<Result<Vec<StoredEvent>, ProjectionError>>,
    )>,
}

impl<P: Projection + Clone> Pipeline<'_, P> {
    async fn run(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
        idle: Option<Idle<'_>>,
    ) -> Result<u64, ProjectionError> {
        loop {
            let events = self.read().await?;
            let behind = events.len() as u32 >= self.limit;
            if behind {
                self.read_ahead(events.last().map_or(self.next, |e| e.position));
            }
            if events.is_empty() {
                if self.writing.is_some() || self.queued.is_some() {
                    self.flush(on_commit).await?;
                    continue;
                }
                if self.projection.has_pending_work(self.store).await? {
                    // Work without events (a job's page, the clock): prepared on a committed model.
                    let prepared = self.projection.prepare(self.store, &events).await?;
                    self.enqueue(prepared, &events, false);
                    self.flush(on_commit).await?;
                    continue;
                }
                match idle {
                    None => return Ok(self.applied),
                    Some(idle) => {
                        let _ = tokio::time::timeout(idle.poll, idle.wake.notified()).await;
                        continue;
                    }
                }
            }
            let pending = self.writing.is_some() || self.queued.is_some();
            if pending && !self.projection.may_prepare_ahead(&events) {
                let restarted = self.flush(on_commit).await?;
                if restarted {
                    // The events were read for a position that no longer holds.
                    continue;
                }
            }
            let prepared = self.projection.prepare(self.store, &events).await?;
            self.enqueue(prepared, &events, behind);
            self.hand_over(on_commit).await?;
        }
    }

    /// The events after `next`: the read ahead if it is for there, a new read otherwise.
    async fn read(&mut self) -> Result<Vec<StoredEvent>, ProjectionError> {
        if let Some((from, handle)) = self.ahead.take() {
            if from == self.next {
                return handle.await.map_err(|e| {
                    ProjectionError::Corrupt(format!("the log reader failed: {e}"))
                })?;
            }
            handle.abort();
        }
        next_events(self.store, self.next, self.limit, self.through).await
    }

    fn read_ahead(&mut self, from: Position) {
        let (store, limit, through) = (self.store.clone(), self.limit, self.through);
        let handle = tokio::spawn(async move { next_events(&store, from, limit, through).await });
        self.ahead = Some((from, handle));
    }

    fn enqueue(&mut self, prepared: P::Prepared, events: &[StoredEvent], behind: bool) {
        let start = self.next;
        let progress = finish(start, events);
        self.next = progress.position;
        match &mut self.queued {
            Some(group) => {
                group.progress.applied += progress.applied;
                group.progress.position = progress.position;
                group.progress.last_received_ms = progress
                    .last_received_ms
                    .or(group.progress.last_received_ms);
                group.progress.worked |= progress.worked;
                group.behind = behind;
                group.batches.push(prepared);
            }
            None => {
                self.queued = Some(Group {
                    start,
                    progress,
                    behind,
                    batches: vec![prepared],
                })
            }
        }
    }

    /// Gives the queued batches to the writer if it is free (or the queue is full: then waits for it).
    async fn hand_over(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
    ) -> Result<(), ProjectionError> {
        let queued_events = self.queued.as_ref().map_or(0, |g| g.progress.applied);
        let busy = self.writing.as_ref().is_some_and(|w| !w.is_finished());
        if busy && queued_events < QUEUED_EVENTS {
            return Ok(());
        }
        if !self.collect(on_commit).await? {
            self.start_writing();
        }
        Ok(())
    }

    /// Waits for the writer and writes what is queued: everything prepared is committed after it.
    /// `true`: a commit found the model moved, and the pipeline starts again from the checkpoint.
    async fn flush(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
    ) -> Result<bool, ProjectionError> {
        if self.collect(on_commit).await? {
            return Ok(true);
        }
        self.start_writing();
        self.collect(on_commit).await
    }

    fn start_writing(&mut self) {
        let Some(group) = self.queued.take() else {
            return;
        };
        let (store, projection) = (self.store.clone(), self.projection.clone());
        self.writing = Some(tokio::spawn(async move {
            let committed = commit(
                &store,
                &projection,
                group.start,
                group.progress.position,
                group.batches,
            )
            .await;
            (committed, group.progress, group.behind)
        }));
    }

    /// Waits for the write under way, if any. `true`: it found the model moved; what was prepared
    /// is dropped and the pipeline starts again from the stored checkpoint.
    async fn collect(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
    ) -> Result<bool, ProjectionError> {
        let Some(writing) = self.writing.take() else {
            return Ok(false);
        };
        let (committed, progress, behind) = writing
            .await
            .map_err(|e| ProjectionError::Corrupt(format!("the model writer failed: {e}")))?;
        match committed? {
            true => {
                self.applied += progress.applied as u64;
                on_commit(&Committed { progress, behind });
                Ok(false)
            }
            false => {
                // Moved under the pipeline: nothing of what is prepared holds.
                self.projection.forget();
                self.queued = None;
                if let Some((_, h)) = self.ahead.take() {
                    h.abort();
                }
                self.next = checkpoint(self.store, self.projection.name()).await?;
                Ok(true)
            }
        }
    }
}

impl<P: Projection> Drop for Pipeline<'_, P> {
    /// A pipeline dropped part way (its caller stopped, or panicked) leaves no task behind: a write
    /// under way is rolled back with its connection.
    fn drop(&mut self) {
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
        let in_flight = self.writing.is_some() || self.queued.is_some();
        if let Some(h) = self.writing.take() {
            h.abort();
        }
        if in_flight {
            // What was prepared may or may not be stored: the state is read again.
            self.projection.forget();
        }
    }
}

/// Writes `batches` (prepared in order from `start` to `end`) and moves the checkpoint to `end`, in one
/// transaction. `Ok(false)`: nothing was written, because the checkpoint is no longer `start` (another
/// runner moved it) or the model changed under the batches ([`ProjectionError::Stale`]).
pub async fn commit<P: Projection>(
    store: &Store,
    projection: &P,
    start: Position,
    end: Position,
    batches: Vec<P::Prepared>,
) -> Result<bool, ProjectionError> {
    let name = projection.name();
    let now = Utc::now().timestamp_millis();
    match store {
        Store::Sqlite(s) => {
            let mut tx = s.begin_write().await?;
            let at: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM projection_checkpoints WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if at.unwrap_or(0) != start.seq {
                return Ok(false);
            }
            let mut model = ModelTx::Sqlite(tx);
            match projection.write_group(&mut model, batches).await {
                Ok(()) => {}
                // Rolled back with the transaction.
                Err(ProjectionError::Stale(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
            let ModelTx::Sqlite(mut tx) = model else {
                unreachable!("the pipeline built a SQLite transaction")
            };
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(end.tx)
            .bind(end.seq)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }
        Store::Postgres(s) => {
            let mut tx = s.pool().begin().await?;
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES ($1, 0, 0, 0) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
            // The row lock makes the commits of several instances take turns; none applies a batch
            // twice.
            let (at_tx, at_seq): (i64, i64) = sqlx::query_as(
                "SELECT tx, seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if (Position {
                tx: at_tx,
                seq: at_seq,
            }) != start
            {
                tx.rollback().await?;
                return Ok(false);
            }
            let mut model = ModelTx::Postgres(tx);
            match projection.write_group(&mut model, batches).await {
                Ok(()) => {}
                Err(ProjectionError::Stale(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
            let ModelTx::Postgres(mut tx) = model else {
                unreachable!("the pipeline built a PostgreSQL transaction")
            };
            sqlx::query(
                "UPDATE projection_checkpoints SET tx = $2, seq = $3, updated_at = $4 WHERE name = $1",
            )
            .bind(name)
            .bind(end.tx)
            .bind(end.seq)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        }
    }
}
