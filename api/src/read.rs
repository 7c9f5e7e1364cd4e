//! The query API of this stage: the profile view by identifier and the quarantine.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::ident::IdentifierType;
use cdp_domain::store::EventStore;
use cdp_domain::workspace::Scope;
use cdp_projections::identity::{self, DecisionRow};
use cdp_projections::profile_view::ProfileViews;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/profiles/lookup", get(lookup))
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/profiles/{id}/identity", get(profile_identity))
        .route("/v1/identity/conflicts", get(identity_conflicts))
        .route("/v1/identity/rules", get(identity_rules))
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(rename = "type")]
    id_type: Option<String>,
    value: Option<String>,
}

async fn lookup(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<LookupQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let raw_type = q
        .id_type
        .ok_or_else(|| ApiError::bad_request("missing_field", "type", "type is required"))?;
    let id_type = IdentifierType::parse(&raw_type)
        .map_err(|e| ApiError::bad_request("invalid_value", "type", e.to_string()))?;
    let raw_value = q
        .value
        .ok_or_else(|| ApiError::bad_request("missing_field", "value", "value is required"))?;
    let value = id_type
        .normalise(&raw_value)
        .map_err(|e| ApiError::bad_request("invalid_value", "value", e.to_string()))?;
    let view = ProfileViews::load(&state.store, &principal.workspace, id_type, &value)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no profile has {} {value:?}", id_type.as_str()))
        })?;
    let mut body = view.to_json(id_type, &value);
    // The OneID profile holding the identifier (null until the resolver has seen it).
    body["profile_id"] = json!(
        identity::profile_holding(&state.store, &principal.workspace, id_type.as_str(), &value)
            .await?
    );
    Ok(Json(body))
}

/// The `before` of the next page: the last id of a full page, none after a short one.
fn next_before(returned: usize, limit: u32, last_id: Option<i64>) -> Option<i64> {
    (returned == limit as usize).then_some(last_id).flatten()
}

/// Paging of the newest-first lists.
#[derive(Deserialize)]
struct QuarantineQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn quarantine(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<QuarantineQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .store
        .list_quarantine(&principal.workspace, q.before, limit)
        .await?;
    let next = next_before(items.len(), limit, items.last().map(|e| e.id));
    let items: Vec<Value> = items
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "source": e.source,
                "received_at": cdp_domain::message::rfc3339(cdp_domain::event::from_millis(e.received_at_ms)),
                "code": e.code,
                "field": e.field,
                "reason": e.reason,
                "payload": e.payload,
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_before": next})))
}

fn decision_json(d: &DecisionRow) -> Value {
    let mut body = serde_json::to_value(&d.event).unwrap_or(Value::Null);
    body["seq"] = json!(d.seq);
    body["caused_by_log_seq"] = json!(d.log_seq);
    body["recorded_at"] = json!(cdp_domain::message::rfc3339(
        cdp_domain::event::from_millis(d.recorded_at_ms)
    ));
    body
}

/// "Why are these one customer?": every link and merge of the profile (and of the profiles merged into
/// it), each with the identifier, the event, the rule version and the time that caused it.
async fn profile_identity(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let explanation = identity::explain(&state.store, &principal.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    let identifiers: Vec<Value> = explanation
        .decisions
        .iter()
        .filter(|d| {
            matches!(
                d.event,
                cdp_domain::identity::IdentityEvent::IdentifierLinked { .. }
            )
        })
        .map(decision_json)
        .collect();
    let merges: Vec<Value> = explanation
        .decisions
        .iter()
        .filter(|d| {
            matches!(
                d.event,
                cdp_domain::identity::IdentityEvent::ProfilesMerged { .. }
            )
        })
        .map(decision_json)
        .collect();
    Ok(Json(json!({
        "profile_id": explanation.survivor,
        "requested_id": id,
        "merged_away": explanation.survivor != id,
        "merged_profiles": explanation.merged,
        "identifiers": identifiers,
        "merges": merges,
        "decisions": explanation.decisions.iter().map(decision_json).collect::<Vec<_>>(),
    })))
}

async fn identity_conflicts(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<QuarantineQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = identity::conflicts(&state.store, &principal.workspace, q.before, limit).await?;
    let next = next_before(rows.len(), limit, rows.last().map(|d| d.seq));
    Ok(Json(json!({
        "items": rows.iter().map(decision_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// The identity rules in force for the workspace.
async fn identity_rules(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let rules = identity::rules_of(&state.store, &principal.workspace).await?;
    Ok(Json(
        serde_json::to_value(rules).map_err(ApiError::internal)?,
    ))
}
