//! The production backend: PostgreSQL. Batches are appended with one `UNNEST` insert; readers follow the
//! commit order by (writing transaction id, sequence) below the oldest running transaction that may
//! append (read-model writers marked by this process never do). What is PostgreSQL's own lives here:
//! connecting (and a rebuild's shadow on a `search_path`), the append (subject keys made in a statement
//! of their own, then one insert that checks no key was destroyed since they were read), `read_after` with its
//! transaction-id horizon, the model-writer marks it reads past, and telling an outage from a full
//! server. The log's other operations are the same on both backends (`super::common`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Row;

use super::sealing::{self, KeyCache, SubjectKey};
use super::{decode_event, AppendReport, StoreError, EVENT_COLUMNS, TX_COLUMN};
use crate::event::{to_millis, NewEvent, Position, StoredEvent};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The connections of the read models' writers ([`PostgresStore::model_pool`]).
    model_pool: PgPool,
    keys: KeyCache,
    writers: ModelWriters,
}

/// The `application_name` of the connections of [`PostgresStore::model_pool`]: transactions that write
/// a read model and never an event, whichever process runs them. Every process's log readers read past
/// them (the engine's parts commit on several instances side by side).
pub const MODEL_WRITER_APPLICATION: &str = "cdp-model-writer";

/// The pool of the read models' writers over `options`: connections named
/// [`MODEL_WRITER_APPLICATION`] for their whole life, made when first needed.
fn model_pool_with(options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options.application_name(MODEL_WRITER_APPLICATION))
}

/// The ids of the running transactions of this process that write a read model and never an event:
/// the log's readers here need not wait for them to end ([`PostgresStore::read_after`]).
#[derive(Debug, Clone, Default)]
struct ModelWriters(Arc<Mutex<Vec<i64>>>);

impl ModelWriters {
    fn ids(&self) -> Vec<i64> {
        self.0.lock().expect("model writers lock").clone()
    }
}

/// A read model's transaction marked as such ([`PostgresStore::mark_model_writer`]); dropping the mark
/// (once the transaction has ended) makes readers wait for it again, which is always safe.
#[derive(Debug)]
pub struct ModelWriterMark {
    writers: ModelWriters,
    xid: i64,
}

impl Drop for ModelWriterMark {
    fn drop(&mut self) {
        let mut ids = self.writers.0.lock().expect("model writers lock");
        if let Some(i) = ids.iter().position(|x| *x == self.xid) {
            ids.swap_remove(i);
        }
    }
}

impl PostgresStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            model_pool: model_pool_with(options),
            keys: KeyCache::default(),
            writers: ModelWriters::default(),
        })
    }

    /// Marks the transaction on `tx` as a read model's writer: it must append no event while the mark
    /// lives. Until the mark is dropped, this process's log readers read past it instead of stopping
    /// below it — a resolver's next batch is read while the last one is being written.
    pub async fn mark_model_writer(
        &self,
        tx: &mut PgConnection,
    ) -> Result<ModelWriterMark, StoreError> {
        let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
        Ok(self.mark_model_writer_id(xid))
    }

    /// [`Self::mark_model_writer`] of the transaction whose id (`pg_current_xact_id()`) a statement of
    /// the caller's answered: the id asked in a statement the transaction runs anyway.
    pub fn mark_model_writer_id(&self, xid: i64) -> ModelWriterMark {
        self.writers.0.lock().expect("model writers lock").push(xid);
        ModelWriterMark {
            writers: self.writers.clone(),
            xid,
        }
    }

    /// A store over the same database whose connections look up names along `search_path` (the
    /// shadow's schema first, then the live one): a rebuild's shadow, where the projection code reads the
    /// log from the live schema and reads and writes its model in the shadow's. No migrations are run.
    pub fn shadow(&self, search_path: &str) -> Self {
        let options = (*self.pool.connect_options())
            .clone()
            .options([("search_path", search_path)]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        Self {
            pool,
            model_pool: model_pool_with(options),
            keys: KeyCache::default(),
            // The shadow's writer appends no event either, and reads the live log.
            writers: self.writers.clone(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The pool a read model's writer takes its transaction from: it must append no event there. Its
    /// connections carry [`MODEL_WRITER_APPLICATION`], by which the log's readers of every process
    /// read past their transactions instead of stopping below them.
    pub fn model_pool(&self) -> &PgPool {
        &self.model_pool
    }

    /// Whether PostgreSQL accepts a new connection, made outside the pool, within `within`: not when
    /// the connection is refused, reset or not made in time, nor when the server says it is starting
    /// or shutting down. A server that answers otherwise — too many connections, say — is there: a
    /// request waiting for a pooled connection waits on a busy pool, not on an outage.
    pub(super) async fn accepts_connections(&self, within: Duration) -> bool {
        use sqlx::Connection;
        let options = (*self.pool.connect_options()).clone();
        match tokio::time::timeout(within, PgConnection::connect_with(&options)).await {
            Err(_) => false,
            Ok(Ok(connection)) => {
                // Closed politely in the background: the answer is known.
                tokio::spawn(async move {
                    let _ = connection.close().await;
                });
                true
            }
            Ok(Err(e)) => !refuses_connections(&e),
        }
    }
}

/// Whether a failed connection attempt says the database is out of reach (see
/// [`super::is_connection_error`]) rather than full: "too many connections" (`53300`) comes from a
/// server that is up.
fn refuses_connections(e: &sqlx::Error) -> bool {
    let full = matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("53300"));
    super::is_connection_error(e) && !full
}

/// The log's operations that differ from SQLite's (`Store`'s `EventStore` runs them).
impl PostgresStore {
    /// `EventStore::append`: the subjects' keys first (made and committed by a statement of their
    /// own), then the rows in one `UNNEST` insert, which checks that no key was destroyed since the
    /// keys were read.
    pub(super) async fn append(&self, events: &[NewEvent]) -> Result<AppendReport, StoreError> {
        if events.is_empty() {
            return Ok(AppendReport::default());
        }
        let subjects = sealing::subjects(events);
        let wanted = sealing::wanted(events, &subjects);
        // The keys first, outside the append: a new subject's key is committed at once, so a concurrent
        // append of the same subject waits for that short insert only, not for this append's rows
        // and commit. The count of key destructions read before the keys were is checked by the insert
        // itself; when it moved (an erasure), nothing is inserted and the keys are read again.
        let mut trust_cache = true;
        loop {
            let (keys, generation) =
                subject_keys(&self.pool, &self.keys, &wanted, trust_cache).await?;
            let rows = sealing::rows(events, &subjects, &keys)?;
            match insert_events(&self.pool, &rows, generation).await? {
                Some(inserted) => {
                    return Ok(AppendReport {
                        inserted,
                        duplicates: events.len() as u64 - inserted,
                    })
                }
                None => {
                    self.keys.forget();
                    trust_cache = false;
                }
            }
        }
    }

    /// `EventStore::read_after`.
    pub(super) async fn read_after(
        &self,
        after: Position,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        // Every transaction with an id below the oldest one still running has ended, so no event can
        // still appear below that bound; above it, a running transaction may yet commit rows. Reading
        // in (tx, seq) order up to the bound therefore never skips an event. The running transactions
        // marked as model writers append no events, so the bound is taken over the others (with none
        // marked it is the snapshot's xmin); a new transaction's id is never below the snapshot's xmax.
        // Transaction ids are the cluster's: a transaction of another database on the same server is
        // in the snapshot too, yet can write no row here, so those `pg_stat_activity` names as another
        // database's are left out (a backup or a report elsewhere would otherwise hold every reader
        // back for as long as it runs). One that ends before that view is read stays in: the bound is
        // only ever lower than it could be, never above an event still to come. Those of the read
        // models' writers of any process (their connections named `MODEL_WRITER_APPLICATION`, for
        // their whole life: never an appender's) are left out as this process's marks are.
        let sql = format!(
            "WITH snap AS (SELECT pg_current_snapshot() AS s) \
             SELECT {EVENT_COLUMNS}, tx FROM events \
             WHERE (tx, seq) > ($1, $2) \
               AND tx < coalesce( \
                 (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x \
                   WHERE x::text::bigint <> ALL($4::bigint[]) \
                     AND (x::text::bigint & 4294967295) NOT IN ( \
                       SELECT a.backend_xid::text::bigint FROM pg_stat_get_activity(NULL) a \
                       WHERE a.backend_xid IS NOT NULL AND (a.datid <> \
                         (SELECT oid FROM pg_database WHERE datname = current_database()) \
                         OR a.application_name = '{MODEL_WRITER_APPLICATION}'))), \
                 (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)) \
             ORDER BY tx, seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(after.tx)
            .bind(after.seq)
            .bind(i64::from(limit))
            .bind(self.writers.ids())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| decode_event(r, r.try_get(TX_COLUMN)?))
            .collect()
    }
}

/// Inserts an append's rows in one statement (its own transaction): `None`, inserting nothing, when
/// the count of key destructions is no longer `generation` (a key it seals with may have been destroyed
/// since it was read; `None`: nothing is sealed); else the rows inserted (the others were already
/// stored: duplicates).
async fn insert_events(
    pool: &PgPool,
    rows: &[sealing::EventRow<'_>],
    generation: Option<i64>,
) -> Result<Option<u64>, StoreError> {
    let mut workspace = Vec::with_capacity(rows.len());
    let mut message_id = Vec::with_capacity(rows.len());
    let mut kind = Vec::with_capacity(rows.len());
    let mut name = Vec::with_capacity(rows.len());
    let mut user_id = Vec::with_capacity(rows.len());
    let mut anonymous_id = Vec::with_capacity(rows.len());
    let mut event_time = Vec::with_capacity(rows.len());
    let mut received_at = Vec::with_capacity(rows.len());
    let mut payload = Vec::with_capacity(rows.len());
    let mut sealed = Vec::with_capacity(rows.len());
    let mut format = Vec::with_capacity(rows.len());
    let mut key_id = Vec::with_capacity(rows.len());
    for r in rows {
        let e = r.event;
        workspace.push(e.workspace.as_str());
        message_id.push(e.message_id.as_str());
        kind.push(e.kind.as_str());
        name.push(e.name.as_deref());
        user_id.push(r.user_id);
        anonymous_id.push(r.anonymous_id);
        event_time.push(to_millis(e.event_time));
        received_at.push(to_millis(e.received_at));
        payload.push(r.payload);
        sealed.push(r.sealed.as_deref());
        format.push(r.format);
        key_id.push(r.key_id);
    }
    let (dead, inserted): (i64, i64) = sqlx::query_as(
        "WITH dead AS ( \
           SELECT count(*) AS n FROM shred_generation WHERE $13::int8 IS NOT NULL AND n <> $13), \
         stored AS ( \
           INSERT INTO events (workspace, message_id, kind, name, user_id, anonymous_id, \
             event_time, received_at, payload, format, key_id, sealed) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::int8[], $8::int8[], $9::text[], $10::int2[], $11::int8[], $12::bytea[]) \
           WHERE (SELECT n FROM dead) = 0 \
           ON CONFLICT (workspace, message_id) DO NOTHING RETURNING 1) \
         SELECT (SELECT n FROM dead), (SELECT count(*) FROM stored)",
    )
    .bind(&workspace)
    .bind(&message_id)
    .bind(&kind)
    .bind(&name)
    .bind(&user_id)
    .bind(&anonymous_id)
    .bind(&event_time)
    .bind(&received_at)
    .bind(&payload)
    .bind(&format)
    .bind(&key_id)
    .bind(&sealed)
    .bind(generation)
    .fetch_one(pool)
    .await?;
    Ok((dead == 0).then_some(inserted as u64))
}

/// The live key of each subject, made where a subject has none. New keys are committed by one statement
/// of their own, before the append's transaction: concurrent appends of one new subject then wait for
/// each other only that long (one of them makes the key, the other finds it by its second look). That
/// commit does not wait for the disk (`synchronous_commit` off): the append's own commit, later in the
/// same write-ahead log, flushes it too, so an event is never durable without its key. A key whose append
/// then fails stays, unused: it names no one (the subject is a digest) and seals nothing.
///
/// The key of each subject of `all`, and the count of key destructions read before any of them was
/// (the cache's, when it has the keys; read now otherwise; `None` when `all` is empty);
/// `trust_cache: false` reads every key from the database.
async fn subject_keys(
    pool: &PgPool,
    cache: &KeyCache,
    all: &[(String, String)],
    trust_cache: bool,
) -> Result<(HashMap<String, SubjectKey>, Option<i64>), StoreError> {
    if all.is_empty() {
        // Nothing to seal: no key, no count to check.
        return Ok((HashMap::new(), None));
    }
    let (mut keys, wanted, generation) = if trust_cache {
        cache.split(all)
    } else {
        (HashMap::new(), all.to_vec(), None)
    };
    let generation = match generation {
        Some(g) => g,
        None => {
            // Nothing cached: every key is read after this count.
            keys.clear();
            sqlx::query_scalar(sealing::GENERATION)
                .fetch_one(pool)
                .await?
        }
    };
    if wanted.is_empty() {
        return Ok((keys, Some(generation)));
    }
    let wanted = &wanted[..];
    let workspaces: Vec<&str> = wanted.iter().map(|(w, _)| w.as_str()).collect();
    let subjects: Vec<&str> = wanted.iter().map(|(_, s)| s.as_str()).collect();
    let new_keys: Vec<Vec<u8>> = wanted.iter().map(|_| sealing::fresh_key()).collect();
    // One statement, committed on its own: the live keys of the subjects that have one, and a new key for
    // each that has none (its commit not waiting for the disk: `set_config(…, true)` is `SET LOCAL`).
    let found: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
        "WITH wanted AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS t(w, s, k)), \
         made AS ( \
           INSERT INTO subject_keys (workspace, subject, key, created_at) \
           SELECT w, s, k, $4 FROM wanted \
             CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS quick \
           WHERE NOT EXISTS (SELECT 1 FROM subject_keys e WHERE e.subject = wanted.s) \
           ON CONFLICT (subject) DO NOTHING RETURNING subject, id, key) \
         SELECT subject, id, key FROM made \
         UNION ALL \
         SELECT e.subject, e.id, e.key FROM subject_keys e JOIN wanted ON e.subject = wanted.s \
         WHERE e.key IS NOT NULL",
    )
    .bind(&workspaces)
    .bind(&subjects)
    .bind(&new_keys)
    .bind(chrono::Utc::now().timestamp_millis())
    .fetch_all(pool)
    .await?;
    keys.extend(found.into_iter().map(|(s, id, k)| (s, (id, k))));
    if wanted.iter().any(|(_, s)| !keys.contains_key(s)) {
        // Made by a concurrent append after this statement's snapshot (its insert waited for that one's
        // commit): read now.
        let found: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT subject, id, key FROM subject_keys WHERE subject = ANY($1) AND key IS NOT NULL",
        )
        .bind(&subjects)
        .fetch_all(pool)
        .await?;
        keys.extend(found.into_iter().map(|(s, id, k)| (s, (id, k))));
    }
    cache.remember(&keys, generation);
    Ok((keys, Some(generation)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's answer to a connection attempt, with its SQLSTATE.
    #[derive(Debug)]
    struct Answer(&'static str);

    impl std::fmt::Display for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Answer {}

    impl sqlx::error::DatabaseError for Answer {
        fn message(&self) -> &str {
            self.0
        }

        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    #[test]
    fn a_refused_connection_is_an_outage_and_a_full_server_is_not() {
        let answered = |code| sqlx::Error::Database(Box::new(Answer(code)));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(refuses_connections(&sqlx::Error::Io(refused)));
        assert!(refuses_connections(&answered("57P03")), "starting up");
        assert!(
            refuses_connections(&answered("08006")),
            "connection failure"
        );
        assert!(
            !refuses_connections(&answered("53300")),
            "too many connections: the server is up"
        );
        assert!(
            !refuses_connections(&answered("28P01")),
            "a wrong password is no outage"
        );
    }
}
