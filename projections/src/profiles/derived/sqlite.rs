//! The derived rows on SQLite: multi-row upserts of up to 500 rows, then removals one by one (one local
//! writer: no round trips to save).

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::{tables, DerivedWrites};
use crate::runner::ProjectionError;

/// Writes `w`'s spend and due times, each table's set rows before its removed ones.
pub(super) async fn write_rows(
    tx: &mut Transaction<'_, Sqlite>,
    w: &DerivedWrites,
) -> Result<(), ProjectionError> {
    for (table, column, rows) in tables(w) {
        let set: Vec<_> = rows.iter().filter(|r| r.2.is_some()).collect();
        for chunk in set.chunks(500) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                "INSERT INTO {table} (workspace, profile, {column}) "
            ));
            q.push_values(chunk, |mut row, (ws, profile, value)| {
                row.push_bind(ws).push_bind(profile).push_bind(*value);
            });
            q.push(format!(
                " ON CONFLICT (workspace, profile) DO UPDATE SET {column} = excluded.{column}"
            ));
            q.build().execute(&mut **tx).await?;
        }
        for (ws, profile, _) in rows.iter().filter(|r| r.2.is_none()) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new(format!("DELETE FROM {table} WHERE workspace = "));
            q.push_bind(ws).push(" AND profile = ").push_bind(profile);
            q.build().execute(&mut **tx).await?;
        }
    }
    Ok(())
}
