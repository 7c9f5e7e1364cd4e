-- Profile documents in their binary form (domain::codec: a format byte, then postcard), written by the
-- resolver from now on. `doc` keeps the JSON documents earlier versions wrote until the resolver
-- rewrites them (readers take `state` when present, else `doc`); new rows leave it NULL.
ALTER TABLE profiles ALTER COLUMN doc DROP NOT NULL;
ALTER TABLE profiles ADD COLUMN state BYTEA;
