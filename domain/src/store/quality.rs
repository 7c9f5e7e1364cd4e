//! Data-quality findings beside the log: each value a stored message carried that is no identifier
//! (`message::IdentifierFinding`), recorded once per message and field, listed newest first and counted
//! by field and reason.

use sqlx::{QueryBuilder, Row};

use super::{Store, StoreError};

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

/// The tables counted by field and reason (a fixed name: never user input in the SQL).
#[derive(Debug, Clone, Copy)]
enum Reasons {
    Findings,
    Quarantine,
}

impl Reasons {
    fn table(self) -> &'static str {
        match self {
            Reasons::Findings => "quality_findings",
            Reasons::Quarantine => "quarantine",
        }
    }
}

const ROWS_PER_STATEMENT: usize = 500;
const COLUMNS: &str = "id, workspace, message_id, field, code, reason, source, received_at";

impl Store {
    /// Records findings; one already recorded for the same message and field is left as it is.
    pub async fn record_findings(&self, findings: &[QualityFinding]) -> Result<(), StoreError> {
        for chunk in findings.chunks(ROWS_PER_STATEMENT) {
            match self {
                Store::Sqlite(s) => {
                    let mut query: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
                        "INSERT INTO quality_findings \
                         (workspace, message_id, field, code, reason, source, received_at) ",
                    );
                    push_rows(&mut query, chunk);
                    query.push(" ON CONFLICT (workspace, message_id, field) DO NOTHING");
                    let mut tx = s.begin_write().await?;
                    query.build().execute(&mut *tx).await?;
                    tx.commit().await?;
                }
                Store::Postgres(s) => {
                    let mut query: QueryBuilder<sqlx::Postgres> = QueryBuilder::new(
                        "INSERT INTO quality_findings \
                         (workspace, message_id, field, code, reason, source, received_at) ",
                    );
                    push_rows(&mut query, chunk);
                    query.push(" ON CONFLICT (workspace, message_id, field) DO NOTHING");
                    query.build().execute(s.pool()).await?;
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
        let before = before.unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        let rows = match self {
            Store::Sqlite(s) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM quality_findings WHERE workspace = ? AND id < ? \
                     ORDER BY id DESC LIMIT ?"
            ))
            .bind(workspace)
            .bind(before)
            .bind(limit)
            .fetch_all(s.read_pool())
            .await?
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?,
            Store::Postgres(s) => sqlx::query(&format!(
                "SELECT {COLUMNS} FROM quality_findings WHERE workspace = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            ))
            .bind(workspace)
            .bind(before)
            .bind(limit)
            .fetch_all(s.pool())
            .await?
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// A workspace's findings counted by field and reason, the most frequent first.
    pub async fn count_findings(&self, workspace: &str) -> Result<Vec<ReasonCount>, StoreError> {
        self.count_reasons(Reasons::Findings, workspace).await
    }

    /// A workspace's refused messages (the quarantine) counted by field and reason, the most frequent
    /// first.
    pub async fn count_quarantine(&self, workspace: &str) -> Result<Vec<ReasonCount>, StoreError> {
        self.count_reasons(Reasons::Quarantine, workspace).await
    }

    async fn count_reasons(
        &self,
        reasons: Reasons,
        workspace: &str,
    ) -> Result<Vec<ReasonCount>, StoreError> {
        let sql = format!(
            "SELECT field, code, COUNT(*) AS n FROM {} WHERE workspace = {{}} \
             GROUP BY field, code ORDER BY n DESC, field, code",
            reasons.table()
        );
        match self {
            Store::Sqlite(s) => sqlx::query(&sql.replace("{}", "?"))
                .bind(workspace)
                .fetch_all(s.read_pool())
                .await?
                .iter()
                .map(decode_count)
                .collect(),
            Store::Postgres(s) => sqlx::query(&sql.replace("{}", "$1"))
                .bind(workspace)
                .fetch_all(s.pool())
                .await?
                .iter()
                .map(decode_count)
                .collect(),
        }
    }
}

fn push_rows<'a, DB>(query: &mut QueryBuilder<'a, DB>, rows: &'a [QualityFinding])
where
    DB: sqlx::Database,
    &'a String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push_values(rows, |mut row, f| {
        row.push_bind(&f.workspace)
            .push_bind(&f.message_id)
            .push_bind(&f.field)
            .push_bind(&f.code)
            .push_bind(&f.reason)
            .push_bind(&f.source)
            .push_bind(f.received_at_ms);
    });
}

fn decode<'r, R>(row: &'r R) -> Result<QualityFinding, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(QualityFinding {
        id: row.try_get(0)?,
        workspace: row.try_get(1)?,
        message_id: row.try_get(2)?,
        field: row.try_get(3)?,
        code: row.try_get(4)?,
        reason: row.try_get(5)?,
        source: row.try_get(6)?,
        received_at_ms: row.try_get(7)?,
    })
}

fn decode_count<'r, R>(row: &'r R) -> Result<ReasonCount, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ReasonCount {
        field: row.try_get(0)?,
        code: row.try_get(1)?,
        count: row.try_get(2)?,
    })
}
