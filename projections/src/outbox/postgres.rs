//! The outbox's statement on PostgreSQL: one insert over arrays, in the messages' order.

use sqlx::{Postgres, Transaction};

use super::OutboxRow;
use crate::runner::ProjectionError;

/// Appends `outbox` in its order.
pub(super) async fn append(
    tx: &mut Transaction<'_, Postgres>,
    outbox: &[OutboxRow],
    now: i64,
) -> Result<(), ProjectionError> {
    let (mut ws, mut subjects, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
    for (w, subject, payload) in outbox {
        ws.push(w.as_str());
        subjects.push(subject.as_str());
        payloads.push(payload.as_str());
    }
    sqlx::query(
        "INSERT INTO outbox (workspace, subject, payload, created_at) \
         SELECT w, s, p, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) \
         WITH ORDINALITY AS m(w, s, p, n) ORDER BY n",
    )
    .bind(&ws)
    .bind(&subjects)
    .bind(&payloads)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
