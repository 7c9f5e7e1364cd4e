//! The catalog stage's writes for a batch (`CatalogWrites`: definitions, jobs, RFM cut points) and
//! `write`, which stores them in the batch's transaction (the statements in `rows`, one text for both
//! backends).

use cdp_domain::tags::RfmThresholds;

use super::Job;
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod rows;

/// What the resolver writes about the catalog for a batch.
#[derive(Debug, Default)]
pub struct CatalogWrites {
    pub definitions: Vec<DefinitionRow>,
    /// Jobs to start (or to move on): written as given.
    pub jobs: Vec<Job>,
    /// `(workspace, tag, version, computed_at, thresholds)`.
    pub thresholds: Vec<(String, String, i64, i64, RfmThresholds)>,
}

impl CatalogWrites {
    /// Appends `other`'s writes after these, in their order.
    pub fn append(&mut self, other: CatalogWrites) {
        let CatalogWrites {
            definitions,
            jobs,
            thresholds,
        } = other;
        self.definitions.extend(definitions);
        self.jobs.extend(jobs);
        self.thresholds.extend(thresholds);
    }

    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty() && self.jobs.is_empty() && self.thresholds.is_empty()
    }
}

/// A definition as stored: `None` body: deleted.
#[derive(Debug, Clone)]
pub struct DefinitionRow {
    pub workspace: String,
    pub kind: &'static str,
    pub name: String,
    pub version: i64,
    pub body: Option<String>,
    /// The defining command's arrival (ms), so that a rebuild records the same.
    pub defined_at: i64,
}

/// Writes `w` inside `tx`: definitions, jobs, then cut points.
pub(crate) async fn write(tx: &mut ModelTx<'_>, w: &CatalogWrites) -> Result<(), ProjectionError> {
    match &mut tx.0 {
        Tx::Sqlite(tx) => rows::write_sqlite(tx, w).await,
        Tx::Postgres(tx) => rows::write_postgres(tx, w).await,
    }
}
