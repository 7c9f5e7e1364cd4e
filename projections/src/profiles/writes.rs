//! The resolver's writes of the profile read model, in its transaction: the merges of a batch applied
//! as moves to the end of their chains (`event_profiles`, `identifier_owners`, `profile_aliases`), the
//! profiles merged away deleted, then where the batch's events belong, who holds its identifiers and the
//! states it changed — one statement per table over arrays on PostgreSQL, multi-row inserts on SQLite.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use cdp_domain::identity::ProfileId;

use super::{ModelWrites, OwnerRow, Reassign, PER_STATEMENT};
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

/// Where each profile a batch merged away ends up: `(workspace, from, survivor)`, the chains of the
/// batch's merges followed to their end (a→b then b→c gives a→c and b→c), in the order first met.
/// Applying these at once leaves the rows as applying the merges one by one would.
fn final_survivors(reassigns: &[Reassign]) -> Vec<(&str, &ProfileId, &ProfileId)> {
    let mut next: HashMap<(&str, &ProfileId), &ProfileId> = HashMap::new();
    let mut order = Vec::new();
    for r in reassigns {
        if next
            .insert((r.workspace.as_str(), &r.from), &r.to)
            .is_none()
        {
            order.push((r.workspace.as_str(), &r.from));
        }
    }
    order
        .into_iter()
        .map(|(w, from)| {
            let mut to = next[&(w, from)];
            // A merged-away profile never survives a later merge, so chains end; bounded all the same.
            for _ in 0..next.len() {
                match next.get(&(w, to)) {
                    Some(further) => to = further,
                    None => break,
                }
            }
            (w, from, to)
        })
        .collect()
}

/// Writes `writes` inside `tx`.
pub async fn write(tx: &mut ModelTx<'_>, writes: &ModelWrites) -> Result<(), ProjectionError> {
    let moves = final_survivors(&writes.reassigns);
    const MOVES: [&str; 4] = [
        "UPDATE event_profiles SET profile = ? WHERE workspace = ? AND profile = ?",
        "UPDATE identifier_owners SET profile = ? WHERE workspace = ? AND profile = ?",
        "UPDATE profile_aliases SET survivor = ? WHERE workspace = ? AND survivor = ?",
        "INSERT INTO profile_aliases (survivor, workspace, profile) VALUES (?, ?, ?)",
    ];
    match tx {
        ModelTx(Tx::Sqlite(tx)) => {
            // In the process: a statement per move is cheap.
            for sql in MOVES {
                for (w, from, to) in &moves {
                    sqlx::query(sql)
                        .bind(to.as_str())
                        .bind(*w)
                        .bind(from.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
            for (w, p) in &writes.gone {
                sqlx::query("DELETE FROM profiles WHERE workspace = ? AND profile = ?")
                    .bind(w)
                    .bind(p.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        ModelTx(Tx::Postgres(tx)) => {
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
        }
    }
    write_owners_and_docs(tx, writes).await
}

/// Where a batch's own events belong, with their summaries (PostgreSQL).
macro_rules! insert_owners {
    () => {
        "INSERT INTO event_profiles (log_seq, workspace, profile, message_id, kind, name, channel, \
         event_time, received_at, facets) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[])"
    };
}
const INSERT_OWNERS: &str = insert_owners!();
/// Where earlier events a split moved belong now (PostgreSQL).
const UPSERT_OWNERS: &str = concat!(
    insert_owners!(),
    " ON CONFLICT (log_seq) DO UPDATE SET profile = excluded.profile"
);

/// Where the batch's events belong (with their summaries), who holds its identifiers and the documents
/// it changed: one statement
/// per table over arrays on PostgreSQL, multi-row inserts on SQLite. Keys are unique within a batch.
async fn write_owners_and_docs(
    tx: &mut ModelTx<'_>,
    writes: &ModelWrites,
) -> Result<(), ProjectionError> {
    match tx {
        ModelTx(Tx::Sqlite(tx)) => {
            let tx = &mut *tx;
            macro_rules! sqlite_rows {
                ($db:ty, $tx:expr) => {{
            for chunk in writes.owners.chunks(PER_STATEMENT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO event_profiles (log_seq, workspace, profile, message_id, kind, name, \
                     channel, event_time, received_at, facets) ",
                );
                q.push_values(chunk, |mut row, (seq, w, p, summary)| {
                    let s = summary.as_ref();
                    row.push_bind(*seq)
                        .push_bind(w)
                        .push_bind(p.as_str())
                        .push_bind(s.map(|s| s.message_id.as_str()))
                        .push_bind(s.map(|s| s.kind.as_str()))
                        .push_bind(s.and_then(|s| s.name.as_deref()))
                        .push_bind(s.map(|s| s.channel.as_str()))
                        .push_bind(s.map(|s| s.timestamp.timestamp_micros()))
                        .push_bind(s.map(|s| s.received_at.timestamp_micros()))
                        .push_bind(s.and_then(|s| s.facets.as_deref()));
                });
                q.push(" ON CONFLICT (log_seq) DO UPDATE SET profile = excluded.profile");
                q.build().execute(&mut **$tx).await?;
            }
            for chunk in writes.docs.chunks(PER_STATEMENT) {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new("INSERT INTO profiles (workspace, profile, doc, state) ");
                q.push_values(chunk, |mut row, ((w, p), state)| {
                    row.push_bind(w)
                        .push_bind(p.as_str())
                        .push_bind(None::<String>)
                        .push_bind(state);
                });
                q.push(
                    " ON CONFLICT (workspace, profile) DO UPDATE SET doc = NULL, state = excluded.state",
                );
                q.build().execute(&mut **$tx).await?;
            }
                }};
            }
            sqlite_rows!(sqlx::Sqlite, tx);
            macro_rules! sqlite_holders {
                ($db:ty, $tx:expr) => {{
            for chunk in writes.holders.chunks(PER_STATEMENT) {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "INSERT INTO identifier_owners (workspace, id_type, value, profile) ",
                );
                q.push_values(chunk, |mut row, (w, id, p)| {
                    row.push_bind(w)
                        .push_bind(&id.id_type)
                        .push_bind(&id.value)
                        .push_bind(p.as_str());
                });
                q.push(
                    " ON CONFLICT (workspace, id_type, value) DO UPDATE SET profile = excluded.profile",
                );
                q.build().execute(&mut **$tx).await?;
            }
                }};
            }
            sqlite_holders!(sqlx::Sqlite, tx);
        }
        ModelTx(Tx::Postgres(tx)) => {
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
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassign(w: &str, from: &str, to: &str) -> Reassign {
        Reassign {
            workspace: w.to_owned(),
            from: ProfileId::parse(from).unwrap(),
            to: ProfileId::parse(to).unwrap(),
        }
    }

    #[test]
    fn merges_of_a_batch_move_rows_to_the_end_of_their_chain() {
        let merges = [
            reassign("w", "p_a", "p_b"),
            reassign("v", "p_b", "p_x"),
            reassign("w", "p_b", "p_c"),
            reassign("w", "p_d", "p_a"),
        ];
        let moves: Vec<(&str, &str, &str)> = final_survivors(&merges)
            .into_iter()
            .map(|(w, f, t)| (w, f.as_str(), t.as_str()))
            .collect();
        // Chains are followed within a workspace only, whatever order the merges came in.
        assert_eq!(
            moves,
            [
                ("w", "p_a", "p_c"),
                ("v", "p_b", "p_x"),
                ("w", "p_b", "p_c"),
                ("w", "p_d", "p_c")
            ]
        );
    }
}
