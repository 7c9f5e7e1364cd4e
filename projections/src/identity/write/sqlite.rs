//! The decisions on SQLite: multi-row inserts of up to 500 decisions, in their order.

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::{columns, DecisionRow};
use crate::runner::ProjectionError;

/// Decisions a multi-row insert holds.
const ROWS_PER_STATEMENT: usize = 500;

/// Appends `rows` to `identity_events`, in their order.
pub(super) async fn append_decisions(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[DecisionRow<'_>],
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, \
             other, id_type, value, recorded_at, body) ",
        );
        q.push_values(chunk, |mut row, (d, body)| {
            let (kind, profile, other, id_type, value) = columns(&d.event);
            row.push_bind(&d.workspace)
                .push_bind(d.log_seq)
                .push_bind(d.event.caused_by())
                .push_bind(kind)
                .push_bind(profile)
                .push_bind(other)
                .push_bind(id_type)
                .push_bind(value)
                .push_bind(d.recorded_at_ms)
                .push_bind(*body);
        });
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}
