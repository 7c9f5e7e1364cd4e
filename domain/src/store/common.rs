//! The log's operations that are the same on both backends, written once over `sql` (what differs —
//! the append, `read_after`, connecting — stays in `sqlite` and `postgres`): the count of a
//! workspace's events, quarantine, workspaces, credentials, the ping.

use sqlx::{Postgres, Sqlite, Transaction};

use super::sql::{query, values, Arg, Exec};
use super::{decode_credential, QuarantineEntry, Store, StoreError};
use crate::workspace::Credential;

mod sql;

/// Quarantined messages one statement inserts: 7 bound parameters a row, well below SQLite's 32,766
/// and PostgreSQL's 65,535 a statement.
const QUARANTINE_PER_STATEMENT: usize = 1000;
const QUARANTINE_COLUMNS: usize = 7;

/// A quarantined message as stored: id, workspace, source, received at, code, field, reason, payload.
type QuarantineRow = (
    i64,
    Option<String>,
    String,
    i64,
    String,
    String,
    String,
    String,
);

pub(super) async fn ping(store: &Store) -> Result<(), StoreError> {
    query(sql::PING).execute(store.reader()).await?;
    Ok(())
}

pub(super) async fn count_events(store: &Store, workspace: &str) -> Result<i64, StoreError> {
    Ok(query(sql::COUNT_EVENTS)
        .bind(workspace)
        .scalar(store.reader())
        .await?)
}

/// Quarantines `entries` in one transaction: all of them or none.
pub(super) async fn quarantine(
    store: &Store,
    entries: &[QuarantineEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut tx = WriteTx::begin(store).await?;
    for chunk in entries.chunks(QUARANTINE_PER_STATEMENT) {
        let text = format!(
            "{}{}",
            sql::INSERT_QUARANTINE_HEAD,
            values(chunk.len(), QUARANTINE_COLUMNS)
        );
        query(text)
            .bind_each(chunk.iter().flat_map(|q| -> [Arg<'_>; QUARANTINE_COLUMNS] {
                [
                    (&q.workspace).into(),
                    (&q.source).into(),
                    q.received_at_ms.into(),
                    (&q.code).into(),
                    (&q.field).into(),
                    (&q.reason).into(),
                    (&q.payload).into(),
                ]
            }))
            .execute(tx.exec())
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Quarantined messages of a workspace, newest first, with ids below `before` when given.
pub(super) async fn list_quarantine(
    store: &Store,
    workspace: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<QuarantineEntry>, StoreError> {
    let rows: Vec<QuarantineRow> = query(sql::QUARANTINE_BEFORE)
        .bind(workspace)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, workspace, source, received_at_ms, code, field, reason, payload)| {
                QuarantineEntry {
                    id,
                    workspace,
                    source,
                    received_at_ms,
                    code,
                    field,
                    reason,
                    payload,
                }
            },
        )
        .collect())
}

/// Creates the workspace if absent; whether it was created.
pub(super) async fn ensure_workspace(store: &Store, id: &str) -> Result<bool, StoreError> {
    let created = query(sql::ENSURE_WORKSPACE)
        .bind(id)
        .bind(chrono::Utc::now().timestamp_millis())
        .execute(store.writer())
        .await?;
    Ok(created == 1)
}

pub(super) async fn workspace_exists(store: &Store, id: &str) -> Result<bool, StoreError> {
    // `SELECT 1` is an `int4` on PostgreSQL, an integer on SQLite: both decode as `i32`.
    let found: Option<i32> = query(sql::WORKSPACE_EXISTS)
        .bind(id)
        .scalar_optional(store.reader())
        .await?;
    Ok(found.is_some())
}

pub(super) async fn count_workspaces(store: &Store) -> Result<i64, StoreError> {
    Ok(query(sql::COUNT_WORKSPACES).scalar(store.reader()).await?)
}

pub(super) async fn workspace_ids(store: &Store) -> Result<Vec<String>, StoreError> {
    Ok(query(sql::WORKSPACE_IDS).scalars(store.reader()).await?)
}

/// Stores a credential, replacing one with the same secret.
pub(super) async fn put_credential(store: &Store, c: &Credential) -> Result<(), StoreError> {
    query(sql::PUT_CREDENTIAL)
        .bind(&c.secret_hash)
        .bind(&c.workspace)
        .bind(c.kind.as_str())
        .bind(c.scopes_text())
        .execute(store.writer())
        .await?;
    Ok(())
}

pub(super) async fn find_credential(
    store: &Store,
    secret_hash: &str,
) -> Result<Option<Credential>, StoreError> {
    let row: Option<(String, String, String, String)> = query(sql::FIND_CREDENTIAL)
        .bind(secret_hash)
        .fetch_optional(store.reader())
        .await?;
    row.map(|(secret_hash, workspace, kind, scopes)| {
        decode_credential(secret_hash, workspace, kind, scopes)
    })
    .transpose()
}

/// A write transaction on either backend, begun as the backend begins its writes (SQLite's
/// `BEGIN IMMEDIATE` on its one writing connection), for an operation of several statements.
enum WriteTx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl WriteTx {
    async fn begin(store: &Store) -> Result<Self, sqlx::Error> {
        Ok(match store {
            Store::Sqlite(s) => WriteTx::Sqlite(s.begin_write().await?),
            Store::Postgres(s) => WriteTx::Postgres(s.pool().begin().await?),
        })
    }

    fn exec(&mut self) -> Exec<'_> {
        match self {
            WriteTx::Sqlite(tx) => tx.into(),
            WriteTx::Postgres(tx) => tx.into(),
        }
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            WriteTx::Sqlite(tx) => tx.commit().await,
            WriteTx::Postgres(tx) => tx.commit().await,
        }
    }
}
