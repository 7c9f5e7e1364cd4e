//! The shadow of a rebuild: a second SQLite database next to the live one (attaching it), or a
//! PostgreSQL schema first on the search path holding a copy of every model table's definition, its
//! storage parameters and, until the shadow is caught up, only the indexes the resolver reads by (the
//! others built at once over the rows, `build_deferred_indexes`); dropped after the switch.

use super::*;

/// The shadow a rebuild writes into.
pub(super) struct Shadow {
    /// The shadow's store: the projection code runs on it unchanged.
    pub(super) store: Store,
    /// PostgreSQL: the session holding the advisory lock, and the live schema.
    pub(super) postgres: Option<(sqlx::PgConnection, String)>,
}

pub(super) async fn shadow_path(live: &SqliteStore) -> Result<PathBuf, ProjectionError> {
    Ok(live.path().await?.with_file_name(SHADOW_FILE))
}

pub(super) async fn shadow_store_sqlite(live: &SqliteStore) -> Result<Store, ProjectionError> {
    let live_path = live.path().await?;
    let path = live_path.with_file_name(SHADOW_FILE);
    Ok(Store::Sqlite(
        SqliteStore::open_shadow(&path, &live_path).await?,
    ))
}

/// `name` as a quoted PostgreSQL identifier.
/// The shadow tables whose secondary indexes a PostgreSQL rebuild builds once at the end instead of
/// row by row: the resolver never reads them by those (decisions by seq, events by profile and
/// sequence, which stays).
const DEFERRED_INDEX_TABLES: &[&str] = &["identity_events", "event_profiles"];

/// Whether a secondary index (its `pg_get_indexdef`) of [`DEFERRED_INDEX_TABLES`] stays while the
/// shadow is written.
pub(crate) fn kept_while_written(definition: &str) -> bool {
    definition.contains(KEPT_INDEX)
}

/// How an index that finds one profile's rows begins (`event_profiles_recent`: `(workspace, profile,
/// event_time)`); such an index is kept while the shadow is written.
const KEPT_INDEX: &str = "(workspace, profile, ";

/// Drops the secondary indexes of [`DEFERRED_INDEX_TABLES`] in the new shadow (but those that find a
/// profile's rows, [`KEPT_INDEX`]: merges move a profile's events and splits read them while the
/// shadow is written — without it each would scan the whole table, and a rebuild of N events would
/// take time in N²), keeping their definitions in `rebuild_deferred` so that a resumed rebuild builds
/// them too.
async fn defer_indexes(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<(), ProjectionError> {
    sqlx::query(&format!(
        "CREATE TABLE {SHADOW_SCHEMA}.rebuild_deferred (definition TEXT NOT NULL)"
    ))
    .execute(&mut **tx)
    .await?;
    for t in DEFERRED_INDEX_TABLES {
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT format('%I.%I', n.nspname, i.relname), pg_get_indexdef(i.oid) \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE x.indrelid = $1::regclass AND NOT x.indisunique AND NOT x.indisprimary",
        )
        .bind(format!("{SHADOW_SCHEMA}.{t}"))
        .fetch_all(&mut **tx)
        .await?;
        for (index, definition) in indexes {
            if kept_while_written(&definition) {
                continue;
            }
            sqlx::query(&format!("DROP INDEX {index}"))
                .execute(&mut **tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO {SHADOW_SCHEMA}.rebuild_deferred (definition) VALUES ($1)"
            ))
            .bind(&definition)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Builds the indexes [`defer_indexes`] left out, over the shadow's rows.
pub(super) async fn build_deferred_indexes(
    lock: &mut sqlx::PgConnection,
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    let mut tx = lock.begin().await?;
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{SHADOW_SCHEMA}.rebuild_deferred"))
        .fetch_one(&mut *tx)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let definitions: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT definition FROM {SHADOW_SCHEMA}.rebuild_deferred"
    ))
    .fetch_all(&mut *tx)
    .await?;
    for definition in &definitions {
        // A definition read from the catalog (`pg_get_indexdef`), naming the shadow's table.
        sqlx::query(definition).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("DELETE FROM {SHADOW_SCHEMA}.rebuild_deferred"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        indexes = definitions.len(),
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: deferred indexes built"
    );
    Ok(())
}

pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Shadow {
    /// Opens the shadow of an interrupted rebuild by the same code `version`, or creates an empty one.
    pub(super) async fn open(store: &Store, version: i64) -> Result<Shadow, ProjectionError> {
        let now = chrono::Utc::now().timestamp_millis();
        match store {
            Store::Sqlite(live) => {
                // Set up through connections of their own: a connection that resolved a name to the
                // live database before the shadow had the table would keep doing so (SQLite re-checks
                // only the schemas a statement uses).
                let setup = shadow_store_sqlite(live).await?;
                let Store::Sqlite(s) = &setup else {
                    unreachable!()
                };
                let mut tx = s.begin_write().await?;
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM main.sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut *tx)
                .await?;
                let resumable = if tables.iter().any(|t| t == "rebuild_meta") {
                    let built: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM main.rebuild_meta")
                            .fetch_optional(&mut *tx)
                            .await?;
                    built == Some(version)
                } else {
                    false
                };
                if !resumable {
                    for t in &tables {
                        sqlx::query(&format!("DROP TABLE main.{}", quoted(t)))
                            .execute(&mut *tx)
                            .await?;
                    }
                    let mut names = MODEL_TABLES.to_vec();
                    names.extend_from_slice(SHADOW_BOOKKEEPING);
                    let placeholders = vec!["?"; names.len()].join(", ");
                    let ddl_sql = format!(
                        "SELECT sql FROM live.sqlite_master WHERE tbl_name IN ({placeholders}) \
                         AND sql IS NOT NULL ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END"
                    );
                    let mut ddl_query = sqlx::query_scalar(&ddl_sql);
                    for n in &names {
                        ddl_query = ddl_query.bind(*n);
                    }
                    let ddl: Vec<String> = ddl_query.fetch_all(&mut *tx).await?;
                    for statement in ddl {
                        sqlx::query(&statement).execute(&mut *tx).await?;
                    }
                    sqlx::query(
                        "CREATE TABLE main.rebuild_meta (version INTEGER NOT NULL, \
                         started_at INTEGER NOT NULL)",
                    )
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO main.rebuild_meta (version, started_at) VALUES (?, ?)",
                    )
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                s.write_pool().close().await;
                s.read_pool().close().await;
                Ok(Shadow {
                    store: shadow_store_sqlite(live).await?,
                    postgres: None,
                })
            }
            Store::Postgres(live) => {
                let mut lock = live.pool().acquire().await?.detach();
                // A rebuild that just stopped holds the lock until its server session notices the
                // connection closed: asked again for a moment before it counts as running.
                let mut locked = false;
                for _ in 0..LOCK_TRIES {
                    locked = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                        .bind(REBUILD_LOCK)
                        .fetch_one(&mut lock)
                        .await?;
                    if locked {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                if !locked {
                    return Err(ProjectionError::Corrupt(
                        "another rebuild is running on this database".into(),
                    ));
                }
                let live_schema: String = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&mut lock)
                    .await?;
                let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
                    .bind(format!("{SHADOW_SCHEMA}.rebuild_meta"))
                    .fetch_one(&mut lock)
                    .await?;
                let resumable = match exists {
                    Some(_) => {
                        let built: Option<i64> = sqlx::query_scalar(&format!(
                            "SELECT version FROM {SHADOW_SCHEMA}.rebuild_meta"
                        ))
                        .fetch_optional(&mut lock)
                        .await?;
                        built == Some(version)
                    }
                    None => false,
                };
                if !resumable {
                    let mut tx = lock.begin().await?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&format!("CREATE SCHEMA {SHADOW_SCHEMA}"))
                        .execute(&mut *tx)
                        .await?;
                    for t in MODEL_TABLES.iter().chain(SHADOW_BOOKKEEPING) {
                        sqlx::query(&format!(
                            "CREATE TABLE {SHADOW_SCHEMA}.{t} (LIKE {}.{t} INCLUDING ALL)",
                            quoted(&live_schema)
                        ))
                        .execute(&mut *tx)
                        .await?;
                        // `LIKE` copies no storage parameters (a fillfactor): the switch moves these
                        // tables into the live schema, so they must carry the live ones.
                        let options: Option<Vec<String>> = sqlx::query_scalar(
                            "SELECT c.reloptions FROM pg_class c \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND c.relname = $2",
                        )
                        .bind(&live_schema)
                        .bind(t)
                        .fetch_one(&mut *tx)
                        .await?;
                        if let Some(options) = options.filter(|o| !o.is_empty()) {
                            sqlx::query(&format!(
                                "ALTER TABLE {SHADOW_SCHEMA}.{t} SET ({})",
                                options.join(", ")
                            ))
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    sqlx::query(&format!(
                        "CREATE TABLE {SHADOW_SCHEMA}.rebuild_meta (version BIGINT NOT NULL, \
                         started_at BIGINT NOT NULL)"
                    ))
                    .execute(&mut *tx)
                    .await?;
                    defer_indexes(&mut tx).await?;
                    sqlx::query(&format!(
                        "INSERT INTO {SHADOW_SCHEMA}.rebuild_meta (version, started_at) \
                         VALUES ($1, $2)"
                    ))
                    .bind(version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                let store = Store::Postgres(PostgresStore::shadow(
                    live,
                    &format!("{SHADOW_SCHEMA},{}", quoted(&live_schema)),
                ));
                Ok(Shadow {
                    store,
                    postgres: Some((lock, live_schema)),
                })
            }
        }
    }

    /// Removes the shadow after the switch.
    pub(super) async fn drop_it(self, live: &Store) -> Result<(), ProjectionError> {
        match (live, self.store) {
            (Store::Sqlite(l), Store::Sqlite(s)) => {
                s.write_pool().close().await;
                s.read_pool().close().await;
                let path = shadow_path(l).await?;
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ProjectionError::corrupt(e)),
                    }
                }
            }
            (_, Store::Postgres(s)) => {
                s.pool().close().await;
                if let Some((mut lock, _)) = self.postgres {
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW_SCHEMA} CASCADE"))
                        .execute(&mut lock)
                        .await?;
                    lock.close().await?;
                }
            }
            _ => unreachable!("the shadow is on the live store's backend"),
        }
        Ok(())
    }
}
