-- Profile documents in their binary form (domain::codec: a format byte, then postcard), written by the
-- resolver from now on. `doc` keeps the JSON documents earlier versions wrote until the resolver
-- rewrites them (readers take `state` when present, else `doc`); new rows leave it NULL.
ALTER TABLE profiles ALTER COLUMN doc DROP NOT NULL;
ALTER TABLE profiles ADD COLUMN state BYTEA;

-- The 360 view's recent events are read from the profile's rows here, not kept in every document: each
-- customer event's summary (none of it personal: the message id, type, event name, channel, event time
-- and arrival in microseconds), written by the resolver with the row. Rows of earlier versions have none
-- until the model is rebuilt (the resolver's version moved to 3, so `cdp serve` rebuilds it).
ALTER TABLE event_profiles ADD COLUMN message_id  TEXT;
ALTER TABLE event_profiles ADD COLUMN kind        TEXT;
ALTER TABLE event_profiles ADD COLUMN name        TEXT;
ALTER TABLE event_profiles ADD COLUMN channel     TEXT;
ALTER TABLE event_profiles ADD COLUMN event_time  BIGINT;
ALTER TABLE event_profiles ADD COLUMN received_at BIGINT;
CREATE INDEX event_profiles_recent ON event_profiles (workspace, profile, event_time);
