//! The resolver's own rows in its transaction: a batch's identity decisions (`identity_events`, in
//! order: one multi-row insert per 500 on SQLite (`sqlite`), one statement over arrays on PostgreSQL
//! (`postgres`)), and how a
//! group of batches keeps only the last row of each key that holds a last value; and what a written
//! batch touched, staged for this process's audience indexes (`stage_in_audiences`).

use cdp_domain::fastmap::FastSet;
use cdp_domain::identity::{IdentityEvent, ProfileId};

use super::RecordedDecision;
use crate::audience::Audiences;
use crate::model_tx::Tx;
use crate::profiles::{ModelWrites, ProfileKey};
use crate::runner::{ModelTx, ProjectionError};
use crate::stages::StageWrites;

mod postgres;
mod sqlite;

/// A decision with its stored body (JSON), as a row of `identity_events`.
type DecisionRow<'d> = (&'d RecordedDecision, &'d String);

/// Appends a batch's decisions to `identity_events`, in their order.
pub(super) async fn write_decisions(
    tx: &mut ModelTx<'_>,
    decisions: &[RecordedDecision],
) -> Result<(), ProjectionError> {
    let mut bodies = Vec::with_capacity(decisions.len());
    for d in decisions {
        bodies.push(serde_json::to_string(&d.event).map_err(ProjectionError::corrupt)?);
    }
    let rows: Vec<DecisionRow<'_>> = decisions.iter().zip(&bodies).collect();
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::append_decisions(tx, &rows).await,
        Tx::Postgres(tx) => postgres::append_decisions(tx, &rows).await,
    }
}

/// The columns of a decision's row besides its workspace, position and body: kind, profile, other,
/// identifier type and value.
pub(super) fn columns(
    event: &IdentityEvent,
) -> (
    &'static str,
    Option<&str>,
    Option<&str>,
    Option<&str>,
    Option<&str>,
) {
    match event {
        IdentityEvent::ProfileCreated { profile, .. } => {
            ("profile_created", Some(profile.as_str()), None, None, None)
        }
        IdentityEvent::IdentifierLinked {
            profile,
            id_type,
            value,
            ..
        } => (
            "identifier_linked",
            Some(profile.as_str()),
            None,
            Some(id_type),
            Some(value),
        ),
        IdentityEvent::ProfilesMerged {
            survivor, absorbed, ..
        } => (
            "profiles_merged",
            Some(survivor.as_str()),
            Some(absorbed.as_str()),
            None,
            None,
        ),
        IdentityEvent::MergeRejected { profiles, .. } => (
            "merge_rejected",
            profiles.first().map(ProfileId::as_str),
            profiles.get(1).map(ProfileId::as_str),
            None,
            None,
        ),
        IdentityEvent::LinkRejected {
            profile,
            id_type,
            value,
            ..
        } => (
            "link_rejected",
            Some(profile.as_str()),
            None,
            Some(id_type),
            Some(value),
        ),
        IdentityEvent::ProfileSplit { from, into, .. } => (
            "profile_split",
            Some(from.as_str()),
            Some(into.as_str()),
            None,
            None,
        ),
        IdentityEvent::ProfileErased { profile, .. } => {
            ("profile_erased", Some(profile.as_str()), None, None, None)
        }
        IdentityEvent::CommandRejected { .. } => ("command_rejected", None, None, None, None),
    }
}

/// Drops from `rows` (a batch's, met from the last batch of a group back) those whose key a later batch
/// writes (`later`), then adds this batch's keys to `later`. Within a batch the last row of a key wins
/// when written, so a batch keeps all of its own.
pub(super) fn keep_last<T, K: Eq + std::hash::Hash>(
    rows: &mut Vec<T>,
    later: &mut FastSet<K>,
    key: impl Fn(&T) -> K,
) {
    if !later.is_empty() {
        rows.retain(|row| !later.contains(&key(row)));
    }
    later.extend(rows.iter().map(key));
}

/// Tells the audience indexes what one batch touched (`Audiences::stage`): every profile whose state,
/// tags, memberships or spend it writes, and the workspaces whose definitions it changes.
pub(super) fn stage_in_audiences(
    audiences: &Audiences,
    token: &str,
    based_on: Option<&str>,
    profiles: Vec<ProfileKey>,
    stages: &StageWrites,
) {
    if !audiences.has_slots() {
        return;
    }
    let redefined = stages
        .catalog
        .definitions
        .iter()
        .map(|d| d.workspace.clone())
        .collect();
    audiences.stage(token, based_on, profiles, redefined);
}

/// Every profile one batch writes something of: its state (or its removal, merged away), its tags, its
/// memberships or its spend.
pub(super) fn touched(model: &ModelWrites, stages: &StageWrites) -> Vec<ProfileKey> {
    let mut profiles: Vec<ProfileKey> = model
        .docs
        .iter()
        .map(|(key, _)| key.clone())
        .chain(model.gone.iter().cloned())
        .collect();
    let mut named = |w: &str, p: &str| {
        if let Ok(p) = cdp_domain::identity::ProfileId::parse(p) {
            profiles.push((w.to_owned(), p));
        }
    };
    for (w, p, _, _) in &stages.audiences.tags {
        named(w, p);
    }
    for (w, _, p, _) in &stages.audiences.members {
        named(w, p);
    }
    for (w, p, _) in &stages.derived.spend {
        named(w, p);
    }
    profiles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keeps_the_last_batch_s_row_of_each_key() {
        let mut later = FastSet::default();
        let mut newest = vec![("a", 3), ("b", 3)];
        let mut oldest = vec![("a", 1), ("c", 1), ("a", 2)];
        keep_last(&mut newest, &mut later, |r| r.0);
        keep_last(&mut oldest, &mut later, |r| r.0);
        assert_eq!(newest, vec![("a", 3), ("b", 3)]);
        assert_eq!(oldest, vec![("c", 1)]);
    }
}
