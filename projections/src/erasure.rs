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
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::evaluation::derive::{change_message, membership_change};
use crate::identity::{forget_state, IdentityResolver};
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};
use crate::stages::StageWrites;

mod cluster;
mod sql;

use cluster::{find_cluster, identifier_values, Cluster};

use sql::{
    containing, decisions, execute, ints, marks, pairs_int, restore_triggers, set_triggers_aside,
    text_binds, texts, Bind,
};

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
            // The resolver's row lock: no batch of it is prepared or written meanwhile.
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) \
                 VALUES ($1, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
            )
            .bind(IdentityResolver::NAME)
            .execute(&mut *tx)
            .await?;
            sqlx::query("SELECT seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
                .bind(IdentityResolver::NAME)
                .execute(&mut *tx)
                .await?;
            ModelTx(Tx::Postgres(tx))
        }
    };
    let report = erase_in(&mut tx, workspace, profile, actor, now).await?;
    if report.is_some() {
        match tx {
            ModelTx(Tx::Sqlite(t)) => t.commit().await?,
            ModelTx(Tx::Postgres(t)) => t.commit().await?,
        }
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
    let seqs = ints(
        tx,
        &format!(
            "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN ({})",
            cluster.marks()
        ),
        &cluster.binds(),
    )
    .await?;
    let mut key_ids = BTreeSet::new();
    for chunk in seqs.chunks(500) {
        let binds: Vec<Bind> = chunk.iter().map(|s| Bind::Int(*s)).collect();
        key_ids.extend(
            ints(
                tx,
                &format!(
                    "SELECT DISTINCT key_id FROM events WHERE key_id IS NOT NULL AND seq IN ({})",
                    marks(chunk.len())
                ),
                &binds,
            )
            .await?,
        );
    }
    let ids: Vec<i64> = key_ids.iter().copied().collect();
    let mut keys = 0;
    for chunk in ids.chunks(500) {
        let mut binds = vec![Bind::Int(now.timestamp_millis())];
        binds.extend(chunk.iter().map(|k| Bind::Int(*k)));
        keys += execute(
            tx,
            &format!(
                "UPDATE subject_keys SET key = NULL, subject = NULL, erased_at = ? \
                 WHERE key IS NOT NULL AND id IN ({})",
                marks(chunk.len())
            ),
            &binds,
        )
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
    let mut shared = Vec::new();
    for chunk in candidates.chunks(200) {
        let theirs = ints(
            tx,
            &format!(
                "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN ({})",
                marks(chunk.len())
            ),
            &text_binds(&cluster.workspace, chunk),
        )
        .await?;
        for seqs in theirs.chunks(500) {
            let binds: Vec<Bind> = seqs.iter().map(|s| Bind::Int(*s)).collect();
            let keyed = pairs_int(
                tx,
                &format!(
                    "SELECT seq, key_id FROM events WHERE key_id IS NOT NULL AND seq IN ({})",
                    marks(seqs.len())
                ),
                &binds,
            )
            .await?;
            shared.extend(
                keyed
                    .into_iter()
                    .filter(|(_, k)| destroyed.contains(k))
                    .map(|(seq, _)| seq),
            );
        }
    }
    let in_cluster = cluster.marks();
    let mut affected = BTreeSet::new();
    for chunk in shared.chunks(500) {
        let mut binds = vec![cluster.ws()];
        binds.extend(chunk.iter().map(|s| Bind::Int(*s)));
        binds.extend(cluster.members.iter().map(|p| Bind::Text(p.clone())));
        let list = marks(chunk.len());
        affected.extend(
            texts(
                tx,
                &format!(
                    "SELECT DISTINCT profile FROM event_profiles WHERE workspace = ? \
                     AND log_seq IN ({list}) AND profile NOT IN ({in_cluster})"
                ),
                &binds,
            )
            .await?,
        );
        execute(
            tx,
            &format!("DELETE FROM event_profiles WHERE workspace = ? AND log_seq IN ({list})"),
            &binds[..=chunk.len()],
        )
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
    for p in &cluster.members {
        execute(
            tx,
            "DELETE FROM outbox WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'",
            &[
                cluster.ws(),
                Bind::Text(containing(&format!("\"profile_id\":\"{p}\""))),
            ],
        )
        .await?;
    }
    for v in values.iter().filter(|v| v.chars().count() >= 3) {
        execute(
            tx,
            "DELETE FROM quarantine WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'",
            &[cluster.ws(), Bind::Text(containing(v))],
        )
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
    let segments = texts(
        tx,
        "SELECT segment FROM segment_members WHERE workspace = ? AND profile = ? ORDER BY segment",
        &cluster.survivor_binds(),
    )
    .await?;
    let survivor = ProfileId::parse(&cluster.survivor).map_err(ProjectionError::corrupt)?;
    let key = (cluster.workspace.clone(), survivor);
    let mut exits = StageWrites::default();
    for segment in &segments {
        membership_change(&mut exits, &key, segment, false, ERASURE_CAUSE, now);
    }
    let tags = texts(
        tx,
        "SELECT tag FROM profile_tags WHERE workspace = ? AND profile = ? ORDER BY tag",
        &cluster.survivor_binds(),
    )
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
    let in_cluster = cluster.marks();
    for table in ["profiles", "event_profiles", "profile_spend", "profile_due"] {
        execute(
            tx,
            &format!("DELETE FROM {table} WHERE workspace = ? AND profile IN ({in_cluster})"),
            &cluster.binds(),
        )
        .await?;
    }
    for table in ["identifier_owners", "profile_tags", "segment_members"] {
        execute(
            tx,
            &format!("DELETE FROM {table} WHERE workspace = ? AND profile = ?"),
            &cluster.survivor_binds(),
        )
        .await?;
    }
    let twice = [cluster.members.clone(), cluster.members.clone()].concat();
    execute(
        tx,
        &format!(
            "DELETE FROM profile_aliases WHERE workspace = ? AND (profile IN ({in_cluster}) \
             OR survivor IN ({in_cluster}))"
        ),
        &text_binds(&cluster.workspace, &twice),
    )
    .await?;
    Ok(())
}

/// The decisions stay (the graph is their fold) but keep no identifier value of the person.
async fn redact_decisions(
    tx: &mut ModelTx<'_>,
    cluster: &Cluster,
    values: &BTreeSet<String>,
) -> Result<(), ProjectionError> {
    let in_cluster = cluster.marks();
    let twice = [cluster.members.clone(), cluster.members.clone()].concat();
    let rows = decisions(
        tx,
        &format!(
            "SELECT seq, value, body FROM identity_events WHERE workspace = ? \
             AND (profile IN ({in_cluster}) OR other IN ({in_cluster}))"
        ),
        &text_binds(&cluster.workspace, &twice),
    )
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
        execute(
            tx,
            "UPDATE identity_events SET value = nullif(?, ''), body = ? WHERE seq = ?",
            &[
                Bind::Text(value),
                Bind::Text(parsed.to_string()),
                Bind::Int(seq),
            ],
        )
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
    let seq = ints(
        tx,
        "INSERT INTO erasures (workspace, profile, profiles, actor, at, events, keys) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &[
            cluster.ws(),
            Bind::Text(cluster.survivor.clone()),
            Bind::Text(profiles_json),
            Bind::Text(actor.to_owned()),
            Bind::Int(at),
            Bind::Int(events as i64),
            Bind::Int(keys as i64),
        ],
    )
    .await?
    .pop()
    .ok_or_else(|| ProjectionError::Corrupt("the erasure was not recorded".into()))?;
    let caused_by = format!("erasure_{seq}");
    let decision = IdentityEvent::ProfileErased {
        profile: ProfileId::parse(&cluster.survivor).map_err(ProjectionError::corrupt)?,
        caused_by: caused_by.clone(),
    };
    let body = serde_json::to_string(&decision).map_err(ProjectionError::corrupt)?;
    let at_log = ints(
        tx,
        "SELECT seq FROM projection_checkpoints WHERE name = ?",
        &[Bind::Text(IdentityResolver::NAME.to_owned())],
    )
    .await?
    .pop()
    .unwrap_or(0);
    execute(
        tx,
        "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, other, id_type, \
         value, recorded_at, body) VALUES (?, ?, ?, 'profile_erased', ?, NULL, NULL, NULL, ?, ?)",
        &[
            cluster.ws(),
            Bind::Int(at_log),
            Bind::Text(caused_by),
            Bind::Text(cluster.survivor.clone()),
            Bind::Int(at),
            Bind::Text(body),
        ],
    )
    .await?;
    Ok(seq)
}
