-- Who runs each partition of the engine (cdp-projections::lease): one instance at a time holds a
-- partition's lease until `expires_at` (ms since the epoch), renewing it while it lives. Every
-- acquisition raises `fence`; a commit of the partition's model checks its fence in its own
-- transaction, so a late write of an owner that lost the lease (paused, partitioned, killed mid-way)
-- fails instead of landing after the next owner's.
CREATE TABLE engine_leases (
    part       TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    fence      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
