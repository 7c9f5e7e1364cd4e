-- One counter every destruction of a subject key moves (triggers, so no writer of `subject_keys` can
-- forget it): an append sealing with keys it cached when the counter read n inserts nothing if the
-- counter moved since, instead of checking each cached key alive (cdp-domain::store::sealing::KeyCache).
CREATE TABLE shred_generation (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    n        BIGINT  NOT NULL
);
INSERT INTO shred_generation (only_row, n) VALUES (TRUE, 0);

CREATE FUNCTION shred_generation_moves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE shred_generation SET n = n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER subject_keys_destroyed AFTER UPDATE OF key ON subject_keys FOR EACH ROW
    WHEN (OLD.key IS NOT NULL AND NEW.key IS DISTINCT FROM OLD.key)
    EXECUTE FUNCTION shred_generation_moves();
CREATE TRIGGER subject_keys_deleted AFTER DELETE ON subject_keys FOR EACH ROW
    EXECUTE FUNCTION shred_generation_moves();
