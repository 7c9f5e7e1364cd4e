//! The audience rows on SQLite — tags, memberships and their history — in multi-row inserts of up to
//! 500 rows, removals one by one (one local writer: no round trips to save).

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::AudienceWrites;
use crate::runner::ProjectionError;
use crate::stage_rows::last_per_key;

/// The last change of each (workspace, profile, tag) wins; removals, then one upsert per chunk of rows
/// (an upsert may not touch a row twice).
pub(super) async fn write_tags(
    tx: &mut Transaction<'_, Sqlite>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    let tags = last_per_key(&w.tags, |(ws, p, tag, _)| (ws, p, tag));
    for (ws, profile, tag, _) in tags.iter().filter(|t| t.3.is_none()) {
        let mut q: QueryBuilder<Sqlite> =
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
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
    Ok(())
}

/// The last change of each membership wins: exits, then upserts of the entered; then the history in
/// its order.
pub(super) async fn write_memberships(
    tx: &mut Transaction<'_, Sqlite>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    let members = last_per_key(&w.members, |(ws, segment, p, _)| (ws, segment, p));
    for (ws, segment, profile, _) in members.iter().filter(|m| m.3.is_none()) {
        let mut q: QueryBuilder<Sqlite> =
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
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
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
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
