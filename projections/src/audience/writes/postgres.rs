//! The audience rows on PostgreSQL — tags, memberships and their history — in one statement per table
//! and kind of change, over arrays (`UNNEST`), whatever the batch's size: one plan, no statement of
//! thousands of parameters. Of several changes of one key the last one holds (an upsert may not touch
//! a row twice).

use sqlx::{Postgres, Transaction};

use super::AudienceWrites;
use crate::runner::ProjectionError;
use crate::stage_rows::{last_per_key, Keys};

/// Writes `w`'s tags: removals, then one upsert.
pub(super) async fn write_tags(
    tx: &mut Transaction<'_, Postgres>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    let tags = last_per_key(&w.tags, |(ws, p, tag, _)| (ws, p, tag));
    let (mut gone, mut set) = (Keys::default(), TagColumns::default());
    for (ws, profile, tag, row) in tags {
        match row {
            None => gone.push(ws, profile, Some(tag)),
            Some(t) => {
                set.keys.push(ws, profile, Some(tag));
                set.value.push(t.value.value.to_string());
                set.detail
                    .push((!t.value.detail.is_null()).then(|| t.value.detail.to_string()));
                set.manual.push(t.manual);
                set.changed_at.push(t.changed_at);
                set.caused_by.push(t.caused_by.as_deref());
            }
        }
    }
    if !gone.is_empty() {
        sqlx::query(
            "DELETE FROM profile_tags t USING UNNEST($1::text[], $2::text[], $3::text[]) AS g(w, p, k) \
             WHERE t.workspace = g.w AND t.profile = g.p AND t.tag = g.k",
        )
        .bind(&gone.workspace)
        .bind(&gone.profile)
        .bind(&gone.third)
        .execute(&mut **tx)
        .await?;
    }
    if !set.keys.is_empty() {
        sqlx::query(
            "INSERT INTO profile_tags (workspace, profile, tag, value, detail, manual, changed_at, \
             caused_by) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::bool[], $7::int8[], $8::text[]) \
             ON CONFLICT (workspace, profile, tag) DO UPDATE SET value = excluded.value, \
             detail = excluded.detail, manual = excluded.manual, \
             changed_at = excluded.changed_at, caused_by = excluded.caused_by",
        )
        .bind(&set.keys.workspace)
        .bind(&set.keys.profile)
        .bind(&set.keys.third)
        .bind(&set.value)
        .bind(&set.detail)
        .bind(&set.manual)
        .bind(&set.changed_at)
        .bind(&set.caused_by)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes `w`'s memberships (exits, then one upsert of the entered), then their history in its order.
pub(super) async fn write_memberships(
    tx: &mut Transaction<'_, Postgres>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    let members = last_per_key(&w.members, |(ws, segment, p, _)| (ws, segment, p));
    let (mut exited, mut entered) = (Keys::default(), Keys::default());
    let (mut since, mut caused_by) = (Vec::new(), Vec::new());
    for (ws, segment, profile, membership) in members {
        // Keyed (workspace, profile, segment) here; the table's key is (workspace, segment, profile).
        match membership {
            None => exited.push(ws, profile, Some(segment)),
            Some(m) => {
                entered.push(ws, profile, Some(segment));
                since.push(m.since);
                caused_by.push(m.caused_by.as_deref());
            }
        }
    }
    if !exited.is_empty() {
        sqlx::query(
            "DELETE FROM segment_members m \
             USING UNNEST($1::text[], $2::text[], $3::text[]) AS g(w, p, s) \
             WHERE m.workspace = g.w AND m.segment = g.s AND m.profile = g.p",
        )
        .bind(&exited.workspace)
        .bind(&exited.profile)
        .bind(&exited.third)
        .execute(&mut **tx)
        .await?;
    }
    if !entered.is_empty() {
        sqlx::query(
            "INSERT INTO segment_members (workspace, segment, profile, since, caused_by) \
             SELECT w, s, p, t, c FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], \
             $5::text[]) AS e(w, p, s, t, c) \
             ON CONFLICT (workspace, segment, profile) DO UPDATE SET \
             since = excluded.since, caused_by = excluded.caused_by",
        )
        .bind(&entered.workspace)
        .bind(&entered.profile)
        .bind(&entered.third)
        .bind(&since)
        .bind(&caused_by)
        .execute(&mut **tx)
        .await?;
    }

    if !w.history.is_empty() {
        // In their order: the history's sequence numbers follow it.
        let mut keys = Keys::default();
        let (mut entered, mut at, mut caused_by) = (Vec::new(), Vec::new(), Vec::new());
        for (ws, change) in &w.history {
            keys.push(ws, &change.profile, Some(&change.segment));
            entered.push(change.entered);
            at.push(change.at);
            caused_by.push(change.caused_by.as_deref());
        }
        sqlx::query(
            "INSERT INTO segment_history (workspace, profile, segment, entered, at, caused_by) \
             SELECT w, p, s, e, t, c FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], \
             $5::int8[], $6::text[]) WITH ORDINALITY AS h(w, p, s, e, t, c, n) ORDER BY n",
        )
        .bind(&keys.workspace)
        .bind(&keys.profile)
        .bind(&keys.third)
        .bind(&entered)
        .bind(&at)
        .bind(&caused_by)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The columns of the `profile_tags` rows set.
#[derive(Default)]
struct TagColumns<'r> {
    keys: Keys<'r>,
    value: Vec<String>,
    detail: Vec<Option<String>>,
    manual: Vec<bool>,
    changed_at: Vec<i64>,
    caused_by: Vec<Option<&'r str>>,
}
