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

use cdp_domain::identity::{IdentityEvent, ProfileId};
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog::CatalogWrites;
use crate::identity::derive::{change_message, membership_change};
use crate::identity::{forget_state, IdentityResolver};
use crate::runner::{ModelTx, ProjectionError};

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

/// A bound parameter of the few statements here.
#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// Builds a query with `$make(sql)` on either backend's transaction, binds `$binds` and finishes it with
/// `$finish` (SQLite takes `?` placeholders, PostgreSQL the numbered ones).
macro_rules! on_tx {
    ($tx:expr, $sql:expr, $binds:expr, $make:expr, $finish:ident $(, $then:ident)?) => {{
        macro_rules! bound {
            ($q:expr) => {{
                let mut q = $q;
                for b in $binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s.clone()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                q
            }};
        }
        match $tx {
            ModelTx::Sqlite(t) => bound!(($make)($sql)).$finish(&mut **t).await? $(.$then())?,
            ModelTx::Postgres(t) => {
                let numbered = crate::profiles::numbered($sql);
                bound!(($make)(numbered.as_str())).$finish(&mut **t).await? $(.$then())?
            }
        }
    }};
}

async fn execute(tx: &mut ModelTx<'_>, sql: &str, binds: &[Bind]) -> Result<u64, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query, execute, rows_affected))
}

async fn texts(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<String>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_scalar, fetch_all))
}

async fn ints(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<i64>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_scalar, fetch_all))
}

async fn pairs(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(String, String)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

async fn pairs_int(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(i64, i64)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

/// `(seq, value, body)` of identity decisions.
async fn decisions(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(i64, Option<String>, String)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

/// `?, ?, …` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn text_binds(workspace: &str, values: &[String]) -> Vec<Bind> {
    std::iter::once(Bind::Text(workspace.to_owned()))
        .chain(values.iter().map(|v| Bind::Text(v.clone())))
        .collect()
}

/// A `LIKE` pattern matching `needle` anywhere, with `\` as the escape.
fn containing(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
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
    workspace: &str,
    profile: &ProfileId,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<ErasureReport>, ProjectionError> {
    let mut tx = match store {
        Store::Sqlite(s) => ModelTx::Sqlite(s.begin_write().await?),
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
            ModelTx::Postgres(tx)
        }
    };
    let report = erase_in(&mut tx, workspace, profile, actor, now).await?;
    if report.is_some() {
        match tx {
            ModelTx::Sqlite(t) => t.commit().await?,
            ModelTx::Postgres(t) => t.commit().await?,
        }
    }
    Ok(report)
}

async fn erase_in(
    tx: &mut ModelTx<'_>,
    workspace: &str,
    profile: &ProfileId,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<ErasureReport>, ProjectionError> {
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
    let mut cluster = vec![survivor.clone()];
    cluster.extend(
        texts(
            tx,
            "SELECT profile FROM profile_aliases WHERE workspace = ? AND survivor = ? ORDER BY profile",
            &[ws.clone(), Bind::Text(survivor.clone())],
        )
        .await?,
    );
    let in_cluster = marks(cluster.len());
    let cluster_binds = text_binds(workspace, &cluster);

    // The identifier values to redact: those of the cluster's decisions, except values another live
    // profile holds now (a split moved them there: they are that profile's).
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
            &[ws.clone(), Bind::Text(survivor.clone())],
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
        // Profiles that may hold events filed under one of its subjects: those holding one of its
        // identifiers now (a split moved it there) and those its identifiers were refused to (the event
        // went to another profile).
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
    let values: BTreeSet<String> = typed.into_iter().map(|(_, v)| v).collect();

    // The keys of every event of the cluster.
    let seqs = ints(
        tx,
        &format!(
            "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN ({in_cluster})"
        ),
        &cluster_binds,
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
    let key_ids: Vec<i64> = key_ids.into_iter().collect();
    let mut keys = 0;
    for chunk in key_ids.chunks(500) {
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

    // Events of other profiles filed under one of those subjects (a split left some of the person's
    // anonymous events with another profile) are erased too: they belong to no one any more, and those
    // profiles are to be re-folded from what they still can read.
    let destroyed: BTreeSet<i64> = key_ids.iter().copied().collect();
    let candidates: Vec<String> = candidates.into_iter().collect();
    let mut shared = Vec::new();
    for chunk in candidates.chunks(200) {
        let theirs = ints(
            tx,
            &format!(
                "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN ({})",
                marks(chunk.len())
            ),
            &text_binds(workspace, chunk),
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
    let mut affected = BTreeSet::new();
    for chunk in shared.chunks(500) {
        let mut binds = vec![ws.clone()];
        binds.extend(chunk.iter().map(|s| Bind::Int(*s)));
        binds.extend(cluster.iter().map(|p| Bind::Text(p.clone())));
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

    // Messages about it, published or not, and refused messages carrying its identifiers.
    for p in &cluster {
        execute(
            tx,
            "DELETE FROM outbox WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'",
            &[
                ws.clone(),
                Bind::Text(containing(&format!("\"profile_id\":\"{p}\""))),
            ],
        )
        .await?;
    }
    for v in values.iter().filter(|v| v.chars().count() >= 3) {
        execute(
            tx,
            "DELETE FROM quarantine WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'",
            &[ws.clone(), Bind::Text(containing(v))],
        )
        .await?;
    }

    // Its segments: left, as any exit (history, outbox, reachable nowhere once the document is gone).
    let segments = texts(
        tx,
        "SELECT segment FROM segment_members WHERE workspace = ? AND profile = ? ORDER BY segment",
        &[ws.clone(), Bind::Text(survivor.clone())],
    )
    .await?;
    let survivor_id = ProfileId::parse(&survivor).map_err(ProjectionError::corrupt)?;
    let mut exits = CatalogWrites::default();
    for segment in &segments {
        membership_change(
            &mut exits,
            &(workspace.to_owned(), survivor_id.clone()),
            segment,
            false,
            ERASURE_CAUSE,
            now,
        );
    }
    // And its tags are taken off: subscribers keeping tags in sync hear it, with no value, old or new.
    let tags = texts(
        tx,
        "SELECT tag FROM profile_tags WHERE workspace = ? AND profile = ? ORDER BY tag",
        &[ws.clone(), Bind::Text(survivor.clone())],
    )
    .await?;
    for tag in &tags {
        exits.outbox.push(change_message(
            workspace,
            &survivor,
            tag,
            None,
            None,
            ERASURE_CAUSE,
            now,
        ));
    }
    crate::catalog::write(tx, &exits).await?;

    // Its read models.
    for table in ["profiles", "event_profiles", "profile_spend", "profile_due"] {
        execute(
            tx,
            &format!("DELETE FROM {table} WHERE workspace = ? AND profile IN ({in_cluster})"),
            &cluster_binds,
        )
        .await?;
    }
    for table in ["identifier_owners", "profile_tags", "segment_members"] {
        execute(
            tx,
            &format!("DELETE FROM {table} WHERE workspace = ? AND profile = ?"),
            &[ws.clone(), Bind::Text(survivor.clone())],
        )
        .await?;
    }
    execute(
        tx,
        &format!(
            "DELETE FROM profile_aliases WHERE workspace = ? AND (profile IN ({in_cluster}) \
             OR survivor IN ({in_cluster}))"
        ),
        &text_binds(workspace, &[cluster.clone(), cluster.clone()].concat()),
    )
    .await?;

    // The decisions stay (the graph is their fold) but keep no identifier value of the person.
    let rows = decisions(
        tx,
        &format!(
            "SELECT seq, value, body FROM identity_events WHERE workspace = ? \
             AND (profile IN ({in_cluster}) OR other IN ({in_cluster}))"
        ),
        &text_binds(workspace, &[cluster.clone(), cluster.clone()].concat()),
    )
    .await?;
    let triggers = set_triggers_aside(tx).await?;
    for (seq, value, body) in rows {
        let mut parsed: Value = serde_json::from_str(&body).map_err(ProjectionError::corrupt)?;
        redact(&mut parsed, &values);
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
    restore_triggers(tx, triggers).await?;

    // The record: the erasure (no personal data) and the decision that takes the profile out of the graph.
    let at = now.timestamp_millis();
    let profiles_json = serde_json::to_string(&cluster).map_err(ProjectionError::corrupt)?;
    let seq = ints(
        tx,
        "INSERT INTO erasures (workspace, profile, profiles, actor, at, events, keys) \
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        &[
            ws.clone(),
            Bind::Text(survivor.clone()),
            Bind::Text(profiles_json),
            Bind::Text(actor.to_owned()),
            Bind::Int(at),
            Bind::Int(seqs.len() as i64),
            Bind::Int(keys as i64),
        ],
    )
    .await?
    .pop()
    .ok_or_else(|| ProjectionError::Corrupt("the erasure was not recorded".into()))?;
    let caused_by = format!("erasure_{seq}");
    let decision = IdentityEvent::ProfileErased {
        profile: survivor_id.clone(),
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
            ws.clone(),
            Bind::Int(at_log),
            Bind::Text(caused_by),
            Bind::Text(survivor.clone()),
            Bind::Int(at),
            Bind::Text(body),
        ],
    )
    .await?;
    forget_state(tx).await?;
    Ok(Some(ErasureReport {
        seq,
        profile: survivor_id,
        profiles: cluster
            .iter()
            .map(|p| ProfileId::parse(p).map_err(ProjectionError::corrupt))
            .collect::<Result<_, _>>()?,
        events: seqs.len() as u64,
        keys,
        segments: segments.len() as u64,
        affected: affected
            .iter()
            .map(|p| ProfileId::parse(p).map_err(ProjectionError::corrupt))
            .collect::<Result<_, _>>()?,
    }))
}

/// Sets the append-only triggers of `identity_events` aside (restored by [`restore_triggers`] in the
/// same transaction, as a rebuild's switch does): an erasure is the one rewrite the decisions allow.
async fn set_triggers_aside(
    tx: &mut ModelTx<'_>,
) -> Result<Vec<(String, String)>, ProjectionError> {
    match tx {
        ModelTx::Sqlite(t) => {
            let triggers: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' \
                 AND tbl_name = 'identity_events'",
            )
            .fetch_all(&mut **t)
            .await?;
            for (name, _) in &triggers {
                sqlx::query(&format!(
                    "DROP TRIGGER main.\"{}\"",
                    name.replace('"', "\"\"")
                ))
                .execute(&mut **t)
                .await?;
            }
            Ok(triggers)
        }
        ModelTx::Postgres(t) => {
            sqlx::query("ALTER TABLE identity_events DISABLE TRIGGER USER")
                .execute(&mut **t)
                .await?;
            Ok(Vec::new())
        }
    }
}

async fn restore_triggers(
    tx: &mut ModelTx<'_>,
    triggers: Vec<(String, String)>,
) -> Result<(), ProjectionError> {
    match tx {
        ModelTx::Sqlite(t) => {
            for (_, sql) in &triggers {
                sqlx::query(sql).execute(&mut **t).await?;
            }
        }
        ModelTx::Postgres(t) => {
            sqlx::query("ALTER TABLE identity_events ENABLE TRIGGER USER")
                .execute(&mut **t)
                .await?;
        }
    }
    Ok(())
}
