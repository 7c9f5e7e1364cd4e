//! The query API: profiles (by id or by identifier), their timelines and identity explanations, the
//! identity conflicts and rules, and the quarantine.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::event::{from_millis, StoredEvent};
use cdp_domain::ident::Phone;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::IdentityEvent;
use cdp_domain::message::rfc3339;
use cdp_domain::profile::channel_of;
use cdp_domain::store::EventStore;
use cdp_domain::workspace::Scope;
use cdp_projections::identity::{self, DecisionRow};
use cdp_projections::profiles;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::AppState;

mod view;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/profiles/lookup", get(lookup))
        .route("/v1/profiles/{id}", get(profile))
        .route("/v1/profiles/{id}/events", get(timeline))
        .route("/v1/quarantine", get(quarantine))
        .route("/v1/profiles/{id}/identity", get(profile_identity))
        .route("/v1/identity/conflicts", get(identity_conflicts))
        .route("/v1/identity/rules", get(identity_rules))
}

#[derive(Deserialize)]
pub(crate) struct LookupQuery {
    #[serde(rename = "type")]
    id_type: Option<String>,
    value: Option<String>,
}

/// At `debug`: a hot read (the edge's request span names it; a span costs a few per cent there).
#[tracing::instrument(name = "read.lookup", level = "debug", skip_all, fields(workspace = %principal.workspace))]
async fn lookup(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<LookupQuery>,
) -> Result<axum::response::Response, ApiError> {
    principal.require(Scope::Read)?;
    let (holder, id_type, value) = holder_of(&state, &principal.workspace, q).await?;
    let view = state
        .views
        .view(&state.store, &principal.workspace, &holder)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile has {id_type} {value:?}")))?;
    let mut matched = serde_json::Map::new();
    matched.insert("matched".into(), json!({"type": id_type, "value": value}));
    profile_body(
        &state,
        &principal.workspace,
        &holder,
        &holder,
        &view,
        matched,
    )
    .await
}

/// The profile holding the identifier `?type=&value=` names (the value normalised as ingestion does):
/// `(profile, type, normalised value)`, or a 400 naming the parameter, or a 404.
pub(crate) async fn holder_of(
    state: &AppState,
    workspace: &WorkspaceId,
    q: LookupQuery,
) -> Result<(String, String, String), ApiError> {
    let id_type = q
        .id_type
        .ok_or_else(|| ApiError::bad_request("missing_field", "type", "type is required"))?;
    let valid_type = !id_type.is_empty()
        && id_type.len() <= 64
        && id_type
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_type {
        return Err(ApiError::bad_request(
            "invalid_value",
            "type",
            "type must be an identifier type: 1-64 of a-z, 0-9 and _",
        ));
    }
    let raw_value = q
        .value
        .ok_or_else(|| ApiError::bad_request("missing_field", "value", "value is required"))?;
    let rules = identity::rules_of(&state.store, workspace).await?;
    // A phone is read in the workspace's region as ingestion reads it, and handed to the rules in E.164
    // so that they keep its country code; a value that only the rules' lenient reading takes (a number
    // stored before regions) is still found.
    let strict = (id_type == "phone")
        .then(|| Phone::parse_in(&raw_value, state.phone_region(workspace)).ok())
        .flatten()
        .and_then(|phone| rules.normalise("phone", &phone.e164()));
    let value = strict
        .or_else(|| rules.normalise(&id_type, &raw_value))
        .ok_or_else(|| {
            // Well-formed, but never an identifier (not an e-mail, a placeholder, a blocked value):
            // no profile can hold it.
            ApiError::not_found(format!(
                "no profile has {id_type} {raw_value:?}: it is not a valid {id_type} or is a \
                 blocked value, never an identifier"
            ))
        })?;
    let holder = identity::profile_holding(&state.store, workspace, &id_type, &value)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile has {id_type} {value:?}")))?;
    Ok((holder, id_type, value))
}

/// The part of a profile's body that depends on its view alone (identifiers, traits, counts, recent
/// events, consent), as JSON object text: made once per view, which a view held in memory keeps.
fn fixed_part(view: &profiles::ProfileView) -> &str {
    view.rendered.get_or_init(|| {
        let mut body = view::profile_view(&view.doc, &view.recent);
        mark_invalid_traits(&mut body["traits"]);
        body["consent"] = json!(view.doc.consent.view());
        body.to_string()
    })
}

/// A trait whose value ingestion kept as an invalid identifier (`{"value", "invalid"}`, a phone "N/A")
/// shows the value as sent and says why it is no identifier: `"invalid": "not_a_phone"`.
fn mark_invalid_traits(traits: &mut Value) {
    let Some(traits) = traits.as_object_mut() else {
        return;
    };
    for entry in traits.values_mut() {
        let Some((raw, code)) = cdp_domain::message::invalid_identifier(&entry["value"]) else {
            continue;
        };
        let (raw, code) = (raw.clone(), code.to_owned());
        entry["value"] = raw;
        entry["invalid"] = json!(code);
    }
}

/// The surviving profile of `id`, or a 404.
async fn survivor(state: &AppState, workspace: &WorkspaceId, id: &str) -> Result<String, ApiError> {
    identity::survivor_of(&state.store, workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))
}

/// At `debug`: the hottest read (the edge's request span names it; a span costs a few per cent there).
#[tracing::instrument(name = "read.profile", level = "debug", skip_all, fields(workspace = %principal.workspace))]
async fn profile(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    principal.require(Scope::Read)?;
    // A live profile in one read; a merged-away one through its survivor.
    let ws = &principal.workspace;
    let (survivor, view) = match state.views.view(&state.store, ws, &id).await? {
        Some(view) => (id.clone(), view),
        None => {
            let survivor = survivor(&state, ws, &id).await?;
            let view = state
                .views
                .view(&state.store, ws, &survivor)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
            (survivor, view)
        }
    };
    profile_body(&state, ws, &survivor, &id, &view, serde_json::Map::new()).await
}

/// The 360° view's body: the profile's fixed part ([`fixed_part`]) and what is worked out per read —
/// its id, reachability under the consent policy in force, its computed traits at the read's time and
/// its tags — with `more` fields, as JSON text. `requested_id` differs when the id asked for was merged
/// away.
async fn profile_body(
    state: &AppState,
    workspace: &WorkspaceId,
    profile: &str,
    requested: &str,
    view: &profiles::ProfileView,
    more: serde_json::Map<String, Value>,
) -> Result<axum::response::Response, ApiError> {
    // Reachable under the consent policy in force, as segments and exports read it.
    let catalog = state.catalog(workspace).await?;
    let reachable = view.doc.consent.reachable_by(
        cdp_domain::consent::DEFAULT_PURPOSE,
        &catalog.consent.policy,
    );
    let (channels, by) = crate::consent::reachable_json(&reachable);
    let (computed, tags) =
        crate::catalog::profile_sections(state, workspace, &view.doc, &view.tags).await?;
    let mut read = more;
    read.insert("profile_id".into(), json!(profile));
    read.insert("requested_id".into(), json!(requested));
    read.insert("merged_away".into(), json!(profile != requested));
    read.insert("reachable".into(), channels);
    read.insert("reachable_by".into(), by);
    read.insert("computed_traits".into(), computed);
    read.insert("tags".into(), tags);
    let body = join_objects(fixed_part(view), &Value::Object(read).to_string());
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// Two JSON objects' texts with no key in common as one object's.
fn join_objects(first: &str, second: &str) -> String {
    let head = first.trim_end().strip_suffix('}').unwrap_or(first);
    let tail = second.trim_start().strip_prefix('{').unwrap_or(second);
    let mut joined = String::with_capacity(head.len() + tail.len() + 1);
    joined.push_str(head);
    if head.trim_end() != "{" && tail.trim_start() != "}" {
        joined.push(',');
    }
    joined.push_str(tail);
    joined
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

fn event_json(e: &StoredEvent) -> Value {
    let payload: Value = serde_json::from_str(&e.event.payload).unwrap_or(Value::Null);
    json!({
        "seq": e.position.seq,
        "message_id": e.event.message_id,
        "type": e.event.kind.as_str(),
        "name": e.event.name,
        "channel": channel_of(&payload),
        "timestamp": rfc3339(e.event.event_time),
        "received_at": rfc3339(e.event.received_at),
        "message": payload,
    })
}

/// The profile's events across every identity merged into it, newest first, paged by `before`.
#[tracing::instrument(name = "read.timeline", skip_all, fields(workspace = %principal.workspace))]
async fn timeline(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let survivor = survivor(&state, &principal.workspace, &id).await?;
    let limit = crate::extract::page_limit(q.limit, 100, 1000)?;
    let events = profiles::timeline(
        &state.store,
        &principal.workspace,
        &survivor,
        q.before,
        limit,
    )
    .await?;
    let next = next_before(events.len(), limit, events.last().map(|e| e.position.seq));
    Ok(Json(json!({
        "profile_id": survivor,
        "requested_id": id,
        "items": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// The `before` of the next page: the last id of a full page, none after a short one.
fn next_before(returned: usize, limit: u32, last_id: Option<i64>) -> Option<i64> {
    (returned == limit as usize).then_some(last_id).flatten()
}

#[tracing::instrument(name = "read.quarantine", skip_all, fields(workspace = %principal.workspace))]
async fn quarantine(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = crate::extract::page_limit(q.limit, 100, 1000)?;
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
                "received_at": rfc3339(from_millis(e.received_at_ms)),
                "code": e.code,
                "field": e.field,
                "reason": e.reason,
                "payload": e.payload,
            })
        })
        .collect();
    if q.before.is_some() {
        return Ok(Json(json!({"items": items, "next_before": next})));
    }
    // The first page also counts every refusal of the workspace by reason and field.
    let counts = state.store.count_quarantine(&principal.workspace).await?;
    let (total, by_reason) = crate::quality::by_reason(&counts);
    Ok(Json(json!({
        "total": total,
        "by_reason": by_reason,
        "items": items,
        "next_before": next,
    })))
}

fn decision_json(d: &DecisionRow) -> Value {
    let mut body = serde_json::to_value(&d.event).unwrap_or(Value::Null);
    body["seq"] = json!(d.seq);
    body["caused_by_log_seq"] = json!(d.log_seq);
    body["recorded_at"] = json!(rfc3339(from_millis(d.recorded_at_ms)));
    body
}

/// "Why are these one customer?": every link and merge of the profile (and of the profiles merged into
/// it), each with the identifier, the event, the rule version and the time that caused it.
#[tracing::instrument(name = "read.profile_identity", skip_all, fields(workspace = %principal.workspace))]
async fn profile_identity(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let explanation = identity::explain(&state.store, &principal.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    // The identifiers it holds now, each with the decision that linked it (and the split that moved it
    // here, if one did).
    let doc = profiles::load(&state.store, &principal.workspace, &explanation.survivor)
        .await?
        .unwrap_or_default();
    let mut identifiers = Vec::with_capacity(doc.linked.len());
    for id in &doc.linked {
        let linked =
            identity::link_of(&state.store, &principal.workspace, &id.id_type, &id.value).await?;
        // The latest split that moved it into this profile or one merged into it.
        let cluster: Vec<&str> = std::iter::once(explanation.survivor.as_str())
            .chain(explanation.merged.iter().map(String::as_str))
            .collect();
        let moved_by = explanation.decisions.iter().rev().find(|d| {
            matches!(&d.event, IdentityEvent::ProfileSplit { identifiers, into, .. }
                if identifiers.contains(id) && cluster.contains(&into.as_str()))
        });
        identifiers.push(json!({
            "type": id.id_type,
            "value": id.value,
            "linked_by": linked.as_ref().map(decision_json),
            "moved_by": moved_by.map(decision_json),
        }));
    }
    let merges: Vec<Value> = explanation
        .decisions
        .iter()
        .filter(|d| {
            matches!(
                d.event,
                IdentityEvent::ProfilesMerged { .. } | IdentityEvent::ProfileSplit { .. }
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

#[tracing::instrument(name = "read.identity_conflicts", skip_all, fields(workspace = %principal.workspace))]
async fn identity_conflicts(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let limit = crate::extract::page_limit(q.limit, 100, 1000)?;
    let rows = identity::conflicts(&state.store, &principal.workspace, q.before, limit).await?;
    let next = next_before(rows.len(), limit, rows.last().map(|d| d.seq));
    Ok(Json(json!({
        "items": rows.iter().map(decision_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

/// The identity rules in force for the workspace.
#[tracing::instrument(name = "read.identity_rules", skip_all, fields(workspace = %principal.workspace))]
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

#[cfg(test)]
mod tests {
    use super::join_objects;
    use serde_json::json;

    #[test]
    fn two_objects_join_as_one() {
        let joined = join_objects(r#"{"a":1,"b":[1,{"c":"}"}]}"#, r#"{"d":null}"#);
        let value: serde_json::Value = serde_json::from_str(&joined).expect("one object");
        assert_eq!(value, json!({"a": 1, "b": [1, {"c": "}"}], "d": null}));
        let value: serde_json::Value =
            serde_json::from_str(&join_objects("{}", r#"{"d":1}"#)).expect("one object");
        assert_eq!(value, json!({"d": 1}));
        let value: serde_json::Value =
            serde_json::from_str(&join_objects(r#"{"a":1}"#, "{}")).expect("one object");
        assert_eq!(value, json!({"a": 1}));
    }
}
