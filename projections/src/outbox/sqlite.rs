//! The outbox's statement on SQLite: multi-row inserts of up to 500 messages.

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::OutboxRow;
use crate::runner::ProjectionError;

/// Appends `outbox` in its order.
pub(super) async fn append(
    tx: &mut Transaction<'_, Sqlite>,
    outbox: &[OutboxRow],
    now: i64,
) -> Result<(), ProjectionError> {
    for chunk in outbox.chunks(500) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO outbox (workspace, subject, payload, created_at) ");
        q.push_values(chunk, |mut row, (ws, subject, payload)| {
            row.push_bind(ws)
                .push_bind(subject)
                .push_bind(payload)
                .push_bind(now);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
