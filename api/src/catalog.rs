//! The catalog API: computed traits (`/v1/traits/{name}`), tags (`/v1/tags/{name}`) and manual tags on a
//! profile (`/v1/profiles/{id}/tags/{tag}`). Changes are operator commands appended to the log and
//! applied by the resolver in their place; the handler waits for it and answers with the stored
//! definition and its backfill job. Reads show a definition with its job's progress and, for a tag, how
//! many profiles have each value and what they spent.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cdp_domain::catalog::{check_name, CatalogCommand, DefinedTrait};
use cdp_domain::computed::{DefinitionError, TraitDef};
use cdp_domain::event::from_millis;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{IdentityEvent, ProfileId};
use cdp_domain::message::rfc3339;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::tags::{cycle, TagDef};
use cdp_domain::workspace::Scope;
use cdp_projections::catalog::{self, Job, StoredDefinition, TAG, TRAIT};
use cdp_projections::identity;
use cdp_projections::jobs::FILLED_FROM_INDEX;
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Path;
use crate::operate::run_command;
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/traits", get(list_traits))
        .route(
            "/v1/traits/{name}",
            get(get_trait).put(put_trait).delete(delete_trait),
        )
        .route("/v1/tags", get(list_tags))
        .route(
            "/v1/tags/{name}",
            get(get_tag).put(put_tag).delete(delete_tag),
        )
        .route(
            "/v1/profiles/{id}/tags/{tag}",
            post(tag_profile).delete(untag_profile),
        )
}

pub(crate) fn definition_error(e: DefinitionError) -> ApiError {
    ApiError::bad_request(
        "invalid_definition",
        e.field.clone(),
        format!("invalid definition: {e}"),
    )
}

pub(crate) fn named(name: &str) -> Result<(), ApiError> {
    check_name(name).map_err(definition_error)
}

pub(crate) fn json_body(raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request("invalid_body", "", format!("the body is not JSON: {e}"))
    })
}

fn job_json(job: Option<&Job>) -> Value {
    match job {
        None => json!({"status": "ready"}),
        Some(j) => {
            let mut body = json!({
                "status": if j.status == "running" { "backfilling" } else { "ready" },
                "job": j.status,
                "profiles_done": j.done,
                "profiles_total": j.total.max(j.done),
                "started_at": rfc3339(from_millis(j.started_at)),
                "finished_at": j.finished_at.map(|t| rfc3339(from_millis(t))),
            });
            // A segment's members filled at once from the audience index: complete while the job
            // still backfills the hidden traits of its event conditions.
            if j.cursor.starts_with(FILLED_FROM_INDEX) {
                body["members_filled"] = json!(true);
            }
            body
        }
    }
}

pub(crate) async fn definition_json(
    state: &AppState,
    workspace: &WorkspaceId,
    kind: &str,
    d: &StoredDefinition,
) -> Result<Value, ApiError> {
    let job = catalog::latest_job(&state.store, workspace, kind, &d.name).await?;
    let mut body = json!({
        "name": d.name,
        "definition": d.body,
        "version": d.version,
        "defined_at": rfc3339(from_millis(d.defined_at)),
    });
    if let (Value::Object(b), Value::Object(j)) = (&mut body, job_json(job.as_ref())) {
        b.extend(j);
    }
    Ok(body)
}

pub(crate) async fn find(
    state: &AppState,
    workspace: &WorkspaceId,
    kind: &str,
    name: &str,
) -> Result<StoredDefinition, ApiError> {
    catalog::definitions(&state.store, workspace, kind)
        .await?
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no {kind} {name:?}")))
}

/// The definition in force when it is exactly `canonical`: putting it again changes nothing (and
/// starts no backfill).
pub(crate) async fn unchanged(
    state: &AppState,
    workspace: &WorkspaceId,
    kind: &str,
    name: &str,
    canonical: &Value,
) -> Result<Option<StoredDefinition>, ApiError> {
    Ok(catalog::definitions(&state.store, workspace, kind)
        .await?
        .into_iter()
        .find(|d| d.name == name && d.body.as_ref() == Some(canonical)))
}

/// Runs a catalog command: 200 once applied, 202 if not yet, 409 with the reason when refused.
pub(crate) async fn apply(
    state: &AppState,
    workspace: &WorkspaceId,
    command: CatalogCommand,
) -> Result<Option<String>, ApiError> {
    let (id, decisions) = run_command(state, workspace, command.name(), &command).await?;
    // This instance shows the new catalog at once; others within their cache's second.
    state.forget_catalog(workspace);
    match decisions {
        None => Ok(Some(id)),
        Some(d) => match d.first() {
            Some(IdentityEvent::CommandRejected { reason, .. }) => {
                Err(ApiError::conflict("command_rejected", reason.clone()))
            }
            _ => Ok(None),
        },
    }
}

pub(crate) fn pending(command_id: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "command_id": command_id,
            "status": "pending",
            "message": "the change is in the log and will be applied in order",
        })),
    )
}

#[tracing::instrument(name = "catalog.list_traits", skip_all, fields(workspace = %principal.workspace))]
async fn list_traits(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let mut items = Vec::new();
    for d in catalog::definitions(&state.store, &principal.workspace, TRAIT).await? {
        items.push(definition_json(&state, &principal.workspace, TRAIT, &d).await?);
    }
    Ok(Json(json!({"items": items})))
}

#[tracing::instrument(name = "catalog.get_trait", skip_all, fields(workspace = %principal.workspace))]
async fn get_trait(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let d = find(&state, &principal.workspace, TRAIT, &name).await?;
    Ok(Json(
        definition_json(&state, &principal.workspace, TRAIT, &d).await?,
    ))
}

#[tracing::instrument(name = "catalog.put_trait", skip_all, fields(workspace = %principal.workspace))]
async fn put_trait(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    named(&name)?;
    let definition = json_body(&raw)?;
    let def = TraitDef::parse(&definition).map_err(definition_error)?;
    if let Some(same) =
        unchanged(&state, &principal.workspace, TRAIT, &name, &def.to_json()).await?
    {
        return Ok((
            StatusCode::OK,
            Json(definition_json(&state, &principal.workspace, TRAIT, &same).await?),
        ));
    }
    let command = CatalogCommand::PutTrait {
        name: name.clone(),
        definition: def.to_json(),
        actor: principal.actor(),
    };
    if let Some(id) = apply(&state, &principal.workspace, command).await? {
        return Ok(pending(id));
    }
    let d = find(&state, &principal.workspace, TRAIT, &name).await?;
    Ok((
        StatusCode::OK,
        Json(definition_json(&state, &principal.workspace, TRAIT, &d).await?),
    ))
}

#[tracing::instrument(name = "catalog.delete_trait", skip_all, fields(workspace = %principal.workspace))]
async fn delete_trait(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    find(&state, &principal.workspace, TRAIT, &name).await?;
    let tags = catalog::definitions(&state.store, &principal.workspace, TAG).await?;
    for t in tags {
        let reads = t
            .body
            .as_ref()
            .and_then(|b| TagDef::parse(b).ok())
            .is_some_and(|def| def.inputs(&t.name).contains(&name));
        if reads {
            return Err(ApiError::conflict(
                "in_use",
                format!("tag {:?} reads {name:?}; change or delete it first", t.name),
            ));
        }
    }
    let command = CatalogCommand::DeleteTrait {
        name: name.clone(),
        actor: principal.actor(),
    };
    if let Some(id) = apply(&state, &principal.workspace, command).await? {
        return Ok(pending(id));
    }
    Ok((
        StatusCode::OK,
        Json(json!({"name": name, "status": "deleted"})),
    ))
}

/// How many live profiles have each value of `tag` and what they spent, in value order: from the
/// audience index's bitmaps when this process holds the workspace's (a population of a million is
/// then counted in milliseconds), else from the stored rows (`profile_tags` joined to `profile_spend`).
pub(crate) async fn tag_population(
    state: &AppState,
    workspace: &WorkspaceId,
    tag: &str,
) -> Result<Vec<catalog::TagValueStats>, ApiError> {
    let from_bitmaps = state
        .audiences
        .tag_values(&state.store, workspace, tag, Utc::now())
        .await?;
    let Some(values) = from_bitmaps else {
        return Ok(catalog::tag_stats(&state.store, workspace, tag).await?);
    };
    let mut stats: Vec<(String, catalog::TagValueStats)> = values
        .into_iter()
        .map(|(value, profiles, spend)| {
            let text = serde_json::to_string(&value).unwrap_or_default();
            let profiles = i64::try_from(profiles).unwrap_or(i64::MAX);
            (
                text,
                catalog::TagValueStats {
                    value,
                    profiles,
                    spend,
                },
            )
        })
        .collect();
    stats.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(stats.into_iter().map(|(_, s)| s).collect())
}

async fn tag_json(
    state: &AppState,
    workspace: &WorkspaceId,
    d: &StoredDefinition,
) -> Result<Value, ApiError> {
    let mut body = definition_json(state, workspace, TAG, d).await?;
    let stats = tag_population(state, workspace, &d.name).await?;
    let total: i64 = stats.iter().map(|s| s.profiles).sum();
    let spend: f64 = stats.iter().map(|s| s.spend).sum();
    body["values"] = stats
        .iter()
        .map(|s| {
            json!({
                "value": s.value,
                "profiles": s.profiles,
                "total_spend": s.spend,
                "average_spend": if s.profiles > 0 { s.spend / s.profiles as f64 } else { 0.0 },
            })
        })
        .collect();
    body["profiles"] = json!(total);
    body["total_spend"] = json!(spend);
    if let Some((version, at, t)) = catalog::thresholds(&state.store, workspace)
        .await?
        .remove(&d.name)
        .filter(|(version, _, _)| *version == d.version)
    {
        body["rfm_thresholds"] = json!({
            "recency_days": t.recency_days,
            "frequency": t.frequency,
            "monetary": t.monetary,
            "version": version,
            "computed_at": rfc3339(from_millis(at)),
        });
    }
    Ok(body)
}

#[tracing::instrument(name = "catalog.list_tags", skip_all, fields(workspace = %principal.workspace))]
async fn list_tags(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let mut items = Vec::new();
    for d in catalog::definitions(&state.store, &principal.workspace, TAG).await? {
        items.push(tag_json(&state, &principal.workspace, &d).await?);
    }
    Ok(Json(json!({"items": items})))
}

#[tracing::instrument(name = "catalog.get_tag", skip_all, fields(workspace = %principal.workspace))]
async fn get_tag(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let d = find(&state, &principal.workspace, TAG, &name).await?;
    Ok(Json(tag_json(&state, &principal.workspace, &d).await?))
}

#[tracing::instrument(name = "catalog.put_tag", skip_all, fields(workspace = %principal.workspace))]
async fn put_tag(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    named(&name)?;
    let definition = json_body(&raw)?;
    let def = TagDef::parse(&definition).map_err(definition_error)?;
    let ws = &principal.workspace;
    // A value tag buckets a computed trait the workspace defines.
    if let TagDef::Value { trait_name, .. } = &def {
        let traits = catalog::definitions(&state.store, ws, TRAIT).await?;
        if !traits.iter().any(|t| &t.name == trait_name) {
            return Err(ApiError::definition_conflict(
                "trait",
                format!("invalid definition: trait: no computed trait {trait_name:?}"),
            ));
        }
    }
    let mut defs: BTreeMap<String, TagDef> = BTreeMap::new();
    for t in catalog::definitions(&state.store, ws, TAG).await? {
        if let Some(def) = t.body.as_ref().and_then(|b| TagDef::parse(b).ok()) {
            defs.insert(t.name, def);
        }
    }
    defs.insert(name.clone(), def.clone());
    if let Some(path) = cycle(&defs, &name) {
        return Err(ApiError::definition_conflict(
            "condition",
            format!(
                "invalid definition: the tag reads itself: {}",
                path.join(" -> ")
            ),
        ));
    }
    if let Some(same) = unchanged(&state, ws, TAG, &name, &def.to_json()).await? {
        return Ok((StatusCode::OK, Json(tag_json(&state, ws, &same).await?)));
    }
    let command = CatalogCommand::PutTag {
        name: name.clone(),
        definition: def.to_json(),
        actor: principal.actor(),
    };
    if let Some(id) = apply(&state, ws, command).await? {
        return Ok(pending(id));
    }
    let d = find(&state, ws, TAG, &name).await?;
    Ok((StatusCode::OK, Json(tag_json(&state, ws, &d).await?)))
}

#[tracing::instrument(name = "catalog.delete_tag", skip_all, fields(workspace = %principal.workspace))]
async fn delete_tag(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Admin)?;
    find(&state, &principal.workspace, TAG, &name).await?;
    let command = CatalogCommand::DeleteTag {
        name: name.clone(),
        actor: principal.actor(),
    };
    if let Some(id) = apply(&state, &principal.workspace, command).await? {
        return Ok(pending(id));
    }
    Ok((
        StatusCode::OK,
        Json(json!({"name": name, "status": "deleted"})),
    ))
}

async fn manual_tag(
    state: &AppState,
    principal: &Principal,
    id: &str,
    tag: &str,
    value: Option<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Write)?;
    let ws = &principal.workspace;
    let d = find(state, ws, TAG, tag).await?;
    if d.body.as_ref().and_then(|b| TagDef::parse(b).ok()) != Some(TagDef::Manual) {
        return Err(ApiError::conflict(
            "not_manual",
            format!("{tag} is not a manual tag; only manual tags are set by hand"),
        ));
    }
    let survivor = identity::survivor_of(&state.store, ws, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    let profile_id = ProfileId::parse(&survivor).map_err(ApiError::internal)?;
    let command = match value {
        Some(value) => CatalogCommand::TagProfile {
            profile_id,
            tag: tag.to_owned(),
            value,
            actor: principal.actor(),
        },
        None => CatalogCommand::UntagProfile {
            profile_id,
            tag: tag.to_owned(),
            actor: principal.actor(),
        },
    };
    if let Some(id) = apply(state, ws, command).await? {
        return Ok(pending(id));
    }
    let tags = catalog::tags_of(&state.store, ws, &[survivor.as_str()]).await?;
    let now = tags
        .get(&survivor)
        .into_iter()
        .flatten()
        .find(|t| t.tag == tag)
        .map(|t| t.value.value.clone());
    Ok((
        StatusCode::OK,
        Json(json!({"profile_id": survivor, "tag": tag, "value": now})),
    ))
}

#[tracing::instrument(name = "catalog.tag_profile", skip_all, fields(workspace = %principal.workspace))]
async fn tag_profile(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((id, tag)): Path<(String, String)>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = json_body(&raw)?;
    let value = match body {
        Value::Null => Value::Bool(true),
        Value::Object(mut o) => match o.remove("value") {
            None | Some(Value::Null) => Value::Bool(true),
            Some(v @ (Value::String(_) | Value::Bool(_) | Value::Number(_))) => v,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_value",
                    "value",
                    "value must be a string, number or boolean",
                ))
            }
        },
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "",
                "the body is an object such as {\"value\": \"gold\"}, or empty",
            ))
        }
    };
    manual_tag(&state, &principal, &id, &tag, Some(value)).await
}

#[tracing::instrument(name = "catalog.untag_profile", skip_all, fields(workspace = %principal.workspace))]
async fn untag_profile(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((id, tag)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    manual_tag(&state, &principal, &id, &tag, None).await
}

/// The computed traits and tags of a profile as `GET /v1/profiles/{id}` shows them.
pub async fn profile_sections(
    state: &AppState,
    workspace: &WorkspaceId,
    doc: &ProfileDoc,
    stored_tags: &[catalog::ProfileTag],
) -> Result<(Value, Value), ApiError> {
    let traits: BTreeMap<String, DefinedTrait> = state
        .catalog(workspace)
        .await?
        .folded()
        .iter()
        .filter(|(name, _)| cdp_domain::catalog::Catalog::is_visible(name))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let computed: serde_json::Map<String, Value> = doc
        .computed_values(&traits, Utc::now())
        .into_iter()
        .map(|(name, v)| {
            (
                name,
                json!({
                    "value": v.value,
                    "complete": v.complete,
                    "last_event_at": v.last_event_at.map(rfc3339),
                }),
            )
        })
        .collect();
    let tags: serde_json::Map<String, Value> = stored_tags
        .iter()
        .map(|t| {
            let mut v = json!({
                "value": t.value.value,
                "manual": t.manual,
                "changed_at": rfc3339(from_millis(t.changed_at)),
                "caused_by": t.caused_by,
            });
            if !t.value.detail.is_null() {
                v["detail"] = t.value.detail.clone();
            }
            (t.tag.clone(), v)
        })
        .collect();
    Ok((Value::Object(computed), Value::Object(tags)))
}
