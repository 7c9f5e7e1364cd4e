//! `/v1/schema`'s statement (run with `cdp_domain::store::sql`; the rest it reads through
//! `cdp_projections`).

/// A workspace's newest event.
pub(super) const NEWEST_EVENT: &str = "SELECT max(seq) FROM events WHERE workspace = ?";
