//! Data-quality findings beside the log: each value a stored message carried that is no identifier
//! (`message::IdentifierFinding`), recorded once per message and field, listed newest first and counted
//! by field and reason.

use super::sql::{query, values, Arg};
use super::{Store, StoreError};

mod sql;

/// One finding as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualityFinding {
    /// Assigned by the store; 0 before it is stored.
    pub id: i64,
    pub workspace: String,
    pub message_id: String,
    pub field: String,
    pub code: String,
    pub reason: String,
    /// `http`, `nats` or `backfill`.
    pub source: String,
    pub received_at_ms: i64,
}

/// How many findings (or refused messages) a workspace has for one field and reason; a refusal of the
/// whole message has no field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonCount {
    pub field: Option<String>,
    pub code: String,
    pub count: i64,
}

const ROWS_PER_STATEMENT: usize = 500;
const COLUMNS_PER_ROW: usize = 7;

/// A stored finding: id, workspace, message id, field, code, reason, source, received at.
type FindingRow = (i64, String, String, String, String, String, String, i64);

impl Store {
    /// Records findings; one already recorded for the same message and field is left as it is.
    pub async fn record_findings(&self, findings: &[QualityFinding]) -> Result<(), StoreError> {
        for chunk in findings.chunks(ROWS_PER_STATEMENT) {
            let text = format!(
                "{}{}{}",
                sql::INSERT_FINDINGS_HEAD,
                values(chunk.len(), COLUMNS_PER_ROW),
                sql::INSERT_FINDINGS_TAIL
            );
            let q = query(text).bind_each(chunk.iter().flat_map(|f| -> [Arg<'_>; 7] {
                [
                    f.workspace.as_str().into(),
                    f.message_id.as_str().into(),
                    f.field.as_str().into(),
                    f.code.as_str().into(),
                    f.reason.as_str().into(),
                    f.source.as_str().into(),
                    f.received_at_ms.into(),
                ]
            }));
            match self {
                // SQLite: a write transaction of its own (`BEGIN IMMEDIATE`: the write lock at once).
                Store::Sqlite(s) => {
                    let mut tx = s.begin_write().await?;
                    q.execute(&mut tx).await?;
                    tx.commit().await?;
                }
                Store::Postgres(_) => {
                    q.execute(self.writer()).await?;
                }
            }
        }
        Ok(())
    }

    /// A workspace's findings, newest first, below the id `before`.
    pub async fn list_findings(
        &self,
        workspace: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<QualityFinding>, StoreError> {
        let rows: Vec<FindingRow> = query(sql::FINDINGS_BEFORE)
            .bind(workspace)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, workspace, message_id, field, code, reason, source, received_at_ms)| {
                    QualityFinding {
                        id,
                        workspace,
                        message_id,
                        field,
                        code,
                        reason,
                        source,
                        received_at_ms,
                    }
                },
            )
            .collect())
    }

    /// A workspace's findings counted by field and reason, the most frequent first.
    pub async fn count_findings(&self, workspace: &str) -> Result<Vec<ReasonCount>, StoreError> {
        self.count_reasons(sql::COUNT_FINDINGS, workspace).await
    }

    /// A workspace's refused messages (the quarantine) counted by field and reason, the most frequent
    /// first.
    pub async fn count_quarantine(&self, workspace: &str) -> Result<Vec<ReasonCount>, StoreError> {
        self.count_reasons(sql::COUNT_QUARANTINE, workspace).await
    }

    async fn count_reasons(
        &self,
        text: &'static str,
        workspace: &str,
    ) -> Result<Vec<ReasonCount>, StoreError> {
        let rows: Vec<(Option<String>, String, i64)> =
            query(text).bind(workspace).fetch_all(self.reader()).await?;
        Ok(rows
            .into_iter()
            .map(|(field, code, count)| ReasonCount { field, code, count })
            .collect())
    }
}
