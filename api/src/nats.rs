//! NATS ingestion: a durable JetStream pull consumer on `cdp.ingest.<workspace>` (stream `CDP_INGEST`)
//! that ingests the same JSON as HTTP, the same way. A message is acked only after its event (or its
//! quarantine entry) is committed; a failed commit naks it for redelivery.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::message::MessageError;
use cdp_domain::store::EventStore;
use chrono::Utc;
use futures::StreamExt;
use serde_json::Value;

use crate::error::{ApiError, UNAVAILABLE_RETRY_AFTER};
use crate::ingest::{check, commit, quarantine_entry, Checked, Rejection, Source};
use crate::AppState;

/// The durable consumer shared by every instance, so that they split the work.
pub const CONSUMER: &str = "cdp-ingest";
const MAX_BATCH: usize = 1_000;

/// Where to consume from.
#[derive(Debug, Clone)]
pub struct IngestTopology {
    pub stream: String,
    /// Subjects are `<prefix><workspace>`, e.g. `cdp.ingest.shop_a`.
    pub subject_prefix: String,
}

/// Creates the stream and the durable consumer if absent.
pub async fn ensure_consumer(
    client: &async_nats::Client,
    topology: &IngestTopology,
) -> anyhow::Result<consumer::PullConsumer> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: topology.stream.clone(),
            subjects: vec![format!("{}>", topology.subject_prefix)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("failed to create NATS stream {}: {e}", topology.stream))?;
    let consumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("failed to create NATS consumer {CONSUMER}: {e}"))?;
    Ok(consumer)
}

/// Consumes until the task is aborted, reconnecting the message stream after errors.
pub async fn consume(
    state: Arc<AppState>,
    consumer: consumer::PullConsumer,
    topology: IngestTopology,
) {
    loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "NATS consumer stream failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let first = match messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "NATS message error");
                    continue;
                }
                None => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout(Duration::from_millis(2), messages.next()).await {
                    Ok(Some(Ok(m))) => batch.push(m),
                    _ => break,
                }
            }
            process(&state, &topology, batch).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The message text, with the `Nats-Msg-Id` header as `messageId` when the JSON has none, so that a
/// redelivered message is stored once.
fn message_text(message: &jetstream::Message) -> Result<String, MessageError> {
    let text = std::str::from_utf8(&message.payload)
        .map_err(|_| MessageError::new("invalid_json", "", "message is not UTF-8 JSON"))?;
    let msg_id = message
        .headers
        .as_ref()
        // A `&str` key would never match: parsed headers hold the standard name.
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned());
    let Some(msg_id) = msg_id else {
        return Ok(text.to_owned());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut map)) if !map.contains_key("messageId") => {
            map.insert("messageId".into(), Value::String(msg_id));
            Ok(Value::Object(map).to_string())
        }
        _ => Ok(text.to_owned()),
    }
}

/// A message with its text (or why it has none).
type Readable = (jetstream::Message, Result<String, MessageError>);

#[tracing::instrument(name = "nats.ingest", skip_all, fields(messages = batch.len()))]
async fn process(state: &Arc<AppState>, topology: &IngestTopology, batch: Vec<jetstream::Message>) {
    // While the database is out of reach nothing can be stored: the messages wait in the stream.
    if state.outage.ongoing() {
        settle(
            state,
            &batch,
            Err(ApiError::unavailable(
                "an outage of the database is ongoing",
            )),
        )
        .await;
        return;
    }
    // Group by workspace so each workspace's messages are checked together and committed in one go.
    let mut by_workspace: BTreeMap<WorkspaceId, Vec<Readable>> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut unanswered = Vec::new();
    for message in batch {
        let workspace = message
            .subject
            .as_str()
            .strip_prefix(&topology.subject_prefix)
            .unwrap_or_default()
            .to_owned();
        let known = match crate::outage::bounded(state, state.workspace_known(&workspace))
            .await
            .and_then(|known| known)
        {
            Ok(known) => known,
            Err(e) => {
                // Not known to be unknown: never quarantined for it, redelivered instead.
                unanswered.push((message, e));
                continue;
            }
        };
        // A known workspace was parsed when it was provisioned; an unparsable one cannot be known.
        if let Some(workspace) = known.then(|| WorkspaceId::parse(&workspace).ok()).flatten() {
            let text = message_text(&message);
            by_workspace
                .entry(workspace)
                .or_default()
                .push((message, text));
        } else {
            unknown.push(message);
        }
    }
    for (message, error) in unanswered {
        settle(state, std::slice::from_ref(&message), Err(error)).await;
    }
    if !unknown.is_empty() {
        let now = Utc::now().timestamp_millis();
        let entries: Vec<_> = unknown
            .iter()
            .map(|m| {
                let error = MessageError::new(
                    "unknown_workspace",
                    "subject",
                    format!("no workspace for subject {}", m.subject),
                );
                quarantine_entry(
                    None,
                    Source::Nats,
                    now,
                    &error,
                    &String::from_utf8_lossy(&m.payload),
                )
            })
            .collect();
        let outcome = state
            .store
            .quarantine(&entries)
            .await
            .map_err(ApiError::from);
        settle(state, &unknown, outcome).await;
    }
    for (workspace, items) in by_workspace {
        // The workspace's ingestion budget, as over HTTP, message by message: those past it wait in
        // the stream (redelivered as the budget refills) — nothing stored twice, nothing lost — while
        // the other workspaces of the batch go on.
        let now = std::time::Instant::now();
        let mut items = items;
        let mut delayed = Vec::new();
        let mut kept = Vec::with_capacity(items.len());
        for item in items.drain(..) {
            match state.limits.ingest.take_at(&workspace, 1, now) {
                Ok(()) => kept.push(item),
                Err(refusal) => delayed.push((item, refusal.retry_after)),
            }
        }
        for ((m, _), wait) in &delayed {
            let later = (*wait).max(Duration::from_millis(100));
            if let Err(e) = m.ack_with(AckKind::Nak(Some(later))).await {
                tracing::warn!(error = %e, "failed to delay a rate-limited NATS message; it will be redelivered");
            }
        }
        let items = kept;
        if items.is_empty() {
            continue;
        }
        let mut texts = Vec::with_capacity(items.len());
        let mut unreadable = Vec::new();
        for (i, (_, text)) in items.iter().enumerate() {
            match text {
                Ok(t) => texts.push(t.as_str()),
                Err(e) => unreadable.push((i, e.clone())),
            }
        }
        let region = state.phone_region(&workspace);
        let mut checked: Checked = check(
            &workspace,
            region,
            texts.iter().copied(),
            None,
            None,
            Utc::now(),
        );
        for (index, error) in unreadable {
            let raw = String::from_utf8_lossy(&items[index].0.payload).into_owned();
            checked.rejected.push(Rejection { index, error, raw });
        }
        let outcome = crate::outage::bounded(
            state,
            commit(state, Some(&workspace), checked, Source::Nats),
        )
        .await
        .and_then(|committed| committed);
        let messages: Vec<jetstream::Message> = items.into_iter().map(|(m, _)| m).collect();
        settle(state, &messages, outcome).await;
    }
}

/// Acks after a commit; naks when the commit failed: redelivered after `Retry-After`'s wait when the
/// database is out of reach (and the outage noted), in a second otherwise.
async fn settle(
    state: &Arc<AppState>,
    messages: &[jetstream::Message],
    outcome: Result<(), ApiError>,
) {
    let kind = match &outcome {
        Ok(()) => AckKind::Ack,
        Err(ApiError::Unavailable(cause)) => {
            crate::outage::database_unreachable(state);
            tracing::warn!(%cause, messages = messages.len(), "NATS batch not stored: the database is out of reach; redelivered later");
            AckKind::Nak(Some(UNAVAILABLE_RETRY_AFTER))
        }
        Err(e) => {
            tracing::error!(error = ?e, messages = messages.len(), "NATS batch not committed; will be redelivered");
            AckKind::Nak(Some(Duration::from_secs(1)))
        }
    };
    for m in messages {
        if let Err(e) = m.ack_with(kind).await {
            tracing::warn!(error = %e, "failed to acknowledge a NATS message; it will be redelivered and deduplicated");
        }
    }
}
