//! While the database is out of reach: the outage is noted at the first request (HTTP or NATS) that
//! could not reach it, every `/v1/` call is answered 503 with `Retry-After` at once instead of waiting
//! for the pool's timeout, `/readyz` says not ready, and a probe pings the database until it answers
//! again. `/metrics` counts the seconds spent unavailable.
//!
//! The first request need not wait for the pool's timeout either ([`bounded`]): a call still running
//! after half a second makes the service ask whether the database accepts a new connection at all
//! (once a second at most, for every caller). A busy pool — every connection taken, the call waiting
//! for one — does, and the call goes on; an outage does not, and the call is answered 503 at once.

use std::future::Future;
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
/// How long a call runs before the service asks whether the database accepts connections; how long
/// making one may take; how long an answer holds for every caller.
const SUSPECT_AFTER: Duration = Duration::from_millis(500);
/// A refused or reset connection answers at once; this bounds a database host that does not answer
/// at all, and leaves an overloaded server time to accept before it is taken for an outage.
const CONNECT_WITHIN: Duration = Duration::from_millis(1_500);
const ANSWER_HOLDS: Duration = Duration::from_secs(1);

/// The database's availability as requests found it.
#[derive(Debug, Default)]
pub struct Outage {
    /// When the current outage began; `None` while the database answers.
    since: Mutex<Option<Instant>>,
    /// Whole outages so far, in microseconds.
    past_micros: AtomicU64,
    outages: AtomicU64,
    probing: AtomicBool,
    /// The last answer to "does the database accept a new connection", and when it was given.
    asked: tokio::sync::Mutex<Option<(Instant, bool)>>,
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

    /// Whether the database accepts a new connection: asked at most once per [`ANSWER_HOLDS`], the
    /// callers meanwhile waiting for that answer.
    async fn accepts_connections(&self, store: &cdp_domain::store::Store) -> bool {
        let mut asked = self.asked.lock().await;
        if let Some((at, answer)) = *asked {
            if at.elapsed() < ANSWER_HOLDS {
                return answer;
            }
        }
        let answer = store.accepts_connections(CONNECT_WITHIN).await;
        *asked = Some((Instant::now(), answer));
        answer
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

/// Runs `work` (a `/v1/` call, a NATS batch's commit) to its end, unless the database turns out to
/// be out of reach meanwhile. Past [`SUSPECT_AFTER`], and every [`ANSWER_HOLDS`] after, it asks
/// whether the database accepts a new connection: a pool that is merely busy does (the work goes on
/// waiting for a connection, up to the pool's own timeout); a database that refuses, resets or does
/// not answer within [`CONNECT_WITHIN`] does not — the outage begins and `Err(Unavailable)` answers
/// within half a second when the connection is refused (a server or port down), two at most, instead
/// of the pool's 10. The work is dropped then, as it is when a client hangs up; what it had handed on
/// (an append the appender commits once the database is back) is what the client was told to retry,
/// stored once by its messageId.
pub async fn bounded<T>(
    state: &Arc<AppState>,
    work: impl Future<Output = T>,
) -> Result<T, ApiError> {
    tokio::pin!(work);
    let mut wait = SUSPECT_AFTER;
    loop {
        if let Ok(done) = tokio::time::timeout(wait, &mut work).await {
            return Ok(done);
        }
        let accepted = tokio::select! {
            biased;
            done = &mut work => return Ok(done),
            accepted = state.outage.accepts_connections(&state.store) => accepted,
        };
        if !accepted {
            database_unreachable(state);
            return Err(ApiError::unavailable(
                "the database does not accept connections",
            ));
        }
        wait = ANSWER_HOLDS;
    }
}

/// The middleware around every route: while an outage lasts a `/v1/` call is answered 503 at once,
/// and a `/v1/` call that finds the database not accepting connections is answered 503 without
/// waiting for the pool ([`bounded`]); a response that found the database out of reach begins one.
pub async fn watch(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/v1/");
    if state.outage.ongoing() && api {
        return ApiError::unavailable("an outage of the database is ongoing").into_response();
    }
    let response = if api {
        bounded(&state, next.run(request))
            .await
            .unwrap_or_else(IntoResponse::into_response)
    } else {
        next.run(request).await
    };
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
