-- Segment membership (owned by cdp-projections::catalog, written by the resolver in the transaction of
-- its batch): who is in each segment now, and every enter and exit with its cause (append-only), which
-- answers "was this customer in the segment then, and why".
CREATE TABLE segment_members (
    workspace TEXT    NOT NULL,
    segment   TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    since     INTEGER NOT NULL,
    caused_by TEXT,
    PRIMARY KEY (workspace, segment, profile)
);
CREATE INDEX segment_members_by_profile ON segment_members (workspace, profile);

CREATE TABLE segment_history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    segment   TEXT    NOT NULL,
    entered   INTEGER NOT NULL, -- 1 entered, 0 exited
    at        INTEGER NOT NULL,
    caused_by TEXT
);
CREATE INDEX segment_history_by_profile ON segment_history (workspace, profile, segment, seq);
