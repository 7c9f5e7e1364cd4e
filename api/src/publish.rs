//! The outbox publisher: sends the messages the resolver wrote to the `outbox` table (tag changes now),
//! in order, to NATS JetStream (stream `CDP_OUT`, subjects `cdp.out.>`, `Nats-Msg-Id` = `CDP_OUT-<seq>`
//! for deduplication) when NATS is configured, and always to the in-process bus. Its position is kept
//! in `projection_checkpoints` and moves only after JetStream acknowledged, so nothing is lost while
//! NATS is down: the publisher retries from where it stopped (at least once; subscribers deduplicate
//! by the message id).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use cdp_domain::store::Store;
use cdp_projections::catalog::{outbox_after, OutMessage};
use cdp_projections::runner::checkpoint;
use cdp_projections::ProjectionError;
use chrono::Utc;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Where outgoing messages are published: the stream (`CDP_OUT`) and the subject prefix that replaces
/// `cdp.out.` (a namespace's, in tests).
#[derive(Debug, Clone)]
pub struct OutTopology {
    pub stream: String,
    pub subject_prefix: String,
}

/// The checkpoint name of the publisher.
pub const PUBLISHER: &str = "outbox-publisher";
const PAGE: i64 = 500;
const POLL: Duration = Duration::from_millis(50);

/// A message as the in-process bus carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub seq: i64,
    pub workspace: String,
    pub subject: String,
    pub payload: String,
}

/// Creates the outgoing stream if absent.
pub async fn ensure_stream(
    client: &async_nats::Client,
    topology: &OutTopology,
) -> anyhow::Result<()> {
    jetstream::new(client.clone())
        .get_or_create_stream(stream::Config {
            name: topology.stream.clone(),
            subjects: vec![format!("{}>", topology.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("failed to create NATS stream {}: {e}", topology.stream))?;
    Ok(())
}

/// A background task (the publisher, the scheduled batch); dropping it stops it.
#[derive(Debug)]
pub struct BackgroundTask(JoinHandle<()>);

impl From<JoinHandle<()>> for BackgroundTask {
    fn from(task: JoinHandle<()>) -> Self {
        BackgroundTask(task)
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts publishing; `resolver` tells it when the resolver committed (else it polls every `POLL`).
pub fn spawn(
    store: Store,
    nats: Option<(async_nats::Client, OutTopology)>,
    bus: broadcast::Sender<Published>,
    resolver: std::sync::Arc<cdp_projections::RunnerStatus>,
) -> BackgroundTask {
    BackgroundTask(tokio::spawn(async move {
        loop {
            match publish_some(&store, nats.as_ref(), &bus).await {
                Ok(0) => {
                    let _ = tokio::time::timeout(POLL, resolver.committed.notified()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "publishing the outbox failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }))
}

/// Publishes the next page of the outbox; returns how many were published.
async fn publish_some(
    store: &Store,
    nats: Option<&(async_nats::Client, OutTopology)>,
    bus: &broadcast::Sender<Published>,
) -> anyhow::Result<usize> {
    let after = checkpoint(store, PUBLISHER).await?.seq;
    let page = outbox_after(store, after, PAGE).await?;
    let Some(last) = page.last().map(|m| m.seq) else {
        return Ok(0);
    };
    // Every message leaves with the channels its profile may be reached on.
    let page = crate::consent::gate(store, page).await?;
    if let Some((client, topology)) = nats {
        let js = jetstream::new(client.clone());
        let mut acks = Vec::with_capacity(page.len());
        for m in &page {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{}-{}", topology.stream, m.seq).as_str(),
            );
            let rest = m.subject.strip_prefix("cdp.out.").unwrap_or(&m.subject);
            let subject = format!("{}{rest}", topology.subject_prefix);
            let ack = js
                .publish_with_headers(subject.clone(), headers, m.payload.clone().into())
                .await
                .map_err(|e| anyhow::anyhow!("publish to {subject}: {e}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| anyhow::anyhow!("JetStream did not acknowledge: {e}"))?;
        }
    }
    for OutMessage {
        seq,
        workspace,
        subject,
        payload,
    } in page.iter().cloned()
    {
        // No receiver is fine: the bus is for whoever listens now.
        let _ = bus.send(Published {
            seq,
            workspace,
            subject,
            payload,
        });
    }
    save(store, last).await?;
    prune(store, last).await?;
    Ok(page.len())
}

/// Published messages kept in the outbox (for inspection), beyond which the oldest are deleted.
const KEEP_PUBLISHED: i64 = 100_000;

/// Deletes published messages older than the last [`KEEP_PUBLISHED`]: the outbox is a queue, not the log.
async fn prune(store: &Store, published: i64) -> Result<(), ProjectionError> {
    let below = published - KEEP_PUBLISHED;
    if below <= 0 {
        return Ok(());
    }
    match store {
        Store::Sqlite(s) => {
            sqlx::query("DELETE FROM outbox WHERE seq <= ?")
                .bind(below)
                .execute(s.write_pool())
                .await?;
        }
        Store::Postgres(s) => {
            sqlx::query("DELETE FROM outbox WHERE seq <= $1")
                .bind(below)
                .execute(s.pool())
                .await?;
        }
    }
    Ok(())
}

async fn save(store: &Store, seq: i64) -> Result<(), ProjectionError> {
    let now = Utc::now().timestamp_millis();
    match store {
        Store::Sqlite(s) => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES (?, 0, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            )
            .bind(PUBLISHER)
            .bind(seq)
            .bind(now)
            .execute(s.write_pool())
            .await?;
        }
        Store::Postgres(s) => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, tx, seq, updated_at) VALUES ($1, 0, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET seq = GREATEST(projection_checkpoints.seq, excluded.seq), \
                 updated_at = excluded.updated_at",
            )
            .bind(PUBLISHER)
            .bind(seq)
            .bind(now)
            .execute(s.pool())
            .await?;
        }
    }
    Ok(())
}
