-- The audit trail of operator actions (written by cdp-api's `audit` middleware): who — the credential's
-- kind and the start of its SHA-256, never the secret —, with which scope, did what (`action`, the method
-- and the path without its query string) to which target, and how it was answered. Ingestion with write
-- keys is not recorded. Append-only like `events`: triggers refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace  TEXT    NOT NULL,
    at         INTEGER NOT NULL, -- ms since the epoch
    actor      TEXT    NOT NULL,
    scope      TEXT    NOT NULL, -- the scope the call needed
    action     TEXT    NOT NULL, -- e.g. identity.merge, segment.export, admin.read
    method     TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    target     TEXT,             -- the profile, segment, trait or tag acted on, when there is one
    status     INTEGER NOT NULL,
    request_id TEXT              -- the caller's X-Request-Id, when it sent one
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace, seq);
CREATE TRIGGER audit_log_is_append_only_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_is_append_only_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
