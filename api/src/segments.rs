//! Segments and live changes: `PUT/GET/DELETE /v1/segments/{id}` (the segment language, applied like the
//! other catalog definitions: an operator command in the log, every profile evaluated by a job),
//! `GET /v1/profiles/{id}/memberships` (every enter and exit with its cause; `?at=` answers whether the
//! customer was in each segment then), and `GET /v1/stream` (server-sent events of the workspace's tag
//! changes and segment enters and exits, as the outbox publishes them).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::event::{from_millis, to_millis};
use cdp_domain::ident::WorkspaceId;
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
use crate::export::{self, Column};
use crate::extract::{Path, Query};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/segments", get(list_segments))
        .route(
            "/v1/segments/preview",
            axum::routing::post(crate::preview::preview),
        )
        .route(
            "/v1/segments/{id}",
            get(get_segment).put(put_segment).delete(delete_segment),
        )
        .route("/v1/segments/{id}/members", get(members))
        .route("/v1/profiles/{id}/memberships", get(memberships))
        .route("/v1/stream", get(stream))
}

/// The members of every segment of `workspace` now: from the audience index's bitmaps when this
/// process holds the workspace's, else counted from the stored rows (once for all segments).
pub(crate) async fn member_counts(
    state: &AppState,
    workspace: &WorkspaceId,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let from_bitmaps = state
        .audiences
        .segment_sizes(&state.store, workspace, Utc::now())
        .await?;
    Ok(match from_bitmaps {
        Some(sizes) => sizes.into_iter().map(|(s, n)| (s, n as i64)).collect(),
        None => catalog::segment_sizes(&state.store, workspace).await?,
    })
}

async fn segment_json(
    state: &AppState,
    workspace: &WorkspaceId,
    d: &catalog::StoredDefinition,
) -> Result<Value, ApiError> {
    let mut body = definition_json(state, workspace, SEGMENT, d).await?;
    body["id"] = json!(d.name);
    Ok(body)
}

/// Segments' bodies (`segment_json`) with their members counted now. Counted after the bodies were
/// read, never before: a backfill's status read as done then means its memberships were committed
/// before they were counted (read the other way round, a backfill finishing between the two reads
/// showed "ready" with the members of before it).
async fn with_members(
    state: &AppState,
    workspace: &WorkspaceId,
    mut bodies: Vec<Value>,
) -> Result<Vec<Value>, ApiError> {
    let sizes = member_counts(state, workspace).await?;
    for body in &mut bodies {
        let name = body["id"].as_str().unwrap_or_default().to_owned();
        body["members"] = json!(sizes.get(&name).copied().unwrap_or(0));
    }
    Ok(bodies)
}

/// One segment's body with its members counted after it (see [`with_members`]).
async fn counted_segment(
    state: &AppState,
    workspace: &WorkspaceId,
    d: &catalog::StoredDefinition,
) -> Result<Value, ApiError> {
    let body = segment_json(state, workspace, d).await?;
    let mut counted = with_members(state, workspace, vec![body]).await?;
    Ok(counted.pop().unwrap_or_default())
}

#[tracing::instrument(name = "segments.list_segments", skip_all, fields(workspace = %principal.workspace))]
async fn list_segments(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let mut items = Vec::new();
    for d in catalog::definitions(&state.store, ws, SEGMENT).await? {
        items.push(segment_json(&state, ws, &d).await?);
    }
    let items = with_members(&state, ws, items).await?;
    Ok(Json(json!({"items": items})))
}

#[tracing::instrument(name = "segments.get_segment", skip_all, fields(workspace = %principal.workspace))]
async fn get_segment(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let d = find(&state, ws, SEGMENT, &id).await?;
    Ok(Json(counted_segment(&state, ws, &d).await?))
}

#[tracing::instrument(name = "segments.put_segment", skip_all, fields(workspace = %principal.workspace))]
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
        return Err(ApiError::definition_conflict(
            "condition",
            format!("invalid definition: condition: no segment {missing:?}"),
        ));
    }
    defs.insert(id.clone(), def.clone());
    if let Some(path) = segment_cycle(&defs, &id) {
        return Err(ApiError::definition_conflict(
            "condition",
            format!(
                "invalid definition: the segment reads itself: {}",
                path.join(" -> ")
            ),
        ));
    }
    if let Some(same) = unchanged(&state, ws, SEGMENT, &id, &def.to_json()).await? {
        return Ok((
            StatusCode::OK,
            Json(counted_segment(&state, ws, &same).await?),
        ));
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
    Ok((StatusCode::OK, Json(counted_segment(&state, ws, &d).await?)))
}

/// Deletes a segment (an operator command, applied in its place in the log), refused while another
/// segment reads it.
#[tracing::instrument(name = "segments.delete_segment", skip_all, fields(workspace = %principal.workspace))]
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
    /// Only members who may be reached on this channel (for `purpose`, marketing by default) and have
    /// its address, which the export includes.
    channel: Option<String>,
    purpose: Option<String>,
    /// The columns, comma-separated (see `export::parse_fields`).
    fields: Option<String>,
}

/// Members exported per page when the whole segment is streamed.
const STREAM_PAGE: i64 = 1_000;

/// What one export writes: the segment's members with these columns, kept when reachable on `channel`.
#[derive(Clone)]
struct Export {
    state: Arc<AppState>,
    workspace: WorkspaceId,
    segment: String,
    columns: Vec<Column>,
    channel: Option<&'static str>,
    purpose: &'static str,
}

impl Export {
    /// The rows of the members after `after` (up to `limit` members read, fewer rows when the channel
    /// filter leaves some out), and the `after` of the next page when there may be one.
    async fn page(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<(Vec<Vec<(String, Value)>>, Option<String>), ApiError> {
        let store = &self.state.store;
        let ws = &self.workspace;
        let page = catalog::members_page(store, ws, &self.segment, after, limit).await?;
        // The page is cut before the consent filter, so `next_after` pages through every member.
        let next_after = (page.len() as i64 == limit)
            .then(|| page.last().map(|m| m.0.clone()))
            .flatten();
        let needs_docs = self.channel.is_some() || self.columns.iter().any(Column::needs_document);
        let docs = if needs_docs {
            let parsed: Vec<profiles::ProfileKey> = page
                .iter()
                .filter_map(|m| {
                    let id = cdp_domain::identity::ProfileId::parse(&m.0).ok()?;
                    Some((ws.to_string(), id))
                })
                .collect();
            profiles::load_many(store, &parsed)
                .await?
                .into_iter()
                .map(|((_, p), doc)| (p.to_string(), doc))
                .collect()
        } else {
            std::collections::HashMap::new()
        };
        let tags = if self.columns.iter().any(|c| matches!(c, Column::Tag(_))) {
            let ids: Vec<&str> = page.iter().map(|m| m.0.as_str()).collect();
            catalog::tags_of(store, ws, &ids).await?
        } else {
            BTreeMap::new()
        };
        let traits = if self
            .columns
            .iter()
            .any(|c| matches!(c, Column::Computed(_)))
        {
            self.state.catalog(ws).await?.folded().clone()
        } else {
            BTreeMap::new()
        };
        // The consent policy in force, read for the page (not through the catalog's cache): the one
        // segment conditions on consent are evaluated under, from the moment the engine applied it.
        let policy = match self.channel {
            Some(_) => catalog::consent_policy(store, ws).await?.policy,
            None => Default::default(),
        };
        let now = Utc::now();
        let mut rows = Vec::with_capacity(page.len());
        for (profile, since, caused_by) in &page {
            let doc = docs.get(profile);
            let mut basis = None;
            if let Some(channel) = self.channel {
                // Reachable (consent, under the workspace's policy) and addressed, read from the one
                // document loaded for the columns.
                let Some(d) = doc else {
                    continue;
                };
                basis = crate::consent::reachable_in(d, &policy, self.purpose)
                    .into_iter()
                    .find(|(c, _)| *c == channel)
                    .map(|(_, b)| b);
                let addressed = export::address(d, export::address_type(channel)).is_some();
                if basis.is_none() || !addressed {
                    continue;
                }
            }
            let member = export::Member {
                profile,
                since: *since,
                caused_by: caused_by.as_deref(),
                doc,
                tags: tags.get(profile).map_or(&[], Vec::as_slice),
                consent: basis,
            };
            rows.push(export::row(&member, &self.columns, &traits, now));
        }
        Ok((rows, next_after))
    }

    /// Every member, page after page, as NDJSON lines or CSV rows (after the header): one page of
    /// members in memory at a time, written as it is read.
    fn stream(self, csv: bool) -> axum::body::Body {
        let header = csv.then(|| export::csv_header(&self.columns));
        let start = (self, Some(String::new()), header);
        let pages = futures::stream::unfold(start, move |(export, after, header)| async move {
            let after = after?;
            match export.page(&after, STREAM_PAGE).await {
                Ok((rows, next)) => {
                    let mut chunk = header.unwrap_or_default();
                    for cells in rows {
                        if csv {
                            chunk.push_str(&export::csv_line(&cells));
                        } else {
                            chunk.push_str(&export::json_line(cells).to_string());
                            chunk.push('\n');
                        }
                    }
                    let chunk: Result<axum::body::Bytes, std::io::Error> = Ok(chunk.into());
                    Some((chunk, (export, next, None)))
                }
                Err(e) => {
                    // The status is sent: the client sees the export cut short, never a partial
                    // file that looks whole.
                    tracing::error!(error = ?e, segment = %export.segment, "a segment export failed midway");
                    let failed = Err(std::io::Error::other(
                        "the export failed; see the service log",
                    ));
                    Some((failed, (export, None, None)))
                }
            }
        });
        axum::body::Body::from_stream(pages)
    }
}

/// A segment's members in profile id order. JSON: a page (`items`, `next_after`; `after` is the last
/// profile id of the previous page). NDJSON and CSV: the whole segment streamed, or a page with `limit`
/// (`X-Next-After`). `fields` chooses the columns; `channel` keeps the members reachable there with
/// its address, and adds the address.
#[tracing::instrument(name = "segments.members", skip_all, fields(workspace = %principal.workspace))]
async fn members(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    principal.require(Scope::Read)?;
    let ws = principal.workspace.clone();
    let channel = q
        .channel
        .as_deref()
        .map(|c| crate::consent::channel_param(c, "channel"))
        .transpose()?;
    let purpose = crate::consent::purpose_param(q.purpose.as_deref(), "purpose")?;
    let format = q.format.as_deref().unwrap_or("json");
    if !["json", "ndjson", "csv"].contains(&format) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "format",
            format!("format: {format:?} is not json, ndjson or csv"),
        ));
    }
    find(&state, &ws, SEGMENT, &id).await?;
    let mut columns = match q.fields.as_deref() {
        Some(fields) => {
            let rules = identity::rules_of(&state.store, &ws).await?;
            let catalog = state.catalog(&ws).await?;
            export::parse_fields(fields, &rules, &catalog)?
        }
        None => export::DEFAULT_COLUMNS
            .into_iter()
            .map(Column::Member)
            .collect(),
    };
    if let Some(channel) = channel {
        // The address, and why the member may be reached: the record of the consent decision.
        let address = Column::Identifier(export::address_type(channel).to_owned());
        for column in [address, Column::Consent] {
            if !columns.contains(&column) {
                columns.push(column);
            }
        }
    }
    let export = Export {
        state: state.clone(),
        workspace: ws,
        segment: id.clone(),
        columns,
        channel,
        purpose,
    };
    let content_type = match format {
        "csv" => "text/csv",
        "ndjson" => "application/x-ndjson",
        _ => "application/json",
    };
    if format != "json" && q.limit.is_none() {
        let body = export.clone().stream(format == "csv");
        return Ok(([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response());
    }
    let limit = i64::from(crate::extract::page_limit(q.limit, 1_000, 100_000)?);
    let after = q.after.unwrap_or_default();
    let (rows, next_after) = export.page(&after, limit).await?;
    let with_next = |mut response: axum::response::Response| {
        if let Some(next) = next_after
            .as_deref()
            .and_then(|n| axum::http::HeaderValue::from_str(n).ok())
        {
            response.headers_mut().insert("x-next-after", next);
        }
        response
    };
    Ok(match format {
        "json" => {
            let items: Vec<Value> = rows.into_iter().map(export::json_line).collect();
            Json(json!({"segment": id, "items": items, "next_after": next_after})).into_response()
        }
        "ndjson" => {
            let body: String = rows
                .into_iter()
                .map(|cells| format!("{}\n", export::json_line(cells)))
                .collect();
            with_next(([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response())
        }
        _ => {
            let mut body = export::csv_header(&export.columns);
            for cells in &rows {
                body.push_str(&export::csv_line(cells));
            }
            with_next(([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response())
        }
    })
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

/// Every enter and exit of a profile (and of the profiles merged into it) with its cause; with `at`, the
/// segments it was in at that time and the change that put it there (`segments_at`: the recorded
/// history, what was published), and `by_event_time`: the segments its events up to `at` make it, by
/// event time, under today's definitions (also for a time before a segment was defined).
#[tracing::instrument(name = "segments.memberships", skip_all, fields(workspace = %principal.workspace))]
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
            let as_of = cdp_projections::exact::segments_at(&state.store, ws, &profile, t).await?;
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
#[tracing::instrument(name = "segments.stream", skip_all, fields(workspace = %principal.workspace))]
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
                    Ok(m) if m.workspace == workspace.as_str() => {
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
