-- One counter every destruction of a subject key moves (triggers, so no writer of `subject_keys` can
-- forget it): an append sealing with keys it cached when the counter read n looks them all up again if
-- the counter moved since, instead of checking each cached key alive (cdp-domain::store::sealing::KeyCache).
CREATE TABLE shred_generation (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    n        INTEGER NOT NULL
);
INSERT INTO shred_generation (only_row, n) VALUES (1, 0);

CREATE TRIGGER subject_keys_destroyed AFTER UPDATE OF key ON subject_keys
    WHEN OLD.key IS NOT NULL AND (NEW.key IS NULL OR NEW.key <> OLD.key)
BEGIN
    UPDATE shred_generation SET n = n + 1;
END;
CREATE TRIGGER subject_keys_deleted AFTER DELETE ON subject_keys
BEGIN
    UPDATE shred_generation SET n = n + 1;
END;
