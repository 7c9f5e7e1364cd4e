//! The statements of checkpoints, model versions and the resolver's token, one text for both
//! backends (`?` placeholders; run with `cdp_domain::store::sql`) except PostgreSQL's row locks,
//! which stand beside them.

/// A projection's checkpoint.
pub(crate) const CHECKPOINT: &str = "SELECT tx, seq FROM projection_checkpoints WHERE name = ?";

/// A projection's checkpoint's sequence number.
pub(crate) const CHECKPOINT_SEQ: &str = "SELECT seq FROM projection_checkpoints WHERE name = ?";

/// PostgreSQL: a projection's checkpoint row, made if missing, so that it can be locked.
pub(crate) const ENSURE_CHECKPOINT_POSTGRES: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES ($1, 0, 0, 0) \
     ON CONFLICT (name) DO NOTHING";

/// PostgreSQL: a projection's checkpoint, its row locked until the transaction ends (which makes
/// the commits of several instances take turns; SQLite's write lock holds every row anyway).
pub(crate) const LOCK_CHECKPOINT_POSTGRES: &str =
    "SELECT tx, seq FROM projection_checkpoints WHERE name = $1 FOR UPDATE";

/// Moves a projection's checkpoint (binds: name, tx, seq, updated_at).
pub(crate) const MOVE_CHECKPOINT: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) \
     VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, \
     seq = excluded.seq, updated_at = excluded.updated_at";

/// A checkpoint row that marks something (a rebuild's deferred rows), kept if there.
pub(crate) const INSERT_MARK: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) \
     VALUES (?, 0, 0, 0) ON CONFLICT (name) DO NOTHING";

/// Whether a mark is there.
pub(crate) const COUNT_MARK: &str = "SELECT count(*) FROM projection_checkpoints WHERE name = ?";

/// Takes a mark away.
pub(crate) const DELETE_MARK: &str = "DELETE FROM projection_checkpoints WHERE name = ?";

/// SQLite: an event's position (SQLite's has no transaction id: 0).
pub(crate) const EVENT_POSITION_SQLITE: &str =
    "SELECT 0, seq FROM events WHERE workspace = ? AND message_id = ?";
/// PostgreSQL: an event's position.
pub(crate) const EVENT_POSITION_POSTGRES: &str =
    "SELECT tx, seq FROM events WHERE workspace = $1 AND message_id = $2";

/// Records the version of the code that built a projection's model.
pub(crate) const WRITE_VERSION: &str =
    "INSERT INTO projection_versions (name, version) VALUES (?, ?) \
     ON CONFLICT (name) DO UPDATE SET version = excluded.version";

/// The version of the code that built a projection's model.
pub(crate) const BUILT_VERSION: &str = "SELECT version FROM projection_versions WHERE name = ?";

/// A projection's token.
pub(crate) const TOKEN: &str = "SELECT token FROM projection_tokens WHERE name = ?";

/// Sets a projection's token.
pub(crate) const SET_TOKEN: &str = "INSERT INTO projection_tokens (name, token) VALUES (?, ?) \
     ON CONFLICT (name) DO UPDATE SET token = excluded.token";
