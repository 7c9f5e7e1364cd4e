//! Erasure, the right to be forgotten: a profile and every profile merged into it leave no personal data
//! behind. In one transaction that holds the resolver (the SQLite write lock; the resolver's checkpoint
//! row on PostgreSQL) it destroys the subject keys of the profile's events (`cdp_domain::shred`: the log
//! keeps its rows but they no longer open, so no replay or rebuild brings them back), deletes the
//! profile's read models, redacts the identifier values out of its identity decisions, drops its
//! messages from the outbox and its refused messages from the quarantine, records a `profile_erased`
//! decision and the erasure (no personal data), publishes the exits from its segments and the removal of
//! its tags (cause `erasure`, no values, reachable nowhere) and makes every resolver reload its state.
//!
//! What may stay is what identifies nobody: segment history counts under the pseudonymous id, the
//! events' rows with their times and names.

use std::collections::BTreeSet;

use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{IdentityEvent, ProfileId};
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::evaluation::derive::{change_message, membership_change};
use crate::identity::forget_state;
use crate::model_sql as checkpoint_sql;
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};
use crate::stages::StageWrites;

mod cluster;
mod sql;

use cluster::{find_cluster, identifier_values, Cluster};

use sql::{containing, restore_triggers, set_triggers_aside};

/// The cause recorded on the exits an erasure makes.
pub const ERASURE_CAUSE: &str = "erasure";

/// What replaces an erased identifier value in the decisions that are kept.
pub const REDACTED: &str = "\u{2205}erased";

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReport {
    /// The erasure's number (`erasures.seq`).
    pub seq: i64,
    /// The live profile erased.
    pub profile: ProfileId,
    /// It and every profile merged into it.
    pub profiles: Vec<ProfileId>,
    /// Events that can no longer be read.
    pub events: u64,
    /// Subject keys destroyed.
    pub keys: u64,
    /// Segments it left.
    pub segments: u64,
    /// Other live profiles that lost events filed under an erased subject: to be re-folded.
    pub affected: Vec<ProfileId>,
}

/// Replaces every string of `values` in `body` (a decision as JSON) with [`REDACTED`].
fn redact(body: &mut Value, values: &BTreeSet<String>) {
    match body {
        Value::String(s) if values.contains(s.as_str()) => *s = REDACTED.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, values)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, values)),
        _ => {}
    }
}

/// Erases the live profile `profile` resolves to (a merged-away id names its survivor). `None` when the
/// workspace has no such profile.
#[tracing::instrument(name = "erase", skip_all, fields(workspace = %workspace, profile = %profile))]
pub async fn erase(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &ProfileId,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<ErasureReport>, ProjectionError> {
    let mut tx = match store {
        Store::Sqlite(s) => ModelTx(Tx::Sqlite(s.begin_write().await?)),
        Store::Postgres(s) => {
            let mut tx = s.pool().begin().await?;
            // The resolver's row locks (every part's): no batch of it is written meanwhile.
            crate::partitions::lock_all_postgres(&mut tx).await?;
            ModelTx(Tx::Postgres(tx))
        }
    };
    let report = erase_in(&mut tx, workspace, profile, actor, now).await?;
    if report.is_some() {
        tx.commit().await?;
    }
    Ok(report)
}

/// The erasure of `profile` in `tx`, step by step; `None` when the workspace has no such live profile.
async fn erase_in(
    tx: &mut ModelTx<'_>,
    workspace: &str,
    profile: &ProfileId,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<ErasureReport>, ProjectionError> {
    let Some(cluster) = find_cluster(tx, workspace, profile).await? else {
        return Ok(None);
    };
    let (values, candidates) = identifier_values(tx, &cluster).await?;
    let (events, key_ids, keys) = destroy_keys(tx, &cluster, now).await?;
    let affected = drop_shared_events(tx, &cluster, &key_ids, candidates).await?;
    drop_messages(tx, &cluster, &values).await?;
    let segments = publish_exits(tx, &cluster, now).await?;
    delete_read_models(tx, &cluster).await?;
    redact_decisions(tx, &cluster, &values).await?;
    let seq = record(tx, &cluster, actor, now, (events, keys)).await?;
    forget_state(tx).await?;
    let parse = |p: &String| ProfileId::parse(p).map_err(ProjectionError::corrupt);
    Ok(Some(ErasureReport {
        seq,
        profile: parse(&cluster.survivor)?,
        profiles: cluster
            .members
            .iter()
            .map(parse)
            .collect::<Result<_, _>>()?,
        events,
        keys,
        segments,
        affected: affected.iter().map(parse).collect::<Result<_, _>>()?,
    }))
}

/// Destroys the subject keys of every event of the cluster: (its events, the keys' ids, the keys
/// destroyed now).
async fn destroy_keys(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    now: DateTime<Utc>,
) -> Result<(u64, BTreeSet<i64>, u64), ProjectionError> {
    let seqs: Vec<i64> = query(sql::EVENTS_OF)
        .bind(cluster.workspace.as_str())
        .bind(&cluster.members)
        .scalars(tx.exec())
        .await?;
    let mut key_ids = BTreeSet::new();
    for chunk in seqs.chunks(500) {
        key_ids.extend(
            query(sql::KEYS_OF_EVENTS)
                .bind(chunk)
                .scalars::<i64>(tx.exec())
                .await?,
        );
    }
    let ids: Vec<i64> = key_ids.iter().copied().collect();
    let mut keys = 0;
    for chunk in ids.chunks(500) {
        keys += query(sql::DESTROY_KEYS)
            .bind(now.timestamp_millis())
            .bind(chunk)
            .execute(tx.exec())
            .await?;
    }
    Ok((seqs.len() as u64, key_ids, keys))
}

/// Events of other profiles (`candidates`) filed under one of the destroyed keys' subjects (a split
/// left some of the person's anonymous events with another profile) are erased too: they belong to no
/// one any more. The profiles that lost some, to be re-folded from what they still can read.
async fn drop_shared_events(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    destroyed: &BTreeSet<i64>,
    candidates: BTreeSet<String>,
) -> Result<BTreeSet<String>, ProjectionError> {
    let candidates: Vec<String> = candidates.into_iter().collect();
    let ws = cluster.workspace.as_str();
    let mut shared = Vec::new();
    for chunk in candidates.chunks(200) {
        let theirs: Vec<i64> = query(sql::EVENTS_OF)
            .bind(ws)
            .bind(chunk)
            .scalars(tx.exec())
            .await?;
        for seqs in theirs.chunks(500) {
            let keyed: Vec<(i64, i64)> = query(sql::EVENT_KEYS)
                .bind(seqs)
                .fetch_all(tx.exec())
                .await?;
            shared.extend(
                keyed
                    .into_iter()
                    .filter(|(_, k)| destroyed.contains(k))
                    .map(|(seq, _)| seq),
            );
        }
    }
    let mut affected = BTreeSet::new();
    for chunk in shared.chunks(500) {
        affected.extend(
            query(sql::OTHER_OWNERS)
                .bind(ws)
                .bind(chunk)
                .bind(&cluster.members)
                .scalars::<String>(tx.exec())
                .await?,
        );
        query(sql::DROP_EVENT_OWNERS)
            .bind(ws)
            .bind(chunk)
            .execute(tx.exec())
            .await?;
    }
    Ok(affected)
}

/// Messages about the cluster, published or not, and refused messages carrying its identifier values.
async fn drop_messages(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    values: &BTreeSet<String>,
) -> Result<(), ProjectionError> {
    let ws = cluster.workspace.as_str();
    for p in &cluster.members {
        query(sql::DROP_OUTBOX_LIKE)
            .bind(ws)
            .bind(containing(&format!("\"profile_id\":\"{p}\"")))
            .execute(tx.exec())
            .await?;
    }
    for v in values.iter().filter(|v| v.chars().count() >= 3) {
        query(sql::DROP_QUARANTINE_LIKE)
            .bind(ws)
            .bind(containing(v))
            .execute(tx.exec())
            .await?;
    }
    Ok(())
}

/// Its segments are left, as any exit (history, outbox, reachable nowhere once the document is gone),
/// and its tags are taken off: subscribers keeping tags in sync hear it, with no value, old or new.
/// The segments it left.
async fn publish_exits(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    now: DateTime<Utc>,
) -> Result<u64, ProjectionError> {
    let segments: Vec<String> = query(sql::SEGMENTS_OF)
        .bind(cluster.workspace.as_str())
        .bind(cluster.survivor.as_str())
        .scalars(tx.exec())
        .await?;
    let survivor = ProfileId::parse(&cluster.survivor).map_err(ProjectionError::corrupt)?;
    let key = (cluster.workspace.clone(), survivor);
    let mut exits = StageWrites::default();
    for segment in &segments {
        membership_change(&mut exits, &key, segment, false, ERASURE_CAUSE, now);
    }
    let tags: Vec<String> = query(sql::TAGS_OF)
        .bind(cluster.workspace.as_str())
        .bind(cluster.survivor.as_str())
        .scalars(tx.exec())
        .await?;
    for tag in &tags {
        exits.outbox.push(change_message(
            &cluster.workspace,
            &cluster.survivor,
            tag,
            None,
            None,
            ERASURE_CAUSE,
            now,
        ));
    }
    crate::stages::write(tx, &exits).await?;
    Ok(segments.len() as u64)
}

/// Its read models.
async fn delete_read_models(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
) -> Result<(), ProjectionError> {
    let ws = cluster.workspace.as_str();
    for delete in sql::DELETE_OF_CLUSTER {
        query(delete)
            .bind(ws)
            .bind(&cluster.members)
            .execute(tx.exec())
            .await?;
    }
    for delete in sql::DELETE_OF_SURVIVOR {
        query(delete)
            .bind(ws)
            .bind(cluster.survivor.as_str())
            .execute(tx.exec())
            .await?;
    }
    query(sql::DELETE_ALIASES)
        .bind(ws)
        .bind(&cluster.members)
        .bind(&cluster.members)
        .execute(tx.exec())
        .await?;
    Ok(())
}

/// The decisions stay (the graph is their fold) but keep no identifier value of the person.
async fn redact_decisions(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    values: &BTreeSet<String>,
) -> Result<(), ProjectionError> {
    let rows: Vec<(i64, Option<String>, String)> = query(sql::DECISIONS_OF)
        .bind(cluster.workspace.as_str())
        .bind(&cluster.members)
        .bind(&cluster.members)
        .fetch_all(tx.exec())
        .await?;
    let triggers = set_triggers_aside(tx).await?;
    for (seq, value, body) in rows {
        let mut parsed: Value = serde_json::from_str(&body).map_err(ProjectionError::corrupt)?;
        redact(&mut parsed, values);
        let value = value
            .map(|v| {
                if values.contains(&v) {
                    REDACTED.to_owned()
                } else {
                    v
                }
            })
            .unwrap_or_default();
        query(sql::REDACT_DECISION)
            .bind(value)
            .bind(parsed.to_string())
            .bind(seq)
            .execute(tx.exec())
            .await?;
    }
    restore_triggers(tx, triggers).await
}

/// The record: the erasure (no personal data: the pseudonymous ids, the actor, the counts of events and
/// keys) and the decision that takes the profile out of the graph. The erasure's number.
async fn record(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    actor: &str,
    now: DateTime<Utc>,
    (events, keys): (u64, u64),
) -> Result<i64, ProjectionError> {
    let at = now.timestamp_millis();
    let profiles_json =
        serde_json::to_string(&cluster.members).map_err(ProjectionError::corrupt)?;
    let ws = cluster.workspace.as_str();
    let seq: i64 = query(sql::RECORD_ERASURE)
        .bind(ws)
        .bind(cluster.survivor.as_str())
        .bind(profiles_json)
        .bind(actor)
        .bind(at)
        .bind(events as i64)
        .bind(keys as i64)
        .scalars(tx.exec())
        .await?
        .pop()
        .ok_or_else(|| ProjectionError::Corrupt("the erasure was not recorded".into()))?;
    let caused_by = format!("erasure_{seq}");
    let decision = IdentityEvent::ProfileErased {
        profile: ProfileId::parse(&cluster.survivor).map_err(ProjectionError::corrupt)?,
        caused_by: caused_by.clone(),
    };
    let body = serde_json::to_string(&decision).map_err(ProjectionError::corrupt)?;
    let part = crate::partitions::part_in(tx, ws).await?;
    let at_log: i64 = query(checkpoint_sql::CHECKPOINT_SEQ)
        .bind(part.name())
        .scalars(tx.exec())
        .await?
        .pop()
        .unwrap_or(0);
    query(sql::PROFILE_ERASED)
        .bind(ws)
        .bind(at_log)
        .bind(caused_by)
        .bind(cluster.survivor.as_str())
        .bind(at)
        .bind(body)
        .execute(tx.exec())
        .await?;
    Ok(seq)
}
