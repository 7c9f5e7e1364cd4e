-- Progress of `cdp backfill` (owned by cdp-replay::backfill): per workspace and file, the last line whose
-- batch is committed, written after every batch, so that a rerun of the same file resumes after it.
-- A file is the same when its path, size and the SHA-256 of its first 64 KiB are.
CREATE TABLE backfill_progress (
    workspace   TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    head_sha256 TEXT    NOT NULL,
    last_line   INTEGER NOT NULL, -- the last line of the last committed row (1-based)
    finished    INTEGER NOT NULL, -- 1 once the whole file was read
    stored      INTEGER NOT NULL, -- events new to the log, over every run of this file
    duplicates  INTEGER NOT NULL, -- rows whose message was already in the log
    rejected    INTEGER NOT NULL, -- rows quarantined
    updated_at  INTEGER NOT NULL, -- ms since the epoch
    PRIMARY KEY (workspace, path, size, head_sha256)
);
