//! The operators' identity API: manual merges, splits and rules changes. Each is appended to the log as an
//! operator command (so it takes its place in the global order, is replayed like any event and leaves an
//! audit trail) and decided by the resolver there; the handler waits for the decision and answers with it.
//! `PUT /v1/identity/rules?dry_run=true` re-resolves the workspace's log into a shadow and changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use cdp_domain::event::{NewEvent, Position};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{
    rules_diff, Identifier, IdentityEvent, IdentityRules, OperatorCommand, ProfileId, RulesDiff,
};
use cdp_domain::message::MessageKind;
use cdp_domain::workspace::Scope;
use cdp_projections::identity::{self, workspace_log, IdentityResolver};
use cdp_projections::runner::has_applied;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Query;
use crate::AppState;

/// How long a request waits for the resolver to decide its command before answering 202.
const DECISION_WAIT: Duration = Duration::from_secs(20);
const MAX_REASON: usize = 1_000;
const MAX_PROFILES: usize = 100;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/identity/merge", post(merge))
        .route("/v1/identity/split", post(split))
        .route("/v1/identity/rules", put(put_rules))
}

/// The JSON body, or a 400 naming what is wrong with it.
pub fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(raw).map_err(|e| {
        let field = e
            .to_string()
            .split('`')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        ApiError::bad_request("invalid_body", field, format!("invalid request body: {e}"))
    })
}

fn reason_of(reason: Option<String>) -> Result<String, ApiError> {
    let reason = reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad_request(
            "invalid_value",
            "reason",
            format!("reason is longer than {MAX_REASON} characters"),
        ));
    }
    Ok(reason)
}

/// The log event of an operator command, under a new message id.
pub fn command_event(
    workspace: &WorkspaceId,
    name: &str,
    command: &impl serde::Serialize,
) -> NewEvent {
    let message_id = format!("op_{}", uuid::Uuid::new_v4().simple());
    let mut payload = serde_json::to_value(command).unwrap_or_else(|_| json!({}));
    payload["type"] = json!("operator");
    payload["messageId"] = json!(message_id);
    let now = Utc::now();
    NewEvent {
        workspace: workspace.as_str().to_owned(),
        message_id,
        kind: MessageKind::Operator,
        name: Some(name.to_owned()),
        user_id: None,
        anonymous_id: None,
        event_time: now,
        received_at: now,
        payload: payload.to_string(),
    }
}

/// Appends `command` to the log and waits for the resolver's decisions on it; `None` when it has not
/// decided within [`DECISION_WAIT`] (it will, in log order).
pub async fn run_command(
    state: &AppState,
    workspace: &WorkspaceId,
    name: &str,
    command: &impl serde::Serialize,
) -> Result<(String, Option<Vec<IdentityEvent>>), ApiError> {
    let event = command_event(workspace, name, command);
    let message_id = event.message_id.clone();
    state.appender.append(vec![event]).await?;
    for waker in &state.wakers {
        waker.notify_one();
    }
    let started = Instant::now();
    while started.elapsed() < DECISION_WAIT {
        if has_applied(&state.store, IdentityResolver::NAME, workspace, &message_id).await? {
            let decisions = identity::caused_by(&state.store, workspace, &message_id).await?;
            return Ok((
                message_id,
                Some(decisions.into_iter().map(|d| d.event).collect()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((message_id, None))
}

/// The answer to a command: 409 when the resolver refused it, 202 when it has not decided yet.
pub fn answer(
    command_id: &str,
    decisions: Option<Vec<IdentityEvent>>,
    ok: impl FnOnce(&[IdentityEvent]) -> Value,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(decisions) = decisions else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "command_id": command_id,
                "status": "pending",
                "message": "the command is in the log and will be applied in order",
            })),
        ));
    };
    if let Some(IdentityEvent::CommandRejected { reason, .. }) = decisions.first() {
        return Err(ApiError::conflict("command_rejected", reason.clone()));
    }
    let mut body = ok(&decisions);
    body["command_id"] = json!(command_id);
    body["status"] = json!("applied");
    body["decisions"] = serde_json::to_value(&decisions).map_err(ApiError::internal)?;
    Ok((StatusCode::OK, Json(body)))
}

#[derive(Deserialize)]
struct MergeRequest {
    profile_ids: Vec<String>,
    reason: Option<String>,
}

#[tracing::instrument(name = "operate.merge", skip_all, fields(workspace = %principal.workspace))]
async fn merge(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let request: MergeRequest = body(&raw)?;
    principal.audit_target(&request.profile_ids.join(","));
    if request.profile_ids.len() < 2 || request.profile_ids.len() > MAX_PROFILES {
        return Err(ApiError::bad_request(
            "invalid_value",
            "profile_ids",
            format!("profile_ids must name 2 to {MAX_PROFILES} profiles"),
        ));
    }
    let mut profile_ids = Vec::with_capacity(request.profile_ids.len());
    for (i, raw) in request.profile_ids.iter().enumerate() {
        let field = format!("profile_ids[{i}]");
        let id = ProfileId::parse(raw)
            .map_err(|e| ApiError::bad_request("invalid_value", field.clone(), e.to_string()))?;
        if identity::survivor_of(&state.store, &principal.workspace, raw)
            .await?
            .is_none()
        {
            return Err(ApiError::Client {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                field,
                message: format!("no profile {raw:?}"),
            });
        }
        profile_ids.push(id);
    }
    let command = OperatorCommand::Merge {
        profile_ids,
        reason: reason_of(request.reason)?,
        actor: principal.actor(),
    };
    let (id, decisions) =
        run_command(&state, &principal.workspace, command.name(), &command).await?;
    answer(&id, decisions, |decisions| {
        let mut survivor = None;
        let mut absorbed = Vec::new();
        for d in decisions {
            if let IdentityEvent::ProfilesMerged {
                survivor: s,
                absorbed: a,
                ..
            } = d
            {
                survivor = Some(s.clone());
                absorbed.push(a.clone());
            }
        }
        json!({"profile_id": survivor, "merged": absorbed})
    })
}

#[derive(Deserialize)]
struct SplitRequest {
    profile_id: String,
    identifiers: Vec<Identifier>,
    reason: Option<String>,
}

#[tracing::instrument(name = "operate.split", skip_all, fields(workspace = %principal.workspace))]
async fn split(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let request: SplitRequest = body(&raw)?;
    principal.audit_target(&request.profile_id);
    let profile_id = ProfileId::parse(&request.profile_id)
        .map_err(|e| ApiError::bad_request("invalid_value", "profile_id", e.to_string()))?;
    if identity::survivor_of(&state.store, &principal.workspace, profile_id.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::Client {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: "profile_id".into(),
            message: format!("no profile {profile_id}"),
        });
    }
    if request.identifiers.is_empty() || request.identifiers.len() > 1_000 {
        return Err(ApiError::bad_request(
            "invalid_value",
            "identifiers",
            "identifiers must name 1 to 1000 identifiers",
        ));
    }
    let command = OperatorCommand::Split {
        profile_id,
        identifiers: request.identifiers,
        reason: reason_of(request.reason)?,
        actor: principal.actor(),
    };
    let (id, decisions) =
        run_command(&state, &principal.workspace, command.name(), &command).await?;
    answer(&id, decisions, |decisions| match decisions.first() {
        Some(IdentityEvent::ProfileSplit {
            from,
            into,
            identifiers,
            ..
        }) => json!({"profile_id": into, "from": from, "identifiers": identifiers}),
        _ => json!({}),
    })
}

#[derive(Deserialize)]
struct RulesQuery {
    dry_run: Option<bool>,
}

/// JSON does not tell `3` from `3.0` (an integer in JSON Schema's sense): every number with no fraction
/// becomes an integer before the rules are read.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                *value = json!(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

fn check_rules(rules: &IdentityRules) -> Result<(), ApiError> {
    for (name, rule) in &rules.types {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("types.{name}"),
                "an identifier type is 1-64 of a-z, 0-9 and _",
            ));
        }
        if rule.limit == 0 {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("types.{name}.limit"),
                "a limit is at least 1",
            ));
        }
    }
    if rules.max_merges == 0 || rules.max_identifiers == 0 {
        return Err(ApiError::bad_request(
            "invalid_value",
            if rules.max_merges == 0 {
                "max_merges"
            } else {
                "max_identifiers"
            },
            "the caps are at least 1",
        ));
    }
    Ok(())
}

fn diff_json(diff: &RulesDiff) -> Value {
    json!({
        "merges": diff.merges.iter().map(|m| json!({
            "profiles": m.profiles,
            "identifiers": m.identifiers,
        })).collect::<Vec<_>>(),
        "splits": diff.splits.iter().map(|s| json!({
            "profile": s.profile,
            "stays": s.stays,
            "leave": s.leave,
        })).collect::<Vec<_>>(),
    })
}

/// Replaces the workspace's identity rules. With `dry_run=true` answers what they would change in the
/// existing profiles and stores nothing; otherwise, unless they are the rules in force, appends them as
/// a rules command: the resolver puts them in force (a new version) in their place in the log and
/// applies the changes retroactively as identity events. The answer shows the rules it stored.
#[tracing::instrument(name = "operate.put_rules", skip_all, fields(workspace = %principal.workspace))]
async fn put_rules(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<RulesQuery>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    let mut value: Value = body(&raw)?;
    integral_numbers(&mut value);
    if let Some(object) = value.as_object_mut() {
        // The version is ours to give.
        object.entry("version").or_insert(json!(0));
    }
    let rules: IdentityRules = serde_json::from_value(value).map_err(|e| {
        ApiError::bad_request("invalid_body", "", format!("invalid identity rules: {e}"))
    })?;
    check_rules(&rules)?;
    let ws = &principal.workspace;
    if q.dry_run.unwrap_or(false) {
        let graph = identity::graph_of(&state.store, ws).await?;
        let log = workspace_log(&state.store, ws, Position::END, &rules).await?;
        let diff = rules_diff(&graph, &rules, &log);
        return Ok((
            StatusCode::OK,
            Json(
                json!({"dry_run": true, "events_resolved": log.len(), "changes": diff_json(&diff)}),
            ),
        ));
    }
    let before = identity::rules_of(&state.store, ws).await?;
    let Some(next) = identity::rules_after(&before, rules) else {
        let rules_json = serde_json::to_value(&before).map_err(ApiError::internal)?;
        return Ok((
            StatusCode::OK,
            Json(json!({"rules": rules_json, "changed": false})),
        ));
    };
    // Only the resolver writes the rules in force, when it decides the command (its version is the
    // resolver's to give; `next` names the one it will give unless another change comes first).
    let command = OperatorCommand::Rules {
        rules: next,
        actor: principal.actor(),
    };
    let (id, decisions) = run_command(&state, ws, command.name(), &command).await?;
    let rules_json = match decisions {
        Some(_) => {
            let stored = identity::rules_of(&state.store, ws).await?;
            serde_json::to_value(&stored).map_err(ApiError::internal)?
        }
        None => Value::Null,
    };
    answer(&id, decisions, |decisions| {
        let merges = decisions
            .iter()
            .filter(|d| matches!(d, IdentityEvent::ProfilesMerged { .. }))
            .count();
        let splits = decisions
            .iter()
            .filter(|d| matches!(d, IdentityEvent::ProfileSplit { .. }))
            .count();
        json!({"rules": rules_json, "changed": true, "merges": merges, "splits": splits})
    })
}
