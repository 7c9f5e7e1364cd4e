-- Profile documents in their binary form (domain::codec: a format byte, then postcard), written by the
-- resolver from now on. `doc` keeps the JSON documents earlier versions wrote until the resolver
-- rewrites them (readers take `state` when present, else `doc`); new rows leave it NULL. SQLite cannot
-- drop a NOT NULL constraint in place, so the table is copied.
CREATE TABLE profiles_binary (
    workspace TEXT NOT NULL,
    profile   TEXT NOT NULL,
    doc       TEXT,          -- domain::profile::ProfileDoc as JSON (rows of earlier versions)
    state     BLOB,          -- domain::profile::ProfileDoc::to_state
    PRIMARY KEY (workspace, profile)
);
INSERT INTO profiles_binary (workspace, profile, doc) SELECT workspace, profile, doc FROM profiles;
DROP TABLE profiles;
ALTER TABLE profiles_binary RENAME TO profiles;
