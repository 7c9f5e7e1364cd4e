//! The background builder of the audience indexes ([`Audiences::keep_built`]): once the resolver has
//! caught up, every workspace's index read whole when it is missing or cannot follow the resolver.

use std::sync::Arc;
use std::time::Duration;

use cdp_domain::store::{EventStore, Store};
use chrono::Utc;

use super::{stored_token, Audiences, BuilderStatus, MAX_STAGED};
use crate::projection::RunnerStatus;
use crate::runner::ProjectionError;

/// How often the background builder looks whether an index must be read whole.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// On an instance whose resolver does not run, an index behind is read whole again no sooner than this
/// many times its last whole read's duration after it.
const WHOLE_READS_APART: u32 = 10;
/// The resolver counts as caught up (the first build may start) when the oldest event it has not
/// applied arrived less than this ago.
const CAUGHT_UP: chrono::Duration = chrono::Duration::seconds(5);

impl Audiences {
    /// Where the background builder stands.
    pub fn status(&self) -> BuilderStatus {
        self.status.lock().expect("audience status lock").clone()
    }

    /// Keeps an index of every workspace built, in the background (run by `serve`): once the
    /// resolver has caught up with the log, every workspace is read whole; then, every second or
    /// when an answer found an index it could not bring up to date, each workspace whose index the
    /// staged batches cannot bring up to date (a rebuild's switch, an erasure, another instance's
    /// resolver, a definition its columns depend on) is read whole again, once the resolver is
    /// caught up again. Until then answers do without it. Runs until the task is dropped; an error
    /// is logged and tried again.
    ///
    /// `followed`: whether this instance's resolver, when it runs, tells the indexes of its batches
    /// (a whole engine does; parts of one do not — `crate::partitions`); when it does not, an index
    /// behind is read whole again only when asked, as on an instance not running the engine.
    ///
    /// Why after the catch-up rather than at once from the stored model: an index built while the
    /// resolver works through a backlog would have to read again every profile each batch touches
    /// (or be read whole again once the staged batches pass their bound), and the build's reads
    /// would take the cores and the database from the catch-up; one build at the caught-up model is
    /// both cheaper and the one that is then current.
    pub async fn keep_built(self, store: Store, engine: Arc<RunnerStatus>, followed: bool) {
        loop {
            match self.look(&store, followed && engine.runs_any()).await {
                Ok(()) => {}
                Err(e) => {
                    self.status.lock().expect("audience status lock").building = None;
                    tracing::warn!(error = %e, "the audience index could not be built; tried again");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(LOOK_EVERY) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One look of [`Audiences::keep_built`]: nothing while the resolver is behind (a build would be
    /// outdated by the batches still to come); then each workspace's index built when it is missing
    /// or cannot follow, and brought up to date when the staged batches grow long (before they pass
    /// their bound and the index would have to be read whole).
    async fn look(&self, store: &Store, engine_here: bool) -> Result<(), ProjectionError> {
        if !resolver_caught_up(store).await? {
            return Ok(());
        }
        // Read again what the staged batches touched only when they grow long (before they pass
        // their bound): the staging names each profile once, so it grows with the distinct profiles
        // touched, not with a stream over the same customers — where reading them all again every
        // few seconds took the cores from the resolver (and from whatever else the service does) for
        // profiles the next answer reads again anyway.
        let long = self.staged_profiles() > MAX_STAGED / 4;
        let workspaces = store.workspace_ids().await?;
        for ws in &workspaces {
            let now = Utc::now();
            if self.needs_whole(store, ws).await? && self.may_read_whole(ws, engine_here).await {
                self.status.lock().expect("audience status lock").building = Some(ws.clone());
                self.build_in(store, ws, now).await?;
                self.status.lock().expect("audience status lock").building = None;
            } else if long {
                self.refresh(store, ws, now).await?;
            }
        }
        self.status.lock().expect("audience status lock").started = true;
        Ok(())
    }

    /// Whether the index of `workspace`, missing or unable to follow, may be read whole now: always
    /// when this instance runs the engine (`engine_here`: the index follows its resolver's staged
    /// batches, and cannot only after an erasure, a rebuild's switch or a definition) or has none.
    /// Otherwise another instance runs the engine, each of its batches leaves this index behind, and
    /// a whole read at every look would be one every second for an index no one asks: it is read
    /// whole again only once an answer found it behind, and no sooner than [`WHOLE_READS_APART`]
    /// times its last whole read's duration after it (a tenth of the time at most).
    async fn may_read_whole(&self, workspace: &str, engine_here: bool) -> bool {
        if engine_here {
            return true;
        }
        let slot = self.slot(workspace);
        let slot = slot.lock().await;
        match (&slot.index, slot.built) {
            (None, _) | (_, None) => true,
            (Some(_), Some((at, took))) => {
                let apart = (took * WHOLE_READS_APART).max(LOOK_EVERY);
                let since = (Utc::now() - at).to_std().unwrap_or_default();
                slot.asked && since >= apart
            }
        }
    }

    /// Whether the index of `workspace` is missing or cannot be brought up to date by the staged
    /// batches.
    async fn needs_whole(&self, store: &Store, workspace: &str) -> Result<bool, ProjectionError> {
        let slot = self.slot(workspace);
        let slot = slot.lock().await;
        if slot.index.is_none() {
            return Ok(true);
        }
        let stored = stored_token(store).await?;
        if slot.token == stored {
            return Ok(false);
        }
        Ok(self
            .follow(store, workspace, &slot, stored.as_deref())
            .await?
            .is_none())
    }
}

/// Whether the resolver has caught up with the log: nothing follows its checkpoint, or what follows
/// arrived only just now (a resolver that keeps up with a steady stream).
async fn resolver_caught_up(store: &Store) -> Result<bool, ProjectionError> {
    let at = crate::projection::checkpoint(store, crate::projection::RESOLVER).await?;
    let next = store.read_after(at, 1).await?;
    Ok(next
        .first()
        .is_none_or(|e| e.event.received_at > Utc::now() - CAUGHT_UP))
}
