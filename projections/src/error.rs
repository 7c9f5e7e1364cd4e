//! The engine's one error type: a projection's, a stage's or a read's failure, from the database, the
//! event store, a row that does not decode, or a model that moved under a batch.

use cdp_domain::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read model or event is corrupt: {0}")]
    Corrupt(String),
    /// The model was changed by something else (an erasure, a rebuild's switch) after the batch was
    /// prepared: nothing was written, and the batch is prepared again from the new state.
    #[error("the model changed under the batch: {0}")]
    Stale(String),
    /// The partition's lease was taken by another instance (`crate::lease`): nothing was written,
    /// and this instance stops running the partition.
    #[error("the partition's lease was lost: {0}")]
    LeaseLost(String),
}

impl ProjectionError {
    pub fn corrupt(e: impl std::fmt::Display) -> Self {
        ProjectionError::Corrupt(e.to_string())
    }
}
