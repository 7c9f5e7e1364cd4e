//! The backfill's bookkeeping statements (`backfill_progress`: how far each file got), one text for
//! both backends (`?` placeholders; run with `cdp_domain::store::sql`). The events themselves go
//! through `EventStore::append`.

/// How far a file (workspace, path, size, head hash) got.
pub(super) const PROGRESS: &str = "SELECT last_line, finished, stored, duplicates, rejected \
     FROM backfill_progress WHERE workspace = ? AND path = ? AND size = ? AND head_sha256 = ?";

/// Records how far a file got.
pub(super) const SAVE_PROGRESS: &str = "INSERT INTO backfill_progress (workspace, path, size, \
     head_sha256, last_line, finished, stored, duplicates, rejected, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (workspace, path, size, head_sha256) DO UPDATE SET \
     last_line = excluded.last_line, finished = excluded.finished, stored = excluded.stored, \
     duplicates = excluded.duplicates, rejected = excluded.rejected, \
     updated_at = excluded.updated_at";
