//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::{Gauges, ProjectionGauges};
use crate::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

#[tracing::instrument(name = "ops.healthz", skip_all)]
async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers (within two seconds, and no outage is ongoing) and, if NATS is
/// configured, the NATS connection is up. The audience index is reported beside (`audience_index`),
/// not required: without it previews answer from the exact path.
#[tracing::instrument(name = "ops.readyz", skip_all)]
async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let database = !state.outage.ongoing()
        && tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping())
            .await
            .is_ok_and(|ping| ping.is_ok());
    let nats = state
        .nats
        .as_ref()
        .map(|client| client.connection_state() == async_nats::connection::State::Connected);
    let ready = database && nats.unwrap_or(true);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let audience = state.audiences.status();
    let partitions = partitions(&state, database).await;
    let workspaces: serde_json::Map<String, serde_json::Value> = audience
        .built
        .iter()
        .map(|(w, b)| {
            (
                w.clone(),
                json!({"profiles": b.profiles, "built_at": cdp_domain::message::rfc3339(b.at),
                       "build_seconds": b.seconds}),
            )
        })
        .collect();
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "database": database,
            "nats": nats,
            "partitions": partitions,
            "audience_index": {
                "ready": audience.started && audience.building.is_none(),
                "building": audience.building,
                "workspaces": workspaces,
            },
        })),
    )
}

/// Who runs the engine's partitions: the ones this instance runs, and every lease as stored (when the
/// database answers), so any instance shows the whole ownership.
async fn partitions(state: &AppState, database: bool) -> serde_json::Value {
    let owned = state.identity.owned();
    let now = chrono::Utc::now().timestamp_millis();
    let leases = if database {
        let read = cdp_projections::lease::holders(&state.store);
        match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
            Ok(Ok(holders)) => json!(holders
                .iter()
                .map(
                    |h| json!({"partition": h.part, "owner": h.owner, "fence": h.fence,
                                "live": h.live_at(now)})
                )
                .collect::<Vec<_>>()),
            _ => serde_json::Value::Null,
        }
    } else {
        serde_json::Value::Null
    };
    json!({"instance": state.instance, "owned": owned, "leases": leases})
}

#[tracing::instrument(name = "ops.metrics", skip_all)]
async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let stats = state.appender.stats();
    let projection = |name: &'static str, p: &cdp_projections::RunnerStatus| ProjectionGauges {
        name,
        applied: p.applied.load(Ordering::Relaxed),
        lag_seconds: p.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        errors: p.errors.load(Ordering::Relaxed),
    };
    let gauges = Gauges {
        stored: stats.inserted.load(Ordering::Relaxed),
        duplicates: stats.duplicates.load(Ordering::Relaxed),
        commits: stats.commits.load(Ordering::Relaxed),
        projections: vec![projection("identity", &state.identity)],
        database_unavailable_seconds: state.outage.unavailable_seconds(),
        database_outages: state.outage.count(),
        database_available: !state.outage.ongoing(),
        audience: state.audiences.status(),
        profile_views: state.views.hits_and_misses(),
        instance: state.instance.clone(),
        partitions_owned: state.identity.owned().len() as u64,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&gauges),
    )
}

#[tracing::instrument(name = "ops.openapi", skip_all)]
async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
