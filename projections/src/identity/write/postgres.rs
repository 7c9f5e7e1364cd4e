//! The decisions on PostgreSQL: one statement over arrays, in their order.

use sqlx::{Postgres, Transaction};

use super::{columns, DecisionRow};
use crate::runner::ProjectionError;

/// Appends `rows` to `identity_events`, in their order.
pub(super) async fn append_decisions(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[DecisionRow<'_>],
) -> Result<(), ProjectionError> {
    if rows.is_empty() {
        return Ok(());
    }
    // One statement over arrays; the decisions keep their order (their `seq`).
    let n = rows.len();
    let mut cols: [Vec<Option<&str>>; 7] = Default::default();
    let (mut seqs, mut at) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (d, _) in rows {
        let (kind, profile, other, id_type, value) = columns(&d.event);
        let row = [
            Some(d.workspace.as_str()),
            Some(d.event.caused_by()),
            Some(kind),
            profile,
            other,
            id_type,
            value,
        ];
        for (col, v) in cols.iter_mut().zip(row) {
            col.push(v);
        }
        seqs.push(d.log_seq);
        at.push(d.recorded_at_ms);
    }
    let bodies: Vec<&str> = rows.iter().map(|(_, b)| b.as_str()).collect();
    let [ws, caused_by, kinds, profiles, others, id_types, values] = cols;
    sqlx::query(
        "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, other, \
         id_type, value, recorded_at, body) \
         SELECT w, s, c, k, p, o, t, v, r, b FROM UNNEST($1::text[], $2::bigint[], \
         $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::bigint[], $10::text[]) WITH ORDINALITY AS d(w, s, c, k, p, o, t, v, r, b, n) \
         ORDER BY n",
    )
    .bind(&ws)
    .bind(&seqs)
    .bind(&caused_by)
    .bind(&kinds)
    .bind(&profiles)
    .bind(&others)
    .bind(&id_types)
    .bind(&values)
    .bind(&at)
    .bind(&bodies)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
