//! Per-workspace rate limits: token buckets, one budget for ingestion (messages per second, every message
//! of a batch counted) and one for the query and admin API (requests per second).
//!
//! A request is counted after its credential is known (an unauthenticated request is refused by auth and
//! costs no one's budget) and before anything is stored: a refused request is refused whole with 429 and a
//! `Retry-After`, so a client that retries loses nothing. One workspace's flood spends only its own bucket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cdp_domain::ident::WorkspaceId;

use crate::error::ApiError;

/// A budget: `rate` units per second, holding at most `rate × burst` unused units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Units per second; 0 means unlimited.
    pub rate: u32,
    /// Seconds of `rate` that may be spent at once after a quiet period.
    pub burst: f64,
}

impl Budget {
    fn capacity(&self) -> f64 {
        (f64::from(self.rate) * self.burst).max(1.0)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by workspace for one kind of budget.
#[derive(Debug)]
pub struct Limiter {
    /// Named in the 429 body (`ingest`, `api`).
    name: &'static str,
    budget: Budget,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Why a request was refused: which limit, and when a retry may pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub limit: &'static str,
    pub retry_after: Duration,
}

impl Limiter {
    pub fn new(name: &'static str, budget: Budget) -> Self {
        Self {
            name,
            budget,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` units of `workspace`'s budget at `now`, or refuses. A cost larger than the bucket
    /// passes when the bucket is full and leaves it in debt, so a large batch is slowed, never refused
    /// forever.
    pub fn take_at(&self, workspace: &WorkspaceId, cost: u32, now: Instant) -> Result<(), Refusal> {
        if self.budget.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.budget.rate);
        let capacity = self.budget.capacity();
        let cost = f64::from(cost.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets
            .entry(workspace.as_str().to_owned())
            .or_insert(Bucket {
                tokens: capacity,
                updated: now,
            });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now.max(bucket.updated);
        let needed = cost.min(capacity);
        if bucket.tokens >= needed {
            bucket.tokens -= cost;
            Ok(())
        } else {
            let wait = (needed - bucket.tokens) / rate;
            Err(Refusal {
                limit: self.name,
                retry_after: Duration::from_secs_f64(wait),
            })
        }
    }

    /// [`Limiter::take_at`] now, as the HTTP edge's error.
    pub fn take(&self, workspace: &WorkspaceId, cost: usize) -> Result<(), ApiError> {
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        self.take_at(workspace, cost, Instant::now())
            .map_err(|r| ApiError::rate_limited(r.limit, r.retry_after))
    }
}

/// The service's two budgets.
#[derive(Debug)]
pub struct Limits {
    pub ingest: Limiter,
    pub api: Limiter,
}

impl Limits {
    pub fn new(ingest: Budget, api: Budget) -> Self {
        Self {
            ingest: Limiter::new("ingest", ingest),
            api: Limiter::new("api", api),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(id: &str) -> WorkspaceId {
        WorkspaceId::parse(id).unwrap()
    }

    fn limiter(rate: u32, burst: f64) -> Limiter {
        Limiter::new("ingest", Budget { rate, burst })
    }

    #[test]
    fn a_full_bucket_spends_its_burst_then_refuses_with_the_wait() {
        let l = limiter(10, 1.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(l.take_at(&ws("a"), 1, t0).is_ok());
        }
        let refusal = l.take_at(&ws("a"), 1, t0).unwrap_err();
        assert_eq!(refusal.limit, "ingest");
        assert!((refusal.retry_after.as_secs_f64() - 0.1).abs() < 1e-6);
        // A tenth of a second refills one message.
        assert!(l
            .take_at(&ws("a"), 1, t0 + Duration::from_millis(100))
            .is_ok());
        assert!(l
            .take_at(&ws("a"), 1, t0 + Duration::from_millis(100))
            .is_err());
    }

    #[test]
    fn workspaces_have_buckets_of_their_own() {
        let l = limiter(5, 1.0);
        let t0 = Instant::now();
        assert!(l.take_at(&ws("a"), 5, t0).is_ok());
        assert!(l.take_at(&ws("a"), 1, t0).is_err());
        assert!(l.take_at(&ws("b"), 5, t0).is_ok());
    }

    #[test]
    fn a_batch_counts_every_message_and_a_huge_one_passes_a_full_bucket_into_debt() {
        let l = limiter(10, 1.0);
        let t0 = Instant::now();
        assert!(l.take_at(&ws("a"), 7, t0).is_ok());
        assert!(l.take_at(&ws("a"), 7, t0).is_err(), "3 left, 7 asked");
        let later = t0 + Duration::from_secs(1);
        assert!(
            l.take_at(&ws("a"), 25, later).is_ok(),
            "a full bucket lets it pass"
        );
        let refusal = l.take_at(&ws("a"), 1, later).unwrap_err();
        assert!(
            (refusal.retry_after.as_secs_f64() - 1.6).abs() < 1e-6,
            "{refusal:?}"
        );
    }

    #[test]
    fn a_rate_of_zero_is_unlimited() {
        let l = limiter(0, 1.0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(l.take_at(&ws("a"), 100, t0).is_ok());
        }
    }
}
