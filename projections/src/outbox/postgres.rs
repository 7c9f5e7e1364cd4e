//! The outbox's statement on PostgreSQL: one insert over arrays, in the messages' order.

use sqlx::{Postgres, Transaction};

use super::OutboxRow;
use crate::runner::ProjectionError;

/// The transaction-scoped advisory lock every append to the outbox takes first (an arbitrary key,
/// this crate's only one).
const OUTBOX_ORDER_LOCK: i64 = 0x0cd9_0b0c;

/// The notification channel every commit with outbox rows notifies (delivered at its commit): an
/// instance whose publisher did not make the commit wakes it at once, not at its next poll.
pub const COMMITTED_CHANNEL: &str = "cdp_outbox";

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
    // The parts of the engine commit side by side: the outbox's sequence numbers must still be in
    // commit order, or the publisher (reading after the last it published) would pass a message
    // committed late under an earlier number. Held to the commit. The same statement notifies
    // [`COMMITTED_CHANNEL`], which PostgreSQL delivers when the transaction commits.
    sqlx::query("SELECT pg_advisory_xact_lock($1), pg_notify($2, '')")
        .bind(OUTBOX_ORDER_LOCK)
        .bind(COMMITTED_CHANNEL)
        .execute(&mut **tx)
        .await?;
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
