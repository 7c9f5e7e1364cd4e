//! The erasure's statements on either backend's transaction: a bound parameter list (`?`
//! placeholders, numbered for PostgreSQL), the typed fetches the steps use, and the append-only
//! triggers of `identity_events` set aside and restored around the redaction.

use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

/// A bound parameter of the few statements here.
#[derive(Clone)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds a query with `$make(sql)` on either backend's transaction, binds `$binds` and finishes it with
/// `$finish` (SQLite takes `?` placeholders, PostgreSQL the numbered ones).
macro_rules! on_tx {
    ($tx:expr, $sql:expr, $binds:expr, $make:expr, $finish:ident $(, $then:ident)?) => {{
        macro_rules! bound {
            ($q:expr) => {{
                let mut q = $q;
                for b in $binds {
                    q = match b {
                        Bind::Text(s) => q.bind(s.clone()),
                        Bind::Int(i) => q.bind(*i),
                    };
                }
                q
            }};
        }
        match $tx {
            ModelTx(Tx::Sqlite(t)) => bound!(($make)($sql)).$finish(&mut **t).await? $(.$then())?,
            ModelTx(Tx::Postgres(t)) => {
                let numbered = crate::profiles::numbered($sql);
                bound!(($make)(numbered.as_str())).$finish(&mut **t).await? $(.$then())?
            }
        }
    }};
}

pub(super) async fn execute(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<u64, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query, execute, rows_affected))
}

pub(super) async fn texts(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<String>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_scalar, fetch_all))
}

pub(super) async fn ints(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<i64>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_scalar, fetch_all))
}

pub(super) async fn pairs(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(String, String)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

pub(super) async fn pairs_int(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(i64, i64)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

/// `(seq, value, body)` of identity decisions.
pub(super) async fn decisions(
    tx: &mut ModelTx<'_>,
    sql: &str,
    binds: &[Bind],
) -> Result<Vec<(i64, Option<String>, String)>, ProjectionError> {
    Ok(on_tx!(tx, sql, binds, sqlx::query_as, fetch_all))
}

/// `?, ?, …` for `n` values.
pub(super) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

pub(super) fn text_binds(workspace: &str, values: &[String]) -> Vec<Bind> {
    std::iter::once(Bind::Text(workspace.to_owned()))
        .chain(values.iter().map(|v| Bind::Text(v.clone())))
        .collect()
}

/// A `LIKE` pattern matching `needle` anywhere, with `\` as the escape.
pub(super) fn containing(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Sets the append-only triggers of `identity_events` aside (restored by [`restore_triggers`] in the
/// same transaction, as a rebuild's switch does): an erasure is the one rewrite the decisions allow.
pub(super) async fn set_triggers_aside(
    tx: &mut ModelTx<'_>,
) -> Result<Vec<(String, String)>, ProjectionError> {
    match tx {
        ModelTx(Tx::Sqlite(t)) => {
            let triggers: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' \
                 AND tbl_name = 'identity_events'",
            )
            .fetch_all(&mut **t)
            .await?;
            for (name, _) in &triggers {
                sqlx::query(&format!(
                    "DROP TRIGGER main.\"{}\"",
                    name.replace('"', "\"\"")
                ))
                .execute(&mut **t)
                .await?;
            }
            Ok(triggers)
        }
        ModelTx(Tx::Postgres(t)) => {
            sqlx::query("ALTER TABLE identity_events DISABLE TRIGGER USER")
                .execute(&mut **t)
                .await?;
            Ok(Vec::new())
        }
    }
}

pub(super) async fn restore_triggers(
    tx: &mut ModelTx<'_>,
    triggers: Vec<(String, String)>,
) -> Result<(), ProjectionError> {
    match tx {
        ModelTx(Tx::Sqlite(t)) => {
            for (_, sql) in &triggers {
                sqlx::query(sql).execute(&mut **t).await?;
            }
        }
        ModelTx(Tx::Postgres(t)) => {
            sqlx::query("ALTER TABLE identity_events ENABLE TRIGGER USER")
                .execute(&mut **t)
                .await?;
        }
    }
    Ok(())
}
