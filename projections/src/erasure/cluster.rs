//! Whom an erasure forgets: the cluster (the live profile and every profile merged into it) and the
//! identifier values its decisions hold, with the other profiles that may hold its events.

use std::collections::BTreeSet;

use cdp_domain::identity::ProfileId;

use cdp_domain::store::sql::query;

use super::sql;
use crate::runner::{ModelTx, ProjectionError};

/// The person an erasure forgets: the live profile and every profile merged into it.
pub(super) struct Cluster {
    pub(super) workspace: String,
    pub(super) survivor: String,
    /// The survivor first, then the merged-away profiles in id order.
    pub(super) members: Vec<String>,
}

/// The live profile `profile` resolves to (a merged-away id names its survivor) and the profiles merged
/// into it; `None` when it is not live.
pub(super) async fn find_cluster(
    tx: &mut ModelTx<'_>,
    workspace: &str,
    profile: &ProfileId,
) -> Result<Option<Cluster>, ProjectionError> {
    let survivor: String = query(sql::SURVIVOR_OF)
        .bind(workspace)
        .bind(profile.as_str())
        .scalars(tx.exec())
        .await?
        .pop()
        .unwrap_or_else(|| profile.to_string());
    let live: Vec<String> = query(sql::LIVE_PROFILE)
        .bind(workspace)
        .bind(survivor.as_str())
        .scalars(tx.exec())
        .await?;
    if live.is_empty() {
        return Ok(None);
    }
    let mut members = vec![survivor.clone()];
    members.extend(
        query(sql::MERGED_INTO)
            .bind(workspace)
            .bind(survivor.as_str())
            .scalars::<String>(tx.exec())
            .await?,
    );
    Ok(Some(Cluster {
        workspace: workspace.to_owned(),
        survivor,
        members,
    }))
}

/// The identifier values to redact: those of the cluster's decisions, except values another live
/// profile holds now (a split moved them there: they are that profile's); and the other profiles that
/// may hold events filed under one of its subjects: those holding one of its identifiers now (a split
/// moved it there) and those its identifiers were refused to (the event went to another profile).
pub(super) async fn identifier_values(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
) -> Result<(BTreeSet<String>, BTreeSet<String>), ProjectionError> {
    let ws = cluster.workspace.as_str();
    let mut typed: BTreeSet<(String, String)> = query(sql::DECIDED_IDENTIFIERS)
        .bind(ws)
        .bind(&cluster.members)
        .fetch_all(tx.exec())
        .await?
        .into_iter()
        .collect();
    typed.extend(
        query(sql::HELD_IDENTIFIERS)
            .bind(ws)
            .bind(cluster.survivor.as_str())
            .fetch_all::<(String, String)>(tx.exec())
            .await?,
    );
    let ours: Vec<(String, String)> = typed.iter().cloned().collect();
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for chunk in ours.chunks(200) {
        let any = sql::any_identifier(chunk.len());
        let identifiers = chunk.iter().flat_map(|(t, v)| [t.as_str(), v.as_str()]);
        let held_elsewhere: Vec<(String, String)> = query(format!("{}{any}", sql::HELD_ELSEWHERE))
            .bind(ws)
            .bind(&cluster.members)
            .bind_each(identifiers.clone())
            .fetch_all(tx.exec())
            .await?;
        for held in held_elsewhere {
            typed.remove(&held);
        }
        for head in sql::HOLDING_OR_REFUSED {
            candidates.extend(
                query(format!("{head}{any}"))
                    .bind(ws)
                    .bind(&cluster.members)
                    .bind_each(identifiers.clone())
                    .scalars::<String>(tx.exec())
                    .await?,
            );
        }
    }
    let values = typed.into_iter().map(|(_, v)| v).collect();
    Ok((values, candidates))
}
