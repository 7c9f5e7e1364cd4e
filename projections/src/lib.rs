//! Read models of cdp and the runner that keeps them in step with the event log.
//!
//! A projection has a stable name, `prepare` and `write` steps over a batch of events, and a checkpoint written in the
//! same transaction as its read model, so a crash at any point leaves a model that converges again.

pub mod catalog;
pub mod erasure;
pub mod error;
pub mod evaluation;
pub mod exact;
pub mod identity;
pub mod jobs;
pub mod lease;
pub(crate) mod model_sql;
pub mod model_tx;
pub mod outbox;
pub mod parallel;
pub mod partitions;
pub mod pipeline;
pub mod profiles;
pub mod projection;
pub mod refold;
pub mod runner;
pub(crate) mod stage_rows;
pub mod stages;

pub use runner::{ModelTx, Projection, ProjectionError, RunnerHandle, RunnerStatus};
pub mod audience;
