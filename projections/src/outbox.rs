//! The outbox stage: the messages a batch leaves for subscribers (`OutboxWrites`: every tag change,
//! segment enter and exit, and track event, in the order the batch made them), appended in its
//! transaction — each backend's statement in `sqlite` and `postgres` — and read in order by the
//! publisher (`outbox_after`).
//!
//! A message says what it is about as a typed [`Topic`] (a tag's change, a segment's enter or exit, a
//! track event, by name); the edge (`api::publish`) makes the NATS subject of it. The `subject` column
//! holds the topic's stored form (`Topic::stored`), the text earlier versions wrote there, so rows of
//! either version read alike.

use cdp_domain::store::sql::query;
use cdp_domain::store::Store;

use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod postgres;
mod sqlite;

pub use postgres::COMMITTED_CHANNEL;

/// What a message is about, typed: the edge makes its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// A profile's tag changed value (or was taken off).
    TagChanged { tag: String },
    /// A profile entered (`entered`) or left a segment.
    Segment { segment: String, entered: bool },
    /// A track event of a profile, by name.
    Event { name: String },
    /// A stored topic of no form this version knows, kept as it is.
    Other(String),
}

impl Topic {
    /// The form stored in the outbox's `subject` column: `<workspace>.tag.<tag>.changed`,
    /// `<workspace>.segment.<segment>.entered|exited`, `<workspace>.event.<name as one token>`.
    fn stored(&self, workspace: &str) -> String {
        match self {
            Topic::TagChanged { tag } => format!("{workspace}.tag.{tag}.changed"),
            Topic::Segment { segment, entered } => {
                let what = if *entered { "entered" } else { "exited" };
                format!("{workspace}.segment.{segment}.{what}")
            }
            Topic::Event { name } => format!("{workspace}.event.{}", event_token(name)),
            Topic::Other(stored) => stored.clone(),
        }
    }

    /// The topic of a stored row of `workspace` (rows written before 2026-12-06 hold `cdp.out.` in
    /// front); a track event's name is the token it was stored as.
    fn from_stored(workspace: &str, stored: &str) -> Topic {
        let rest = stored.strip_prefix(LEGACY_PREFIX).unwrap_or(stored);
        let Some(rest) = rest
            .strip_prefix(workspace)
            .and_then(|r| r.strip_prefix('.'))
        else {
            return Topic::Other(rest.to_owned());
        };
        if let Some(tag) = rest
            .strip_prefix("tag.")
            .and_then(|r| r.strip_suffix(".changed"))
        {
            return Topic::TagChanged {
                tag: tag.to_owned(),
            };
        }
        if let Some(segment) = rest.strip_prefix("segment.") {
            if let Some(segment) = segment.strip_suffix(".entered") {
                return Topic::Segment {
                    segment: segment.to_owned(),
                    entered: true,
                };
            }
            if let Some(segment) = segment.strip_suffix(".exited") {
                return Topic::Segment {
                    segment: segment.to_owned(),
                    entered: false,
                };
            }
        }
        if let Some(name) = rest.strip_prefix("event.") {
            return Topic::Event {
                name: name.to_owned(),
            };
        }
        Topic::Other(
            stored
                .strip_prefix(LEGACY_PREFIX)
                .unwrap_or(stored)
                .to_owned(),
        )
    }
}

/// What rows written before 2026-12-06 hold in front of their topic.
const LEGACY_PREFIX: &str = "cdp.out.";

/// An event name as the one token the stored form holds: lower case, runs of anything but letters and
/// digits as `_` ("Order Completed" → `order_completed`).
fn event_token(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    let slug = slug.trim_matches('_');
    if slug.is_empty() {
        "unnamed".to_owned()
    } else {
        slug.to_owned()
    }
}

/// A message a batch leaves for subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub workspace: String,
    pub topic: Topic,
    pub payload: String,
}

/// A message as its row of `outbox` holds it: `(workspace, stored topic, payload)`.
type OutboxRow = (String, String, String);

/// The messages a batch appends to the outbox, in order (their sequence numbers follow it).
#[derive(Debug, Default)]
pub struct OutboxWrites {
    pub messages: Vec<OutboxMessage>,
}

impl OutboxWrites {
    pub fn push(&mut self, message: OutboxMessage) {
        self.messages.push(message);
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Drops every message (a rebuild's shadow publishes nothing).
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Appends `other`'s messages after these.
    pub fn append(&mut self, other: OutboxWrites) {
        self.messages.extend(other.messages);
    }
}

/// Appends the messages to the outbox, in their order, created at `now` (ms).
pub(crate) async fn write(
    tx: &mut ModelTx<'_>,
    w: &OutboxWrites,
    now: i64,
) -> Result<(), ProjectionError> {
    if w.messages.is_empty() {
        return Ok(());
    }
    let rows: Vec<OutboxRow> = w
        .messages
        .iter()
        .map(|m| {
            let stored = m.topic.stored(&m.workspace);
            (m.workspace.clone(), stored, m.payload.clone())
        })
        .collect();
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::append(tx, &rows, now).await,
        Tx::Postgres(tx) => postgres::append(tx, &rows, now).await,
    }
}

/// A message of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub seq: i64,
    pub workspace: String,
    /// What it is about; the edge makes the subject of it.
    pub topic: Topic,
    pub payload: String,
}

/// The publisher's read: a page of messages after a sequence number, in order (one text for both
/// backends, run with `cdp_domain::store::sql`; the resolver's appends are in `sqlite.rs` and
/// `postgres.rs`).
const OUTBOX_AFTER: &str =
    "SELECT seq, workspace, subject, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?";

/// Outbox messages after `after`, in order.
pub async fn outbox_after(
    store: &Store,
    after: i64,
    limit: i64,
) -> Result<Vec<OutMessage>, ProjectionError> {
    let rows: Vec<(i64, String, String, String)> = query(OUTBOX_AFTER)
        .bind(after)
        .bind(limit)
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, workspace, subject, payload)| OutMessage {
            seq,
            topic: Topic::from_stored(&workspace, &subject),
            workspace,
            payload,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_stored_as_earlier_versions_stored_it_and_read_back() {
        let cases = [
            (
                Topic::TagChanged { tag: "rfm".into() },
                "shop.tag.rfm.changed",
            ),
            (
                Topic::Segment {
                    segment: "buyers".into(),
                    entered: true,
                },
                "shop.segment.buyers.entered",
            ),
            (
                Topic::Segment {
                    segment: "buyers".into(),
                    entered: false,
                },
                "shop.segment.buyers.exited",
            ),
            (
                Topic::Event {
                    name: "order_completed".into(),
                },
                "shop.event.order_completed",
            ),
        ];
        for (topic, stored) in cases {
            assert_eq!(topic.stored("shop"), stored);
            assert_eq!(Topic::from_stored("shop", stored), topic);
            assert_eq!(
                Topic::from_stored("shop", &format!("cdp.out.{stored}")),
                topic
            );
        }
        let event = Topic::Event {
            name: "Order Completed".into(),
        };
        assert_eq!(event.stored("shop"), "shop.event.order_completed");
        assert_eq!(
            Topic::Event { name: "?!".into() }.stored("shop"),
            "shop.event.unnamed"
        );
        assert_eq!(
            Topic::from_stored("shop", "elsewhere.thing"),
            Topic::Other("elsewhere.thing".into())
        );
        assert_eq!(Topic::Other("x.y".into()).stored("shop"), "x.y");
    }
}
