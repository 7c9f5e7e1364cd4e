//! Tells the instance that runs the engine when another instance appended to the log, so that it
//! resolves the new events at once instead of at its next poll (PostgreSQL `LISTEN`/`NOTIFY` on the
//! channel [`CHANNEL`]). An instance that does not run every part of the engine announces its appends (coalesced:
//! one notification in flight at a time, whatever the number of appends meanwhile), every instance
//! listens and wakes its runner. The same listener hears the commits that wrote outbox rows
//! ([`cdp_projections::outbox::COMMITTED_CHANNEL`], notified in their transaction) and wakes the
//! publisher of an instance that does not run every part: a message another instance's part
//! committed is published at once, not at the publisher's next poll. On SQLite (one process) the
//! in-process wake-ups are enough. Losing a notification loses nothing: the runner and the publisher
//! still poll.

use std::sync::Arc;
use std::time::Duration;

use cdp_domain::store::Store;
use cdp_projections::RunnerStatus;
use tokio::sync::Notify;

use crate::publish::BackgroundTask;

/// The notification channel of appends.
pub const CHANNEL: &str = "cdp_appended";

/// The tasks that announce this instance's appends and listen for the others' (`None` on SQLite).
/// `announce` is notified after every append; `wake`: the local runners' wakers (one per part of the engine).
pub fn spawn(
    store: &Store,
    announce: Arc<Notify>,
    wake: Vec<Arc<Notify>>,
    (engine, parts): (Arc<RunnerStatus>, usize),
) -> Option<(BackgroundTask, BackgroundTask)> {
    let Store::Postgres(pg) = store else {
        return None;
    };
    let pool = pg.pool().clone();
    let announcer = {
        let pool = pool.clone();
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                announce.notified().await;
                // An instance running every part of the engine has woken it already.
                if engine.owned().len() >= parts {
                    continue;
                }
                if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error = %e, "an append could not be announced; the engine's poll finds it");
                }
            }
        })
    };
    // The listener's connection is its own, outside the service's pool (whose every connection
    // stays for requests and the engine).
    let options = (*pool.connect_options()).clone();
    let listener = tokio::spawn(async move {
        loop {
            let own = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .max_lifetime(None)
                .idle_timeout(None)
                .connect_lazy_with(options.clone());
            let mut listener = match sqlx::postgres::PgListener::connect_with(&own).await {
                Ok(mut listener) => {
                    listener.ignore_pool_close_event(true);
                    listener
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot listen for appends; tried again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let channels = [CHANNEL, cdp_projections::outbox::COMMITTED_CHANNEL];
            if let Err(e) = listener.listen_all(channels).await {
                tracing::debug!(error = %e, "cannot listen for appends; tried again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // `recv` reconnects by itself after a lost connection.
            loop {
                match listener.recv().await {
                    Ok(n) if n.channel() == CHANNEL => wake.iter().for_each(|w| w.notify_one()),
                    // A commit with outbox rows: this instance's own have woken its publisher
                    // already when it runs every part.
                    Ok(_) => {
                        if engine.owned().len() < parts {
                            engine.committed.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "listening for appends failed; listening again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
            }
        }
    });
    Some((
        BackgroundTask::from(announcer),
        BackgroundTask::from(listener),
    ))
}
