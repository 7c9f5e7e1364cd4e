//! The catalog's rows, one text for both backends (`QueryBuilder` numbers the parameters for
//! PostgreSQL; the function is stamped out once per backend's transaction type): one upsert per
//! definition, job and set of cut points (they are few).

use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};

use super::{CatalogWrites, DefinitionRow};
use crate::catalog::JOB_COLUMNS;
use crate::runner::ProjectionError;

macro_rules! write_rows_on {
    ($name:ident, $db:ty) => {
        /// Writes `w`'s definitions, jobs and cut points, in that order.
        pub(super) async fn $name(
            tx: &mut Transaction<'_, $db>,
            w: &CatalogWrites,
        ) -> Result<(), ProjectionError> {
            for DefinitionRow {
                workspace: ws,
                kind,
                name,
                version,
                body,
                defined_at,
            } in &w.definitions
            {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO definitions (workspace, kind, name, version, body, defined_at) ",
                );
                q.push_values([()], |mut row, ()| {
                    row.push_bind(ws.as_str())
                        .push_bind(*kind)
                        .push_bind(name.as_str())
                        .push_bind(*version)
                        .push_bind(body.clone())
                        .push_bind(*defined_at);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q.build().execute(&mut **tx).await?;
            }
            for j in &w.jobs {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(format!("INSERT INTO catalog_jobs ({JOB_COLUMNS}) "));
                q.push_values([j], |mut row, j| {
                    row.push_bind(j.workspace.as_str())
                        .push_bind(j.kind.as_str())
                        .push_bind(j.name.as_str())
                        .push_bind(j.version)
                        .push_bind(j.cursor.as_str())
                        .push_bind(j.done)
                        .push_bind(j.total)
                        .push_bind(j.status.as_str())
                        .push_bind(j.started_at)
                        .push_bind(j.finished_at);
                });
                q.push(
                    " ON CONFLICT (workspace, kind, name, version) DO UPDATE SET \
                     cursor = excluded.cursor, done = excluded.done, total = excluded.total, \
                     status = excluded.status, finished_at = excluded.finished_at",
                );
                q.build().execute(&mut **tx).await?;
            }
            for (ws, tag, version, at, t) in &w.thresholds {
                let body = serde_json::to_string(t).map_err(ProjectionError::corrupt)?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO rfm_thresholds (workspace, tag, version, computed_at, body) ",
                );
                q.push_values([()], |mut row, ()| {
                    row.push_bind(ws.as_str())
                        .push_bind(tag.as_str())
                        .push_bind(*version)
                        .push_bind(*at)
                        .push_bind(body.clone());
                });
                q.push(
                    " ON CONFLICT (workspace, tag) DO UPDATE SET version = excluded.version, \
                     computed_at = excluded.computed_at, body = excluded.body",
                );
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }
    };
}

write_rows_on!(write_sqlite, Sqlite);
write_rows_on!(write_postgres, Postgres);
