//! The shadow of a rebuild: a second SQLite database next to the live one (attaching it), or a
//! PostgreSQL schema first on the search path holding a copy of every model table's definition, its
//! storage parameters and, until the shadow is caught up, only the indexes the resolver reads by (the
//! others built at once over the rows, `build_deferred_indexes`); dropped after the switch.

use cdp_domain::store::sql::{query, verbatim};

use super::sql::{self, quoted};
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
    verbatim(sql::POSTGRES_CREATE_DEFERRED)
        .execute(&mut *tx)
        .await?;
    for t in DEFERRED_INDEX_TABLES {
        let indexes: Vec<(String, String)> = verbatim(sql::POSTGRES_SECONDARY_INDEXES)
            .bind(format!("{SHADOW_SCHEMA}.{t}"))
            .fetch_all(&mut *tx)
            .await?;
        for (index, definition) in indexes {
            if kept_while_written(&definition) {
                continue;
            }
            verbatim(sql::postgres_drop_index(&index))
                .execute(&mut *tx)
                .await?;
            verbatim(sql::POSTGRES_INSERT_DEFERRED)
                .bind(&definition)
                .execute(&mut *tx)
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
    let exists: Option<String> = verbatim(sql::POSTGRES_TABLE_EXISTS)
        .bind(sql::POSTGRES_DEFERRED_TABLE)
        .scalar(&mut tx)
        .await?;
    if exists.is_none() {
        return Ok(());
    }
    let definitions: Vec<String> = verbatim(sql::POSTGRES_DEFERRED_DEFINITIONS)
        .scalars(&mut tx)
        .await?;
    for definition in &definitions {
        // A definition read from the catalog (`pg_get_indexdef`), naming the shadow's table.
        verbatim(definition.as_str()).execute(&mut tx).await?;
    }
    verbatim(sql::POSTGRES_CLEAR_DEFERRED)
        .execute(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        indexes = definitions.len(),
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: deferred indexes built"
    );
    Ok(())
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
                let tables: Vec<String> = query(sql::SQLITE_SHADOW_TABLES).scalars(&mut tx).await?;
                let resumable = if tables.iter().any(|t| t == "rebuild_meta") {
                    let built: Option<i64> = query(sql::SQLITE_META_VERSION)
                        .scalar_optional(&mut tx)
                        .await?;
                    built == Some(version)
                } else {
                    false
                };
                if !resumable {
                    for t in &tables {
                        query(sql::sqlite_drop_table(t)).execute(&mut tx).await?;
                    }
                    let mut names = MODEL_TABLES.to_vec();
                    names.extend_from_slice(SHADOW_BOOKKEEPING);
                    let ddl: Vec<String> = query(sql::SQLITE_LIVE_DEFINITIONS)
                        .bind(&names)
                        .scalars(&mut tx)
                        .await?;
                    for statement in ddl {
                        verbatim(statement).execute(&mut tx).await?;
                    }
                    query(sql::SQLITE_CREATE_META).execute(&mut tx).await?;
                    query(sql::SQLITE_INSERT_META)
                        .bind(version)
                        .bind(now)
                        .execute(&mut tx)
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
                    locked = verbatim(sql::POSTGRES_TRY_LOCK)
                        .bind(REBUILD_LOCK)
                        .scalar(&mut lock)
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
                let live_schema: String = verbatim(sql::POSTGRES_CURRENT_SCHEMA)
                    .scalar(&mut lock)
                    .await?;
                let exists: Option<String> = verbatim(sql::POSTGRES_TABLE_EXISTS)
                    .bind(sql::POSTGRES_META_TABLE)
                    .scalar(&mut lock)
                    .await?;
                let resumable = match exists {
                    Some(_) => {
                        let built: Option<i64> = verbatim(sql::POSTGRES_META_VERSION)
                            .scalar_optional(&mut lock)
                            .await?;
                        built == Some(version)
                    }
                    None => false,
                };
                if !resumable {
                    let mut tx = lock.begin().await?;
                    verbatim(sql::POSTGRES_DROP_SHADOW).execute(&mut tx).await?;
                    verbatim(sql::POSTGRES_CREATE_SHADOW)
                        .execute(&mut tx)
                        .await?;
                    for t in MODEL_TABLES.iter().chain(SHADOW_BOOKKEEPING) {
                        verbatim(sql::postgres_create_like(t, &live_schema))
                            .execute(&mut tx)
                            .await?;
                        // `LIKE` copies no storage parameters (a fillfactor): the switch moves these
                        // tables into the live schema, so they must carry the live ones.
                        let options: Option<String> = verbatim(sql::POSTGRES_STORAGE_PARAMETERS)
                            .bind(live_schema.as_str())
                            .bind(*t)
                            .scalar(&mut tx)
                            .await?;
                        if let Some(options) = options.filter(|o| !o.is_empty()) {
                            verbatim(sql::postgres_set_storage_parameters(t, &options))
                                .execute(&mut tx)
                                .await?;
                        }
                    }
                    verbatim(sql::POSTGRES_CREATE_META).execute(&mut tx).await?;
                    defer_indexes(&mut tx).await?;
                    verbatim(sql::POSTGRES_INSERT_META)
                        .bind(version)
                        .bind(now)
                        .execute(&mut tx)
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
                    verbatim(sql::POSTGRES_DROP_SHADOW)
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
