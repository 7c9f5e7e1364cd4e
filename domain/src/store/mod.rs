//! The event log: the `EventStore` trait and `Store`, the configured backend; `common`, the log's
//! operations that are the same on both backends, written once; the `sqlite` and `postgres` adapters,
//! each with only what differs (the append, `read_after`, connecting); the group-commit `Appender` that
//! turns many small appends into few transactions; and `sql`, the one way every crate runs a statement
//! on either backend.
//!
//! This is the one module of `cdp-domain` that does IO.

mod appender;
mod common;
pub mod postgres;
pub mod quality;
mod sealing;
pub mod sql;
pub mod sqlite;

use std::future::Future;
use std::path::Path;

pub use appender::{Appender, AppenderStats};
pub use postgres::PostgresStore;
pub use quality::{QualityFinding, ReasonCount};
pub use sqlite::SqliteStore;

use crate::event::{NewEvent, Position, StoredEvent};
use crate::workspace::Credential;

/// A failure of the storage layer. Never caused by what a client sent; the edge answers 500 or 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the appender has stopped")]
    Stopped,
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// Whether the database could not be reached (no connection within the pool's timeout, a refused or
    /// broken connection, the server shutting down): nothing is wrong with the request, and the same
    /// request later may well succeed. The edge answers 503 with `Retry-After` rather than 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => is_connection_error(e),
            StoreError::Shared(e) => e.is_unavailable(),
            StoreError::Migrate(_) | StoreError::Corrupt(_) | StoreError::Stopped => false,
        }
    }
}

/// Whether an sqlx error says the database is out of reach rather than that a statement failed: the
/// pool found no connection in time or is closed, the socket failed, or PostgreSQL answered with a
/// connection exception (class `08`), a shutdown (`57P01`–`57P03`) or too many connections (`53300`).
pub fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// What one append did: events new to the log, and messages already there (same workspace and messageId).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReport {
    pub inserted: u64,
    pub duplicates: u64,
}

/// A refused message, kept with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// Assigned by the store; 0 before it is stored.
    pub id: i64,
    /// `None` when the workspace could not be told (unknown NATS subject).
    pub workspace: Option<String>,
    /// `http`, `nats` or `backfill` (`cdp backfill`, with the line in `reason`).
    pub source: String,
    pub received_at_ms: i64,
    pub code: String,
    pub field: String,
    pub reason: String,
    /// The message as received (truncated to the batch limit).
    pub payload: String,
}

/// The event log and the small tables that live beside it.
pub trait EventStore: Send + Sync {
    /// Appends events in one transaction; idempotent per (workspace, messageId). When it returns `Ok`,
    /// the events are committed.
    fn append(
        &self,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<AppendReport, StoreError>> + Send;

    /// Up to `limit` events after `after`, in the global order. Never skips an event: an event that is
    /// not returned now because its transaction is still running will come after `after` later.
    fn read_after(
        &self,
        after: Position,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, StoreError>> + Send;

    /// How many events a workspace has in the log.
    fn count_events(&self, workspace: &str)
        -> impl Future<Output = Result<i64, StoreError>> + Send;

    fn quarantine(
        &self,
        entries: &[QuarantineEntry],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Quarantined messages of a workspace, newest first, with ids below `before` when given.
    fn list_quarantine(
        &self,
        workspace: &str,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<QuarantineEntry>, StoreError>> + Send;

    /// Creates the workspace if absent; returns whether it was created.
    fn ensure_workspace(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn workspace_exists(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a credential, replacing one with the same secret.
    fn put_credential(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn find_credential(
        &self,
        secret_hash: &str,
    ) -> impl Future<Output = Result<Option<Credential>, StoreError>> + Send;

    fn count_workspaces(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Every workspace's id, in order.
    fn workspace_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// The configured backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens `postgres://…` or `sqlite://…` URLs, applying the embedded migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(PostgresStore::connect(url).await?))
        } else {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        }
    }

    /// The embedded default: `<dir>/cdp.db`.
    pub async fn open_embedded(dir: &Path) -> Result<Self, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open_dir(dir).await?))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// How many concurrent writers suit the backend: SQLite has exactly one.
    pub fn writer_count(&self) -> usize {
        match self {
            Store::Sqlite(_) => 1,
            Store::Postgres(_) => 4,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        common::ping(self).await
    }

    /// Whether the database accepts a new connection within `within`, asked outside the pool. The
    /// pool's `PoolTimedOut` says the same after its `acquire_timeout` whether no connection could be
    /// made (an outage) or every connection was taken (a busy pool, which is not one); this tells the
    /// two apart, at once. An embedded database always does.
    pub async fn accepts_connections(&self, within: std::time::Duration) -> bool {
        match self {
            Store::Sqlite(_) => true,
            Store::Postgres(s) => s.accepts_connections(within).await,
        }
    }

    /// The events with these sequence numbers, in `seq` order; missing and erased ones are left out.
    pub async fn events_by_seq(&self, seqs: &[i64]) -> Result<Vec<StoredEvent>, StoreError> {
        const PER_STATEMENT: usize = 500;
        let mut out = Vec::with_capacity(seqs.len());
        // SQLite's rows have no transaction id; PostgreSQL's carry it after the event's columns.
        let sqlite = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq IN (?...) ORDER BY seq");
        let postgres =
            format!("SELECT {EVENT_COLUMNS}, tx FROM events WHERE seq = ANY($1) ORDER BY seq");
        for chunk in seqs.chunks(PER_STATEMENT) {
            let rows: Vec<DecodedEvent> = sql::query_each(sqlite.as_str(), postgres.as_str())
                .bind(chunk)
                .fetch_all(self.reader())
                .await
                .map_err(DecodedEvent::error)?;
            out.extend(rows.into_iter().map(|DecodedEvent(e)| e));
        }
        out.retain(|e| !crate::shred::is_erased(&e.event));
        out.sort_by_key(|e| e.position.seq);
        Ok(out)
    }
}

/// The log's operations on whichever backend this is: the append and `read_after` are each
/// backend's own (`sqlite`, `postgres`); the others are the same on both (`common`).
impl EventStore for Store {
    async fn append(&self, events: &[NewEvent]) -> Result<AppendReport, StoreError> {
        match self {
            Store::Sqlite(s) => s.append(events).await,
            Store::Postgres(s) => s.append(events).await,
        }
    }
    async fn read_after(
        &self,
        after: Position,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        match self {
            Store::Sqlite(s) => s.read_after(after, limit).await,
            Store::Postgres(s) => s.read_after(after, limit).await,
        }
    }
    async fn count_events(&self, workspace: &str) -> Result<i64, StoreError> {
        common::count_events(self, workspace).await
    }
    async fn quarantine(&self, entries: &[QuarantineEntry]) -> Result<(), StoreError> {
        common::quarantine(self, entries).await
    }
    async fn list_quarantine(
        &self,
        workspace: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        common::list_quarantine(self, workspace, before, limit).await
    }
    async fn ensure_workspace(&self, id: &str) -> Result<bool, StoreError> {
        common::ensure_workspace(self, id).await
    }
    async fn workspace_exists(&self, id: &str) -> Result<bool, StoreError> {
        common::workspace_exists(self, id).await
    }
    async fn put_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        common::put_credential(self, credential).await
    }
    async fn find_credential(&self, secret_hash: &str) -> Result<Option<Credential>, StoreError> {
        common::find_credential(self, secret_hash).await
    }
    async fn count_workspaces(&self) -> Result<i64, StoreError> {
        common::count_workspaces(self).await
    }
    async fn workspace_ids(&self) -> Result<Vec<String>, StoreError> {
        common::workspace_ids(self).await
    }
}

/// Decodes the columns every backend returns for an event, in the order of `EVENT_COLUMNS`.
pub(crate) fn decode_event<'r, R>(row: &'r R, tx: i64) -> Result<StoredEvent, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use crate::event::from_millis;
    use crate::message::MessageKind;
    let kind: String = row.try_get(2)?;
    let kind = MessageKind::from_stored(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event kind {kind:?}")))?;
    let mut stored = StoredEvent {
        position: Position {
            tx,
            seq: row.try_get(0)?,
        },
        event: NewEvent {
            workspace: row.try_get(1)?,
            kind,
            message_id: row.try_get(3)?,
            name: row.try_get(4)?,
            user_id: row.try_get(5)?,
            anonymous_id: row.try_get(6)?,
            event_time: from_millis(row.try_get(7)?),
            received_at: from_millis(row.try_get(8)?),
            payload: row.try_get(9)?,
        },
    };
    sealing::open(
        &mut stored.event,
        row.try_get(10)?,
        row.try_get(11)?,
        row.try_get(12)?,
    )?;
    Ok(stored)
}

/// An event row decoded by [`decode_event`] (the transaction id after the event's columns when the
/// row has one, else 0), for `sql`'s typed fetches.
struct DecodedEvent(StoredEvent);

impl<'r, R> sqlx::FromRow<'r, R> for DecodedEvent
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i16: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let tx = if row.len() > TX_COLUMN {
            row.try_get(TX_COLUMN)?
        } else {
            0
        };
        decode_event(row, tx)
            .map(DecodedEvent)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

impl DecodedEvent {
    /// The store's error a fetch of decoded events failed with: the decoding's own, as
    /// [`decode_event`] returned it, or the database's.
    fn error(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Decode(inner) => match inner.downcast::<StoreError>() {
                Ok(decoding) => *decoding,
                Err(inner) => StoreError::Database(sqlx::Error::Decode(inner)),
            },
            e => StoreError::Database(e),
        }
    }
}

/// The columns `decode_event` expects, in order (PostgreSQL appends `tx`, at [`TX_COLUMN`]): the
/// event's own, then its payload format, the key it was sealed with (none once erased) and its sealed
/// bytes.
pub(crate) const EVENT_COLUMNS: &str =
    "seq, workspace, kind, message_id, name, user_id, anonymous_id, event_time, received_at, payload, \
     format, (SELECT k.key FROM subject_keys k WHERE k.id = events.key_id), sealed";

/// Where PostgreSQL's queries put `tx` after [`EVENT_COLUMNS`].
pub(crate) const TX_COLUMN: usize = 13;

pub(crate) fn decode_credential(
    secret_hash: String,
    workspace: String,
    kind: String,
    scopes: String,
) -> Result<Credential, StoreError> {
    use crate::workspace::CredentialKind;
    Ok(Credential {
        secret_hash,
        workspace,
        kind: CredentialKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown credential kind {kind:?}")))?,
        scopes: Credential::parse_scopes(&scopes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoded_events_failure_is_the_stores_own_again() {
        let corrupt = sqlx::Error::Decode(Box::new(StoreError::Corrupt("kind".into())));
        assert!(matches!(DecodedEvent::error(corrupt), StoreError::Corrupt(m) if m == "kind"));
        assert!(matches!(
            DecodedEvent::error(sqlx::Error::RowNotFound),
            StoreError::Database(sqlx::Error::RowNotFound)
        ));
    }

    #[test]
    fn connection_failures_are_unavailability_and_statement_failures_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(refused),
        ] {
            let e = StoreError::Database(e);
            assert!(e.is_unavailable(), "{e}");
            assert!(StoreError::Shared(std::sync::Arc::new(e)).is_unavailable());
        }
        for e in [
            StoreError::Database(sqlx::Error::RowNotFound),
            StoreError::Database(sqlx::Error::Protocol("unexpected".into())),
            StoreError::Corrupt("bad row".into()),
            StoreError::Stopped,
        ] {
            assert!(!e.is_unavailable(), "{e}");
        }
    }
}
