-- Sealed customer events as bytes (domain::shred, format 3): the nonce, ciphertext and tag in `sealed`,
-- the `payload` column left empty. Rows of format 2 keep the same bytes as base64 in `payload` and are
-- still read; nothing rewrites them (the log is append-only).
ALTER TABLE events ADD COLUMN sealed BLOB;
