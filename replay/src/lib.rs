//! Operator jobs: rebuilding read models from the event log and the recorded identity decisions, with the
//! same pure code live processing runs (`cdp_domain::profile`), never a second implementation.

pub mod backfill;

pub mod rebuild;

use cdp_domain::event::Position;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::ProfileId;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::store::Store;
use cdp_projections::catalog::{self, CatalogWrites};
use cdp_projections::identity::{graph_of, rules_of};
use cdp_projections::jobs::new_job;
use cdp_projections::partitions::Watermark;
use cdp_projections::profiles;
use cdp_projections::profiles::derived::DerivedWrites;
use cdp_projections::refold::{fold_event, fold_log, write_if_unmoved};
use cdp_projections::runner::ProjectionError;
use cdp_projections::stages::StageWrites;

/// The kind and name of the job that re-evaluates tags and segments after a batch.
pub const BATCH_JOB: &str = "batch";

/// How many times a rebuild starts over when the resolver moved on while it read.
const ATTEMPTS: usize = 5;

/// Rebuilds every profile document from the log: each customer event folded into the profile it belongs
/// to now, each profile's identifiers as the recorded identity decisions link them, under the workspace's
/// current trait fold and catalog (computed traits come out complete). Returns the number of events folded. Identity is not re-decided: decisions
/// are facts of the log. The resolver may run meanwhile; the rebuild is written only if the resolver's
/// checkpoint did not move while it read, and starts over otherwise.
pub async fn rebuild_profiles(store: &Store) -> Result<u64, ProjectionError> {
    Ok(batch(store).await?.folded)
}

/// What a batch run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRun {
    /// The watermark: the resolver's position the batch computed up to. Events after it are the stream
    /// side's, folded by the resolver as deltas.
    pub watermark: Position,
    /// Events folded.
    pub folded: u64,
}

/// The batch side of the lambda merge: recomputes every profile document — its computed traits with
/// it — from the log up to a watermark W (the resolver's checkpoint), and switches to it atomically only
/// if the resolver has not moved past W meanwhile (else it starts again), so that value = batch(≤ W) +
/// the resolver's deltas (> W), no event counted twice or missed. Every workspace's tags and segments are
/// then re-evaluated by a job of the resolver (`batch`), in the same transaction as the switch.
pub async fn batch(store: &Store) -> Result<BatchRun, ProjectionError> {
    for _ in 0..ATTEMPTS {
        let mark = Watermark::read(store).await?;
        let at = mark.through();
        let (docs, folded) = fold_log(store, at).await?;
        let now = chrono::Utc::now();
        let mut workspaces: Vec<String> = docs.keys().map(|(w, _)| w.clone()).collect();
        workspaces.sort();
        workspaces.dedup();
        let jobs = StageWrites {
            catalog: CatalogWrites {
                jobs: workspaces
                    .iter()
                    .map(|w| new_job(w, BATCH_JOB, BATCH_JOB, at.seq, now))
                    .collect(),
                ..CatalogWrites::default()
            },
            ..StageWrites::default()
        };
        if write_if_unmoved(store, &mark, docs, true, jobs).await? {
            tracing::info!(folded, watermark = at.seq, "batch: profiles recomputed");
            return Ok(BatchRun {
                watermark: at,
                folded,
            });
        }
    }
    Err(ProjectionError::Corrupt(format!(
        "the resolver kept moving: no consistent rebuild in {ATTEMPTS} attempts"
    )))
}

/// What `cdp replay profile` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRebuild {
    /// The live profile rebuilt (the survivor, when the id asked for was merged away).
    pub profile: String,
    pub events: usize,
}

/// Targeted re-processing: re-folds one profile's document from its events (as the recorded decisions
/// assign them) and its identifiers, under the current trait fold and catalog, and makes it due at once
/// so that the resolver re-evaluates its tags and segments (and publishes what changed) in its next
/// round. Written only if the resolver did not move meanwhile (else it starts again). `None` when no
/// such profile exists in `workspace`.
pub async fn rebuild_profile(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<ProfileRebuild>, ProjectionError> {
    let Some(live) = cdp_projections::identity::survivor_of(store, workspace, profile).await?
    else {
        return Ok(None);
    };
    let id = ProfileId::parse(&live).map_err(ProjectionError::corrupt)?;
    let rules = rules_of(store, workspace).await?;
    let catalog = catalog::load(store, workspace).await?;
    for _ in 0..ATTEMPTS {
        let mark = Watermark::read(store).await?;
        let seqs = profiles::events_of(store, workspace, std::slice::from_ref(&id)).await?;
        let mut doc = ProfileDoc::default();
        for stored in store.events_by_seq(&seqs).await? {
            fold_event(&mut doc, &stored.event, &rules, &catalog)?;
        }
        let graph = graph_of(store, workspace).await?;
        if let Some((_, state)) = graph.profiles().find(|(p, _)| **p == id) {
            doc.linked = state.identifiers_owned();
        }
        let key = (workspace.to_string(), id.clone());
        let due = StageWrites {
            derived: DerivedWrites {
                due: vec![(workspace.to_string(), live.clone(), Some(0.0))],
                ..DerivedWrites::default()
            },
            ..StageWrites::default()
        };
        if write_if_unmoved(store, &mark, vec![(key, doc)], false, due).await? {
            return Ok(Some(ProfileRebuild {
                profile: live,
                events: seqs.len(),
            }));
        }
    }
    Err(ProjectionError::Corrupt(format!(
        "the resolver kept moving: no consistent rebuild of {live} in {ATTEMPTS} attempts"
    )))
}

#[cfg(test)]
mod tests;
