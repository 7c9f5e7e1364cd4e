//! The rows of every touched profile on SQLite — tags, spend, due time, memberships and their history —
//! in multi-row inserts of up to 500 rows, removals one by one (one local writer: no round trips to save).

use sqlx::QueryBuilder;

use super::{last_per_key, CatalogWrites};
use crate::runner::ProjectionError;

/// The rows of every touched profile on SQLite — tags, spend, due time, memberships, history — in
/// multi-row statements (PostgreSQL: `postgres_writes::write_rows`).
pub(super) async fn write_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    w: &CatalogWrites,
) -> Result<(), ProjectionError> {
    type Db = sqlx::Sqlite;
    // The last change of each (workspace, profile, tag) wins; removals, then one upsert per
    // chunk of rows (an upsert may not touch a row twice).
    let tags = last_per_key(&w.tags, |(ws, p, tag, _)| (ws, p, tag));
    for (ws, profile, tag, _) in tags.iter().filter(|t| t.3.is_none()) {
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new("DELETE FROM profile_tags WHERE workspace = ");
        q.push_bind(ws)
            .push(" AND profile = ")
            .push_bind(profile)
            .push(" AND tag = ")
            .push_bind(tag);
        q.build().execute(&mut **tx).await?;
    }
    let set: Vec<_> = tags
        .iter()
        .filter_map(|(ws, p, tag, t)| t.as_ref().map(|t| (ws, p, tag, t)))
        .collect();
    for chunk in set.chunks(500) {
        let mut q: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO profile_tags (workspace, profile, tag, value, detail, manual, \
                     changed_at, caused_by) ",
        );
        q.push_values(chunk, |mut row, (ws, profile, tag, t)| {
            let detail = (!t.value.detail.is_null()).then(|| t.value.detail.to_string());
            row.push_bind(*ws)
                .push_bind(*profile)
                .push_bind(*tag)
                .push_bind(t.value.value.to_string())
                .push_bind(detail)
                .push_bind(t.manual)
                .push_bind(t.changed_at)
                .push_bind(t.caused_by.clone());
        });
        q.push(
            " ON CONFLICT (workspace, profile, tag) DO UPDATE SET value = excluded.value, \
                     detail = excluded.detail, manual = excluded.manual, \
                     changed_at = excluded.changed_at, caused_by = excluded.caused_by",
        );
        q.build().execute(&mut **tx).await?;
    }
    for (table, column, rows) in [
        ("profile_spend", "spend", &w.spend),
        ("profile_due", "due_at", &w.due),
    ] {
        let set: Vec<_> = rows.iter().filter(|r| r.2.is_some()).collect();
        for chunk in set.chunks(500) {
            let mut q: QueryBuilder<Db> = QueryBuilder::new(format!(
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
            let mut q: QueryBuilder<Db> =
                QueryBuilder::new(format!("DELETE FROM {table} WHERE workspace = "));
            q.push_bind(ws).push(" AND profile = ").push_bind(profile);
            q.build().execute(&mut **tx).await?;
        }
    }
    let members = last_per_key(&w.members, |(ws, segment, p, _)| (ws, segment, p));
    for (ws, segment, profile, _) in members.iter().filter(|m| m.3.is_none()) {
        let mut q: QueryBuilder<Db> =
            QueryBuilder::new("DELETE FROM segment_members WHERE workspace = ");
        q.push_bind(ws)
            .push(" AND segment = ")
            .push_bind(segment)
            .push(" AND profile = ")
            .push_bind(profile);
        q.build().execute(&mut **tx).await?;
    }
    let entered: Vec<_> = members
        .iter()
        .filter_map(|(ws, s, p, m)| m.as_ref().map(|m| (ws, s, p, m)))
        .collect();
    for chunk in entered.chunks(500) {
        let mut q: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO segment_members (workspace, segment, profile, since, caused_by) ",
        );
        q.push_values(chunk, |mut row, (ws, segment, profile, m)| {
            row.push_bind(*ws)
                .push_bind(*segment)
                .push_bind(*profile)
                .push_bind(m.since)
                .push_bind(m.caused_by.clone());
        });
        q.push(
            " ON CONFLICT (workspace, segment, profile) DO UPDATE SET \
                     since = excluded.since, caused_by = excluded.caused_by",
        );
        q.build().execute(&mut **tx).await?;
    }
    for chunk in w.history.chunks(500) {
        let mut q: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO segment_history (workspace, profile, segment, entered, at, caused_by) ",
        );
        q.push_values(chunk, |mut row, (ws, c)| {
            row.push_bind(ws)
                .push_bind(&c.profile)
                .push_bind(&c.segment)
                .push_bind(c.entered)
                .push_bind(c.at)
                .push_bind(&c.caused_by);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
