//! The statements of `quality_findings` and of the counts by reason, one text for both backends (`?`
//! placeholders; run with `super::super::sql`).

/// Records findings: followed by one `(?, ?, ?, ?, ?, ?, ?)` per finding
/// ([`crate::store::sql::values`]) and [`INSERT_FINDINGS_TAIL`].
pub(super) const INSERT_FINDINGS_HEAD: &str = "INSERT INTO quality_findings \
     (workspace, message_id, field, code, reason, source, received_at) VALUES ";
/// A finding already recorded for the same message and field is left as it is.
pub(super) const INSERT_FINDINGS_TAIL: &str =
    " ON CONFLICT (workspace, message_id, field) DO NOTHING";

/// A page of a workspace's findings, newest first, below an id.
pub(super) const FINDINGS_BEFORE: &str =
    "SELECT id, workspace, message_id, field, code, reason, source, received_at \
     FROM quality_findings WHERE workspace = ? AND id < ? ORDER BY id DESC LIMIT ?";

/// A workspace's findings counted by field and reason, the most frequent first.
pub(super) const COUNT_FINDINGS: &str =
    "SELECT field, code, COUNT(*) AS n FROM quality_findings WHERE workspace = ? \
     GROUP BY field, code ORDER BY n DESC, field, code";

/// A workspace's refused messages counted by field and reason, the most frequent first.
pub(super) const COUNT_QUARANTINE: &str =
    "SELECT field, code, COUNT(*) AS n FROM quarantine WHERE workspace = ? \
     GROUP BY field, code ORDER BY n DESC, field, code";
