//! The resolver's token (`projection_tokens`): written with every batch, and moved to a new value by
//! every other writer of the model (`forget_state`), so an instance knows when its in-memory state is
//! stale. When the resolver runs in parts (`crate::partitions`), each part has a token of its own.

use cdp_domain::store::sql::{query, Exec};
use chrono::Utc;

use crate::model_sql as sql;
use crate::projection::parts_pattern;
use crate::runner::{ModelTx, ProjectionError};

/// A token no other batch has: this process's start, its address space and a counter.
pub(super) fn new_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let started = STARTED.get_or_init(|| Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let here = &COUNTER as *const AtomicU64 as usize;
    format!(
        "{started:x}-{here:x}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The stored token of the part `name`, read from the store's pool or in a model's transaction.
pub(super) async fn stored_token(
    on: impl Into<Exec<'_>>,
    name: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(query(sql::TOKEN).bind(name).scalar_optional(on).await?)
}

/// Makes every resolver (every part) reload its in-memory state before its next batch (after the
/// model was written by something else, e.g. a rebuild). The token is new each time: two such writes
/// with no batch between them must not look like none to a reader that saw the first (a resolver, an
/// audience index).
pub async fn forget_state(tx: &mut ModelTx<'_>) -> Result<(), ProjectionError> {
    let token = format!("forgotten-{}", new_token());
    query(sql::SET_RESOLVER_TOKENS)
        .bind(token.as_str())
        .bind(parts_pattern())
        .execute(tx.exec())
        .await?;
    query(sql::SET_WHOLE_TOKEN_UNLESS_PARTS)
        .bind(token.as_str())
        .bind(parts_pattern())
        .execute(tx.exec())
        .await?;
    Ok(())
}

pub(super) async fn write_token(
    tx: &mut ModelTx<'_>,
    name: &str,
    token: &str,
) -> Result<(), ProjectionError> {
    query(sql::SET_TOKEN)
        .bind(name)
        .bind(token)
        .execute(tx.exec())
        .await?;
    Ok(())
}
