//! Operator jobs: rebuilding read models from the event log and the recorded identity decisions, with the
//! same pure code live processing runs (`cdp_domain::profile`), never a second implementation.

pub mod backfill;

pub mod rebuild;

use std::collections::HashMap;

use cdp_domain::catalog::Catalog;
use cdp_domain::event::Position;
use cdp_domain::identity::{identifiers_of, IdentityRules, ProfileId};
use cdp_domain::message::MessageKind;
use cdp_domain::profile::{FoldRules, ProfileDoc};
use cdp_domain::store::{EventStore, Store};
use cdp_projections::catalog::{self, CatalogWrites};
use cdp_projections::identity::housekeeping::new_job;
use cdp_projections::identity::{graph_of, rules_of, IdentityResolver};
use cdp_projections::profiles::{self, ModelWrites, ProfileKey};
use cdp_projections::runner::{checkpoint, ModelTx, ProjectionError};
use serde_json::Value;

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
        let at = checkpoint(store, IdentityResolver::NAME).await?;
        let (docs, folded) = fold_log(store, at).await?;
        let now = chrono::Utc::now();
        let mut workspaces: Vec<String> = docs.keys().map(|(w, _)| w.clone()).collect();
        workspaces.sort();
        workspaces.dedup();
        let jobs = CatalogWrites {
            jobs: workspaces
                .iter()
                .map(|w| new_job(w, BATCH_JOB, BATCH_JOB, at.seq, now))
                .collect(),
            ..CatalogWrites::default()
        };
        if write_if_unmoved(store, at, docs, true, jobs).await? {
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

async fn fold_log(
    store: &Store,
    through: Position,
) -> Result<(HashMap<ProfileKey, ProfileDoc>, u64), ProjectionError> {
    const PAGE: u32 = 5_000;
    let owners = all_owners(store).await?;
    let mut rules: HashMap<String, IdentityRules> = HashMap::new();
    let mut catalogs: HashMap<String, Catalog> = HashMap::new();
    let mut docs: HashMap<ProfileKey, ProfileDoc> = HashMap::new();
    let mut folded = 0;
    let mut after = Position::START;
    'log: loop {
        let page = store.read_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for stored in &page {
            if stored.position > through {
                break 'log;
            }
            let e = &stored.event;
            let Some((ws, profile)) = owners.get(&stored.position.seq) else {
                continue;
            };
            if e.kind == MessageKind::Operator || cdp_domain::shred::is_erased(e) {
                continue;
            }
            if !rules.contains_key(ws) {
                rules.insert(ws.clone(), rules_of(store, ws).await?);
                catalogs.insert(ws.clone(), catalog::load(store, ws).await?);
            }
            fold_event(
                docs.entry((ws.clone(), profile.clone())).or_default(),
                e,
                &rules[ws],
                &catalogs[ws],
            )?;
            folded += 1;
        }
    }
    let workspaces: Vec<String> = owners
        .values()
        .map(|(w, _)| w.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for ws in workspaces {
        let graph = graph_of(store, &ws).await?;
        for (profile, state) in graph.profiles() {
            docs.entry((ws.clone(), profile.clone()))
                .or_default()
                .linked = state.identifiers_owned();
        }
    }
    Ok((docs, folded))
}

/// Folds one stored customer event into `doc`, as live processing does.
fn fold_event(
    doc: &mut ProfileDoc,
    e: &cdp_domain::event::NewEvent,
    rules: &IdentityRules,
    catalog: &Catalog,
) -> Result<(), ProjectionError> {
    let payload: Value = serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
    let carried = identifiers_of(
        &payload,
        e.user_id.as_deref(),
        e.anonymous_id.as_deref(),
        rules,
    );
    let fold = FoldRules {
        source_priority: &rules.source_priority,
        traits: catalog.folded(),
    };
    doc.apply(e, &payload, &carried, fold);
    Ok(())
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
    workspace: &str,
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
        let at = checkpoint(store, IdentityResolver::NAME).await?;
        let seqs = profiles::events_of(store, workspace, std::slice::from_ref(&id)).await?;
        let mut doc = ProfileDoc::default();
        for stored in store.events_by_seq(&seqs).await? {
            fold_event(&mut doc, &stored.event, &rules, &catalog)?;
        }
        let graph = graph_of(store, workspace).await?;
        if let Some((_, state)) = graph.profiles().find(|(p, _)| **p == id) {
            doc.linked = state.identifiers_owned();
        }
        let key = (workspace.to_owned(), id.clone());
        let due = CatalogWrites {
            due: vec![(workspace.to_owned(), live.clone(), Some(0.0))],
            ..CatalogWrites::default()
        };
        if write_if_unmoved(store, at, vec![(key, doc)], false, due).await? {
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

async fn all_owners(store: &Store) -> Result<HashMap<i64, (String, ProfileId)>, ProjectionError> {
    let sql = "SELECT log_seq, workspace, profile FROM event_profiles";
    let rows: Vec<(i64, String, String)> = match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.read_pool()).await?,
        Store::Postgres(s) => sqlx::query_as(sql).fetch_all(s.pool()).await?,
    };
    rows.into_iter()
        .map(|(seq, ws, p)| {
            let p = ProfileId::parse(&p).map_err(ProjectionError::corrupt)?;
            Ok((seq, (ws, p)))
        })
        .collect()
}

/// Replaces every profile document with `docs`, in one transaction that holds the resolver's checkpoint
/// still; `false` when the checkpoint is no longer `at`.
async fn write_if_unmoved(
    store: &Store,
    at: Position,
    docs: impl IntoIterator<Item = (ProfileKey, ProfileDoc)>,
    replace_all: bool,
    catalog_writes: CatalogWrites,
) -> Result<bool, ProjectionError> {
    let rows = docs
        .into_iter()
        .map(|(key, doc)| (key, doc.to_state()))
        .collect();
    let writes = ModelWrites {
        docs: rows,
        ..ModelWrites::default()
    };
    let name = IdentityResolver::NAME;
    let mut tx = match store {
        Store::Sqlite(s) => ModelTx::Sqlite(s.begin_write().await?),
        Store::Postgres(s) => ModelTx::Postgres(s.pool().begin().await?),
    };
    let now: Option<(i64, i64)> = match &mut tx {
        ModelTx::Sqlite(tx) => {
            sqlx::query_as("SELECT tx, seq FROM projection_checkpoints WHERE name = ?")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
        }
        ModelTx::Postgres(tx) => {
            sqlx::query_as("SELECT tx, seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    let now = now.map_or(Position::START, |(tx, seq)| Position { tx, seq });
    if now != at {
        return Ok(false);
    }
    if replace_all {
        match &mut tx {
            ModelTx::Sqlite(tx) => {
                sqlx::query("DELETE FROM profiles")
                    .execute(&mut **tx)
                    .await?;
            }
            ModelTx::Postgres(tx) => {
                sqlx::query("DELETE FROM profiles")
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    profiles::write(&mut tx, &writes).await?;
    catalog::write(&mut tx, &catalog_writes).await?;
    cdp_projections::identity::forget_state(&mut tx).await?;
    match tx {
        ModelTx::Sqlite(tx) => tx.commit().await?,
        ModelTx::Postgres(tx) => tx.commit().await?,
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
