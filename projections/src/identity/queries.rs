//! Reads of the identity decisions for the API: survivors, explanations, conflicts, a workspace's graph,
//! and the identity rules in force.

use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{IdentityEvent, IdentityGraph, IdentityRules};
use cdp_domain::store::sql::{query, Query};
use cdp_domain::store::Store;

use super::sql;
use crate::profiles;
use crate::runner::{ModelTx, ProjectionError};

/// One stored identity decision, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub seq: i64,
    pub log_seq: i64,
    pub caused_by: String,
    pub recorded_at_ms: i64,
    pub event: IdentityEvent,
}

type RawRow = (i64, i64, String, i64, String);

fn decode_rows(rows: Vec<RawRow>) -> Result<Vec<DecisionRow>, ProjectionError> {
    rows.into_iter()
        .map(|(seq, log_seq, caused_by, recorded_at_ms, body)| {
            Ok(DecisionRow {
                seq,
                log_seq,
                caused_by,
                recorded_at_ms,
                event: serde_json::from_str(&body).map_err(ProjectionError::corrupt)?,
            })
        })
        .collect()
}

/// The decisions a statement over `identity_events` reads (`seq, log_seq, caused_by, recorded_at,
/// body`).
async fn decisions(store: &Store, q: Query<'_>) -> Result<Vec<DecisionRow>, ProjectionError> {
    decode_rows(q.fetch_all(store.reader()).await?)
}

/// The surviving profile of `profile` (itself when it was never merged away); `None` when no such
/// profile was ever created in the workspace.
pub async fn survivor_of(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<String>, ProjectionError> {
    profiles::survivor(store, workspace, profile).await
}

/// The live profile holding an identifier, if it is linked.
pub async fn profile_holding(
    store: &Store,
    workspace: &WorkspaceId,
    id_type: &str,
    value: &str,
) -> Result<Option<String>, ProjectionError> {
    profiles::holder(store, workspace, id_type, value).await
}

/// The decision that first linked an identifier.
pub async fn link_of(
    store: &Store,
    workspace: &WorkspaceId,
    id_type: &str,
    value: &str,
) -> Result<Option<DecisionRow>, ProjectionError> {
    let workspace = workspace.as_str();
    let q = query(sql::LINK_OF)
        .bind(workspace)
        .bind(id_type)
        .bind(value);
    let rows = decisions(store, q).await?;
    Ok(rows.into_iter().next())
}

/// The decisions an event (an operator command, say) caused: found by the event's log position.
pub async fn caused_by(
    store: &Store,
    workspace: &WorkspaceId,
    message_id: &str,
) -> Result<Vec<DecisionRow>, ProjectionError> {
    let workspace = workspace.as_str();
    let q = query(sql::CAUSED_BY)
        .bind(workspace)
        .bind(message_id)
        .bind(workspace)
        .bind(message_id);
    decisions(store, q).await
}

/// A workspace's identity graph as its recorded decisions build it.
pub async fn graph_of(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<IdentityGraph, ProjectionError> {
    graph_in(store, workspace).await
}

/// [`graph_of`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn graph_in(
    store: &Store,
    workspace: &str,
) -> Result<IdentityGraph, ProjectionError> {
    let rows = decisions(store, query(sql::DECISIONS_OF_WORKSPACE).bind(workspace)).await?;
    let mut graph = IdentityGraph::new();
    for row in &rows {
        graph.apply(&row.event);
    }
    Ok(graph)
}

/// Why a profile is what it is: its survivor, every profile merged into it, and every decision about any
/// of them in order — each with the event that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub survivor: String,
    pub merged: Vec<String>,
    pub decisions: Vec<DecisionRow>,
}

pub async fn explain(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<Explanation>, ProjectionError> {
    let Some(survivor) = profiles::survivor(store, workspace, profile).await? else {
        return Ok(None);
    };
    let mut cluster = vec![survivor.clone()];
    cluster.extend(profiles::aliases_of(store, workspace, &survivor).await?);
    let workspace = workspace.as_str();
    // One query per column, so that each can use its index.
    let mut found: Vec<DecisionRow> = Vec::new();
    for text in sql::DECISIONS_ABOUT {
        for chunk in cluster.chunks(200) {
            let about = decisions(store, query(text).bind(workspace).bind(chunk)).await?;
            for d in about {
                if !found.iter().any(|known| known.seq == d.seq) {
                    found.push(d);
                }
            }
        }
    }
    found.sort_by_key(|d| d.seq);
    Ok(Some(Explanation {
        survivor,
        merged: cluster.into_iter().skip(1).collect(),
        decisions: found,
    }))
}

/// Rejected merges and links of a workspace, newest first, with ids below `before` when given.
pub async fn conflicts(
    store: &Store,
    workspace: &WorkspaceId,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<DecisionRow>, ProjectionError> {
    let workspace = workspace.as_str();
    let q = query(sql::CONFLICTS)
        .bind(workspace)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit));
    decisions(store, q).await
}

/// The identity rules in force for a workspace: the ones the last rules command of its log put in force
/// (stored by the resolver), or Segment's defaults.
pub async fn rules_of(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<IdentityRules, ProjectionError> {
    rules_in(store, workspace).await
}

/// [`rules_of`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn rules_in(
    store: &Store,
    workspace: &str,
) -> Result<IdentityRules, ProjectionError> {
    let row: Option<(String,)> = query(sql::RULES)
        .bind(workspace)
        .fetch_optional(store.reader())
        .await?;
    match row {
        Some((json,)) => serde_json::from_str(&json).map_err(ProjectionError::corrupt),
        None => Ok(IdentityRules::default()),
    }
}

/// The rules a change to `proposed` puts in force after `current`: `None` when they are the same
/// (whatever version the proposal names), else `proposed` under the next version (`current`'s + 1).
pub fn rules_after(current: &IdentityRules, proposed: IdentityRules) -> Option<IdentityRules> {
    let mut next = proposed;
    next.version = current.version;
    if next == *current {
        return None;
    }
    next.version = current.version + 1;
    Some(next)
}

/// Stores the rules a batch put in force, `(workspace, rules, time of the command in ms)`, in the
/// batch's transaction: the resolver, deciding the rules commands of the log, is the only writer of
/// `identity_rules`, so the rules in force are a function of the log (and a rebuild reproduces them).
pub(crate) async fn write_rules(
    tx: &mut ModelTx<'_>,
    rows: &[(String, IdentityRules, i64)],
) -> Result<(), ProjectionError> {
    for (workspace, rules, at_ms) in rows {
        let json = serde_json::to_string(rules).map_err(ProjectionError::corrupt)?;
        let version = i64::try_from(rules.version).map_err(ProjectionError::corrupt)?;
        query(sql::UPSERT_RULES)
            .bind(workspace)
            .bind(version)
            .bind(json)
            .bind(*at_ms)
            .execute(tx.exec())
            .await?;
    }
    Ok(())
}
