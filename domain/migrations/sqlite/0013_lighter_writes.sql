-- What the resolver writes for every event and every decision, made lighter (each secondary index entry
-- of a text key costs about as much as the row itself).

-- Rejected merges and links are the only decisions read by kind (`identity::queries::conflicts`,
-- erasure), and only merges, splits and rejected merges name an `other` profile: both indexes now hold
-- those rows only, not one entry for every decision.
DROP INDEX identity_events_by_kind;
CREATE INDEX identity_events_rejected ON identity_events (workspace, seq)
    WHERE kind IN ('merge_rejected', 'link_rejected');
DROP INDEX identity_events_by_other;
CREATE INDEX identity_events_by_other ON identity_events (workspace, other) WHERE other IS NOT NULL;

-- A profile's events are found through `event_profiles_recent` (workspace, profile, event_time): the
-- timeline, ordered by log position, sorts the one profile's rows instead of reading a second index that
-- every event paid for.
DROP INDEX event_profiles_by_profile;
