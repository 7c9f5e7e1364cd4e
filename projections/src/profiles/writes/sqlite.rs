//! The profile model's rows on SQLite: a statement per merge's move (in the process: cheap), then
//! multi-row inserts of up to `PER_STATEMENT` rows — where events belong, the states, who holds each
//! identifier.

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::Move;
use crate::profiles::{ModelWrites, PER_STATEMENT};
use crate::runner::ProjectionError;

/// The merges' moves, one statement each.
const MOVES: [&str; 4] = [
    "UPDATE event_profiles SET profile = ? WHERE workspace = ? AND profile = ?",
    "UPDATE identifier_owners SET profile = ? WHERE workspace = ? AND profile = ?",
    "UPDATE profile_aliases SET survivor = ? WHERE workspace = ? AND survivor = ?",
    "INSERT INTO profile_aliases (survivor, workspace, profile) VALUES (?, ?, ?)",
];

/// Writes `writes` with its merges' `moves`: the moves, the profiles merged away, where the events
/// belong, the states, then who holds the identifiers.
pub(super) async fn write_model(
    tx: &mut Transaction<'_, Sqlite>,
    writes: &ModelWrites,
    moves: &[Move<'_>],
) -> Result<(), ProjectionError> {
    for sql in MOVES {
        for (w, from, to) in moves {
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
    for chunk in writes.owners.chunks(PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
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
        q.build().execute(&mut **tx).await?;
    }
    for chunk in writes.docs.chunks(PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> =
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
        q.build().execute(&mut **tx).await?;
    }
    for chunk in writes.holders.chunks(PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO identifier_owners (workspace, id_type, value, profile) ",
        );
        q.push_values(chunk, |mut row, (w, id, p)| {
            row.push_bind(w)
                .push_bind(&id.id_type)
                .push_bind(&id.value)
                .push_bind(p.as_str());
        });
        q.push(" ON CONFLICT (workspace, id_type, value) DO UPDATE SET profile = excluded.profile");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
