//! The publisher's statements (run with `cdp_domain::store::sql`): its checkpoint, SQLite's and
//! PostgreSQL's side by side (PostgreSQL's never moves it back), and the outbox's count and pruning,
//! one text for both.

/// How many messages wait after a sequence number.
pub(super) const WAITING: &str = "SELECT COUNT(*) FROM outbox WHERE seq > ?";

/// Deletes the messages up to a sequence number.
pub(super) const PRUNE: &str = "DELETE FROM outbox WHERE seq <= ?";

/// SQLite: moves the publisher's checkpoint (binds: name, seq, updated_at).
pub(super) const SAVE_CHECKPOINT_SQLITE: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES (?, 0, ?, ?) \
     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at";
/// PostgreSQL: moves the publisher's checkpoint, never back.
pub(super) const SAVE_CHECKPOINT_POSTGRES: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES ($1, 0, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, excluded.seq), \
     updated_at = excluded.updated_at";

/// SQLite: moves the publisher's checkpoint unless an instance that publishes to NATS is alive (binds:
/// name, seq, updated_at, the `publishes/` rows' pattern, now): what an instance without NATS runs.
pub(super) const SAVE_CHECKPOINT_UNLESS_PUBLISHED_SQLITE: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) SELECT ?, 0, ?, ? \
     WHERE NOT EXISTS (SELECT 1 FROM engine_leases WHERE part LIKE ? AND expires_at >= ?) \
     ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at";
/// PostgreSQL: the same, never back.
pub(super) const SAVE_CHECKPOINT_UNLESS_PUBLISHED_POSTGRES: &str =
    "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) \
     SELECT $1::text, 0, $2::bigint, $3::bigint \
     WHERE NOT EXISTS (SELECT 1 FROM engine_leases WHERE part LIKE $4::text AND expires_at >= $5::bigint) \
     ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, excluded.seq), \
     updated_at = excluded.updated_at";
