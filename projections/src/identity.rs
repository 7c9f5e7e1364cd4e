//! The identity resolver: follows the log in its global order, resolves each event's identifiers with the
//! pure OneID core (`cdp_domain::identity`), and records every decision in `identity_events`.
//!
//! Resolution runs as a projection, so it is serialised like one: one batch at a time, under the
//! checkpoint (a row lock on PostgreSQL), which is what keeps two service instances from creating two
//! profiles for one person. The graph is kept in memory, per workspace, as the fold of `identity_events`;
//! when a batch may not have committed (or another instance moved on) it is reloaded from the table.

use std::collections::HashMap;
use std::sync::Mutex;

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::identity::{
    identifiers_of, resolve, IdentityEvent, IdentityGraph, IdentityRules, ProfileId,
};
use cdp_domain::store::Store;
use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::QueryBuilder;

use crate::runner::{checkpoint, ModelTx, Projection, ProjectionError};

/// A decision with where it came from, ready to be stored.
#[derive(Debug, Clone)]
pub struct RecordedDecision {
    pub workspace: String,
    pub log_seq: i64,
    pub event: IdentityEvent,
}

/// What `prepare` decided for a batch.
#[derive(Debug, Default)]
pub struct PreparedDecisions(Vec<RecordedDecision>);

#[derive(Debug, Default)]
struct ResolverState {
    graphs: HashMap<String, IdentityGraph>,
    /// The highest `identity_events.seq` folded into `graphs`.
    loaded_through: i64,
    /// The position of the last batch prepared; when the checkpoint is elsewhere at the next batch, that
    /// batch was not committed by us (or another instance went on) and the graphs are reloaded.
    prepared_through: Option<Position>,
}

/// The resolver projection. Each batch resolves under the rules in force for its workspaces
/// (`identity_rules`, Segment's defaults where none are stored).
#[derive(Debug, Default)]
pub struct IdentityResolver {
    state: Mutex<ResolverState>,
}

/// A profile id derived from the event that created it, so replaying the log makes the same ids.
pub fn profile_id_for(workspace: &str, message_id: &str) -> ProfileId {
    let digest = Sha256::digest(format!("{workspace}\n{message_id}").as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    ProfileId::parse(&format!("p_{hex}")).expect("p_ and hex digits make a valid profile id")
}

impl IdentityResolver {
    pub const NAME: &'static str = "identity";

    async fn load_after(
        store: &Store,
        after: i64,
    ) -> Result<Vec<(i64, String, IdentityEvent)>, ProjectionError> {
        let rows: Vec<(i64, String, String)> =
            match store {
                Store::Sqlite(s) => sqlx::query_as(
                    "SELECT seq, workspace, body FROM identity_events WHERE seq > ? ORDER BY seq",
                )
                .bind(after)
                .fetch_all(s.read_pool())
                .await?,
                Store::Postgres(s) => sqlx::query_as(
                    "SELECT seq, workspace, body FROM identity_events WHERE seq > $1 ORDER BY seq",
                )
                .bind(after)
                .fetch_all(s.pool())
                .await?,
            };
        rows.into_iter()
            .map(|(seq, workspace, body)| {
                let event = serde_json::from_str(&body).map_err(ProjectionError::corrupt)?;
                Ok((seq, workspace, event))
            })
            .collect()
    }
}

fn columns(
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
    }
}

impl Projection for IdentityResolver {
    type Prepared = PreparedDecisions;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn prepare(
        &self,
        store: &Store,
        events: &[StoredEvent],
    ) -> Result<PreparedDecisions, ProjectionError> {
        let committed = checkpoint(store, Self::NAME).await?;
        let (reload, after) = {
            let state = self.state.lock().expect("resolver state lock");
            let reload = state.prepared_through.is_some_and(|p| p != committed);
            (reload, if reload { 0 } else { state.loaded_through })
        };
        let stored = Self::load_after(store, after).await?;
        let mut rules: HashMap<&str, IdentityRules> = HashMap::new();
        for e in events {
            if !rules.contains_key(e.event.workspace.as_str()) {
                rules.insert(
                    &e.event.workspace,
                    rules_of(store, &e.event.workspace).await?,
                );
            }
        }
        let mut state = self.state.lock().expect("resolver state lock");
        if reload {
            state.graphs.clear();
            state.loaded_through = 0;
        }
        // Re-applying our own committed decisions is harmless: applying is idempotent.
        for (seq, workspace, event) in &stored {
            state
                .graphs
                .entry(workspace.clone())
                .or_default()
                .apply(event);
            state.loaded_through = state.loaded_through.max(*seq);
        }
        let mut decisions = Vec::new();
        for stored_event in events {
            let e = &stored_event.event;
            let rules = &rules[e.workspace.as_str()];
            let payload: Value =
                serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
            let ids: Vec<(String, String)> = identifiers_of(
                &payload,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
                rules,
            )
            .into_iter()
            .map(|i| (i.id_type, i.value))
            .collect();
            let graph = state.graphs.entry(e.workspace.clone()).or_default();
            let resolution = resolve(graph, rules, &ids, &e.message_id, || {
                profile_id_for(&e.workspace, &e.message_id)
            });
            for event in resolution.events {
                graph.apply(&event);
                decisions.push(RecordedDecision {
                    workspace: e.workspace.clone(),
                    log_seq: stored_event.position.seq,
                    event,
                });
            }
        }
        state.prepared_through = events.last().map(|e| e.position);
        Ok(PreparedDecisions(decisions))
    }

    async fn write(
        &self,
        tx: &mut ModelTx<'_>,
        prepared: PreparedDecisions,
    ) -> Result<(), ProjectionError> {
        const ROWS_PER_STATEMENT: usize = 500;
        let now = Utc::now().timestamp_millis();
        let mut bodies = Vec::with_capacity(prepared.0.len());
        for d in &prepared.0 {
            bodies.push(serde_json::to_string(&d.event).map_err(ProjectionError::corrupt)?);
        }
        let rows: Vec<(&RecordedDecision, &String)> = prepared.0.iter().zip(&bodies).collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let insert =
                "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, \
                          other, id_type, value, recorded_at, body) ";
            // The same statement on both backends; only the builder's database type differs.
            macro_rules! insert_chunk {
                ($db:ty, $tx:expr) => {{
                    let mut q: QueryBuilder<$db> = QueryBuilder::new(insert);
                    q.push_values(chunk, |mut row, (d, body)| {
                        let (kind, profile, other, id_type, value) = columns(&d.event);
                        row.push_bind(&d.workspace)
                            .push_bind(d.log_seq)
                            .push_bind(d.event.caused_by())
                            .push_bind(kind)
                            .push_bind(profile)
                            .push_bind(other)
                            .push_bind(id_type)
                            .push_bind(value)
                            .push_bind(now)
                            .push_bind(*body);
                    });
                    q.build().execute(&mut **$tx).await?;
                }};
            }
            match tx {
                ModelTx::Sqlite(tx) => insert_chunk!(sqlx::Sqlite, tx),
                ModelTx::Postgres(tx) => insert_chunk!(sqlx::Postgres, tx),
            }
        }
        Ok(())
    }
}

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

const DECISION_COLUMNS: &str = "seq, log_seq, caused_by, recorded_at, body";

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

/// Runs a query over `identity_events` on either backend, binding the text parameters and then the
/// numbers. `sql` uses `?` placeholders; they become `$n` on PostgreSQL.
async fn query_decisions(
    store: &Store,
    sql: &str,
    texts: &[&str],
    numbers: &[i64],
) -> Result<Vec<DecisionRow>, ProjectionError> {
    let rows: Vec<RawRow> = match store {
        Store::Sqlite(s) => {
            let mut q = sqlx::query_as(sql);
            for t in texts {
                q = q.bind(*t);
            }
            for n in numbers {
                q = q.bind(*n);
            }
            q.fetch_all(s.read_pool()).await?
        }
        Store::Postgres(s) => {
            let mut numbered = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                } else {
                    numbered.push(c);
                }
            }
            let mut q = sqlx::query_as(&numbered);
            for t in texts {
                q = q.bind(*t);
            }
            for n in numbers {
                q = q.bind(*n);
            }
            q.fetch_all(s.pool()).await?
        }
    };
    decode_rows(rows)
}

/// The surviving profile of `profile` (itself when it was never merged away); `None` when no such
/// profile was ever created in the workspace.
pub async fn survivor_of(
    store: &Store,
    workspace: &str,
    profile: &str,
) -> Result<Option<String>, ProjectionError> {
    let created = query_decisions(
        store,
        &format!(
            "SELECT {DECISION_COLUMNS} FROM identity_events \
             WHERE workspace = ? AND profile = ? AND kind = 'profile_created' LIMIT 1"
        ),
        &[workspace, profile],
        &[],
    )
    .await?;
    if created.is_empty() {
        return Ok(None);
    }
    let mut current = profile.to_owned();
    // Merges form a forest pointing at earlier profiles, so this ends; the bound guards corrupt data.
    for _ in 0..10_000 {
        let merged = query_decisions(
            store,
            &format!(
                "SELECT {DECISION_COLUMNS} FROM identity_events \
                 WHERE workspace = ? AND other = ? AND kind = 'profiles_merged' LIMIT 1"
            ),
            &[workspace, &current],
            &[],
        )
        .await?;
        match merged.first().map(|d| &d.event) {
            Some(IdentityEvent::ProfilesMerged { survivor, .. }) => {
                current = survivor.as_str().to_owned()
            }
            _ => return Ok(Some(current)),
        }
    }
    Err(ProjectionError::corrupt(format!(
        "merge chain of {profile} does not end"
    )))
}

/// The surviving profile holding an identifier, if any event linked it.
pub async fn profile_holding(
    store: &Store,
    workspace: &str,
    id_type: &str,
    value: &str,
) -> Result<Option<String>, ProjectionError> {
    let linked = query_decisions(
        store,
        &format!(
            "SELECT {DECISION_COLUMNS} FROM identity_events WHERE workspace = ? AND id_type = ? \
             AND value = ? AND kind = 'identifier_linked' ORDER BY seq LIMIT 1"
        ),
        &[workspace, id_type, value],
        &[],
    )
    .await?;
    match linked.first().map(|d| &d.event) {
        Some(IdentityEvent::IdentifierLinked { profile, .. }) => {
            survivor_of(store, workspace, profile.as_str()).await
        }
        _ => Ok(None),
    }
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
    workspace: &str,
    profile: &str,
) -> Result<Option<Explanation>, ProjectionError> {
    let Some(survivor) = survivor_of(store, workspace, profile).await? else {
        return Ok(None);
    };
    let mut cluster = vec![survivor.clone()];
    let mut decisions = Vec::new();
    let mut i = 0;
    while i < cluster.len() {
        let about = query_decisions(
            store,
            &format!(
                "SELECT {DECISION_COLUMNS} FROM identity_events \
                 WHERE workspace = ? AND (profile = ? OR other = ?) ORDER BY seq"
            ),
            &[workspace, &cluster[i], &cluster[i]],
            &[],
        )
        .await?;
        for d in about {
            if let IdentityEvent::ProfilesMerged { absorbed, .. } = &d.event {
                if !cluster.iter().any(|p| p == absorbed.as_str()) {
                    cluster.push(absorbed.as_str().to_owned());
                }
            }
            if !decisions
                .iter()
                .any(|known: &DecisionRow| known.seq == d.seq)
            {
                decisions.push(d);
            }
        }
        i += 1;
    }
    decisions.sort_by_key(|d| d.seq);
    Ok(Some(Explanation {
        survivor,
        merged: cluster.into_iter().skip(1).collect(),
        decisions,
    }))
}

/// Rejected merges and links of a workspace, newest first, with ids below `before` when given.
pub async fn conflicts(
    store: &Store,
    workspace: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<DecisionRow>, ProjectionError> {
    query_decisions(
        store,
        &format!(
            "SELECT {DECISION_COLUMNS} FROM identity_events WHERE workspace = ? \
             AND kind IN ('merge_rejected', 'link_rejected') AND seq < ? ORDER BY seq DESC LIMIT ?"
        ),
        &[workspace],
        &[before.unwrap_or(i64::MAX), i64::from(limit)],
    )
    .await
}

/// The identity rules in force for a workspace: the stored ones, or Segment's defaults.
pub async fn rules_of(store: &Store, workspace: &str) -> Result<IdentityRules, ProjectionError> {
    let row: Option<(String,)> = match store {
        Store::Sqlite(s) => {
            sqlx::query_as("SELECT rules FROM identity_rules WHERE workspace = ?")
                .bind(workspace)
                .fetch_optional(s.read_pool())
                .await?
        }
        Store::Postgres(s) => {
            sqlx::query_as("SELECT rules FROM identity_rules WHERE workspace = $1")
                .bind(workspace)
                .fetch_optional(s.pool())
                .await?
        }
    };
    match row {
        Some((json,)) => serde_json::from_str(&json).map_err(ProjectionError::corrupt),
        None => Ok(IdentityRules::default()),
    }
}

/// Stores `rules` for a workspace. The version goes up by one when they differ from the rules in force
/// (whatever version the caller wrote); unchanged rules keep theirs. Returns the rules as stored.
pub async fn put_rules(
    store: &Store,
    workspace: &str,
    rules: IdentityRules,
) -> Result<IdentityRules, ProjectionError> {
    let current = rules_of(store, workspace).await?;
    let mut next = rules;
    next.version = current.version;
    if next == current {
        return Ok(current);
    }
    next.version = current.version + 1;
    let json = serde_json::to_string(&next).map_err(ProjectionError::corrupt)?;
    let now = Utc::now().timestamp_millis();
    let version = i64::try_from(next.version).map_err(ProjectionError::corrupt)?;
    let upsert = "INSERT INTO identity_rules (workspace, version, rules, updated_at) VALUES ";
    let conflict = " ON CONFLICT (workspace) DO UPDATE SET version = excluded.version, \
                    rules = excluded.rules, updated_at = excluded.updated_at";
    match store {
        Store::Sqlite(s) => {
            sqlx::query(&format!("{upsert}(?, ?, ?, ?){conflict}"))
                .bind(workspace)
                .bind(version)
                .bind(&json)
                .bind(now)
                .execute(s.write_pool())
                .await?;
        }
        Store::Postgres(s) => {
            sqlx::query(&format!("{upsert}($1, $2, $3, $4){conflict}"))
                .bind(workspace)
                .bind(version)
                .bind(&json)
                .bind(now)
                .execute(s.pool())
                .await?;
        }
    }
    Ok(next)
}
