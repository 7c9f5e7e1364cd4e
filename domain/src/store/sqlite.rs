//! The embedded default backend: one SQLite file in WAL mode, written by exactly one connection in
//! `BEGIN IMMEDIATE` transactions, read by a small pool of read-only connections. What is SQLite's own
//! lives here: opening those two pools (and a rebuild's shadow with the live database attached), the
//! append (one writer's transaction: subject keys checked, looked up and made in it, then multi-row
//! inserts) and `read_after` (by `seq` alone: one writer commits rowids in order). The log's other
//! operations are the same on both backends (`super::common`).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::sealing::{self, KeyCache, SubjectKey};
use super::{decode_event, AppendReport, StoreError, EVENT_COLUMNS};
use crate::event::{to_millis, NewEvent, Position, StoredEvent};

/// 11 bound parameters a row; SQLite allows 32,766 per statement.
const ROWS_PER_STATEMENT: usize = 1000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// How the writer opens a transaction: `BEGIN IMMEDIATE` (take the write lock at once), or a
    /// deferred `BEGIN` for a rebuild's shadow, whose connections also see the live database attached and
    /// must not lock it.
    begin: &'static str,
    keys: KeyCache,
}

impl SqliteStore {
    pub async fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("cannot create data directory {}: {e}", dir.display()).into(),
            ))
        })?;
        let options = SqliteConnectOptions::new().filename(dir.join("cdp.db"));
        Self::open(options).await
    }

    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(SqliteConnectOptions::from_str(url)?).await
    }

    async fn open(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        // FULL: a commit is on disk before the writer answers, so an acknowledged event survives a crash
        // of the machine, not only of the process.
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            begin: "BEGIN IMMEDIATE",
            keys: KeyCache::default(),
        })
    }

    /// A store over a rebuild's shadow database `shadow` (created if missing, no migrations run: the
    /// rebuild creates its tables), with the live database `live` attached as `live` to every connection.
    /// Unqualified names resolve in the shadow first, then in the live database, so the projection code
    /// reads the log from the live database and reads and writes its model in the shadow.
    pub async fn open_shadow(shadow: &Path, live: &Path) -> Result<Self, StoreError> {
        // NORMAL: a rebuild needs consistency, not durability (it resumes from its checkpoint).
        let options = SqliteConnectOptions::new()
            .filename(shadow)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let live = live.to_string_lossy().into_owned();
        let write_live = live.clone();
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                let live = write_live.clone();
                Box::pin(async move { attach_live(conn, live).await })
            })
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let live = live.clone();
                Box::pin(async move { attach_live(conn, live).await })
            })
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            begin: "BEGIN",
            keys: KeyCache::default(),
        })
    }

    /// The path of the main database file.
    pub async fn path(&self) -> Result<std::path::PathBuf, StoreError> {
        let rows = sqlx::query("PRAGMA database_list")
            .fetch_all(&self.read)
            .await?;
        let file: String = rows
            .iter()
            .find(|r| r.get::<String, _>(1) == "main")
            .map(|r| r.get(2))
            .unwrap_or_default();
        Ok(file.into())
    }

    /// Opens a write transaction (`BEGIN IMMEDIATE` on the live store).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
        self.write.begin_with(self.begin).await
    }

    /// The single writing connection's pool; every write of every crate goes through it.
    pub fn write_pool(&self) -> &SqlitePool {
        &self.write
    }

    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }
}

async fn attach_live(conn: &mut sqlx::SqliteConnection, live: String) -> Result<(), sqlx::Error> {
    sqlx::query("ATTACH DATABASE ? AS live")
        .bind(live)
        .execute(conn)
        .await?;
    Ok(())
}

/// The log's operations that differ from PostgreSQL's (`Store`'s `EventStore` runs them).
impl SqliteStore {
    /// `EventStore::append`: in one `BEGIN IMMEDIATE` transaction of the only writer, the subjects'
    /// keys (cached ones kept while no key was destroyed since, missing ones made), then the rows, 1,000
    /// a statement.
    pub(super) async fn append(&self, events: &[NewEvent]) -> Result<AppendReport, StoreError> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let subjects = sealing::subjects(events);
        let mut tx = self.write.begin_with(self.begin).await?;
        let keys = subject_keys(&mut tx, &self.keys, &sealing::wanted(events, &subjects)).await?;
        let rows = sealing::rows(events, &subjects, &keys)?;
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO events (workspace, message_id, kind, name, user_id, anonymous_id, \
                 event_time, received_at, payload, format, key_id, sealed) ",
            );
            query.push_values(chunk, |mut row, r| {
                let e = r.event;
                row.push_bind(&e.workspace)
                    .push_bind(&e.message_id)
                    .push_bind(e.kind.as_str())
                    .push_bind(&e.name)
                    .push_bind(r.user_id)
                    .push_bind(r.anonymous_id)
                    .push_bind(to_millis(e.event_time))
                    .push_bind(to_millis(e.received_at))
                    .push_bind(r.payload)
                    .push_bind(r.format)
                    .push_bind(r.key_id)
                    .push_bind(r.sealed.as_deref());
            });
            query.push(" ON CONFLICT (workspace, message_id) DO NOTHING");
            inserted += query.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(AppendReport {
            inserted,
            duplicates: events.len() as u64 - inserted,
        })
    }

    /// `EventStore::read_after`.
    pub(super) async fn read_after(
        &self,
        after: Position,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // One writer at a time means rowids commit in order: reading above the last seen seq skips nothing.
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?");
        let rows = sqlx::query(&sql)
            .bind(after.seq)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| decode_event(r, 0)).collect()
    }
}

/// The live key of each subject, made where a subject has none, in the append's transaction (which holds
/// the only writer).
async fn subject_keys(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    cache: &KeyCache,
    wanted: &[(String, String)],
) -> Result<HashMap<String, SubjectKey>, StoreError> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let (mut keys, mut missing, cached_at) = cache.split(wanted);
    // The cached keys are all alive while no key was destroyed since they were read (an erasure moves
    // the count); otherwise everything is looked up again.
    let generation: i64 = sqlx::query_scalar(sealing::GENERATION)
        .fetch_one(&mut **tx)
        .await?;
    if cached_at != Some(generation) {
        cache.forget();
        keys.clear();
        missing = wanted.to_vec();
    }
    for chunk in missing.chunks(ROWS_PER_STATEMENT) {
        let mut select: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT subject, id, key FROM subject_keys WHERE key IS NOT NULL AND subject IN (",
        );
        let mut list = select.separated(", ");
        for (_, subject) in chunk {
            list.push_bind(subject);
        }
        select.push(")");
        let found: Vec<(String, i64, Vec<u8>)> =
            select.build_query_as().fetch_all(&mut **tx).await?;
        keys.extend(found.into_iter().map(|(s, id, k)| (s, (id, k))));
        let missing: Vec<&(String, String)> = chunk
            .iter()
            .filter(|(_, s)| !keys.contains_key(s))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut insert: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO subject_keys (workspace, subject, key, created_at) ");
        insert.push_values(missing, |mut row, (workspace, subject)| {
            row.push_bind(workspace)
                .push_bind(subject)
                .push_bind(sealing::fresh_key())
                .push_bind(now);
        });
        insert.push(" RETURNING subject, id, key");
        let made: Vec<(String, i64, Vec<u8>)> =
            insert.build_query_as().fetch_all(&mut **tx).await?;
        keys.extend(made.into_iter().map(|(s, id, k)| (s, (id, k))));
    }
    cache.remember(&keys, generation);
    Ok(keys)
}
