//! The end-to-end suite: the real service through its HTTP and NATS edges, on SQLite always and on
//! PostgreSQL and NATS when `CDP_TEST_DATABASE_URL` / `CDP_TEST_NATS_URL` are set (skips are announced).
//! Set `TEST_LOG=1` to see the service's logs.

mod audience;
mod audience_fill;
mod auth;
mod backfill;
mod consent;
mod console;
mod durability;
mod erasure;
mod export;
mod helpers;
mod identity;
mod ingest;
mod isolation;
mod limits;
mod log;
mod nats;
mod operators;
mod ops;
mod outage;
mod provision;
mod quality;
mod quarantine;
mod read;
mod replay;
mod scale;
mod segments;
mod traits;
