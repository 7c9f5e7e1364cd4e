//! The profile model's rows on PostgreSQL: one statement per table over arrays (`UNNEST`), whatever
//! the number of merges, events, identifiers and states.

use sqlx::{Postgres, Transaction};

use super::Move;
use crate::profiles::{ModelWrites, OwnerRow};
use crate::runner::ProjectionError;

/// Where a batch's own events belong, with their summaries.
const INSERT_OWNERS: &str =
    "INSERT INTO event_profiles (log_seq, workspace, profile, message_id, kind, \
     name, channel, event_time, received_at, facets) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[])";
/// Where earlier events a split moved belong now: [`INSERT_OWNERS`] as an upsert.
const UPSERT_OWNERS: &str =
    "INSERT INTO event_profiles (log_seq, workspace, profile, message_id, kind, \
     name, channel, event_time, received_at, facets) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[]) \
     ON CONFLICT (log_seq) DO UPDATE SET profile = excluded.profile";

/// Writes `writes` with its merges' `moves`: the moves, the profiles merged away, where the events
/// belong, who holds the identifiers, then the states.
pub(super) async fn write_model(
    tx: &mut Transaction<'_, Postgres>,
    writes: &ModelWrites,
    moves: &[Move<'_>],
) -> Result<(), ProjectionError> {
    // One statement per table over arrays, whatever the number of merges.
    if !moves.is_empty() {
        let ws: Vec<&str> = moves.iter().map(|m| m.0).collect();
        let froms: Vec<&str> = moves.iter().map(|m| m.1.as_str()).collect();
        let tos: Vec<&str> = moves.iter().map(|m| m.2.as_str()).collect();
        for sql in [
            "UPDATE event_profiles e SET profile = m.t \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS m(w, f, t) \
             WHERE e.workspace = m.w AND e.profile = m.f",
            "UPDATE identifier_owners o SET profile = m.t \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS m(w, f, t) \
             WHERE o.workspace = m.w AND o.profile = m.f",
            "UPDATE profile_aliases a SET survivor = m.t \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS m(w, f, t) \
             WHERE a.workspace = m.w AND a.survivor = m.f",
            "INSERT INTO profile_aliases (survivor, workspace, profile) \
             SELECT t, w, f FROM UNNEST($1::text[], $2::text[], $3::text[]) AS m(w, f, t)",
        ] {
            sqlx::query(sql)
                .bind(&ws)
                .bind(&froms)
                .bind(&tos)
                .execute(&mut **tx)
                .await?;
        }
    }
    if !writes.gone.is_empty() {
        let ws: Vec<&str> = writes.gone.iter().map(|g| g.0.as_str()).collect();
        let ps: Vec<&str> = writes.gone.iter().map(|g| g.1.as_str()).collect();
        sqlx::query(
            "DELETE FROM profiles p USING UNNEST($1::text[], $2::text[]) AS g(w, id) \
             WHERE p.workspace = g.w AND p.profile = g.id",
        )
        .bind(&ws)
        .bind(&ps)
        .execute(&mut **tx)
        .await?;
    }
    let started = std::time::Instant::now();
    // The batch's own events (with their summaries) are new rows: a plain insert, which
    // PostgreSQL does without the speculative insertion of `ON CONFLICT` (~20 % cheaper). An
    // earlier event a split moved has no summary and a row already: its profile is updated.
    let (new, moved): (Vec<&OwnerRow>, Vec<&OwnerRow>) =
        writes.owners.iter().partition(|o| o.3.is_some());
    for (rows, statement) in [(new, INSERT_OWNERS), (moved, UPSERT_OWNERS)] {
        if rows.is_empty() {
            continue;
        }
        let n = rows.len();
        let mut seqs = Vec::with_capacity(n);
        let (mut ws, mut ps) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut ids, mut kinds, mut names, mut channels) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut times, mut arrivals, mut facets) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (seq, w, p, summary) in rows {
            let s = summary.as_ref();
            seqs.push(*seq);
            ws.push(w.as_str());
            ps.push(p.as_str());
            ids.push(s.map(|s| s.message_id.as_str()));
            kinds.push(s.map(|s| s.kind.as_str()));
            names.push(s.and_then(|s| s.name.as_deref()));
            channels.push(s.map(|s| s.channel.as_str()));
            times.push(s.map(|s| s.timestamp.timestamp_micros()));
            arrivals.push(s.map(|s| s.received_at.timestamp_micros()));
            facets.push(s.and_then(|s| s.facets.as_deref()));
        }
        sqlx::query(statement)
            .bind(&seqs)
            .bind(&ws)
            .bind(&ps)
            .bind(&ids)
            .bind(&kinds)
            .bind(&names)
            .bind(&channels)
            .bind(&times)
            .bind(&arrivals)
            .bind(&facets)
            .execute(&mut **tx)
            .await?;
    }
    let owners_written = started.elapsed();
    if !writes.holders.is_empty() {
        let n = writes.holders.len();
        let (mut ws, mut types, mut values, mut ps) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (w, id, p) in &writes.holders {
            ws.push(w.as_str());
            types.push(id.id_type.as_str());
            values.push(id.value.as_str());
            ps.push(p.as_str());
        }
        sqlx::query(
            "INSERT INTO identifier_owners (workspace, id_type, value, profile) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
             ON CONFLICT (workspace, id_type, value) DO UPDATE SET profile = excluded.profile",
        )
        .bind(&ws)
        .bind(&types)
        .bind(&values)
        .bind(&ps)
        .execute(&mut **tx)
        .await?;
    }
    let holders_written = started.elapsed();
    if !writes.docs.is_empty() {
        let (mut ws, mut ps, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for ((w, p), state) in &writes.docs {
            ws.push(w.as_str());
            ps.push(p.as_str());
            states.push(state.as_slice());
        }
        sqlx::query(
            "INSERT INTO profiles (workspace, profile, doc, state) \
             SELECT w, p, NULL, s FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS d(w, p, s) \
             ON CONFLICT (workspace, profile) DO UPDATE SET doc = NULL, state = excluded.state",
        )
        .bind(&ws)
        .bind(&ps)
        .bind(&states)
        .execute(&mut **tx)
        .await?;
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        owners = writes.owners.len(),
        docs = writes.docs.len(),
        owners_ms = ms(owners_written),
        holders_ms = ms(holders_written - owners_written),
        states_ms = ms(started.elapsed() - holders_written),
        "resolver profiles written"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upsert_of_moved_owners_is_the_insert_with_its_conflict_clause() {
        assert_eq!(
            UPSERT_OWNERS,
            format!(
                "{INSERT_OWNERS} ON CONFLICT (log_seq) DO UPDATE SET profile = excluded.profile"
            )
        );
    }
}
