-- The version of the code that built each projection's read model. When the code declares another,
-- `cdp serve` rebuilds the model from the log (replay::rebuild) and records the new version at the switch.
-- Models built before versions were recorded were built by version 1.
CREATE TABLE projection_versions (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO projection_versions (name, version) VALUES ('identity', 1);
