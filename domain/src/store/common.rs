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

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Executor, PgConnection};

    use super::*;
    use crate::store::EventStore;
    use crate::workspace::{CredentialKind, Scope};

    /// A refused message; every third one of no workspace.
    fn refused(i: i64) -> QuarantineEntry {
        QuarantineEntry {
            id: 0,
            workspace: (i % 3 != 0).then(|| "shop".to_string()),
            source: "http".into(),
            received_at_ms: 1_700_000_000_000 + i,
            code: "invalid_type".into(),
            field: format!("batch[{i}].type"),
            reason: "is not a message type".into(),
            payload: format!("{{\"n\":{i}}}"),
        }
    }

    async fn the_shared_operations(store: &Store) {
        store.ping().await.unwrap();

        // 2,500 refused messages: three statements, one transaction.
        let entries: Vec<QuarantineEntry> = (0..2_500).map(refused).collect();
        store.quarantine(&entries).await.unwrap();
        store.quarantine(&[]).await.unwrap();
        let shops: Vec<&QuarantineEntry> =
            entries.iter().filter(|q| q.workspace.is_some()).collect();
        let first = store.list_quarantine("shop", None, 10).await.unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(
            QuarantineEntry {
                id: 0,
                ..first[0].clone()
            },
            *shops[shops.len() - 1],
            "newest first"
        );
        let rest = store
            .list_quarantine("shop", Some(first[9].id), 5_000)
            .await
            .unwrap();
        assert_eq!(first.len() + rest.len(), shops.len());
        assert!(first.iter().chain(&rest).is_sorted_by(|a, b| a.id > b.id));
        assert!(store
            .list_quarantine("elsewhere", None, 10)
            .await
            .unwrap()
            .is_empty());

        assert!(store.ensure_workspace("shop").await.unwrap());
        assert!(!store.ensure_workspace("shop").await.unwrap(), "once");
        assert!(store.ensure_workspace("bakery").await.unwrap());
        assert!(store.workspace_exists("shop").await.unwrap());
        assert!(!store.workspace_exists("elsewhere").await.unwrap());
        assert_eq!(store.count_workspaces().await.unwrap(), 2);
        assert_eq!(store.workspace_ids().await.unwrap(), ["bakery", "shop"]);
        assert_eq!(store.count_events("shop").await.unwrap(), 0);

        let key = Credential::new(
            "s3cret",
            "shop",
            CredentialKind::WriteKey,
            vec![Scope::Write],
        );
        store.put_credential(&key).await.unwrap();
        assert_eq!(
            store.find_credential(&key.secret_hash).await.unwrap(),
            Some(key.clone())
        );
        let replaced = Credential::new(
            "s3cret",
            "bakery",
            CredentialKind::Token,
            vec![Scope::Read, Scope::Admin],
        );
        store.put_credential(&replaced).await.unwrap();
        assert_eq!(
            store.find_credential(&key.secret_hash).await.unwrap(),
            Some(replaced)
        );
        assert_eq!(store.find_credential("unknown").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_shared_operations_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).await.unwrap();
        the_shared_operations(&store).await;
    }

    /// In a database of its own on the server `CDP_TEST_DATABASE_URL` names, dropped after.
    #[tokio::test]
    async fn the_shared_operations_on_postgres() {
        let Ok(admin) = std::env::var("CDP_TEST_DATABASE_URL") else {
            eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL variant is SKIPPED");
            return;
        };
        let name = format!(
            "cdp_store_common_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        );
        let mut conn = PgConnection::connect(&admin).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let url = match admin.rfind('/') {
            Some(at) if !admin[..at].ends_with('/') => format!("{}/{name}", &admin[..at]),
            _ => format!("{admin}/{name}"),
        };
        let store = Store::connect(&url).await.unwrap();
        the_shared_operations(&store).await;
        if let Store::Postgres(s) = &store {
            s.pool().close().await;
        }
        conn.execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
            .await
            .unwrap();
    }
}
