//! Refolding profiles beside the runner (`replay batch`, `replay profile`): documents recomputed from
//! the log up to a watermark — the resolver's checkpoint — are written only if that checkpoint did not
//! move meanwhile, in one transaction that holds it still. And the end of a rebuild's switch
//! (`finish_switch`), in the transaction `replay` began: the model's writes stay in this crate.

use std::collections::HashMap;

use cdp_domain::catalog::Catalog;
use cdp_domain::event::Position;
use cdp_domain::identity::{identifiers_of, IdentityRules, ProfileId};
use cdp_domain::message::MessageKind;
use cdp_domain::profile::{FoldRules, ProfileDoc};
use cdp_domain::store::sql::query;
use cdp_domain::store::{EventStore, Store};
use serde_json::Value;

use crate::catalog;
use crate::identity::{graph_in, rules_in, IdentityResolver};
use crate::model_tx::ModelTx;
use crate::partitions::Watermark;
use crate::profiles::sql as profile_sql;
use crate::profiles::{self, ModelWrites, ProfileKey};
use crate::runner::ProjectionError;
use crate::stages::{self, StageWrites};

/// Writes the profile documents `docs` (every stored one replaced by them when `replace_all`) and
/// `stage_writes`, in one transaction that holds the resolver's checkpoints still (every part's),
/// and tells every resolver to reload; `false` (nothing written) when a checkpoint is no longer
/// where `at` found it.
pub async fn write_if_unmoved(
    store: &Store,
    at: &Watermark,
    docs: impl IntoIterator<Item = (ProfileKey, ProfileDoc)>,
    replace_all: bool,
    stage_writes: StageWrites,
) -> Result<bool, ProjectionError> {
    let rows = docs
        .into_iter()
        .map(|(key, doc)| (key, doc.to_state()))
        .collect();
    let writes = ModelWrites {
        docs: rows,
        ..ModelWrites::default()
    };
    let mut tx = match store {
        Store::Postgres(s) => {
            let mut tx = s.pool().begin().await?;
            crate::partitions::lock_all_postgres(&mut tx).await?;
            ModelTx(crate::model_tx::Tx::Postgres(tx))
        }
        Store::Sqlite(_) => ModelTx::begin(store).await?,
    };
    if Watermark::read_in(&mut tx).await? != *at {
        return Ok(false);
    }
    if replace_all {
        query(profile_sql::DELETE_ALL_PROFILES)
            .execute(tx.exec())
            .await?;
    }
    profiles::write(&mut tx, &writes).await?;
    stages::write(&mut tx, &stage_writes).await?;
    crate::identity::forget_state(&mut tx).await?;
    tx.commit().await?;
    Ok(true)
}

/// Every profile document folded from the log up to `through` (a watermark: the resolver's checkpoint):
/// each customer event into the profile it belongs to now, each profile's identifiers as the recorded
/// identity decisions link them, under the workspace's current trait fold and catalog. Returns the
/// documents and the number of events folded.
pub async fn fold_log(
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
                rules.insert(ws.clone(), rules_in(store, ws).await?);
                catalogs.insert(ws.clone(), catalog::load_in(store, ws).await?);
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
        let graph = graph_in(store, &ws).await?;
        for (profile, state) in graph.profiles() {
            docs.entry((ws.clone(), profile.clone()))
                .or_default()
                .linked = state.identifiers_owned();
        }
    }
    Ok((docs, folded))
}

/// Folds one stored customer event into `doc`, as live processing does.
pub fn fold_event(
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

/// The owner (workspace, profile) of every resolved event, by log sequence.
pub async fn all_owners(
    store: &Store,
) -> Result<HashMap<i64, (String, ProfileId)>, ProjectionError> {
    let rows: Vec<(i64, String, String)> = query(profile_sql::ALL_OWNERS)
        .fetch_all(store.reader())
        .await?;
    rows.into_iter()
        .map(|(seq, ws, p)| {
            let p = ProfileId::parse(&p).map_err(ProjectionError::corrupt)?;
            Ok((seq, (ws, p)))
        })
        .collect()
}

/// The end of a rebuild's switch, in the transaction the switch began and handed over: the resolver's
/// code version, the reconciled tags and memberships (rows, history, messages), every part of the
/// resolver set to `through` — the position the rebuilt model stands at; a part that was further on
/// applies its events after it again (their messages published at least once) —, every resolver told
/// to reload its in-memory state (`forget_state`); then the commit.
pub async fn finish_switch(
    mut tx: ModelTx<'_>,
    version: i64,
    changes: &StageWrites,
    through: Position,
) -> Result<(), ProjectionError> {
    crate::model_tx::write_version(&mut tx, IdentityResolver::NAME, version).await?;
    query(crate::model_sql::SET_RESOLVER_CHECKPOINTS)
        .bind(through.tx)
        .bind(through.seq)
        .bind(crate::projection::parts_pattern())
        .execute(tx.exec())
        .await?;
    stages::write(&mut tx, changes).await?;
    crate::identity::forget_state(&mut tx).await?;
    tx.commit().await
}
