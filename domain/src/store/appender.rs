//! Group commit: requests from many HTTP handlers and NATS consumers are gathered into one transaction
//! per writer, so the cost of a commit (an fsync) is shared. A caller's future resolves only after the
//! transaction holding its events has committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{AppendReport, EventStore, Store, StoreError};
use crate::event::NewEvent;

/// The most events one group transaction takes.
const MAX_GROUP_EVENTS: usize = 5_000;

struct Request {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

/// Counters of everything appended through this appender.
#[derive(Debug, Default)]
pub struct AppenderStats {
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub commits: AtomicU64,
}

/// A handle to the writer tasks; cheap to clone.
#[derive(Clone)]
pub struct Appender {
    queue: mpsc::Sender<Request>,
    stats: Arc<AppenderStats>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").finish_non_exhaustive()
    }
}

impl Appender {
    /// Starts the store's number of writer tasks (one on SQLite). They stop when every handle is dropped.
    pub fn spawn(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel::<Request>(1024);
        let receiver = Arc::new(Mutex::new(receiver));
        let stats = Arc::new(AppenderStats::default());
        for _ in 0..store.writer_count() {
            tokio::spawn(write_groups(store.clone(), receiver.clone(), stats.clone()));
        }
        Self { queue, stats }
    }

    /// Appends the events; resolves after they are committed (or were already in the log).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { events, reply })
            .await
            .map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(shared)) => Err(StoreError::Shared(shared)),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    pub fn stats(&self) -> &AppenderStats {
        &self.stats
    }
}

async fn write_groups(
    store: Store,
    receiver: Arc<Mutex<mpsc::Receiver<Request>>>,
    stats: Arc<AppenderStats>,
) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut size = first.events.len();
            let mut group = vec![first];
            while size < MAX_GROUP_EVENTS {
                match receiver.try_recv() {
                    Ok(next) => {
                        size += next.events.len();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let mut group = group;
        let mut events = Vec::with_capacity(group.iter().map(|r| r.events.len()).sum());
        for request in &mut group {
            events.append(&mut request.events);
        }
        let outcome = store.append(&events).await;
        let reply = match outcome {
            Ok(AppendReport {
                inserted,
                duplicates,
            }) => {
                stats.inserted.fetch_add(inserted, Ordering::Relaxed);
                stats.duplicates.fetch_add(duplicates, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, events = events.len(), "group append failed");
                Err(Arc::new(e))
            }
        };
        for request in group {
            // A caller that went away (client disconnected) needs no answer; its events are committed anyway.
            let _ = request.reply.send(reply.clone());
        }
    }
}
