-- Progress of `cdp backfill` (owned by cdp-replay::backfill): per workspace and file, the last line whose
-- batch is committed, written after every batch, so that a rerun of the same file resumes after it.
-- A file is the same when its path, size and the SHA-256 of its first 64 KiB are.
CREATE TABLE backfill_progress (
    workspace   TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    size        BIGINT  NOT NULL,
    head_sha256 TEXT    NOT NULL,
    last_line   BIGINT  NOT NULL, -- the last line of the last committed row (1-based)
    finished    BIGINT  NOT NULL, -- 1 once the whole file was read
    stored      BIGINT  NOT NULL, -- events new to the log, over every run of this file
    duplicates  BIGINT  NOT NULL, -- rows whose message was already in the log
    rejected    BIGINT  NOT NULL, -- rows quarantined
    updated_at  BIGINT  NOT NULL, -- ms since the epoch
    PRIMARY KEY (workspace, path, size, head_sha256)
);
