-- Data-quality findings (domain::store::quality): a value a stored message carried that is no identifier
-- (a phone "N/A", a placeholder e-mail), by field and reason. The message itself is in `events` with the
-- value kept; a finding holds no value, only where and why, so it carries no personal data. One row per
-- message and field: a message sent twice is counted once.
CREATE TABLE quality_findings (
    id          BIGSERIAL PRIMARY KEY,
    workspace   TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    field       TEXT   NOT NULL,
    code        TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (workspace, message_id, field)
);
CREATE INDEX quality_findings_by_workspace ON quality_findings (workspace, id);
CREATE INDEX quality_findings_by_reason ON quality_findings (workspace, field, code);
