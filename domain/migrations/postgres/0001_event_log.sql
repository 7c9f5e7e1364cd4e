-- The event log, the quarantine, workspaces and credentials (owned by cdp-domain::store), and the first
-- read models with their checkpoints (owned by cdp-projections). Migrations are never edited once applied.

-- Append-only. Sequence values commit out of order, so each row also records the id of the transaction
-- that wrote it: readers follow (tx, seq) and read only below the oldest running transaction
-- (pg_snapshot_xmin), which no later commit can land under.
CREATE TABLE events (
    seq          BIGSERIAL PRIMARY KEY,
    tx           BIGINT   NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    workspace    TEXT     NOT NULL,
    message_id   TEXT     NOT NULL,
    kind         TEXT     NOT NULL,
    name         TEXT,
    user_id      TEXT,
    anonymous_id TEXT,
    event_time   BIGINT   NOT NULL, -- ms since the epoch, clock-skew corrected
    received_at  BIGINT   NOT NULL, -- ms since the epoch
    format       SMALLINT NOT NULL DEFAULT 1,
    payload      TEXT     NOT NULL,
    UNIQUE (workspace, message_id)
);
CREATE INDEX events_in_commit_order ON events (tx, seq);

CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$;
CREATE TRIGGER events_are_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

-- Every refused message, with the reason; nothing is silently dropped.
CREATE TABLE quarantine (
    id          BIGSERIAL PRIMARY KEY,
    workspace   TEXT,
    source      TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    code        TEXT   NOT NULL,
    field       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    payload     TEXT   NOT NULL
);
CREATE INDEX quarantine_by_workspace ON quarantine (workspace, id);

CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
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
    tx         BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The first 360 view, keyed by identifier; `view` is the JSON document of projections::profile_view.
CREATE TABLE profile_views (
    workspace TEXT NOT NULL,
    id_type   TEXT NOT NULL,
    id_value  TEXT NOT NULL,
    view      TEXT NOT NULL,
    PRIMARY KEY (workspace, id_type, id_value)
);
