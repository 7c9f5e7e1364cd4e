//! What the resolver writes about the catalog for a batch (`CatalogWrites`: definitions, jobs, tags,
//! spend, due times, cut points, memberships, their history, the outbox) and `write`, which stores it in
//! the batch's transaction — each backend's statements in `postgres_writes` and `sqlite_writes`.

use std::collections::HashMap;

use cdp_domain::tags::RfmThresholds;
use sqlx::QueryBuilder;

use super::{
    postgres_writes, sqlite_writes, Job, Membership, MembershipChange, ProfileTag, JOB_COLUMNS,
};
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

/// What the resolver writes about the catalog for a batch.
#[derive(Debug, Default)]
pub struct CatalogWrites {
    pub definitions: Vec<DefinitionRow>,
    /// Jobs to start (or to move on): written as given.
    pub jobs: Vec<Job>,
    /// `(workspace, profile, tag, value)`: set (`Some`) or removed.
    pub tags: Vec<(String, String, String, Option<ProfileTag>)>,
    /// `(workspace, profile, spend)`; `None`: the profile is gone.
    pub spend: Vec<(String, String, Option<f64>)>,
    /// `(workspace, profile, due_at)` (ms); `None`: nothing due.
    pub due: Vec<(String, String, Option<f64>)>,
    /// `(workspace, tag, version, computed_at, thresholds)`.
    pub thresholds: Vec<(String, String, i64, i64, RfmThresholds)>,
    /// `(workspace, subject, payload)`.
    pub outbox: Vec<(String, String, String)>,
    /// `(workspace, segment, profile, membership)`: entered (`Some`) or exited.
    pub members: Vec<(String, String, String, Option<Membership>)>,
    /// Enters and exits, in order (`seq` unused).
    pub history: Vec<(String, MembershipChange)>,
}

impl CatalogWrites {
    /// Appends `other`'s writes after these, in their order.
    pub fn append(&mut self, other: CatalogWrites) {
        let CatalogWrites {
            definitions,
            jobs,
            tags,
            spend,
            due,
            thresholds,
            outbox,
            members,
            history,
        } = other;
        self.definitions.extend(definitions);
        self.jobs.extend(jobs);
        self.tags.extend(tags);
        self.spend.extend(spend);
        self.due.extend(due);
        self.thresholds.extend(thresholds);
        self.outbox.extend(outbox);
        self.members.extend(members);
        self.history.extend(history);
    }
}

/// A definition as stored: `None` body: deleted.
#[derive(Debug, Clone)]
pub struct DefinitionRow {
    pub workspace: String,
    pub kind: &'static str,
    pub name: String,
    pub version: i64,
    pub body: Option<String>,
    /// The defining command's arrival (ms), so that a rebuild records the same.
    pub defined_at: i64,
}

/// The last of `rows` for each key, in the order those last ones came.
pub(super) fn last_per_key<'r, T, K: Eq + std::hash::Hash>(
    rows: &'r [T],
    key: impl Fn(&'r T) -> K,
) -> Vec<&'r T> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(key(row), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, row)| last.get(&key(row)) == Some(i))
        .map(|(_, row)| row)
        .collect()
}

impl CatalogWrites {
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
            && self.jobs.is_empty()
            && self.tags.is_empty()
            && self.spend.is_empty()
            && self.due.is_empty()
            && self.thresholds.is_empty()
            && self.outbox.is_empty()
            && self.members.is_empty()
            && self.history.is_empty()
    }
}

/// Writes `w` inside `tx`.
pub async fn write(tx: &mut ModelTx<'_>, w: &CatalogWrites) -> Result<(), ProjectionError> {
    let now = chrono::Utc::now().timestamp_millis();
    // The rare writes (definitions, jobs, cut points): the same statements on both backends; only the
    // builder's database type differs.
    macro_rules! rare_writes {
        ($db:ty, $tx:expr) => {{
            for DefinitionRow {
                workspace: ws,
                kind,
                name,
                version,
                body,
                defined_at,
            } in &w.definitions
            {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO definitions (workspace, kind, name, version, body, defined_at) ",
                );
                q.push_values([()], |mut row, ()| {
                    row.push_bind(ws)
                        .push_bind(*kind)
                        .push_bind(name)
                        .push_bind(*version)
                        .push_bind(body)
                        .push_bind(*defined_at);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut **$tx).await?;
            }
            for j in &w.jobs {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(format!("INSERT INTO catalog_jobs ({JOB_COLUMNS}) "));
                q.push_values([j], |mut row, j| {
                    row.push_bind(&j.workspace)
                        .push_bind(&j.kind)
                        .push_bind(&j.name)
                        .push_bind(j.version)
                        .push_bind(&j.cursor)
                        .push_bind(j.done)
                        .push_bind(j.total)
                        .push_bind(&j.status)
                        .push_bind(j.started_at)
                        .push_bind(j.finished_at);
                });
                q.push(
                    " ON CONFLICT (workspace, kind, name, version) DO UPDATE SET \
                     cursor = excluded.cursor, done = excluded.done, total = excluded.total, \
                     status = excluded.status, finished_at = excluded.finished_at",
                );
                q.build().execute(&mut **$tx).await?;
            }
            for (ws, tag, version, at, t) in &w.thresholds {
                let body = serde_json::to_string(t).map_err(ProjectionError::corrupt)?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO rfm_thresholds (workspace, tag, version, computed_at, body) ",
                );
                q.push_values([()], |mut row, ()| {
                    row.push_bind(ws)
                        .push_bind(tag)
                        .push_bind(*version)
                        .push_bind(*at)
                        .push_bind(body.clone());
                });
                q.push(
                    " ON CONFLICT (workspace, tag) DO UPDATE SET version = excluded.version, \
                     computed_at = excluded.computed_at, body = excluded.body",
                );
                q.build().execute(&mut **$tx).await?;
            }
        }};
    }
    match tx {
        ModelTx(Tx::Sqlite(tx)) => {
            rare_writes!(sqlx::Sqlite, tx);
            sqlite_writes::write_rows(tx, w).await?;
        }
        ModelTx(Tx::Postgres(tx)) => {
            rare_writes!(sqlx::Postgres, tx);
            postgres_writes::write_rows(tx, w).await?;
        }
    }
    write_outbox(tx, &w.outbox, now).await
}

/// Appends messages to the outbox, in their order (the sequence numbers follow it). PostgreSQL takes
/// them in one statement over arrays; SQLite in multi-row inserts.
async fn write_outbox(
    tx: &mut ModelTx<'_>,
    outbox: &[(String, String, String)],
    now: i64,
) -> Result<(), ProjectionError> {
    if outbox.is_empty() {
        return Ok(());
    }
    match tx {
        ModelTx(Tx::Sqlite(tx)) => {
            for chunk in outbox.chunks(500) {
                let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
                    "INSERT INTO outbox (workspace, subject, payload, created_at) ",
                );
                q.push_values(chunk, |mut row, (ws, subject, payload)| {
                    row.push_bind(ws)
                        .push_bind(subject)
                        .push_bind(payload)
                        .push_bind(now);
                });
                q.build().execute(&mut **tx).await?;
            }
        }
        ModelTx(Tx::Postgres(tx)) => {
            let (mut ws, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
            for (w, subject, payload) in outbox {
                ws.push(w.as_str());
                subjects.push(subject.as_str());
                payloads.push(payload.as_str());
            }
            sqlx::query(
                "INSERT INTO outbox (workspace, subject, payload, created_at) \
                 SELECT w, s, p, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) \
                 WITH ORDINALITY AS m(w, s, p, n) ORDER BY n",
            )
            .bind(&ws)
            .bind(&subjects)
            .bind(&payloads)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
