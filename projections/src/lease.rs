//! Leases on the engine's partitions (`engine_leases`): which instance runs each one. An instance runs
//! a partition only while it holds its lease, renewing it every [`RENEW_EVERY`]; a lease not renewed
//! for [`TTL`] (its instance died, hung or lost the database) may be taken by another instance, which
//! resumes the partition from its checkpoint. Every acquisition raises the lease's fence, and every
//! commit of the partition's model checks the fence it was run under in its own transaction
//! ([`Lease::hold_in`]), so a late write of an owner that lost the lease fails instead of landing
//! after the next owner's: nothing is applied twice, whatever the clocks say. The lease lives in the
//! database the model is committed to — a JetStream KV revision could not be checked in the same
//! transaction as the model's writes.
//!
//! The engine is one partition today, `identity` (every workspace's identity sequence and fold, run
//! by one resolver): a second instance stands by and takes over within `TTL` + [`TRY_EVERY`]. The
//! outbox's publishing to NATS is leased the same way (`publisher`, in `api::publish`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use chrono::Utc;

use crate::error::ProjectionError;
use crate::model_tx::ModelTx;

/// How long a lease holds without being renewed.
pub const TTL: Duration = Duration::from_secs(6);
/// How often its owner renews a lease (a third of [`TTL`]: two renewals may fail before it lapses).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often an instance without a partition's lease tries to take it.
pub const TRY_EVERY: Duration = Duration::from_secs(1);

/// Takes the lease of a partition (binds: part, owner, expires_at, now): made if missing, taken over if
/// it expired or is the same owner's (a restarted instance), its fence raised either way; no row when
/// another owner holds it.
const ACQUIRE: &str =
    "INSERT INTO engine_leases (part, owner, fence, expires_at) VALUES (?, ?, 1, ?) \
     ON CONFLICT (part) DO UPDATE SET owner = excluded.owner, fence = engine_leases.fence + 1, \
     expires_at = excluded.expires_at \
     WHERE engine_leases.expires_at < ? OR engine_leases.owner = excluded.owner \
     RETURNING fence";
/// Renews a lease if it is still this owner's under this fence (binds: expires_at, part, owner,
/// fence). In a model's transaction it is also the fence's check, and on PostgreSQL it locks the
/// lease's row until the commit, so no one takes the lease between the check and the commit.
const RENEW: &str =
    "UPDATE engine_leases SET expires_at = ? WHERE part = ? AND owner = ? AND fence = ?";
/// PostgreSQL: [`RENEW`] answering the transaction's id (binds: expires_at, part, owner, fence).
const RENEW_ANSWERING_XID_POSTGRES: &str =
    "UPDATE engine_leases SET expires_at = $1 WHERE part = $2 AND owner = $3 AND fence = $4 \
     RETURNING pg_current_xact_id()::text::bigint";
/// Gives a lease up at once (binds: part, owner, fence).
const RELEASE: &str =
    "UPDATE engine_leases SET expires_at = 0 WHERE part = ? AND owner = ? AND fence = ?";
/// Every lease.
const HOLDERS: &str = "SELECT part, owner, fence, expires_at FROM engine_leases ORDER BY part";

/// A partition's lease held by this instance.
#[derive(Debug)]
pub struct Lease {
    part: String,
    owner: String,
    fence: i64,
    lost: AtomicBool,
}

/// A lease as stored: who holds a partition, under which fence, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub part: String,
    pub owner: String,
    pub fence: i64,
    pub expires_at_ms: i64,
}

impl Holder {
    /// Whether the lease still holds at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms >= now_ms
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn expiry() -> i64 {
    now_ms() + TTL.as_millis() as i64
}

impl Lease {
    /// Takes the lease of `part` for `owner` if no one else holds it; `None` if someone does.
    pub async fn acquire(
        store: &Store,
        part: &str,
        owner: &str,
    ) -> Result<Option<Lease>, ProjectionError> {
        let now = now_ms();
        let fence: Option<i64> = query(ACQUIRE)
            .bind(part)
            .bind(owner)
            .bind(now + TTL.as_millis() as i64)
            .bind(now)
            .scalar_optional(store.writer())
            .await?;
        Ok(fence.map(|fence| Lease {
            part: part.to_owned(),
            owner: owner.to_owned(),
            fence,
            lost: AtomicBool::new(false),
        }))
    }

    pub fn part(&self) -> &str {
        &self.part
    }

    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// Whether this instance found the lease taken (by a renewal or a commit that failed its check).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Renews the lease; `false` (and lost from then on) if another owner took it.
    pub async fn renew(&self, store: &Store) -> Result<bool, ProjectionError> {
        self.renew_on(store.writer()).await
    }

    /// The check of a commit of the partition's model, in its transaction: the lease is renewed if it
    /// is still this owner's under its fence, else [`ProjectionError::LeaseLost`] (the transaction is
    /// to be rolled back).
    pub(crate) async fn hold_in(&self, tx: &mut ModelTx<'_>) -> Result<(), ProjectionError> {
        if self.renew_on(tx.exec()).await? {
            Ok(())
        } else {
            Err(self.lost_error())
        }
    }

    /// [`Self::hold_in`] on PostgreSQL, answering the transaction's id besides (one statement: the
    /// commit marks itself a model writer with it).
    pub(crate) async fn hold_in_postgres(
        &self,
        tx: &mut sqlx::PgConnection,
    ) -> Result<i64, ProjectionError> {
        let xid: Option<i64> = if self.is_lost() {
            None
        } else {
            sqlx::query_scalar(RENEW_ANSWERING_XID_POSTGRES)
                .bind(expiry())
                .bind(self.part.as_str())
                .bind(self.owner.as_str())
                .bind(self.fence)
                .fetch_optional(tx)
                .await?
        };
        xid.ok_or_else(|| {
            self.lost.store(true, Ordering::Relaxed);
            self.lost_error()
        })
    }

    /// What a commit of a partition whose lease was lost fails with.
    fn lost_error(&self) -> ProjectionError {
        ProjectionError::LeaseLost(format!(
            "the lease of partition {} (fence {}) was taken by another instance",
            self.part, self.fence
        ))
    }

    async fn renew_on(
        &self,
        on: cdp_domain::store::sql::Exec<'_>,
    ) -> Result<bool, ProjectionError> {
        if self.is_lost() {
            return Ok(false);
        }
        let renewed = query(RENEW)
            .bind(expiry())
            .bind(self.part.as_str())
            .bind(self.owner.as_str())
            .bind(self.fence)
            .execute(on)
            .await?
            == 1;
        if !renewed {
            self.lost.store(true, Ordering::Relaxed);
        }
        Ok(renewed)
    }

    /// Gives the lease up, so that another instance takes the partition at once (a shutdown).
    pub async fn release(&self, store: &Store) -> Result<(), ProjectionError> {
        self.lost.store(true, Ordering::Relaxed);
        query(RELEASE)
            .bind(self.part.as_str())
            .bind(self.owner.as_str())
            .bind(self.fence)
            .execute(store.writer())
            .await?;
        Ok(())
    }

    /// Renews the lease every [`RENEW_EVERY`] until it is lost; returns then. A renewal the database
    /// does not answer is tried again until the lease would have lapsed: then it counts as lost
    /// (another instance may hold it by now).
    pub async fn keep(&self, store: &Store) {
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.renew(store).await {
                Ok(true) => renewed = std::time::Instant::now(),
                Ok(false) => return,
                Err(e) if renewed.elapsed() + RENEW_EVERY >= TTL => {
                    tracing::warn!(part = %self.part, error = %e, "the lease could not be renewed before it lapsed; given up");
                    self.lost.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(part = %self.part, error = %e, "the lease could not be renewed; tried again");
                }
            }
        }
    }
}

/// The lease a task holds now (if any), shared with whoever gives it up when the task is stopped.
#[derive(Debug, Default)]
pub struct HeldLease(std::sync::Mutex<Option<std::sync::Arc<Lease>>>);

impl HeldLease {
    pub fn put(&self, lease: Option<std::sync::Arc<Lease>>) {
        *self.0.lock().expect("held lease lock") = lease;
    }

    pub fn take(&self) -> Option<std::sync::Arc<Lease>> {
        self.0.lock().expect("held lease lock").take()
    }

    /// The lease held now.
    pub fn get(&self) -> Option<std::sync::Arc<Lease>> {
        self.0.lock().expect("held lease lock").clone()
    }
}

/// Every partition's lease as stored (expired ones too).
pub async fn holders(store: &Store) -> Result<Vec<Holder>, ProjectionError> {
    let rows: Vec<(String, String, i64, i64)> = query(HOLDERS).fetch_all(store.reader()).await?;
    Ok(rows
        .into_iter()
        .map(|(part, owner, fence, expires_at_ms)| Holder {
            part,
            owner,
            fence,
            expires_at_ms,
        })
        .collect())
}

/// The partitions whose leases `owner` holds now.
pub async fn owned_by(store: &Store, owner: &str) -> Result<Vec<String>, ProjectionError> {
    let now = now_ms();
    Ok(holders(store)
        .await?
        .into_iter()
        .filter(|h| h.owner == owner && h.live_at(now))
        .map(|h| h.part)
        .collect())
}

/// The prefix of the row each instance running the engine keeps in `engine_leases` while it runs
/// (`instances/<instance>`, renewed like a lease): how many instances the parts are shared by.
pub const INSTANCES_PREFIX: &str = "instances/";

/// How many of `parts` parts one instance should run: the parts over the live instances running the
/// engine (their `instances/*` rows), rounded up; all of them when it is alone.
pub async fn fair_share(store: &Store, parts: u32) -> Result<u32, ProjectionError> {
    let now = now_ms();
    let live = holders(store)
        .await?
        .iter()
        .filter(|h| h.part.starts_with(INSTANCES_PREFIX) && h.live_at(now))
        .count()
        .max(1);
    Ok(parts.div_ceil(live as u32))
}

/// This instance's `instances/<instance>` row, kept alive every [`RENEW_EVERY`] by a task of its own
/// while the instance runs the engine.
#[derive(Debug)]
pub struct Presence {
    task: tokio::task::JoinHandle<()>,
    held: std::sync::Arc<HeldLease>,
}

impl Presence {
    /// Starts keeping the row of `instance`.
    pub fn keep(store: Store, instance: String) -> Presence {
        let held = std::sync::Arc::new(HeldLease::default());
        let row = format!("{INSTANCES_PREFIX}{instance}");
        let task = tokio::spawn({
            let held = held.clone();
            async move {
                loop {
                    // Taken again by the same owner is renewed.
                    match Lease::acquire(&store, &row, &instance).await {
                        Ok(lease) => held.put(lease.map(std::sync::Arc::new)),
                        Err(e) => {
                            tracing::debug!(error = %e, "this instance's row could not be kept")
                        }
                    }
                    tokio::time::sleep(RENEW_EVERY).await;
                }
            }
        });
        Presence { task, held }
    }

    /// Stops keeping the row and takes it away: the others count one instance fewer at once.
    pub async fn shut_down(self, store: &Store) {
        self.task.abort();
        if let Some(lease) = self.held.take() {
            let _ = lease.release(store).await;
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.task.abort();
    }
}
