//! The audit trail of operator actions: a middleware records, once the status is known, every call made
//! with a token that needed the admin scope or changed something (any method but GET), and every export
//! of a segment's members, into the append-only `audit_log` table; `GET /v1/audit` reads it back.
//!
//! The actor is the credential's kind and the start of its SHA-256 (`Principal::actor`), never the secret;
//! the path is recorded without its query string (lookups carry identifier values there). Ingestion with
//! write keys is not audited, so the log costs ingestion nothing.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::sql::{self as db, Arg};
use cdp_domain::store::Store;
use cdp_domain::workspace::Scope;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit_slot::AuditSlot;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Query;
use crate::AppState;

mod sql;

/// The route of exports: reading it is audited although it is a GET.
const EXPORT_ROUTE: &str = "/v1/segments/{id}/members";
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;
/// Longest `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 128;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/audit", get(list))
}

/// The action name of a call: stable, dotted, for filtering.
pub fn action_of(method: &Method, route: &str, required: Option<Scope>) -> String {
    let named = match (method.as_str(), route) {
        ("POST", "/v1/identity/merge") => Some("identity.merge"),
        ("POST", "/v1/identity/split") => Some("identity.split"),
        ("PUT", "/v1/identity/rules") => Some("identity.rules"),
        ("PUT", "/v1/traits/{name}") => Some("trait.put"),
        ("DELETE", "/v1/traits/{name}") => Some("trait.delete"),
        ("PUT", "/v1/tags/{name}") => Some("tag.put"),
        ("DELETE", "/v1/tags/{name}") => Some("tag.delete"),
        ("POST", "/v1/profiles/{id}/tags/{tag}") => Some("profile.tag"),
        ("DELETE", "/v1/profiles/{id}/tags/{tag}") => Some("profile.untag"),
        ("DELETE", "/v1/profiles/{id}") | ("DELETE", "/v1/profiles/lookup") => {
            Some("profile.erase")
        }
        ("PUT", "/v1/profiles/{id}/consent") => Some("consent.put"),
        ("PUT", "/v1/segments/{id}") => Some("segment.put"),
        ("DELETE", "/v1/segments/{id}") => Some("segment.delete"),
        ("POST", "/v1/segments/preview") => Some("segment.preview"),
        ("GET", EXPORT_ROUTE) => Some("segment.export"),
        _ => None,
    };
    if let Some(name) = named {
        return name.to_owned();
    }
    if *method == Method::GET && required == Some(Scope::Admin) {
        return "admin.read".to_owned();
    }
    // A route without a name of its own: its literal segments and the method, e.g. `profiles.notes.put`.
    let mut parts: Vec<&str> = route
        .split('/')
        .filter(|s| !s.is_empty() && *s != "v1" && !s.starts_with('{'))
        .collect();
    let verb = method.as_str().to_ascii_lowercase();
    parts.push(&verb);
    parts.join(".")
}

/// The first path parameter's value (the profile, segment, trait or tag the route names).
fn path_target(route: &str, path: &str) -> Option<String> {
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(r, _)| r.starts_with('{'))
        .map(|(_, p)| p.to_owned())
}

/// The middleware (installed with `route_layer`, so the route template is known).
pub async fn record(
    State(state): State<Arc<AppState>>,
    route: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = route.map_or_else(|| path.clone(), |r| r.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_REQUEST_ID).collect::<String>());
    let response = next.run(request).await;
    let status = response.status();
    let call = slot.take();
    let Some(workspace) = call.workspace else {
        // Not authenticated with a token: nothing to attribute.
        return response;
    };
    let audited =
        call.required == Some(Scope::Admin) || method != Method::GET || route == EXPORT_ROUTE;
    // A refused flood is not an action; recording it would let a flood write to the log.
    if !audited || status == StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let entry = Entry {
        seq: 0,
        workspace,
        at: Utc::now().timestamp_millis(),
        actor: call.actor,
        scope: call.required.map_or("none", Scope::as_str).to_owned(),
        action: action_of(&method, &route, call.required),
        method: method.as_str().to_owned(),
        target: call.target.or_else(|| path_target(&route, &path)),
        path,
        status: i64::from(status.as_u16()),
        request_id,
    };
    let entry = entry.storable();
    if let Err(e) = append(&state.store, &entry).await {
        // An unrecorded call must not pass as done: the caller learns it failed (and may retry).
        tracing::error!(error = %e, action = %entry.action, "failed to write the audit log");
        let cause = format!("failed to write the audit log: {e}");
        return if cdp_domain::store::is_connection_error(&e) {
            crate::error::ApiError::unavailable(cause)
        } else {
            crate::error::ApiError::Internal(cause)
        }
        .into_response();
    }
    response
}

/// A row of the audit log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub seq: i64,
    pub workspace: String,
    pub at: i64,
    pub actor: String,
    pub scope: String,
    pub action: String,
    pub method: String,
    pub path: String,
    pub target: Option<String>,
    pub status: i64,
    pub request_id: Option<String>,
}

impl Entry {
    /// The entry with every NUL character of its texts written out as `\u0000`: a value a client sent
    /// (a path, a target) is recorded as sent, and PostgreSQL refuses text holding a NUL.
    fn storable(self) -> Self {
        let text = |s: String| {
            if s.contains('\0') {
                s.replace('\0', "\\u0000")
            } else {
                s
            }
        };
        Self {
            actor: text(self.actor),
            action: text(self.action),
            path: text(self.path),
            target: self.target.map(text),
            request_id: self.request_id.map(text),
            ..self
        }
    }

    fn json(&self) -> Value {
        json!({
            "seq": self.seq,
            "at": DateTime::<Utc>::from_timestamp_millis(self.at).map(|t| t.to_rfc3339()),
            "actor": self.actor,
            "scope": self.scope,
            "action": self.action,
            "method": self.method,
            "path": self.path,
            "target": self.target,
            "status": self.status,
            "request_id": self.request_id,
        })
    }
}

/// Appends one entry.
pub async fn append(store: &Store, e: &Entry) -> Result<(), sqlx::Error> {
    db::query(sql::INSERT)
        .bind(&e.workspace)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.scope)
        .bind(&e.action)
        .bind(&e.method)
        .bind(&e.path)
        .bind(&e.target)
        .bind(e.status)
        .bind(&e.request_id)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// What `GET /v1/audit` selects.
#[derive(Debug, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub oldest_first: bool,
    pub limit: i64,
}

/// The workspace's entries that pass `filter`, in the order it asks.
pub async fn query(
    store: &Store,
    workspace: &WorkspaceId,
    f: &Filter,
) -> Result<Vec<Entry>, sqlx::Error> {
    let mut text = String::from(sql::ENTRIES);
    let mut binds: Vec<Arg<'_>> = vec![workspace.as_str().into()];
    let conditions: [(&str, Option<Arg<'_>>); 6] = [
        (sql::AND_ACTION, f.action.as_deref().map(Arg::from)),
        (sql::AND_ACTOR, f.actor.as_deref().map(Arg::from)),
        (sql::AND_SINCE, f.since_ms.map(Arg::from)),
        (sql::AND_UNTIL, f.until_ms.map(Arg::from)),
        (sql::AND_AFTER, f.after.map(Arg::from)),
        (sql::AND_BEFORE, f.before.map(Arg::from)),
    ];
    for (condition, value) in conditions {
        if let Some(value) = value {
            text.push_str(condition);
            binds.push(value);
        }
    }
    text.push_str(if f.oldest_first {
        sql::OLDEST_FIRST
    } else {
        sql::NEWEST_FIRST
    });
    binds.push(f.limit.into());
    db::query(text)
        .bind_each(binds)
        .fetch_all(store.reader())
        .await
}

#[derive(Deserialize)]
struct ListQuery {
    action: Option<String>,
    actor: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    after: Option<i64>,
    before: Option<i64>,
    order: Option<String>,
}

fn instant(field: &'static str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_value",
                    field,
                    format!("{field} must be an RFC 3339 time: {e}"),
                )
            })
    })
    .transpose()
}

/// `GET /v1/audit`: the workspace's audit log, newest first (`order=asc`: oldest first), filtered by
/// `action`, `actor`, `since`/`until` (RFC 3339, inclusive) and the `after`/`before` sequence cursors;
/// `next` is the cursor of the following page (`before` newest first, `after` oldest first).
#[tracing::instrument(name = "audit.list", skip_all, fields(workspace = %principal.workspace))]
async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    let oldest_first = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "order",
                "order is asc or desc",
            ))
        }
    };
    let filter = Filter {
        action: q.action,
        actor: q.actor,
        since_ms: instant("since", q.since.as_deref())?,
        until_ms: instant("until", q.until.as_deref())?,
        after: q.after,
        before: q.before,
        oldest_first,
        limit,
    };
    let entries = query(&state.store, &principal.workspace, &filter)
        .await
        .map_err(ApiError::internal)?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({
        "items": entries.iter().map(Entry::json).collect::<Vec<_>>(),
        "order": if oldest_first { "asc" } else { "desc" },
        "next": next.map(|seq| if oldest_first { json!({"after": seq}) } else { json!({"before": seq}) }),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_by_route_and_method() {
        assert_eq!(
            action_of(&Method::POST, "/v1/identity/merge", Some(Scope::Admin)),
            "identity.merge"
        );
        assert_eq!(
            action_of(&Method::GET, EXPORT_ROUTE, Some(Scope::Read)),
            "segment.export"
        );
        assert_eq!(
            action_of(&Method::GET, "/v1/audit", Some(Scope::Admin)),
            "admin.read"
        );
        assert_eq!(
            action_of(&Method::PUT, "/v1/profiles/{id}/notes", Some(Scope::Write)),
            "profiles.notes.put"
        );
    }

    #[test]
    fn the_target_is_the_first_path_parameter() {
        assert_eq!(
            path_target("/v1/profiles/{id}/tags/{tag}", "/v1/profiles/p_1/tags/vip").as_deref(),
            Some("p_1")
        );
        assert_eq!(
            path_target("/v1/identity/merge", "/v1/identity/merge"),
            None
        );
    }
}
