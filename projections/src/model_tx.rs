//! The transaction a read model is written in (`ModelTx`): opaque outside this crate, which alone
//! writes SQL through it; other crates begin, hand on and commit it.

use cdp_domain::store::Store;
use sqlx::{Postgres, Sqlite, Transaction};

use crate::error::ProjectionError;

/// The transaction a projection writes its read model in; the runner commits it with the checkpoint.
/// Other crates cannot look inside: they write the model through this crate's functions.
pub struct ModelTx<'a>(pub(crate) Tx<'a>);

/// The backend's transaction inside a [`ModelTx`]. The engine's stages write through it in one shape:
/// `match &mut tx.0 { Tx::Sqlite(tx) => sqlite::…(tx, …), Tx::Postgres(tx) => postgres::…(tx, …) }`,
/// each stage's statements for a backend in the `sqlite.rs` or `postgres.rs` beside its writes.
pub(crate) enum Tx<'a> {
    Sqlite(Transaction<'a, Sqlite>),
    Postgres(Transaction<'a, Postgres>),
}

impl ModelTx<'static> {
    /// A plain model transaction on `store` (SQLite: under its write lock), holding no checkpoint.
    pub(crate) async fn begin(store: &Store) -> Result<ModelTx<'static>, ProjectionError> {
        Ok(match store {
            Store::Sqlite(s) => ModelTx(Tx::Sqlite(s.begin_write().await?)),
            Store::Postgres(s) => ModelTx(Tx::Postgres(s.pool().begin().await?)),
        })
    }
}

impl ModelTx<'_> {
    pub(crate) async fn commit(self) -> Result<(), ProjectionError> {
        match self.0 {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// A transaction another crate began on SQLite (a rebuild's switch, across the attached shadow).
impl<'a> From<Transaction<'a, Sqlite>> for ModelTx<'a> {
    fn from(tx: Transaction<'a, Sqlite>) -> Self {
        ModelTx(Tx::Sqlite(tx))
    }
}

/// A transaction another crate began on PostgreSQL (a rebuild's switch, across the shadow schema).
impl<'a> From<Transaction<'a, Postgres>> for ModelTx<'a> {
    fn from(tx: Transaction<'a, Postgres>) -> Self {
        ModelTx(Tx::Postgres(tx))
    }
}

/// Records, in a transaction of its own, that the model of projection `name` was built by code
/// `version` (a rebuild that found nothing to rebuild).
pub async fn record_version(
    store: &Store,
    name: &str,
    version: i64,
) -> Result<(), ProjectionError> {
    let mut tx = ModelTx::begin(store).await?;
    write_version(&mut tx, name, version).await?;
    tx.commit().await
}

/// Records that the model of projection `name` was built by code `version` (unqualified: the live
/// model's table).
pub(crate) async fn write_version(
    tx: &mut ModelTx<'_>,
    name: &str,
    version: i64,
) -> Result<(), ProjectionError> {
    let sql = "INSERT INTO projection_versions (name, version) VALUES ($1, $2) \
               ON CONFLICT (name) DO UPDATE SET version = excluded.version";
    match &mut tx.0 {
        Tx::Sqlite(tx) => {
            sqlx::query(&sql.replace("$1", "?").replace("$2", "?"))
                .bind(name)
                .bind(version)
                .execute(&mut **tx)
                .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query(sql)
                .bind(name)
                .bind(version)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// The version of the code that built the stored model of `projection` (1 when none is recorded).
pub async fn built_version(store: &Store, projection: &str) -> Result<i64, ProjectionError> {
    let sql = "SELECT version FROM projection_versions WHERE name = ";
    let version: Option<i64> = match store {
        Store::Sqlite(s) => {
            sqlx::query_scalar(&format!("{sql}?"))
                .bind(projection)
                .fetch_optional(s.read_pool())
                .await?
        }
        Store::Postgres(s) => {
            sqlx::query_scalar(&format!("{sql}$1"))
                .bind(projection)
                .fetch_optional(s.pool())
                .await?
        }
    };
    Ok(version.unwrap_or(1))
}
