//! While the database is out of reach: the outage is noted at the first request (HTTP or NATS) that
//! could not reach it, every `/v1/` call is answered 503 with `Retry-After` at once instead of waiting
//! for the pool's timeout, `/readyz` says not ready, and a probe pings the database until it answers
//! again. `/metrics` counts the seconds spent unavailable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, DatabaseUnreachable};
use crate::AppState;

/// How often the probe pings while the database is away, and how long one ping may take.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The database's availability as requests found it.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the current outage began; `None` while the database answers.
    since: Mutex<Option<Instant>>,
    /// Whole outages so far, in microseconds.
    past_micros: AtomicU64,
    outages: AtomicU64,
    probing: AtomicBool,
}

impl Outage {
    /// Whether the database is out of reach now.
    pub fn ongoing(&self) -> bool {
        self.since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Seconds spent unavailable since the start, the current outage included.
    pub fn unavailable_seconds(&self) -> f64 {
        let current = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(Duration::ZERO, |since| since.elapsed());
        Duration::from_micros(self.past_micros.load(Ordering::Relaxed)).as_secs_f64()
            + current.as_secs_f64()
    }

    /// How many outages began since the start.
    pub fn count(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// Notes that the database could not be reached; true when this began an outage.
    fn begin(&self, now: Instant) -> bool {
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        if since.is_some() {
            return false;
        }
        *since = Some(now);
        self.outages.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Notes that the database answers again; the outage's length when one was ongoing.
    fn end(&self, now: Instant) -> Option<Duration> {
        let mut since = self.since.lock().unwrap_or_else(PoisonError::into_inner);
        let began = since.take()?;
        let lasted = now.saturating_duration_since(began);
        self.past_micros
            .fetch_add(lasted.as_micros() as u64, Ordering::Relaxed);
        Some(lasted)
    }
}

/// Notes an outage (once) and starts the probe that ends it when the database answers again.
pub fn database_unreachable(state: &Arc<AppState>) {
    if state.outage.begin(Instant::now()) {
        tracing::warn!(
            "the database is out of reach: ingestion and the API answer 503 until it answers again"
        );
    }
    if state.outage.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROBE_EVERY).await;
            let answered = tokio::time::timeout(PROBE_TIMEOUT, state.store.ping())
                .await
                .is_ok_and(|ping| ping.is_ok());
            if answered {
                break;
            }
        }
        state.outage.probing.store(false, Ordering::Release);
        if let Some(lasted) = state.outage.end(Instant::now()) {
            tracing::info!(
                seconds = lasted.as_secs_f64(),
                "the database answers again: the outage is over"
            );
        }
    });
}

/// The middleware around every route: while an outage lasts a `/v1/` call is answered 503 at once;
/// a response that found the database out of reach begins one.
pub async fn watch(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.outage.ongoing() && request.uri().path().starts_with("/v1/") {
        return ApiError::unavailable("an outage of the database is ongoing").into_response();
    }
    let response = next.run(request).await;
    if response.extensions().get::<DatabaseUnreachable>().is_some() {
        database_unreachable(&state);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_counted_once_and_its_seconds_add_up() {
        let outage = Outage::default();
        let t0 = Instant::now();
        assert!(!outage.ongoing());
        assert!(outage.begin(t0));
        assert!(
            !outage.begin(t0 + Duration::from_secs(1)),
            "already ongoing"
        );
        assert!(outage.ongoing());
        assert_eq!(
            outage.end(t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(outage.end(t0 + Duration::from_secs(4)), None);
        assert!(outage.begin(t0 + Duration::from_secs(10)));
        assert_eq!(
            outage.end(t0 + Duration::from_millis(10_500)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(outage.count(), 2);
        assert!((outage.unavailable_seconds() - 3.5).abs() < 1e-9);
    }
}
