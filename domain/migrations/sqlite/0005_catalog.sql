-- Computed traits and tags (owned by cdp-projections::catalog, written by the resolver in the same
-- transaction as its decisions and the profiles).

-- Every version of every definition; the newest version of a name is in force, a NULL body deletes it.
-- The version is the log sequence number of the operator command that made it.
CREATE TABLE definitions (
    workspace  TEXT    NOT NULL,
    kind       TEXT    NOT NULL, -- 'trait' | 'tag'
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    body       TEXT,
    defined_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind, name, version)
);

-- Work the resolver does between batches, a page of profiles at a time: backfilling a computed trait
-- from the log, re-evaluating a tag for every profile.
CREATE TABLE catalog_jobs (
    workspace   TEXT    NOT NULL,
    kind        TEXT    NOT NULL, -- 'trait' | 'tag'
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    cursor      TEXT    NOT NULL, -- the last profile id done
    done        INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    status      TEXT    NOT NULL, -- 'running' | 'done'
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (workspace, kind, name, version)
);

-- The tags each live profile has now.
CREATE TABLE profile_tags (
    workspace  TEXT    NOT NULL,
    profile    TEXT    NOT NULL,
    tag        TEXT    NOT NULL,
    value      TEXT    NOT NULL, -- JSON
    detail     TEXT,             -- JSON
    manual     INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    caused_by  TEXT,
    PRIMARY KEY (workspace, profile, tag)
);
CREATE INDEX profile_tags_by_tag ON profile_tags (workspace, tag);

-- What each live profile is worth (its built-in spend trait), for the value of a tag's population.
CREATE TABLE profile_spend (
    workspace TEXT NOT NULL,
    profile   TEXT NOT NULL,
    spend     REAL NOT NULL,
    PRIMARY KEY (workspace, profile)
);

-- When a profile's tags must be evaluated again although nothing happened (a window moves on).
CREATE TABLE profile_due (
    workspace TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    due_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace, profile)
);
CREATE INDEX profile_due_by_time ON profile_due (due_at);

-- The workspace-wide RFM cut points (quintiles) of a tag, computed in batch.
CREATE TABLE rfm_thresholds (
    workspace   TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    computed_at INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    PRIMARY KEY (workspace, tag)
);

-- Messages for subscribers, written in the transaction of the change they tell of, published in order.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Profiles that exist already lack the built-in spend trait: backfill it.
INSERT INTO catalog_jobs (workspace, kind, name, version, cursor, done, total, status, started_at)
SELECT workspace, 'trait', '~spend', 0, '', 0, count(*), 'running', 0 FROM profiles GROUP BY workspace;

-- A token the resolver writes with every batch: an instance whose last token is not the stored one knows
-- its in-memory state (graphs, cached documents) may be stale and reloads it.
CREATE TABLE projection_tokens (
    name  TEXT PRIMARY KEY,
    token TEXT NOT NULL
);
