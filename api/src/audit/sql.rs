//! The audit log's statements, one text for both backends (`?` placeholders; run with
//! `cdp_domain::store::sql`): its one insert, and the read `GET /v1/audit` assembles from constant
//! parts.

/// Appends an entry.
pub(super) const INSERT: &str = "INSERT INTO audit_log \
    (workspace, at, actor, scope, action, method, path, target, status, request_id) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A workspace's entries; the filters below follow, then an order and `LIMIT ?`.
pub(super) const ENTRIES: &str =
    "SELECT seq, workspace, at, actor, scope, action, method, path, target, status, request_id \
     FROM audit_log WHERE workspace = ?";

pub(super) const AND_ACTION: &str = " AND action = ?";
pub(super) const AND_ACTOR: &str = " AND actor = ?";
pub(super) const AND_SINCE: &str = " AND at >= ?";
pub(super) const AND_UNTIL: &str = " AND at <= ?";
pub(super) const AND_AFTER: &str = " AND seq > ?";
pub(super) const AND_BEFORE: &str = " AND seq < ?";

pub(super) const OLDEST_FIRST: &str = " ORDER BY seq ASC LIMIT ?";
pub(super) const NEWEST_FIRST: &str = " ORDER BY seq DESC LIMIT ?";
