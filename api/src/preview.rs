//! `POST /v1/segments/preview`: an unsaved segment definition evaluated over the workspace's audience
//! index (`cdp_projections::audience`) — count, sample, totals, and on request a breakdown by up to two
//! fields, with the overlap with every saved segment.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use cdp_domain::audience::{parse_breakdown, BreakdownField};
use cdp_domain::message::rfc3339;
use cdp_domain::segments::SegmentDef;
use cdp_domain::workspace::Scope;
use cdp_projections::audience::preview::{preview as evaluate, UnknownField};
use cdp_projections::catalog::{self, SEGMENT};
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::catalog::{definition_error, json_body};
use crate::error::ApiError;
use crate::AppState;

/// Members listed in a preview's sample.
const SAMPLE: usize = 10;

/// The definition (`{"name", "condition"}`, as `PUT /v1/segments/{id}` takes it) and the request's
/// options beside it: `breakdown`.
pub(crate) fn read_request(
    body: Value,
) -> Result<(SegmentDef, Option<Vec<BreakdownField>>), ApiError> {
    let mut body = body;
    let breakdown = match body.as_object_mut().and_then(|o| o.remove("breakdown")) {
        None | Some(Value::Null) => None,
        Some(fields) => Some(parse_breakdown(&fields).map_err(|e| {
            ApiError::bad_request(
                "invalid_breakdown",
                e.field.clone(),
                format!("invalid breakdown: {e}"),
            )
        })?),
    };
    let def = SegmentDef::parse(&body).map_err(definition_error)?;
    Ok((def, breakdown))
}

fn field_json(f: &BreakdownField) -> Value {
    let key = match f.key {
        cdp_domain::tags::FieldKey::Trait => "trait",
        cdp_domain::tags::FieldKey::Tag => "tag",
        cdp_domain::tags::FieldKey::Computed => "computed",
    };
    json!({ key: f.name })
}

#[tracing::instrument(name = "segments.preview", skip_all, fields(workspace = %principal.workspace))]
pub(crate) async fn preview(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let (def, breakdown) = read_request(json_body(&raw)?)?;
    let known = catalog::definitions(&state.store, ws, SEGMENT).await?;
    if let Some(missing) = def
        .references()
        .into_iter()
        .find(|r| !known.iter().any(|k| &k.name == r))
    {
        return Err(ApiError::definition_conflict(
            "condition",
            format!("invalid definition: condition: no segment {missing:?}"),
        ));
    }
    let started = std::time::Instant::now();
    let now = Utc::now();
    let answer = evaluate(
        &state.audiences,
        &state.store,
        ws,
        &def,
        breakdown.as_deref(),
        SAMPLE,
        now,
    )
    .await?;
    let p = match answer {
        Ok(p) => p,
        Err(UnknownField(at)) => {
            let f = breakdown
                .as_ref()
                .and_then(|b| b.get(at))
                .map(field_json)
                .unwrap_or(Value::Null);
            // A well-formed request about something the workspace does not have: a conflict with
            // its state (409), as a definition naming an unknown segment is.
            return Err(ApiError::Client {
                status: axum::http::StatusCode::CONFLICT,
                code: "unknown_breakdown_field",
                field: format!("breakdown[{at}]"),
                message: format!(
                    "invalid breakdown: no profile has the field {f} and the catalog does not define it"
                ),
            });
        }
    };
    let mut body = json!({
        "count": p.summary.count,
        "profiles": p.summary.profiles,
        "sample": p.summary.sample,
        "totals": {"spend": p.summary.spend, "orders": p.summary.orders},
        "overlap": p.overlap.iter().map(|(segment, count)| json!({"segment": segment, "count": count})).collect::<Vec<_>>(),
        "evaluated_by": p.evaluated_by.as_str(),
        "index": {
            "ready": p.ready,
            "built_at": p.built_at.map(rfc3339),
            "read_whole": p.refreshed.whole,
            "profiles_read_again": p.refreshed.profiles,
        },
        "took_ms": started.elapsed().as_millis() as u64,
    });
    if let Some(reason) = &p.fallback {
        body["fallback"] = json!(reason);
    }
    if let Some(b) = &p.breakdown {
        body["breakdown"] = json!({
            "fields": b.fields.iter().map(field_json).collect::<Vec<_>>(),
            "groups": b.groups.iter().map(|g| json!({"values": g.values, "count": g.count, "spend": g.spend})).collect::<Vec<_>>(),
            "total_groups": b.total_groups,
        });
    }
    Ok(Json(body))
}
