//! Segments and live changes: `PUT/GET/DELETE /v1/segments/{id}` (the segment language, applied like the
//! other catalog definitions: an operator command in the log, every profile evaluated by a job),
//! `GET /v1/profiles/{id}/memberships` (every enter and exit with its cause; `?at=` answers whether the
//! customer was in each segment then), and `GET /v1/stream` (server-sent events of the workspace's tag
//! changes and segment enters and exits, as the outbox publishes them).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::event::{from_millis, to_millis};
use cdp_domain::message::rfc3339;
use cdp_domain::segments::{segment_cycle, SegmentDef};
use cdp_domain::workspace::Scope;
use cdp_projections::catalog::{self, SEGMENT};
use cdp_projections::identity;
use cdp_projections::profiles;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::catalog::{
    apply, definition_error, definition_json, find, json_body, named, pending, unchanged,
};
use crate::error::ApiError;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/segments", get(list_segments))
        .route("/v1/segments/preview", axum::routing::post(preview))
        .route(
            "/v1/segments/{id}",
            get(get_segment).put(put_segment).delete(delete_segment),
        )
        .route("/v1/segments/{id}/members", get(members))
        .route("/v1/profiles/{id}/memberships", get(memberships))
        .route("/v1/stream", get(stream))
}

async fn segment_json(
    state: &AppState,
    workspace: &str,
    d: &catalog::StoredDefinition,
) -> Result<Value, ApiError> {
    let mut body = definition_json(state, workspace, SEGMENT, d).await?;
    body["id"] = json!(d.name);
    let sizes = catalog::segment_sizes(&state.store, workspace).await?;
    body["members"] = json!(sizes.get(&d.name).copied().unwrap_or(0));
    Ok(body)
}

async fn list_segments(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let mut items = Vec::new();
    for d in catalog::definitions(&state.store, &principal.workspace, SEGMENT).await? {
        items.push(segment_json(&state, &principal.workspace, &d).await?);
    }
    Ok(Json(json!({"items": items})))
}

async fn get_segment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let d = find(&state, &principal.workspace, SEGMENT, &id).await?;
    Ok(Json(segment_json(&state, &principal.workspace, &d).await?))
}

async fn put_segment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    named(&id)?;
    let ws = &principal.workspace;
    let def = SegmentDef::parse(&json_body(&raw)?).map_err(definition_error)?;
    let mut defs: BTreeMap<String, SegmentDef> = BTreeMap::new();
    for s in catalog::definitions(&state.store, ws, SEGMENT).await? {
        if let Some(def) = s.body.as_ref().and_then(|b| SegmentDef::parse(b).ok()) {
            defs.insert(s.name, def);
        }
    }
    if let Some(missing) = def
        .references()
        .into_iter()
        .find(|r| r != &id && !defs.contains_key(r))
    {
        return Err(ApiError::bad_request(
            "invalid_definition",
            "condition",
            format!("invalid definition: condition: no segment {missing:?}"),
        ));
    }
    defs.insert(id.clone(), def.clone());
    if let Some(path) = segment_cycle(&defs, &id) {
        return Err(ApiError::bad_request(
            "invalid_definition",
            "condition",
            format!(
                "invalid definition: the segment reads itself: {}",
                path.join(" -> ")
            ),
        ));
    }
    if let Some(same) = unchanged(&state, ws, SEGMENT, &id, &def.to_json()).await? {
        return Ok((StatusCode::OK, Json(segment_json(&state, ws, &same).await?)));
    }
    let command = CatalogCommand::PutSegment {
        id: id.clone(),
        definition: def.to_json(),
        actor: principal.actor(),
    };
    if let Some(command_id) = apply(&state, ws, command).await? {
        return Ok(pending(command_id));
    }
    let d = find(&state, ws, SEGMENT, &id).await?;
    Ok((StatusCode::OK, Json(segment_json(&state, ws, &d).await?)))
}

/// What a definition would hold before it is saved: count, a sample, and the members' spend and orders.
async fn preview(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let def = SegmentDef::parse(&json_body(&raw)?).map_err(definition_error)?;
    let known = catalog::definitions(&state.store, ws, SEGMENT).await?;
    if let Some(missing) = def
        .references()
        .into_iter()
        .find(|r| !known.iter().any(|k| &k.name == r))
    {
        return Err(ApiError::bad_request(
            "invalid_definition",
            "condition",
            format!("invalid definition: condition: no segment {missing:?}"),
        ));
    }
    let started = std::time::Instant::now();
    let p = identity::housekeeping::preview(&state.store, ws, &def, 10, Utc::now()).await?;
    Ok(Json(json!({
        "count": p.count,
        "profiles": p.profiles,
        "sample": p.sample,
        "totals": {"spend": p.spend, "orders": p.orders},
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

async fn delete_segment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let ws = &principal.workspace;
    find(&state, ws, SEGMENT, &id).await?;
    for s in catalog::definitions(&state.store, ws, SEGMENT).await? {
        let reads = s
            .body
            .as_ref()
            .and_then(|b| SegmentDef::parse(b).ok())
            .is_some_and(|def| s.name != id && def.references().contains(&id));
        if reads {
            return Err(ApiError::conflict(
                "in_use",
                format!(
                    "segment {:?} reads {id:?}; change or delete it first",
                    s.name
                ),
            ));
        }
    }
    let command = CatalogCommand::DeleteSegment {
        id: id.clone(),
        actor: principal.actor(),
    };
    if let Some(command_id) = apply(&state, ws, command).await? {
        return Ok(pending(command_id));
    }
    Ok((StatusCode::OK, Json(json!({"id": id, "status": "deleted"}))))
}

#[derive(Deserialize)]
struct MembersQuery {
    limit: Option<i64>,
    after: Option<String>,
    format: Option<String>,
    /// Only members who may be reached on this channel (for `purpose`, marketing by default).
    channel: Option<String>,
    purpose: Option<String>,
}

/// A page of a segment's members in profile id order: JSON (`items`, `next_after`), NDJSON (one member
/// per line) or CSV; `after` is the last profile id of the previous page.
async fn members(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let channel = q
        .channel
        .as_deref()
        .map(|c| crate::consent::channel_param(c, "channel"))
        .transpose()?;
    let purpose = crate::consent::purpose_param(q.purpose.as_deref(), "purpose")?;
    find(&state, ws, SEGMENT, &id).await?;
    let limit = q.limit.unwrap_or(1_000).clamp(1, 100_000);
    let after = q.after.unwrap_or_default();
    let mut page = catalog::members_page(&state.store, ws, &id, &after, limit).await?;
    // The page is cut before the consent filter, so `next_after` pages through every member.
    let next_after = (page.len() as i64 == limit)
        .then(|| page.last().map(|m| m.0.clone()))
        .flatten();
    if let Some(channel) = channel {
        let keys: Vec<(String, String)> = page.iter().map(|m| (ws.clone(), m.0.clone())).collect();
        let reachable = crate::consent::reachable_of(&state.store, &keys, purpose).await?;
        page.retain(|m| {
            reachable
                .get(&(ws.clone(), m.0.clone()))
                .is_some_and(|r| r.contains(&channel))
        });
    }
    let rows: Vec<Value> = page
        .iter()
        .map(|(profile, since, caused_by)| {
            json!({"profile_id": profile, "since": rfc3339(from_millis(*since)), "caused_by": caused_by})
        })
        .collect();
    let with_next = |mut response: axum::response::Response| {
        if let Some(next) = next_after
            .as_deref()
            .and_then(|n| axum::http::HeaderValue::from_str(n).ok())
        {
            response.headers_mut().insert("x-next-after", next);
        }
        response
    };
    Ok(match q.format.as_deref().unwrap_or("json") {
        "json" => {
            Json(json!({"segment": id, "items": rows, "next_after": next_after})).into_response()
        }
        "ndjson" => {
            let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
            with_next(
                (
                    [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
                    body,
                )
                    .into_response(),
            )
        }
        "csv" => {
            let mut body = String::from("profile_id,since,caused_by\n");
            for (profile, since, caused_by) in &page {
                body.push_str(&format!(
                    "{},{},{}\n",
                    csv_field(profile),
                    rfc3339(from_millis(*since)),
                    csv_field(caused_by.as_deref().unwrap_or(""))
                ));
            }
            with_next(([(axum::http::header::CONTENT_TYPE, "text/csv")], body).into_response())
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "format",
                format!("format: {other:?} is not json, ndjson or csv"),
            ))
        }
    })
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

/// Every enter and exit of a profile (and of the profiles merged into it) with its cause; with `at`, the
/// segments it was in at that time and the change that put it there (`segments_at`: the recorded
/// history, what was published), and `by_event_time`: the segments its events up to `at` make it, by
/// event time, under today's definitions (also for a time before a segment was defined).
async fn memberships(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<AtQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let at = match &q.at {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_request("invalid_value", "at", format!("at: not RFC 3339: {e}"))
                })?,
        ),
    };
    let survivor = identity::survivor_of(&state.store, ws, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    let mut ids = vec![survivor.clone()];
    ids.extend(profiles::aliases_of(&state.store, ws, &survivor).await?);
    let history = catalog::membership_history(&state.store, ws, &ids).await?;
    let change_json = |c: &catalog::MembershipChange| {
        json!({
            "segment": c.segment,
            "change": if c.entered { "entered" } else { "exited" },
            "at": rfc3339(from_millis(c.at)),
            "caused_by": c.caused_by,
            "profile_id": c.profile,
        })
    };
    let mut body = json!({
        "profile_id": survivor,
        "requested_id": id,
        "history": history.iter().map(change_json).collect::<Vec<_>>(),
    });
    let until = at.map_or(i64::MAX, to_millis);
    let mut last: BTreeMap<&str, &catalog::MembershipChange> = BTreeMap::new();
    for c in history.iter().filter(|c| c.at <= until) {
        last.insert(c.segment.as_str(), c);
    }
    let current: Vec<Value> = last
        .values()
        .filter(|c| c.entered)
        .map(|c| {
            json!({
                "segment": c.segment,
                "since": rfc3339(from_millis(c.at)),
                "because": change_json(c),
            })
        })
        .collect();
    match at {
        Some(t) => {
            body["at"] = json!(rfc3339(t));
            body["segments_at"] = json!(current);
            // And by event time: what the customer's own history made them then.
            let profile =
                cdp_domain::identity::ProfileId::parse(&survivor).map_err(ApiError::internal)?;
            let as_of = identity::housekeeping::segments_at(&state.store, ws, &profile, t).await?;
            body["by_event_time"] = json!({
                "segments": as_of.segments,
                "events": as_of.events,
                "latest_event": as_of.latest.map(|(message_id, event, time)| json!({
                    "message_id": message_id,
                    "event": event,
                    "timestamp": rfc3339(time),
                })),
            });
        }
        None => body["segments"] = json!(current),
    }
    Ok(Json(body))
}

/// The workspace's tag changes and segment enters and exits, live, as server-sent events (`event`: the
/// message type, `id`: the outbox sequence number, `data`: the message as NATS carries it).
async fn stream(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(Scope::Read)?;
    let workspace = principal.workspace.clone();
    let receiver = state.bus.subscribe();
    let events = futures::stream::unfold(receiver, move |mut receiver| {
        let workspace = workspace.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(m) if m.workspace == workspace => {
                        let kind = serde_json::from_str::<Value>(&m.payload)
                            .ok()
                            .and_then(|v| v["type"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| "message".to_owned());
                        let event = Event::default()
                            .event(kind)
                            .id(m.seq.to_string())
                            .data(m.payload);
                        return Some((Ok(event), receiver));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let event = Event::default()
                            .event("lagged")
                            .data(json!({"missed": n}).to_string());
                        return Some((Ok(event), receiver));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
