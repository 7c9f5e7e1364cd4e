//! The projection runner: follows the log from a checkpoint, hands batches to a projection, and writes the
//! checkpoint in the same transaction as the read model. Delivery is at-least-once; projections make
//! their writes idempotent. `run_once` is one step, `catch_up` and `spawn` run the pipeline
//! ([`crate::pipeline::drive`]); what a projection is lives below both, in [`crate::projection`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cdp_domain::event::Position;
use cdp_domain::store::Store;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use crate::error::ProjectionError;
use crate::lease::{self, HeldLease, Lease};
pub use crate::model_tx::ModelTx;
pub use crate::projection::{
    checkpoint, has_applied, Progress, Projection, RunnerStatus, RESOLVER,
};
use crate::projection::{finish_kept, next_events};

/// Events handed to a projection per transaction.
pub const BATCH: u32 = 10_000;
/// How often a caught-up runner looks for events written by other instances.
const POLL: Duration = Duration::from_millis(100);

/// Applies the next batch of up to `limit` events to `projection` and moves its checkpoint, atomically.
pub async fn run_once<P: Projection>(
    store: &Store,
    projection: &P,
    limit: u32,
) -> Result<Progress, ProjectionError> {
    step(store, projection, limit, Position::END).await
}

/// [`run_once`], applying no event after `through` (a rebuild catching up to a live projection's
/// checkpoint).
pub async fn run_once_through<P: Projection>(
    store: &Store,
    projection: &P,
    limit: u32,
    through: Position,
) -> Result<Progress, ProjectionError> {
    step(store, projection, limit, through).await
}

async fn step<P: Projection>(
    store: &Store,
    projection: &P,
    limit: u32,
    through: Position,
) -> Result<Progress, ProjectionError> {
    let mut timer = StepTimer::start();
    let start = checkpoint(store, projection.name()).await?;
    let mut events = next_events(store, start, limit, through).await?;
    if events.is_empty() && !projection.has_pending_work(store).await? {
        return Ok(Progress {
            position: start,
            ..Progress::default()
        });
    }
    timer.lap(Phase::Read);
    // Another part's events are passed, not prepared.
    let end = finish_kept(projection, start, &mut events);
    let prepared = projection.prepare(store, &events).await?;
    timer.lap(Phase::Prepare);
    let committed =
        crate::pipeline::commit(store, projection, None, start, end.position, vec![prepared]).await;
    timer.lap(Phase::Write);
    timer.report(projection.name(), events.len());
    match committed {
        Ok(true) => Ok(end),
        // Another runner moved the checkpoint, or the model changed under the batch: nothing was
        // written; the caller prepares it again.
        Ok(false) => {
            projection.forget();
            Ok(again(start))
        }
        Err(e) => {
            projection.forget();
            Err(e)
        }
    }
}

/// The phases of a step, timed for the `debug` log of [`StepTimer::report`].
#[derive(Debug, Clone, Copy)]
enum Phase {
    Read,
    Prepare,
    /// The write and the commit.
    Write,
}

/// Where a step's time went: read the log, prepare, write the model and commit.
struct StepTimer {
    last: std::time::Instant,
    spent: [Duration; 3],
}

impl StepTimer {
    fn start() -> Self {
        StepTimer {
            last: std::time::Instant::now(),
            spent: [Duration::ZERO; 3],
        }
    }

    fn lap(&mut self, phase: Phase) {
        let now = std::time::Instant::now();
        self.spent[phase as usize] += now - self.last;
        self.last = now;
    }

    fn report(&self, projection: &str, events: usize) {
        let ms = |p: Phase| self.spent[p as usize].as_secs_f64() * 1e3;
        tracing::debug!(
            projection,
            events,
            read_ms = ms(Phase::Read),
            prepare_ms = ms(Phase::Prepare),
            write_ms = ms(Phase::Write),
            "projection step"
        );
    }
}

/// Nothing applied, but the step is to be tried again at once.
pub(crate) fn again(start: Position) -> Progress {
    Progress {
        position: start,
        worked: true,
        ..Progress::default()
    }
}

/// Runs `projection` until the log is exhausted and no work is pending, through the pipeline. Returns
/// the number of events applied.
pub async fn catch_up<P: Projection + Clone>(
    store: &Store,
    projection: &P,
) -> Result<u64, ProjectionError> {
    crate::pipeline::drive(store, projection, BATCH, Position::END, &mut |_| {}, None).await
}

/// A projection running in the background.
#[derive(Debug)]
pub struct RunnerHandle {
    pub status: Arc<RunnerStatus>,
    wake: Arc<Notify>,
    running: Running,
}

/// Where a runner runs: on an engine thread of its own, or as a task of the runtime.
#[derive(Debug)]
enum Running {
    /// Stopped by a permit on the notify (it ends at its next await, gives its lease up and says so
    /// on the channel).
    Thread(
        Arc<Notify>,
        std::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    ),
    Task(JoinHandle<()>),
}

impl RunnerHandle {
    /// Tells the runner new events were appended, so it need not wait for its poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn stop(&self) {
        match &self.running {
            Running::Thread(stop, _) => stop.notify_one(),
            Running::Task(task) => task.abort(),
        }
    }

    /// Stops the runner and waits (up to `patience`) until it has given its partition's lease up, so
    /// that another instance takes the partition at once rather than after the lease's time.
    pub async fn shut_down(self, patience: Duration) {
        self.stop();
        let given_up = match &self.running {
            Running::Thread(_, done) => done.lock().expect("runner done lock").take(),
            Running::Task(_) => None,
        };
        if let Some(given_up) = given_up {
            let _ = tokio::time::timeout(patience, given_up).await;
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How much lower than the edge's the engine threads' scheduling priority is (a nice value, 0–19):
/// when the cores are short, requests are answered (and acknowledged events made durable) first and
/// the projections catch up with what is left. `CDP_ENGINE_NICE` overrides it; 0 keeps one priority.
pub const ENGINE_NICE: i32 = 10;

/// Starts `projection` following the log, as the instance `owner`: it runs only while `owner` holds
/// the lease of the projection's partition (`crate::lease`; named as the projection), standing by
/// while another instance does, and gives the lease up when stopped. On a multi-threaded runtime it
/// runs on an engine thread of its own at [`ENGINE_NICE`] (its folds and evaluations are CPU work
/// that would otherwise hold a runtime worker, and the requests queued on it, for a whole batch); its
/// IO and timers are still driven by the runtime, and the tasks it spawns (the writer) run there. On a
/// current-thread runtime (tests), a task of it.
pub fn spawn<P: Projection + Clone>(store: Store, projection: P, owner: String) -> RunnerHandle {
    spawn_sharing(
        store,
        projection,
        owner,
        Arc::new(RunnerStatus::default()),
        1,
    )
}

/// [`spawn`] of one part of `parts` (`crate::partitions`), reporting to `status` (shared by the parts
/// this instance runs). With more than one part, the instance takes a part's lease only while it
/// holds fewer than its fair share (the parts over the instances running the engine, rounded up:
/// [`lease::fair_share`]), and gives the part up when it holds more (another instance started), so
/// that the parts spread over the instances.
pub fn spawn_sharing<P: Projection + Clone>(
    store: Store,
    projection: P,
    owner: String,
    status: Arc<RunnerStatus>,
    parts: u32,
) -> RunnerHandle {
    let wake = Arc::new(Notify::new());
    let runtime = tokio::runtime::Handle::current();
    let running = match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => {
            let stop = Arc::new(Notify::new());
            let (done, given_up) = tokio::sync::oneshot::channel();
            let (name, status, wake, stopped) = (
                projection.name(),
                status.clone(),
                wake.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name(format!("cdp-{name}"))
                .spawn(move || {
                    lower_priority(engine_nice());
                    runtime.block_on(async move {
                        let held = HeldLease::default();
                        tokio::select! {
                            () = follow(&store, projection, status, wake, (&owner, parts), &held) => {}
                            () = stopped.notified() => {}
                        }
                        // Stopped: another instance may take the partition at once.
                        if let Some(lease) = held.take() {
                            let _ = lease.release(&store).await;
                        }
                        let _ = done.send(());
                    });
                })
                .map(|_| Running::Thread(stop, std::sync::Mutex::new(Some(given_up))))
                .unwrap_or_else(|e| panic!("cannot start the thread of projection {name}: {e}"))
        }
        _ => {
            let (status, wake) = (status.clone(), wake.clone());
            Running::Task(tokio::spawn(async move {
                follow(
                    &store,
                    projection,
                    status,
                    wake,
                    (&owner, parts),
                    &HeldLease::default(),
                )
                .await;
            }))
        }
    };
    RunnerHandle {
        status,
        wake,
        running,
    }
}

/// [`ENGINE_NICE`], or `CDP_ENGINE_NICE` when it is a number from 0 to 19.
fn engine_nice() -> i32 {
    std::env::var("CDP_ENGINE_NICE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| (0..=19).contains(n))
        .unwrap_or(ENGINE_NICE)
}

/// Lowers the calling thread's priority by `nice` (threads it starts inherit it). On Linux a thread's
/// nice value is its own; elsewhere it would be the process's, so nothing is changed there.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let tid = rustix::thread::gettid();
        let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        if let Err(e) = rustix::process::setpriority_process(Some(tid), now.saturating_add(nice)) {
            tracing::warn!(error = %e, "could not lower the engine thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Runs `projection` whenever `owner` holds its partition's lease: takes the lease (tried every
/// [`lease::TRY_EVERY`] while another instance holds it), then follows the log under it, renewing it,
/// until it is lost; then drops what it holds of the model (the next owner writes it) and stands by.
async fn follow<P: Projection + Clone>(
    store: &Store,
    projection: P,
    status: Arc<RunnerStatus>,
    wake: Arc<Notify>,
    (owner, parts): (&str, u32),
    held: &HeldLease,
) {
    let part = projection.name();
    loop {
        if parts > 1 && !may_take(store, &status, parts).await {
            tokio::time::sleep(lease::TRY_EVERY).await;
            continue;
        }
        let lease = match Lease::acquire(store, part, owner).await {
            Ok(Some(lease)) => Arc::new(lease),
            Ok(None) => {
                tokio::time::sleep(lease::TRY_EVERY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(part, error = %e, "the partition's lease could not be asked for; tried again");
                tokio::time::sleep(lease::TRY_EVERY).await;
                continue;
            }
        };
        tracing::info!(
            part,
            owner,
            fence = lease.fence(),
            "partition lease taken: running it"
        );
        held.put(Some(lease.clone()));
        status.took(part);
        let given_up = tokio::select! {
            () = run_leased(store, &projection, &status, &wake, &lease) => false,
            () = lease.keep(store) => false,
            () = over_share(store, &status, part, parts) => true,
        };
        status.gave_up(part);
        held.put(None);
        if given_up {
            let _ = lease.release(store).await;
            projection.forget();
            tracing::info!(
                part,
                owner,
                "more parts held than this instance's share: the part given up for another instance"
            );
            continue;
        }
        // What this instance holds of the model is the next owner's to change.
        projection.forget();
        tracing::warn!(
            part,
            owner,
            fence = lease.fence(),
            "partition lease lost: standing by"
        );
    }
}

/// Whether this instance may take one more part of `parts`: it holds fewer than its fair share.
async fn may_take(store: &Store, status: &RunnerStatus, parts: u32) -> bool {
    match lease::fair_share(store, parts).await {
        Ok(fair) => status.owned().len() < fair as usize,
        Err(e) => {
            tracing::debug!(error = %e, "the instances could not be counted; tried again");
            false
        }
    }
}

/// Returns when this instance holds more parts than its fair share and `part` is one of those it
/// should give up (the last ones by name); looked at every [`lease::RENEW_EVERY`]. Never returns for
/// a whole engine.
async fn over_share(store: &Store, status: &RunnerStatus, part: &str, parts: u32) {
    loop {
        tokio::time::sleep(lease::RENEW_EVERY).await;
        if parts <= 1 {
            continue;
        }
        let Ok(fair) = lease::fair_share(store, parts).await else {
            continue;
        };
        let mut owned = status.owned();
        owned.sort();
        if owned.len() > fair as usize && owned[fair as usize..].iter().any(|p| p == part) {
            return;
        }
    }
}

/// Follows the log under `lease` until the lease is lost.
async fn run_leased<P: Projection + Clone>(
    store: &Store,
    projection: &P,
    status: &Arc<RunnerStatus>,
    wake: &Notify,
    lease: &Arc<Lease>,
) {
    while !lease.is_lost() {
        // The pipeline's writer reports each commit to `status` itself.
        let idle = crate::pipeline::Idle {
            wake,
            poll: POLL,
            status,
            lease: Some(lease),
        };
        let run = crate::pipeline::drive(
            store,
            projection,
            BATCH,
            Position::END,
            &mut |_| {},
            Some(idle),
        )
        .await;
        match run {
            Err(ProjectionError::LeaseLost(_)) => return,
            Err(e) => {
                status.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(projection = projection.name(), error = %e, "projection step failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(_) => {}
        }
    }
}
