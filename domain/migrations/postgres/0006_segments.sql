-- Segment membership (owned by cdp-projections::catalog, written by the resolver in the transaction of
-- its batch): who is in each segment now, and every enter and exit with its cause (append-only), which
-- answers "was this customer in the segment then, and why".
CREATE TABLE segment_members (
    workspace TEXT    NOT NULL,
    segment   TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    since     BIGINT  NOT NULL,
    caused_by TEXT,
    PRIMARY KEY (workspace, segment, profile)
);
CREATE INDEX segment_members_by_profile ON segment_members (workspace, profile);

CREATE TABLE segment_history (
    seq       BIGSERIAL PRIMARY KEY,
    workspace TEXT    NOT NULL,
    profile   TEXT    NOT NULL,
    segment   TEXT    NOT NULL,
    entered   BOOLEAN NOT NULL, -- true entered, false exited
    at        BIGINT  NOT NULL,
    caused_by TEXT
);
CREATE INDEX segment_history_by_profile ON segment_history (workspace, profile, segment, seq);
