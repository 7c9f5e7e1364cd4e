//! The reads of identity decisions and rules, and the rules' write, one text for both backends (`?`
//! placeholders, `IN (?...)` for a list; run with `cdp_domain::store::sql`). The decisions' appends
//! keep their statements in `write/sqlite.rs` and `write/postgres.rs`.

/// The decision that first linked an identifier.
pub(crate) const LINK_OF: &str =
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events \
     WHERE workspace = ? AND id_type = ? AND value = ? AND kind = 'identifier_linked' \
     ORDER BY seq LIMIT 1";

/// The decisions an event caused (binds: workspace, message id, workspace, message id).
pub(crate) const CAUSED_BY: &str =
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events \
     WHERE log_seq IN (SELECT seq FROM events WHERE workspace = ? AND message_id = ?) \
     AND workspace = ? AND caused_by = ? ORDER BY seq";

/// A workspace's decisions, in order.
pub(crate) const DECISIONS_OF_WORKSPACE: &str =
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events \
     WHERE workspace = ? ORDER BY seq";

/// The decisions about a list of profiles, then those naming them as the other side: one statement
/// per column, so that each can use its index.
pub(crate) const DECISIONS_ABOUT: [&str; 2] = [
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events \
     WHERE workspace = ? AND profile IN (?...)",
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events \
     WHERE workspace = ? AND other IN (?...)",
];

/// A page of a workspace's rejected merges and links, newest first, below a sequence number.
pub(crate) const CONFLICTS: &str =
    "SELECT seq, log_seq, caused_by, recorded_at, body FROM identity_events WHERE workspace = ? \
     AND kind IN ('merge_rejected', 'link_rejected') AND seq < ? ORDER BY seq DESC LIMIT ?";

/// Every decision after a sequence number, in order (the resolver's fold).
pub(crate) const DECISIONS_AFTER: &str =
    "SELECT seq, workspace, body FROM identity_events WHERE seq > ? ORDER BY seq";

/// A workspace's rules in force.
pub(crate) const RULES: &str = "SELECT rules FROM identity_rules WHERE workspace = ?";

/// Puts a workspace's rules in force.
pub(crate) const UPSERT_RULES: &str =
    "INSERT INTO identity_rules (workspace, version, rules, updated_at) \
     VALUES (?, ?, ?, ?) ON CONFLICT (workspace) DO UPDATE SET \
     version = excluded.version, rules = excluded.rules, updated_at = excluded.updated_at";
