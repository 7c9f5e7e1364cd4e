-- Crypto-shredding (cdp-domain::shred, written by cdp-domain::store): every customer event is sealed
-- with the key of its subject (the SHA-256 of its workspace and user id, else anonymous id, else message
-- id). Erasing a person destroys the keys of their subjects: `key` and `subject` become NULL and the row
-- stays as the record that the events keyed by it were erased. Events keep their rows (the log is
-- append-only); a sealed event whose key is gone reads back as erased.
CREATE TABLE subject_keys (
    id         BIGSERIAL PRIMARY KEY,
    workspace  TEXT   NOT NULL,
    subject    TEXT,             -- NULL once erased (NULLs never collide in the unique index)
    key        BYTEA,            -- NULL once erased
    created_at BIGINT NOT NULL,
    erased_at  BIGINT
);
CREATE UNIQUE INDEX subject_keys_by_subject ON subject_keys (subject); -- the hash names its workspace too

-- The key a sealed event (format 2) was sealed with; NULL for plain events (format 1: operator commands
-- and events logged before sealing).
ALTER TABLE events ADD COLUMN key_id BIGINT;

-- Every erasure, with no personal data: which profile (a pseudonymous id), who, when, how much.
CREATE TABLE erasures (
    seq       BIGSERIAL PRIMARY KEY,
    workspace TEXT   NOT NULL,
    profile   TEXT   NOT NULL,
    profiles  TEXT   NOT NULL, -- JSON list: the profile and those merged into it
    actor     TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    events    BIGINT NOT NULL, -- events made unreadable
    keys      BIGINT NOT NULL  -- subject keys destroyed
);
CREATE INDEX erasures_by_workspace ON erasures (workspace, seq);
