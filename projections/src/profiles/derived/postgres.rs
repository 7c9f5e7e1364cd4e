//! The derived rows on PostgreSQL: per table, one removal and one upsert over arrays (`UNNEST`). Of
//! several changes of one profile's row the last one holds (an upsert may not touch a row twice).

use sqlx::{Postgres, Transaction};

use super::{tables, DerivedWrites};
use crate::runner::ProjectionError;
use crate::stage_rows::{last_per_key, Keys};

/// Writes `w`'s spend and due times, each table's removed rows before its set ones.
pub(super) async fn write_rows(
    tx: &mut Transaction<'_, Postgres>,
    w: &DerivedWrites,
) -> Result<(), ProjectionError> {
    for (table, column, rows) in tables(w) {
        let (mut gone, mut set, mut values) = (Keys::default(), Keys::default(), Vec::new());
        for (ws, profile, value) in last_per_key(rows, |(ws, p, _)| (ws, p)) {
            match value {
                None => gone.push(ws, profile, None),
                Some(v) => {
                    set.push(ws, profile, None);
                    values.push(*v);
                }
            }
        }
        if !gone.is_empty() {
            sqlx::query(&format!(
                "DELETE FROM {table} t USING UNNEST($1::text[], $2::text[]) AS g(w, p) \
                 WHERE t.workspace = g.w AND t.profile = g.p"
            ))
            .bind(&gone.workspace)
            .bind(&gone.profile)
            .execute(&mut **tx)
            .await?;
        }
        if !set.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO {table} (workspace, profile, {column}) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::float8[]) \
                 ON CONFLICT (workspace, profile) DO UPDATE SET {column} = excluded.{column}"
            ))
            .bind(&set.workspace)
            .bind(&set.profile)
            .bind(&values)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
