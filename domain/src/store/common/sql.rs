//! The statements of the log's operations that are the same on both backends, one text for both (`?`
//! placeholders; run with `super::super::sql`): the count of a workspace's events, quarantine,
//! workspaces, credentials, the ping.

/// Whether the database answers.
pub(super) const PING: &str = "SELECT 1";

/// How many events a workspace has in the log.
pub(super) const COUNT_EVENTS: &str = "SELECT count(*) FROM events WHERE workspace = ?";

// Quarantine.

/// Quarantines refused messages: followed by one `(?, ?, ?, ?, ?, ?, ?)` per message
/// ([`crate::store::sql::values`]).
pub(super) const INSERT_QUARANTINE_HEAD: &str =
    "INSERT INTO quarantine (workspace, source, received_at, code, field, reason, payload) VALUES ";

/// A page of a workspace's quarantined messages, newest first, below an id.
pub(super) const QUARANTINE_BEFORE: &str =
    "SELECT id, workspace, source, received_at, code, field, reason, payload \
     FROM quarantine WHERE workspace = ? AND id < ? ORDER BY id DESC LIMIT ?";

// Workspaces.

/// Creates a workspace unless it exists.
pub(super) const ENSURE_WORKSPACE: &str =
    "INSERT INTO workspaces (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING";

/// A row when the workspace exists.
pub(super) const WORKSPACE_EXISTS: &str = "SELECT 1 FROM workspaces WHERE id = ?";

/// How many workspaces there are.
pub(super) const COUNT_WORKSPACES: &str = "SELECT count(*) FROM workspaces";

/// Every workspace's id, in order.
pub(super) const WORKSPACE_IDS: &str = "SELECT id FROM workspaces ORDER BY id";

// Credentials.

/// Stores a credential, replacing the one with the same secret.
pub(super) const PUT_CREDENTIAL: &str =
    "INSERT INTO credentials (secret_hash, workspace, kind, scopes) VALUES (?, ?, ?, ?) \
     ON CONFLICT (secret_hash) DO UPDATE SET workspace = excluded.workspace, \
     kind = excluded.kind, scopes = excluded.scopes";

/// The credential with a secret's hash.
pub(super) const FIND_CREDENTIAL: &str =
    "SELECT secret_hash, workspace, kind, scopes FROM credentials WHERE secret_hash = ?";
