//! The statements `cdp replay status` reads the log and the outbox with, one text for both backends
//! (run with `cdp_domain::store::sql`).

/// The log's newest event.
pub(super) const LOG_HEAD: &str = "SELECT max(seq) FROM events";

/// How many events follow a sequence number.
pub(super) const EVENTS_AFTER: &str = "SELECT count(*) FROM events WHERE seq > ?";

/// The outbox's newest message.
pub(super) const OUTBOX_HEAD: &str = "SELECT max(seq) FROM outbox";
