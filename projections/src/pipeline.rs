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

use std::sync::Arc;
use std::time::Duration;

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::store::sql::{query, verbatim};
use cdp_domain::store::Store;
use chrono::Utc;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::lease::Lease;
use crate::model_sql as sql;
use crate::model_tx::ModelTx;
use crate::model_tx::Tx;
use crate::projection::{
    checkpoint, finish, finish_kept, next_events, Progress, Projection, RunnerStatus,
};
use crate::ProjectionError;

/// Batches prepared while the writer is busy are written together by its next commit; past this many
/// batches' worth of events (`limit` each) the preparing waits for the writer, which bounds the memory
/// of what is prepared.
const QUEUED_BATCHES: usize = 4;

/// What a commit of the pipeline stored.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The events of the commit, its new checkpoint and the arrival of its last event.
    pub progress: Progress,
    /// Whether the reader had more of the log waiting when the commit's last batch was read (the
    /// projection is behind, not caught up).
    pub behind: bool,
}

/// How a following pipeline waits when it has caught up: for `wake` or `poll`, whichever comes first;
/// its writer reports each commit to `status`, and checks `lease` in each commit's transaction when
/// the pipeline runs a partition under one (a lost lease ends the pipeline with
/// [`ProjectionError::LeaseLost`]).
#[derive(Debug, Clone, Copy)]
pub struct Idle<'a> {
    pub wake: &'a Notify,
    pub poll: Duration,
    pub status: &'a Arc<RunnerStatus>,
    pub lease: Option<&'a Arc<Lease>>,
}

/// A read of the log under way.
type Reading = JoinHandle<Result<Vec<StoredEvent>, ProjectionError>>;

/// A prepared batch on its way to the writer.
struct Batch<P: Projection> {
    start: Position,
    progress: Progress,
    behind: bool,
    prepared: P::Prepared,
}

/// What the writer did with a group of batches.
struct Outcome {
    /// `Ok(true)`: committed; `Ok(false)`: the model moved under it, nothing written.
    committed: Result<bool, ProjectionError>,
    batches: usize,
    progress: Progress,
    behind: bool,
}

/// The writer task: takes every batch waiting when it is free as one group and commits it; stops at
/// the first group not committed (what was sent after it does not hold).
struct Writer {
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    task: JoinHandle<()>,
}

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
    drive_grouped(store, projection, limit, 0, through, on_commit, idle).await
}

/// [`drive`], letting up to `group` more events wait for the writer: when preparing runs ahead of
/// writing (a rebuild's), the writer's commits take larger groups, and a value that many batches
/// change (a profile's state, its tags) is written once per group instead of once per batch. The
/// writer never waits to gather a group: it takes what is waiting when it is free.
pub async fn drive_grouped<P: Projection + Clone>(
    store: &Store,
    projection: &P,
    limit: u32,
    group: usize,
    through: Position,
    on_commit: &mut (dyn FnMut(&Committed) + Send),
    idle: Option<Idle<'_>>,
) -> Result<u64, ProjectionError> {
    let mut pipeline = Pipeline {
        store,
        projection,
        limit,
        group,
        through,
        applied: 0,
        next: checkpoint(store, projection.name()).await?,
        writer: None,
        sent: Vec::new(),
        ahead: None,
        status: idle.map(|i| i.status.clone()),
        lease: idle.and_then(|i| i.lease.cloned()),
    };
    let result = pipeline.run(on_commit, idle).await;
    if result.is_err() {
        // What is in flight finishes (or fails) before the state is dropped, so that a next run starts
        // from a checkpoint nothing still moves.
        if let Some((to_writer, mut writer)) = pipeline.writer.take() {
            drop(to_writer);
            while writer.outcomes.recv().await.is_some() {}
        }
        pipeline.sent.clear();
        projection.forget();
    }
    result
}

struct Pipeline<'a, P: Projection> {
    store: &'a Store,
    projection: &'a P,
    limit: u32,
    /// Events that may wait for the writer besides `QUEUED_BATCHES` batches.
    group: usize,
    through: Position,
    applied: u64,
    /// Where the next batch starts: after the last one prepared.
    next: Position,
    writer: Option<(mpsc::UnboundedSender<Batch<P>>, Writer)>,
    /// The events of each batch sent to the writer and not yet reported on, oldest first.
    sent: Vec<usize>,
    /// The read of the batch starting at the position, under way.
    ahead: Option<(Position, Reading)>,
    status: Option<Arc<RunnerStatus>>,
    /// The lease every commit checks, if the pipeline runs a partition under one.
    lease: Option<Arc<Lease>>,
}

impl<P: Projection + Clone> Pipeline<'_, P> {
    async fn run(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
        idle: Option<Idle<'_>>,
    ) -> Result<u64, ProjectionError> {
        loop {
            if self.reported(on_commit, false).await? {
                continue;
            }
            let mut events = self.read().await?;
            let behind = events.len() as u32 >= self.limit;
            if behind {
                self.read_ahead(events.last().map_or(self.next, |e| e.position));
            }
            if events.is_empty() {
                if !self.sent.is_empty() {
                    self.reported(on_commit, true).await?;
                    continue;
                }
                if self.projection.has_pending_work(self.store).await? {
                    // Work without events (a job's page, the clock): prepared on a committed model.
                    let prepared = self.projection.prepare(self.store, &events).await?;
                    let progress = finish(self.next, &events);
                    self.send(prepared, progress, false);
                    self.reported(on_commit, true).await?;
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
            // Another part's events are passed, not prepared.
            let progress = finish_kept(self.projection, self.next, &mut events);
            if !self.sent.is_empty()
                && !self.projection.may_prepare_ahead(&events)
                && self.reported(on_commit, true).await?
            {
                // The events were read for a position that no longer holds.
                continue;
            }
            let prepared = self.projection.prepare(self.store, &events).await?;
            self.send(prepared, progress, behind);
            // What is prepared is bounded: past the bound, wait for the writer to catch up.
            while self.sent.iter().sum::<usize>()
                > QUEUED_BATCHES * self.limit as usize + self.group
            {
                if self.next_outcome(on_commit).await? {
                    break;
                }
            }
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

    /// Sends a prepared batch to the writer (started if there is none).
    fn send(&mut self, prepared: P::Prepared, progress: Progress, behind: bool) {
        let start = self.next;
        self.next = progress.position;
        let (status, lease) = (self.status.clone(), self.lease.clone());
        let (to_writer, _) = self.writer.get_or_insert_with(|| {
            start_writer(self.store.clone(), self.projection.clone(), status, lease)
        });
        let batch = Batch {
            start,
            progress,
            behind,
            prepared,
        };
        // Counted even if the writer stopped at a group it could not commit: its outcome, still to
        // be collected, restarts the pipeline, and this batch goes with the rest.
        let _ = to_writer.send(batch);
        self.sent.push(progress.applied);
    }

    /// Takes the writer's outcomes: those already there, or (`wait`) until everything sent is
    /// reported. `true`: a group was not committed; what was prepared is dropped and the pipeline
    /// starts again from the stored checkpoint.
    async fn reported(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
        wait: bool,
    ) -> Result<bool, ProjectionError> {
        loop {
            if self.sent.is_empty() {
                return Ok(false);
            }
            let ready = match &mut self.writer {
                Some((_, writer)) => match writer.outcomes.try_recv() {
                    Ok(outcome) => Some(outcome),
                    Err(mpsc::error::TryRecvError::Empty) if !wait => return Ok(false),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                },
                None => None,
            };
            let restarted = match ready {
                Some(outcome) => self.take(outcome, on_commit).await?,
                None => self.next_outcome(on_commit).await?,
            };
            if restarted {
                return Ok(true);
            }
        }
    }

    /// Waits for the writer's next outcome.
    async fn next_outcome(
        &mut self,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
    ) -> Result<bool, ProjectionError> {
        let outcome = match &mut self.writer {
            Some((_, writer)) => writer.outcomes.recv().await,
            None => None,
        };
        match outcome {
            Some(outcome) => self.take(outcome, on_commit).await,
            None => Err(ProjectionError::Corrupt(
                "the model writer stopped without a word".into(),
            )),
        }
    }

    async fn take(
        &mut self,
        outcome: Outcome,
        on_commit: &mut (dyn FnMut(&Committed) + Send),
    ) -> Result<bool, ProjectionError> {
        let Outcome {
            committed,
            batches,
            progress,
            behind,
        } = outcome;
        self.sent.drain(..batches.min(self.sent.len()));
        match committed {
            Ok(true) => {
                self.applied += progress.applied as u64;
                on_commit(&Committed { progress, behind });
                Ok(false)
            }
            failed => {
                // Nothing of what was prepared after it holds.
                self.projection.forget();
                self.sent.clear();
                if let Some((_, writer)) = self.writer.take() {
                    writer.task.abort();
                }
                if let Some((_, h)) = self.ahead.take() {
                    h.abort();
                }
                failed?;
                self.next = checkpoint(self.store, self.projection.name()).await?;
                Ok(true)
            }
        }
    }
}

/// Starts the writer task of a pipeline.
fn start_writer<P: Projection + Clone>(
    store: Store,
    projection: P,
    status: Option<Arc<RunnerStatus>>,
    lease: Option<Arc<Lease>>,
) -> (mpsc::UnboundedSender<Batch<P>>, Writer) {
    let (to_writer, mut batches) = mpsc::unbounded_channel::<Batch<P>>();
    let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(first) = batches.recv().await {
            let (start, mut progress, mut behind) = (first.start, first.progress, first.behind);
            let mut group = vec![first.prepared];
            // Everything prepared meanwhile goes in the same commit.
            while let Ok(next) = batches.try_recv() {
                progress.applied += next.progress.applied;
                progress.position = next.progress.position;
                progress.last_received_ms =
                    next.progress.last_received_ms.or(progress.last_received_ms);
                progress.worked |= next.progress.worked;
                behind = next.behind;
                group.push(next.prepared);
            }
            let batches_in_group = group.len();
            let committed = commit(
                &store,
                &projection,
                lease.as_deref(),
                start,
                progress.position,
                group,
            )
            .await;
            let stop = !matches!(committed, Ok(true));
            if let (false, Some(status)) = (stop, &status) {
                // Told here, not when the pipeline next looks: readers of the model (the outbox
                // publisher) go on at once.
                status.record_commit(&progress, behind);
            }
            let outcome = Outcome {
                committed,
                batches: batches_in_group,
                progress,
                behind,
            };
            if outcomes_tx.send(outcome).is_err() || stop {
                return;
            }
        }
    });
    (to_writer, Writer { outcomes, task })
}

impl<P: Projection> Drop for Pipeline<'_, P> {
    /// A pipeline dropped part way (its caller stopped, or panicked) leaves no task behind: a write
    /// under way is rolled back with its connection.
    fn drop(&mut self) {
        if let Some((_, h)) = self.ahead.take() {
            h.abort();
        }
        if let Some((_, writer)) = self.writer.take() {
            writer.task.abort();
        }
        if !self.sent.is_empty() {
            // What was prepared may or may not be stored: the state is read again.
            self.projection.forget();
        }
    }
}

/// Writes `batches` (prepared in order from `start` to `end`) and moves the checkpoint to `end`, in one
/// transaction. `Ok(false)`: nothing was written, because the checkpoint is no longer `start` (another
/// runner moved it) or the model changed under the batches ([`ProjectionError::Stale`]). Under a
/// `lease`, the transaction first checks it is still this instance's (its fence): if not, nothing is
/// written and the answer is [`ProjectionError::LeaseLost`].
#[tracing::instrument(name = "pipeline.commit", skip_all, fields(projection = projection.name(), from = start.seq, to = end.seq))]
pub async fn commit<P: Projection>(
    store: &Store,
    projection: &P,
    lease: Option<&Lease>,
    start: Position,
    end: Position,
    batches: Vec<P::Prepared>,
) -> Result<bool, ProjectionError> {
    let written = write_and_commit(store, projection, lease, start, end, batches).await;
    projection.ended();
    written
}

/// [`commit`]'s transaction.
async fn write_and_commit<P: Projection>(
    store: &Store,
    projection: &P,
    lease: Option<&Lease>,
    start: Position,
    end: Position,
    batches: Vec<P::Prepared>,
) -> Result<bool, ProjectionError> {
    let name = projection.name();
    let Some(mut model) = begin_at(store, name, start).await? else {
        return Ok(false);
    };
    // Under the checkpoint's lock: the fence, whose row stays locked (PostgreSQL) until the commit.
    // The mark is kept until the transaction has ended: the log's readers read past it meanwhile
    // (PostgreSQL; the fence's statement answers the transaction's id it needs).
    let _writing = if let (Store::Postgres(s), ModelTx(Tx::Postgres(tx))) = (store, &mut model) {
        Some(match lease {
            Some(lease) => s.mark_model_writer_id(lease.hold_in_postgres(tx).await?),
            None => s.mark_model_writer(tx).await?,
        })
    } else {
        if let Some(lease) = lease {
            lease.hold_in(&mut model).await?;
        }
        None
    };
    match projection.write_group(&mut model, batches).await {
        Ok(()) => {}
        // Rolled back with the transaction.
        Err(ProjectionError::Stale(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let now = Utc::now().timestamp_millis();
    query(sql::MOVE_CHECKPOINT)
        .bind(name)
        .bind(end.tx)
        .bind(end.seq)
        .bind(now)
        .execute(model.exec())
        .await?;
    model.commit().await?;
    Ok(true)
}

/// The model's transaction, if the checkpoint is still `start` (`None`: another runner moved it).
/// SQLite: under its write lock; PostgreSQL: holding the checkpoint's row lock, which makes the commits
/// of several instances take turns, so none applies a batch twice.
async fn begin_at(
    store: &Store,
    name: &str,
    start: Position,
) -> Result<Option<ModelTx<'static>>, ProjectionError> {
    match store {
        Store::Sqlite(s) => {
            let mut tx = s.begin_write().await?;
            let at: Option<i64> = query(sql::CHECKPOINT_SEQ)
                .bind(name)
                .scalar_optional(&mut tx)
                .await?;
            Ok((at.unwrap_or(0) == start.seq).then_some(ModelTx(Tx::Sqlite(tx))))
        }
        Store::Postgres(s) => {
            // From the model writers' pool: every instance's log readers read past it.
            let mut tx = s.model_pool().begin().await?;
            // The row is made only when missing (a first commit): one statement per commit after.
            let locked: Option<(i64, i64)> = verbatim(sql::LOCK_CHECKPOINT_POSTGRES)
                .bind(name)
                .fetch_optional(&mut tx)
                .await?;
            let (at_tx, at_seq) = match locked {
                Some(at) => at,
                None => {
                    verbatim(sql::ENSURE_CHECKPOINT_POSTGRES)
                        .bind(name)
                        .execute(&mut tx)
                        .await?;
                    verbatim(sql::LOCK_CHECKPOINT_POSTGRES)
                        .bind(name)
                        .fetch_one(&mut tx)
                        .await?
                }
            };
            let at = Position {
                tx: at_tx,
                seq: at_seq,
            };
            Ok((at == start).then_some(ModelTx(Tx::Postgres(tx))))
        }
    }
}
