//! `GET /v1/quality`: the data-quality findings — values accepted messages carried that were kept but
//! not used as identifiers (a phone "N/A", a placeholder e-mail) — counted by field and reason, and
//! listed newest first with the message each came in.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::event::from_millis;
use cdp_domain::message::rfc3339;
use cdp_domain::workspace::Scope;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Query;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/quality", get(quality))
}

#[derive(Deserialize)]
struct QualityQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

#[tracing::instrument(name = "quality.quality", skip_all, fields(workspace = %principal.workspace))]
async fn quality(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<QualityQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let limit = crate::extract::page_limit(q.limit, 100, 1000)?;
    let counts = state.store.count_findings(ws).await?;
    let items = state.store.list_findings(ws, q.before, limit).await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|f| f.id))
        .flatten();
    let (total, by_reason) = by_reason(&counts);
    let items: Vec<Value> = items
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "message_id": f.message_id,
                "field": f.field,
                "code": f.code,
                "reason": f.reason,
                "source": f.source,
                "received_at": rfc3339(from_millis(f.received_at_ms)),
            })
        })
        .collect();
    Ok(Json(json!({
        "total": total,
        "by_reason": by_reason,
        "items": items,
        "next_before": next,
    })))
}

/// Counts by field and reason as the API answers them: the total and `[{field, code, count}]`.
pub(crate) fn by_reason(counts: &[cdp_domain::store::ReasonCount]) -> (i64, Vec<Value>) {
    let total = counts.iter().map(|c| c.count).sum();
    let by_reason = counts
        .iter()
        .map(|c| json!({"field": c.field, "code": c.code, "count": c.count}))
        .collect();
    (total, by_reason)
}
