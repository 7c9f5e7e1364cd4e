//! Consent at the edges. `PUT /v1/profiles/{id}/consent` records a choice as a customer fact (a
//! `Segment Consent Preference Updated` message of the profile, through the same validation and log as
//! any message, so rebuilds and splits keep it); `GET` shows where the profile stands.
//!
//! [`reachable_of`] (and [`reachable_in`], for a profile already loaded) is the one place every output
//! asks which channels a profile may be reached on: the outbox publisher ([`gate`]: every NATS message
//! and every in-process bus message, hence `/v1/stream`, carries `reachable`), and segment exports with
//! `channel=` (only consenting members, from the document the export loads for its columns). Both
//! apply `Consents::reaches` under the consent policy in force in the engine's catalog — the rule and
//! the policy segment conditions on consent are evaluated with, so a segment "reachable by SMS" holds
//! exactly the members the SMS export keeps (those with a phone).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use axum::{Json, Router};
use cdp_domain::consent::{
    Basis, ConsentPolicy, CHANNELS, CONSENT_EVENT, DEFAULT_PURPOSE, PURPOSES,
};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;
use cdp_domain::workspace::Scope;
use cdp_projections::identity::{self, IdentityResolver};
use cdp_projections::outbox::OutMessage;
use cdp_projections::profiles;
use cdp_projections::runner::{has_applied, ProjectionError};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::Path;
use crate::ingest::{self, Source};
use crate::AppState;

/// How long a consent change waits for the resolver before answering 202.
const APPLY_WAIT: Duration = Duration::from_secs(20);
const MAX_SOURCE: usize = 200;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route(
        "/v1/profiles/{id}/consent",
        put(put_consent).get(get_consent),
    )
}

/// The reachable channels as outputs record them: `reachable` (the channels) and `reachable_by`
/// (each one's basis: `granted`, or `opt_out_policy` when nobody chose and the workspace's policy
/// makes the channel opt-out).
pub fn reachable_json(reachable: &[(&'static str, Basis)]) -> (Value, Value) {
    let channels: Vec<&str> = reachable.iter().map(|(c, _)| *c).collect();
    let by: serde_json::Map<String, Value> = reachable
        .iter()
        .map(|(c, b)| ((*c).to_owned(), json!(b.as_str())))
        .collect();
    (json!(channels), Value::Object(by))
}

/// The channels each of these profiles may be reached on for `purpose`, each with its basis, under
/// the consent policy in force in their workspace (the engine's, which segment conditions read too).
/// A profile without a document (merged away, unknown) is reachable nowhere.
pub async fn reachable_of(
    store: &Store,
    keys: &[(String, String)],
    purpose: &str,
) -> Result<HashMap<(String, String), Vec<(&'static str, Basis)>>, ProjectionError> {
    let mut parsed = Vec::with_capacity(keys.len());
    let mut policies: HashMap<String, ConsentPolicy> = HashMap::new();
    for (w, p) in keys {
        if let Ok(id) = cdp_domain::identity::ProfileId::parse(p) {
            if !policies.contains_key(w) {
                let ws = WorkspaceId::parse(w).map_err(ProjectionError::corrupt)?;
                let in_force = cdp_projections::catalog::consent_policy(store, &ws).await?;
                policies.insert(w.clone(), in_force.policy);
            }
            parsed.push((w.clone(), id));
        }
    }
    let docs = profiles::load_many(store, &parsed).await?;
    let mut out: HashMap<(String, String), Vec<(&'static str, Basis)>> = docs
        .into_iter()
        .map(|((w, p), doc)| {
            let reachable = policies
                .get(&w)
                .map(|policy| reachable_in(&doc, policy, purpose))
                .unwrap_or_default();
            ((w, p.to_string()), reachable)
        })
        .collect();
    for key in keys {
        out.entry(key.clone()).or_default();
    }
    Ok(out)
}

/// [`reachable_of`] for a profile already loaded: the channels `doc` may be reached on for `purpose`
/// under its workspace's `policy` (the catalog's), with the basis of each — `Consents::reaches`, the
/// rule segment conditions and the audience index apply.
pub fn reachable_in(
    doc: &cdp_domain::profile::ProfileDoc,
    policy: &ConsentPolicy,
    purpose: &str,
) -> Vec<(&'static str, Basis)> {
    doc.consent.reachable_by(purpose, policy)
}

/// Sets `reachable` (the channels the profile may be reached on for marketing) on every message of the
/// page that is about a profile. Every message leaves through here.
pub async fn gate(store: &Store, page: Vec<OutMessage>) -> anyhow::Result<Vec<OutMessage>> {
    let mut payloads = Vec::with_capacity(page.len());
    let mut keys = Vec::new();
    for m in &page {
        let payload: Value = serde_json::from_str(&m.payload)?;
        if let Some(p) = payload.get("profile_id").and_then(Value::as_str) {
            keys.push((m.workspace.clone(), p.to_owned()));
        }
        payloads.push(payload);
    }
    keys.sort();
    keys.dedup();
    let reachable = reachable_of(store, &keys, DEFAULT_PURPOSE).await?;
    Ok(page
        .into_iter()
        .zip(payloads)
        .map(|(mut m, mut payload)| {
            if let Some(p) = payload.get("profile_id").and_then(Value::as_str) {
                let channels = reachable
                    .get(&(m.workspace.clone(), p.to_owned()))
                    .cloned()
                    .unwrap_or_default();
                let (channels, by) = reachable_json(&channels);
                payload["reachable"] = channels;
                payload["reachable_by"] = by;
                m.payload = payload.to_string();
            }
            m
        })
        .collect())
}

/// `channel`, or a 400 naming the field.
pub fn channel_param(channel: &str, field: &str) -> Result<&'static str, ApiError> {
    CHANNELS.into_iter().find(|c| *c == channel).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_value",
            field,
            format!("{field} must be one of {}", CHANNELS.join(", ")),
        )
    })
}

/// `purpose` (marketing when absent), or a 400 naming the field.
pub fn purpose_param(purpose: Option<&str>, field: &str) -> Result<&'static str, ApiError> {
    let purpose = purpose.unwrap_or(DEFAULT_PURPOSE);
    PURPOSES.into_iter().find(|p| *p == purpose).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_value",
            field,
            format!("{field} must be one of {}", PURPOSES.join(", ")),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    channel: String,
    purpose: Option<String>,
    granted: bool,
    source: Option<String>,
}

/// Where the profile stands, and the channels it may be reached on per purpose (with each one's basis)
/// under the workspace's policy.
fn consent_json(
    profile: &str,
    doc: &cdp_domain::profile::ProfileDoc,
    policy: &ConsentPolicy,
) -> Value {
    let mut reachable = serde_json::Map::new();
    let mut reachable_by = serde_json::Map::new();
    for p in PURPOSES {
        let (channels, by) = reachable_json(&doc.consent.reachable_by(p, policy));
        reachable.insert(p.to_owned(), channels);
        reachable_by.insert(p.to_owned(), by);
    }
    json!({"profile_id": profile, "consent": doc.consent.view(), "reachable": reachable,
           "reachable_by": reachable_by})
}

async fn live_profile(
    state: &AppState,
    workspace: &WorkspaceId,
    id: &str,
) -> Result<(String, cdp_domain::profile::ProfileDoc), ApiError> {
    let survivor = identity::survivor_of(&state.store, workspace, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    let doc = profiles::load(&state.store, workspace, &survivor)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile {id:?}")))?;
    Ok((survivor, doc))
}

#[tracing::instrument(name = "consent.get_consent", skip_all, fields(workspace = %principal.workspace))]
async fn get_consent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let (profile, doc) = live_profile(&state, &principal.workspace, &id).await?;
    let in_force =
        cdp_projections::catalog::consent_policy(&state.store, &principal.workspace).await?;
    Ok(Json(consent_json(&profile, &doc, &in_force.policy)))
}

/// Records a choice for the profile: as a message of each identity whose choice it must replace (a
/// grant overrides every identity that revoked; a revoke needs one), answered once the resolver has
/// folded it (202 if not within 20 s).
#[tracing::instrument(name = "consent.put_consent", skip_all, fields(workspace = %principal.workspace))]
async fn put_consent(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    principal.require(Scope::Write)?;
    let body: ConsentBody = crate::operate::body(&raw)?;
    let channel = channel_param(&body.channel, "channel")?;
    let purpose = purpose_param(body.purpose.as_deref(), "purpose")?;
    let source = body.source.unwrap_or_else(|| "api".to_owned());
    if source.chars().count() > MAX_SOURCE {
        return Err(ApiError::bad_request(
            "invalid_value",
            "source",
            format!("source is longer than {MAX_SOURCE} characters"),
        ));
    }
    let ws = principal.workspace.clone();
    let (profile, doc) = live_profile(&state, &ws, &id).await?;
    // The identities to speak for: the profile's user id (else another identifier it holds), and
    // for a grant every identity that revoked.
    let primary = doc
        .linked
        .iter()
        .find(|i| i.id_type == "user_id")
        .or_else(|| doc.linked.iter().find(|i| i.id_type == "anonymous_id"))
        .or_else(|| doc.linked.first())
        .cloned()
        .ok_or_else(|| {
            ApiError::conflict(
                "no_identifier",
                "the profile holds no identifier to record consent for",
            )
        })?;
    let mut speakers = vec![primary];
    if body.granted {
        if let Some(subjects) = doc.consent.0.get(&format!("{channel}:{purpose}")) {
            for (subject, choice) in subjects {
                if let (false, Some((t, v))) = (choice.granted, subject.split_once(':')) {
                    let id = cdp_domain::identity::Identifier::new(t, v);
                    if !speakers.contains(&id) {
                        speakers.push(id);
                    }
                }
            }
        }
    }
    let now = Utc::now();
    let mut messages = Vec::with_capacity(speakers.len());
    for who in &speakers {
        let mut m = json!({
            "type": "track",
            "event": CONSENT_EVENT,
            "messageId": format!("consent_{}", uuid::Uuid::new_v4().simple()),
            "timestamp": cdp_domain::message::rfc3339(now),
            "context": {"consent": {"categoryPreferences": {format!("{channel}:{purpose}"): body.granted},
                                    "source": source}},
            "properties": {"source": source, "actor": principal.actor()},
        });
        match who.id_type.as_str() {
            "user_id" => m["userId"] = json!(who.value),
            "anonymous_id" => m["anonymousId"] = json!(who.value),
            // A stored phone is its digits with the country code: written with `+`, read as such in
            // any region.
            "phone" => m["context"]["traits"] = json!({ "phone": format!("+{}", who.value) }),
            other => m["context"]["traits"] = json!({ other: who.value }),
        }
        messages.push(m.to_string());
    }
    let checked = ingest::check(
        &ws,
        state.phone_region(&ws),
        messages.iter().map(String::as_str),
        None,
        None,
        now,
    );
    if let Some(refused) = checked.rejected.first() {
        return Err(ApiError::bad_request(
            refused.error.code,
            refused.error.field.clone(),
            refused.error.message.clone(),
        ));
    }
    let ids: Vec<String> = checked
        .events
        .iter()
        .map(|e| e.message_id.clone())
        .collect();
    ingest::commit(&state, Some(&ws), checked, Source::Http).await?;
    let started = Instant::now();
    while started.elapsed() < APPLY_WAIT {
        let mut applied = true;
        for id in &ids {
            applied &= has_applied(&state.store, IdentityResolver::NAME, &ws, id).await?;
        }
        if applied {
            let (profile, doc) = live_profile(&state, &ws, &profile).await?;
            let in_force = cdp_projections::catalog::consent_policy(&state.store, &ws).await?;
            let body = consent_json(&profile, &doc, &in_force.policy);
            return Ok((StatusCode::OK, Json(body)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"profile_id": profile, "status": "pending", "message_ids": ids})),
    ))
}
