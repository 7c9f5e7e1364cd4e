//! The catalog stage's writes for a batch (`CatalogWrites`: definitions, jobs, RFM cut points) and
//! `write`, which stores them in the batch's transaction: one upsert per definition, job and set of
//! cut points (they are few), one text for both backends (`catalog::sql`).

use cdp_domain::store::sql::query;
use cdp_domain::tags::RfmThresholds;

use super::{sql, Job};
use crate::runner::{ModelTx, ProjectionError};

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
    for d in &w.definitions {
        query(sql::INSERT_DEFINITION)
            .bind(d.workspace.as_str())
            .bind(d.kind)
            .bind(d.name.as_str())
            .bind(d.version)
            .bind(d.body.as_deref())
            .bind(d.defined_at)
            .execute(tx.exec())
            .await?;
    }
    for j in &w.jobs {
        query(sql::UPSERT_JOB)
            .bind(j.workspace.as_str())
            .bind(j.kind.as_str())
            .bind(j.name.as_str())
            .bind(j.version)
            .bind(j.cursor.as_str())
            .bind(j.done)
            .bind(j.total)
            .bind(j.status.as_str())
            .bind(j.started_at)
            .bind(j.finished_at)
            .execute(tx.exec())
            .await?;
    }
    for (ws, tag, version, at, t) in &w.thresholds {
        let body = serde_json::to_string(t).map_err(ProjectionError::corrupt)?;
        query(sql::UPSERT_THRESHOLDS)
            .bind(ws.as_str())
            .bind(tag.as_str())
            .bind(*version)
            .bind(*at)
            .bind(body)
            .execute(tx.exec())
            .await?;
    }
    Ok(())
}
