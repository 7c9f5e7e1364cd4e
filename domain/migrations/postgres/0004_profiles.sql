-- The 360° profile (owned by cdp-projections::identity, written by the resolver in the same transaction as
-- its decisions): one document per live profile, and the profile each customer event belongs to now —
-- merges and splits move events between profiles. Replaces the per-identifier views of 0001.
DROP TABLE profile_views;
DELETE FROM projection_checkpoints WHERE name = 'profile_views';

CREATE TABLE profiles (
    workspace TEXT NOT NULL,
    profile   TEXT NOT NULL,
    doc       TEXT NOT NULL, -- domain::profile::ProfileDoc as JSON
    PRIMARY KEY (workspace, profile)
);

CREATE TABLE event_profiles (
    log_seq   BIGINT  PRIMARY KEY, -- events.seq
    workspace TEXT    NOT NULL,
    profile   TEXT    NOT NULL
);
CREATE INDEX event_profiles_by_profile ON event_profiles (workspace, profile, log_seq);

-- Which live profile holds each linked identifier now.
CREATE TABLE identifier_owners (
    workspace TEXT NOT NULL,
    id_type   TEXT NOT NULL,
    value     TEXT NOT NULL,
    profile   TEXT NOT NULL,
    PRIMARY KEY (workspace, id_type, value)
);
CREATE INDEX identifier_owners_by_profile ON identifier_owners (workspace, profile);

-- Where each merged-away profile went: its survivor now (kept current through chains of merges).
CREATE TABLE profile_aliases (
    workspace TEXT NOT NULL,
    profile   TEXT NOT NULL,
    survivor  TEXT NOT NULL,
    PRIMARY KEY (workspace, profile)
);
CREATE INDEX profile_aliases_by_survivor ON profile_aliases (workspace, survivor);

-- The decisions an operator command caused, read back by the API.
CREATE INDEX identity_events_by_cause ON identity_events (workspace, caused_by);
