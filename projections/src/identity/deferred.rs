//! A rebuild's deferred writes: while a shadow resolver folds plain batches of the log (customer events
//! only, no work between batches), the rows that hold a profile's last value — its state, its tags,
//! segments, spend and due time — are not written per batch but once, when
//! something is about to read them ([`flush`]): the states from what the resolver holds, the tags and
//! segments evaluated once per profile. Each batch still commits what is appended (decisions, where
//! each event belongs, merges' moves) and who holds its new identifiers (few rows, written once
//! each, while the fold goes on) with its checkpoint.
//!
//! Between a deferred batch's commit and the flush, the stored model is behind its checkpoint; a
//! marker row says so (`DEFERRED_MARK` in `projection_checkpoints`, set by every deferred batch's
//! commit, deleted by the flush's). A resolver that starts without the held state (after a failed
//! commit, or a rebuild resumed after a crash) and finds the marker refuses with
//! [`ProjectionError::Stale`]: the rebuild drops the shadow and starts over.

use std::collections::BTreeMap;

use cdp_domain::fastmap::{map_with_capacity, FastMap, FastSet};
use cdp_domain::identity::ProfileId;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use super::ResolverState;
use crate::evaluation::derive::{self, Derivation};
use crate::model_sql as sql;
use crate::profiles::{ModelWrites, ProfileKey};
use crate::runner::{ModelTx, ProjectionError};
use crate::stages::StageWrites;

/// The row of `projection_checkpoints` that marks a model whose last-value rows are not all written.
const DEFERRED_MARK: &str = "identity~deferred";

/// Profiles written (and evaluated) per step of a flush: bounds what a flush holds decoded at once.
const FLUSH_CHUNK: usize = 20_000;

/// Entries (profiles to write or evaluate) deferred at most: past them the next batch
/// is not plain and writes them first. Bounds the memory deferring adds (~150 bytes an entry) and the
/// rows a flush writes in its one transaction.
const DEFERRED_AT_MOST: usize = 600_000;

/// What plain batches left unwritten since the last flush.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Profiles whose stored state is older than the held one.
    states: FastSet<ProfileKey>,
    /// Profiles to evaluate, with the cause of their last change.
    touched: BTreeMap<ProfileKey, String>,
    /// Profiles made since the last flush: nothing of them is stored.
    created: FastSet<ProfileKey>,
    /// Profiles merged away since the last flush, with the cause (their survivor is read from the
    /// graph at the flush).
    merged: Vec<(ProfileKey, String)>,
}

impl Deferred {
    pub(super) fn is_empty(&self) -> bool {
        self.states.is_empty() && self.touched.is_empty() && self.merged.is_empty()
    }

    /// Whether as much is deferred as may be ([`DEFERRED_AT_MOST`]).
    pub(super) fn full(&self) -> bool {
        self.states.len() + self.touched.len() >= DEFERRED_AT_MOST
    }

    /// Takes what a plain batch would have evaluated: its touched profiles, those it made and those it
    /// merged away (with their survivor and cause).
    pub(super) fn note(
        &mut self,
        touched: BTreeMap<ProfileKey, String>,
        created: &FastSet<ProfileKey>,
        merged: Vec<(ProfileKey, ProfileKey, String)>,
    ) {
        self.created.extend(created.iter().cloned());
        for (gone, _, cause) in merged {
            self.touched.remove(&gone);
            self.states.remove(&gone);
            self.merged.push((gone, cause));
        }
        self.touched.extend(touched);
    }

    /// Notes the profiles whose states a plain batch left (held by the resolver, read back at the
    /// flush) and those it merged away.
    pub(super) fn hold(&mut self, gone: &[ProfileKey], states: impl Iterator<Item = ProfileKey>) {
        for gone in gone {
            self.states.remove(gone);
            self.touched.remove(gone);
        }
        self.states.extend(states);
    }
}

/// Marks the model as deferred, in a deferred batch's transaction.
pub(super) async fn mark(tx: &mut ModelTx<'_>) -> Result<(), ProjectionError> {
    query(sql::INSERT_MARK)
        .bind(DEFERRED_MARK)
        .execute(tx.exec())
        .await?;
    Ok(())
}

/// Whether the stored model has deferred rows no flush wrote.
pub(super) async fn unwritten(store: &Store) -> Result<bool, ProjectionError> {
    let n: i64 = query(sql::COUNT_MARK)
        .bind(DEFERRED_MARK)
        .scalar(store.writer())
        .await?;
    Ok(n > 0)
}

/// Writes everything deferred, in one transaction of its own: every batch that deferred rows is
/// committed (the caller makes sure), so the rows written are those of the stored checkpoint. The
/// profiles are evaluated once each, at `now`.
pub(super) async fn flush(
    store: &Store,
    state: &mut ResolverState,
    now: DateTime<Utc>,
    parts: usize,
) -> Result<(), ProjectionError> {
    let deferred = std::mem::take(&mut state.deferred);
    if deferred.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let Deferred {
        states,
        mut touched,
        created,
        merged,
    } = deferred;
    let survivor = |(w, p): &ProfileKey| -> ProfileId {
        state
            .graphs
            .get(w)
            .map_or_else(|| p.clone(), |g| g.resolve(p))
    };
    // Each profile merged away goes with its survivor's chunk (its manual tags move to it).
    let mut merged_into: FastMap<ProfileKey, Vec<(ProfileKey, ProfileKey, String)>> =
        FastMap::default();
    for (gone, cause) in merged {
        let into = (gone.0.clone(), survivor(&gone));
        merged_into
            .entry(into.clone())
            .or_default()
            .push((gone, into, cause));
    }
    // Every profile with a state to write or a tag to evaluate, in order, a chunk at a time.
    let mut keys: Vec<ProfileKey> = states.iter().chain(touched.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| state.docs.holds(k));
    let mut tx = ModelTx::begin(store).await?;
    let mut evaluated = 0;
    // Where the flush's time goes: decoding and evaluating, then writing states and rows.
    let (mut evaluating, mut writing) = (0.0, 0.0);
    for chunk in keys.chunks(FLUSH_CHUNK) {
        let step = std::time::Instant::now();
        // The profiles held decoded are encoded (to be written, and held so again); the others'
        // held states are written as they are and decoded to be evaluated.
        let warm: Vec<(ProfileKey, ProfileDoc)> = chunk
            .iter()
            .filter_map(|k| state.docs.take_warm(k).map(|doc| (k.clone(), doc)))
            .collect();
        let encoded = crate::parallel::map(&warm, parts, |(_, doc)| doc.to_state());
        let held: Vec<(&ProfileKey, &[u8])> = chunk
            .iter()
            .filter_map(|k| state.docs.state(k).map(|s| (k, s)))
            .collect();
        let mut rows: Vec<(ProfileKey, Vec<u8>)> = held
            .iter()
            .filter(|(k, _)| states.contains(*k))
            .map(|(k, s)| ((*k).clone(), s.to_vec()))
            .collect();
        rows.extend(
            warm.iter()
                .zip(&encoded)
                .filter(|((k, _), _)| states.contains(k))
                .map(|((k, _), s)| (k.clone(), s.clone())),
        );
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let model = ModelWrites {
            docs: rows,
            ..ModelWrites::default()
        };
        let decoded = crate::parallel::map(&held, parts, |(_, s)| {
            ProfileDoc::from_stored(Some(s), None)
        });
        let mut docs = map_with_capacity(held.len() + warm.len());
        for ((key, _), doc) in held.iter().zip(decoded) {
            docs.insert((*key).clone(), doc.map_err(ProjectionError::corrupt)?);
        }
        drop(held);
        let warm_keys: Vec<ProfileKey> = warm.iter().map(|(k, _)| k.clone()).collect();
        docs.extend(warm);
        state.docs.put_back(warm_keys.into_iter().zip(encoded));
        let chunk_touched: BTreeMap<ProfileKey, String> = chunk
            .iter()
            .filter_map(|k| touched.remove_entry(k))
            .collect();
        evaluated += chunk_touched.len();
        let merged = chunk
            .iter()
            .filter_map(|k| merged_into.remove(k))
            .flatten()
            .collect();
        let stages = evaluate(
            store,
            state,
            &docs,
            chunk_touched,
            &created,
            merged,
            now,
            parts,
        )
        .await?;
        evaluating += step.elapsed().as_secs_f64();
        let step = std::time::Instant::now();
        crate::profiles::write(&mut tx, &model).await?;
        crate::stages::write(&mut tx, &stages).await?;
        writing += step.elapsed().as_secs_f64();
        state.memo.wrote(&stages);
    }
    let merged: Vec<_> = merged_into.into_values().flatten().collect();
    if !merged.is_empty() {
        // Profiles merged away into none of the profiles written: their rows go all the same.
        let stages = evaluate(
            store,
            state,
            &FastMap::default(),
            BTreeMap::new(),
            &created,
            merged,
            now,
            parts,
        )
        .await?;
        crate::stages::write(&mut tx, &stages).await?;
        state.memo.wrote(&stages);
    }
    // Nothing is held decoded past a flush (what a deferring batch left was among the keys).
    state.docs.cool(parts, |_| false);
    let step = std::time::Instant::now();
    unmark_and_commit(tx).await?;
    tracing::debug!(
        profiles = keys.len(),
        evaluated,
        evaluate_ms = evaluating * 1e3,
        write_ms = writing * 1e3,
        commit_ms = step.elapsed().as_secs_f64() * 1e3,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "resolver: deferred rows written"
    );
    Ok(())
}

/// The tags and segments of `touched` (and the rows of the profiles `merged` away) as derive writes
/// them, with nothing for the outbox or the history: a rebuild's shadow publishes nothing.
#[allow(clippy::too_many_arguments)]
async fn evaluate(
    store: &Store,
    state: &mut ResolverState,
    docs: &FastMap<ProfileKey, ProfileDoc>,
    touched: BTreeMap<ProfileKey, String>,
    created: &FastSet<ProfileKey>,
    merged: Vec<(ProfileKey, ProfileKey, String)>,
    now: DateTime<Utc>,
    parts: usize,
) -> Result<StageWrites, ProjectionError> {
    let mut stages = StageWrites::default();
    derive::derive(
        store,
        Derivation {
            docs,
            touched,
            created,
            merged,
            manual: Vec::new(),
            catalogs: &state.catalogs,
            thresholds: &state.thresholds,
            now,
            parts,
        },
        &mut state.docs,
        &mut stages,
    )
    .await?;
    stages.outbox.clear();
    stages.audiences.history.clear();
    Ok(stages)
}

async fn unmark_and_commit(mut tx: ModelTx<'_>) -> Result<(), ProjectionError> {
    query(sql::DELETE_MARK)
        .bind(DEFERRED_MARK)
        .execute(tx.exec())
        .await?;
    tx.commit().await?;
    Ok(())
}
