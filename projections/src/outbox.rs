//! The outbox stage: the messages a batch leaves for subscribers (`OutboxWrites`: every tag change,
//! segment enter and exit, and track event, in the order the batch made them), appended in its
//! transaction — each backend's statement in `sqlite` and `postgres` — and read in order by the
//! publisher (`outbox_after`).

use cdp_domain::store::sql::query;
use cdp_domain::store::Store;

use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod postgres;
mod sqlite;

/// A message for the outbox: `(workspace, subject, payload)`.
pub type OutboxMessage = (String, String, String);

/// The messages a batch appends to the outbox, in order (their sequence numbers follow it).
#[derive(Debug, Default)]
pub struct OutboxWrites {
    pub messages: Vec<OutboxMessage>,
}

impl OutboxWrites {
    pub fn push(&mut self, message: OutboxMessage) {
        self.messages.push(message);
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Drops every message (a rebuild's shadow publishes nothing).
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Appends `other`'s messages after these.
    pub fn append(&mut self, other: OutboxWrites) {
        self.messages.extend(other.messages);
    }
}

/// Appends the messages to the outbox, in their order, created at `now` (ms).
pub(crate) async fn write(
    tx: &mut ModelTx<'_>,
    w: &OutboxWrites,
    now: i64,
) -> Result<(), ProjectionError> {
    if w.messages.is_empty() {
        return Ok(());
    }
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::append(tx, &w.messages, now).await,
        Tx::Postgres(tx) => postgres::append(tx, &w.messages, now).await,
    }
}

/// A message of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub seq: i64,
    pub workspace: String,
    /// Its topic below the deployment's subject prefix, which the edge adds when it publishes
    /// (`<workspace>.tag.<tag>.changed`, `<workspace>.segment.<id>.entered`, `<workspace>.event.<name>`);
    /// rows written before 2026-12-06 hold it with `cdp.out.` in front.
    pub subject: String,
    pub payload: String,
}

/// The publisher's read: a page of messages after a sequence number, in order (one text for both
/// backends, run with `cdp_domain::store::sql`; the resolver's appends are in `sqlite.rs` and
/// `postgres.rs`).
const OUTBOX_AFTER: &str =
    "SELECT seq, workspace, subject, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?";

/// Outbox messages after `after`, in order.
pub async fn outbox_after(
    store: &Store,
    after: i64,
    limit: i64,
) -> Result<Vec<OutMessage>, ProjectionError> {
    let rows: Vec<(i64, String, String, String)> = query(OUTBOX_AFTER)
        .bind(after)
        .bind(limit)
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, workspace, subject, payload)| OutMessage {
            seq,
            workspace,
            subject,
            payload,
        })
        .collect())
}
