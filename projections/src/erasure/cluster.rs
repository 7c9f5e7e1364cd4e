//! Whom an erasure forgets: the cluster (the live profile and every profile merged into it) and the
//! identifier values its decisions hold, with the other profiles that may hold its events.

use std::collections::BTreeSet;

use cdp_domain::identity::ProfileId;

use super::sql::{marks, pairs, text_binds, texts, Bind};
use crate::runner::{ModelTx, ProjectionError};

/// The person an erasure forgets: the live profile and every profile merged into it.
pub(super) struct Cluster {
    pub(super) workspace: String,
    pub(super) survivor: String,
    /// The survivor first, then the merged-away profiles in id order.
    pub(super) members: Vec<String>,
}

impl Cluster {
    pub(super) fn ws(&self) -> Bind {
        Bind::Text(self.workspace.clone())
    }

    /// `?, ?, …`, one per member.
    pub(super) fn marks(&self) -> String {
        marks(self.members.len())
    }

    /// The workspace, then every member: the binds of `workspace = ? AND profile IN (…)`.
    pub(super) fn binds(&self) -> Vec<Bind> {
        text_binds(&self.workspace, &self.members)
    }

    /// The workspace and the survivor: the binds of `workspace = ? AND profile = ?`.
    pub(super) fn survivor_binds(&self) -> [Bind; 2] {
        [self.ws(), Bind::Text(self.survivor.clone())]
    }
}

/// The live profile `profile` resolves to (a merged-away id names its survivor) and the profiles merged
/// into it; `None` when it is not live.
pub(super) async fn find_cluster(
    tx: &mut ModelTx<'_>,
    workspace: &str,
    profile: &ProfileId,
) -> Result<Option<Cluster>, ProjectionError> {
    let ws = Bind::Text(workspace.to_owned());
    let survivor = texts(
        tx,
        "SELECT survivor FROM profile_aliases WHERE workspace = ? AND profile = ?",
        &[ws.clone(), Bind::Text(profile.to_string())],
    )
    .await?
    .pop()
    .unwrap_or_else(|| profile.to_string());
    let live = texts(
        tx,
        "SELECT profile FROM profiles WHERE workspace = ? AND profile = ?",
        &[ws.clone(), Bind::Text(survivor.clone())],
    )
    .await?;
    if live.is_empty() {
        return Ok(None);
    }
    let mut members = vec![survivor.clone()];
    members.extend(
        texts(
            tx,
            "SELECT profile FROM profile_aliases WHERE workspace = ? AND survivor = ? ORDER BY profile",
            &[ws, Bind::Text(survivor.clone())],
        )
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
    let in_cluster = cluster.marks();
    let cluster_binds = cluster.binds();
    let mut typed: BTreeSet<(String, String)> = pairs(
        tx,
        &format!(
            "SELECT id_type, value FROM identity_events WHERE workspace = ? AND value IS NOT NULL \
             AND id_type IS NOT NULL AND profile IN ({in_cluster})"
        ),
        &cluster_binds,
    )
    .await?
    .into_iter()
    .collect();
    typed.extend(
        pairs(
            tx,
            "SELECT id_type, value FROM identifier_owners WHERE workspace = ? AND profile = ?",
            &cluster.survivor_binds(),
        )
        .await?,
    );
    let ours: Vec<(String, String)> = typed.iter().cloned().collect();
    let mut candidates: BTreeSet<String> = BTreeSet::new();
    for chunk in ours.chunks(200) {
        let mut binds = cluster_binds.clone();
        for (t, v) in chunk {
            binds.push(Bind::Text(t.clone()));
            binds.push(Bind::Text(v.clone()));
        }
        let any = vec!["(id_type = ? AND value = ?)"; chunk.len()].join(" OR ");
        let held_elsewhere = pairs(
            tx,
            &format!(
                "SELECT id_type, value FROM identifier_owners WHERE workspace = ? \
                 AND profile NOT IN ({in_cluster}) AND ({any})"
            ),
            &binds,
        )
        .await?;
        for held in held_elsewhere {
            typed.remove(&held);
        }
        for sql in [
            "SELECT DISTINCT profile FROM identifier_owners WHERE workspace = ?",
            "SELECT DISTINCT profile FROM identity_events WHERE kind = 'link_rejected' AND workspace = ?",
        ] {
            candidates.extend(
                texts(
                    tx,
                    &format!("{sql} AND profile NOT IN ({in_cluster}) AND ({any})"),
                    &binds,
                )
                .await?,
            );
        }
    }
    let values = typed.into_iter().map(|(_, v)| v).collect();
    Ok((values, candidates))
}
