//! The transaction a read model is written in (`ModelTx`): opaque outside this crate, which alone
//! writes SQL through it; other crates begin, hand on and commit it.

use cdp_domain::store::sql::{query, Exec};
use cdp_domain::store::Store;
use sqlx::{Postgres, Sqlite, Transaction};

use crate::error::ProjectionError;
use crate::model_sql as sql;

/// The transaction a projection writes its read model in; the runner commits it with the checkpoint.
/// Other crates cannot look inside: they write the model through this crate's functions.
pub struct ModelTx<'a>(pub(crate) Tx<'a>);

/// The backend's transaction inside a [`ModelTx`]. A statement both backends run goes through
/// [`ModelTx::exec`] (`cdp_domain::store::sql`); the engine's stages, whose bulk writes differ by
/// backend, write through it in one shape: `match &mut tx.0 { Tx::Sqlite(tx) => sqlite::…(tx, …),
/// Tx::Postgres(tx) => postgres::…(tx, …) }`, each stage's statements for a backend in the
/// `sqlite.rs` or `postgres.rs` beside its writes.
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
    /// Where a statement runs in this transaction (`cdp_domain::store::sql`).
    pub(crate) fn exec(&mut self) -> Exec<'_> {
        match &mut self.0 {
            Tx::Sqlite(tx) => tx.into(),
            Tx::Postgres(tx) => tx.into(),
        }
    }

    /// Whether the transaction is SQLite's (for the few statements that differ by backend).
    pub(crate) fn is_sqlite(&self) -> bool {
        matches!(self.0, Tx::Sqlite(_))
    }

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
    query(sql::WRITE_VERSION)
        .bind(name)
        .bind(version)
        .execute(tx.exec())
        .await?;
    Ok(())
}

/// The version of the code that built the stored model of `projection` (1 when none is recorded).
pub async fn built_version(store: &Store, projection: &str) -> Result<i64, ProjectionError> {
    let version: Option<i64> = query(sql::BUILT_VERSION)
        .bind(projection)
        .scalar_optional(store.reader())
        .await?;
    Ok(version.unwrap_or(1))
}
