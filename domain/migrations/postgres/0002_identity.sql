-- OneID: every identity decision, in the order the resolver made them (owned by cdp-projections::identity).
-- Append-only like the event log. Only the resolver writes it, one batch at a time under its checkpoint
-- row lock, so `seq` order is commit order. `profile` is the profile the decision is about (the survivor
-- of a merge), `other` the absorbed profile of a merge; `id_type`/`value` the identifier of a link.
CREATE TABLE identity_events (
    seq         BIGSERIAL PRIMARY KEY,
    workspace   TEXT   NOT NULL,
    log_seq     BIGINT NOT NULL, -- events.seq of the event that caused it
    caused_by   TEXT   NOT NULL, -- its messageId
    kind        TEXT   NOT NULL,
    profile     TEXT,
    other       TEXT,
    id_type     TEXT,
    value       TEXT,
    recorded_at BIGINT NOT NULL,
    body        TEXT   NOT NULL  -- the IdentityEvent as JSON (domain::identity::events)
);
CREATE INDEX identity_events_by_profile ON identity_events (workspace, profile);
CREATE INDEX identity_events_by_other ON identity_events (workspace, other);
CREATE INDEX identity_events_by_identifier ON identity_events (workspace, id_type, value);
CREATE INDEX identity_events_by_kind ON identity_events (workspace, kind, seq);
CREATE TRIGGER identity_events_are_append_only BEFORE UPDATE OR DELETE ON identity_events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
