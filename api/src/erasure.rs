//! Erasure at the edge: `DELETE /v1/profiles/{id}` and `DELETE /v1/profiles/lookup?type=&value=` (admin)
//! erase a person through `cdp_projections::erasure`; the audit middleware records who asked.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::delete;
use axum::{Json, Router};
use cdp_domain::identity::ProfileId;
use cdp_domain::workspace::Scope;
use cdp_projections::erasure;
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::read::{holder_of, LookupQuery};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/profiles/lookup", delete(erase_by_identifier))
        .route("/v1/profiles/{id}", delete(erase_by_id))
}

#[tracing::instrument(name = "erasure.erase_by_id", skip_all, fields(workspace = %principal.workspace))]
async fn erase_by_id(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    let profile =
        ProfileId::parse(&id).map_err(|_| ApiError::not_found(format!("no profile {id:?}")))?;
    erase(&state, &principal, &profile).await
}

#[tracing::instrument(name = "erasure.erase_by_identifier", skip_all, fields(workspace = %principal.workspace))]
async fn erase_by_identifier(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<LookupQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Admin)?;
    // The identifier is never echoed back: the answer names the pseudonymous profile id only.
    let (holder, _, _) = holder_of(&state, &principal.workspace, q).await?;
    let profile = ProfileId::parse(&holder).map_err(ApiError::internal)?;
    erase(&state, &principal, &profile).await
}

async fn erase(
    state: &AppState,
    principal: &Principal,
    profile: &ProfileId,
) -> Result<Json<Value>, ApiError> {
    let report = erasure::erase(
        &state.store,
        &principal.workspace,
        profile,
        &principal.actor(),
        Utc::now(),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no profile {:?}", profile.as_str())))?;
    for other in &report.affected {
        // Re-folded from the events it can still read, and re-evaluated by the resolver.
        cdp_replay::rebuild_profile(&state.store, &principal.workspace, other.as_str()).await?;
    }
    // Nothing of the person is answered from memory once the answer is sent (another instance's
    // views follow within the watcher's period).
    state.views.clear(None);
    tracing::info!(
        workspace = %principal.workspace,
        profile = %report.profile,
        events = report.events,
        keys = report.keys,
        "profile erased"
    );
    Ok(Json(json!({
        "erased": true,
        "erasure": report.seq,
        "profile_id": report.profile.as_str(),
        "profiles": report.profiles.iter().map(ProfileId::as_str).collect::<Vec<_>>(),
        "events": report.events,
        "keys_destroyed": report.keys,
        "segments_left": report.segments,
        "profiles_refolded": report.affected.iter().map(ProfileId::as_str).collect::<Vec<_>>(),
    })))
}
