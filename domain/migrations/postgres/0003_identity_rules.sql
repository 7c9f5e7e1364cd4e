-- The identity rules in force per workspace (cdp-projections::identity reads them for every batch).
-- Decisions record the version they were taken under, so the history survives a change of rules.
CREATE TABLE identity_rules (
    workspace  TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    rules      TEXT   NOT NULL, -- domain::identity::IdentityRules as JSON
    updated_at BIGINT NOT NULL
);
