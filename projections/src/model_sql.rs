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

/// The resolver's checkpoints, whole or in parts (binds: the parts' name pattern, `identity/%`).
pub(crate) const RESOLVER_CHECKPOINTS: &str =
    "SELECT name, tx, seq FROM projection_checkpoints WHERE name = 'identity' OR name LIKE ? \
     ORDER BY name";

/// The lowest of the resolver's checkpoints (binds: the parts' name pattern): where every part has
/// been.
pub(crate) const LOWEST_RESOLVER_CHECKPOINT: &str =
    "SELECT tx, seq FROM projection_checkpoints WHERE name = 'identity' OR name LIKE ? \
     ORDER BY tx, seq LIMIT 1";

/// Deletes the resolver's checkpoints (binds: the parts' name pattern): its layout is written anew.
pub(crate) const DELETE_RESOLVER_CHECKPOINTS: &str =
    "DELETE FROM projection_checkpoints WHERE name = 'identity' OR name LIKE ?";

/// PostgreSQL: the resolver's checkpoint rows, locked in name order until the transaction ends
/// (binds: the parts' name pattern): no part commits meanwhile.
pub(crate) const LOCK_RESOLVER_CHECKPOINTS_POSTGRES: &str =
    "SELECT name FROM projection_checkpoints WHERE name = 'identity' OR name LIKE $1 \
     ORDER BY name FOR UPDATE";

/// PostgreSQL: the whole resolver's checkpoint row, made when the resolver has none yet (binds: the
/// parts' name pattern).
pub(crate) const ENSURE_RESOLVER_CHECKPOINT_POSTGRES: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) SELECT 'identity', 0, 0, 0 \
     WHERE NOT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = 'identity' OR name LIKE $1) \
     ON CONFLICT (name) DO NOTHING";

/// The tokens of the resolver's parts in the layout stored (a token row whose part has no
/// checkpoint belongs to an earlier layout), in name order (binds: the parts' name pattern).
pub(crate) const RESOLVER_TOKENS: &str =
    "SELECT t.token FROM projection_tokens t JOIN projection_checkpoints c ON c.name = t.name \
     WHERE t.name = 'identity' OR t.name LIKE ? ORDER BY t.name";

/// Sets the token of every part of the resolver's stored layout (binds: token, the parts' name
/// pattern).
pub(crate) const SET_RESOLVER_TOKENS: &str =
    "INSERT INTO projection_tokens (name, token) SELECT name, ? FROM projection_checkpoints \
     WHERE name = 'identity' OR name LIKE ? ON CONFLICT (name) DO UPDATE SET token = excluded.token";

/// Sets the whole resolver's token unless the resolver runs in parts (binds: token, the parts' name
/// pattern): moved even before its first checkpoint.
pub(crate) const SET_WHOLE_TOKEN_UNLESS_PARTS: &str =
    "INSERT INTO projection_tokens (name, token) SELECT 'identity', ? \
     WHERE NOT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name LIKE ?) \
     ON CONFLICT (name) DO UPDATE SET token = excluded.token";

/// Deletes the resolver's tokens (binds: the parts' name pattern): its layout is written anew.
pub(crate) const DELETE_RESOLVER_TOKENS: &str =
    "DELETE FROM projection_tokens WHERE name = 'identity' OR name LIKE ?";

/// One part's name of the resolver's stored layout, if it runs in parts (binds: the parts' name
/// pattern).
pub(crate) const A_PART: &str = "SELECT name FROM projection_checkpoints WHERE name LIKE ? LIMIT 1";

/// Sets every part of the resolver to one position (binds: tx, seq, the parts' name pattern).
pub(crate) const SET_RESOLVER_CHECKPOINTS: &str =
    "UPDATE projection_checkpoints SET tx = ?, seq = ? WHERE name = 'identity' OR name LIKE ?";
