-- The event log, the quarantine, workspaces and credentials (owned by cdp-domain::store), and the first
-- read models with their checkpoints (owned by cdp-projections). Migrations are never edited once applied.

-- Append-only: `seq` is the global order; triggers refuse every UPDATE and DELETE.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace    TEXT    NOT NULL,
    message_id   TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    name         TEXT,
    user_id      TEXT,
    anonymous_id TEXT,
    event_time   INTEGER NOT NULL, -- ms since the epoch, clock-skew corrected
    received_at  INTEGER NOT NULL, -- ms since the epoch
    format       INTEGER NOT NULL DEFAULT 1,
    payload      TEXT    NOT NULL,
    UNIQUE (workspace, message_id)
);
CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Every refused message, with the reason; nothing is silently dropped.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace   TEXT,
    source      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    code        TEXT    NOT NULL,
    field       TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    payload     TEXT    NOT NULL
);
CREATE INDEX quarantine_by_workspace ON quarantine (workspace, id);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);

-- Only the SHA-256 of a secret is stored.
CREATE TABLE credentials (
    secret_hash TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL REFERENCES workspaces (id),
    kind        TEXT NOT NULL,
    scopes      TEXT NOT NULL
);

-- Read models (cdp-projections): a checkpoint per projection, written in the same transaction as the model.
CREATE TABLE projection_checkpoints (
    name       TEXT PRIMARY KEY,
    tx         INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The first 360 view, keyed by identifier; `view` is the JSON document of projections::profile_view.
CREATE TABLE profile_views (
    workspace TEXT NOT NULL,
    id_type   TEXT NOT NULL,
    id_value  TEXT NOT NULL,
    view      TEXT NOT NULL,
    PRIMARY KEY (workspace, id_type, id_value)
);
