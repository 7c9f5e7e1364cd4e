//! The stored form of an event: the stability boundary between ingestion, the log and every projection.
//!
//! The payload is the normalised Segment message as JSON (format version `EVENT_FORMAT_VERSION`); the
//! columns beside it are copies of the fields readers filter on. Change either only by adding a new
//! version with an explicit conversion: events already in the log are never rewritten.

use chrono::{DateTime, Utc};

/// The version of the payload format written by this code.
pub const EVENT_FORMAT_VERSION: i16 = 1;

/// A place in the global order of the log. On SQLite `tx` is always 0 and `seq` is the row id; on
/// PostgreSQL `tx` is the id of the transaction that wrote the event, so that readers can follow the
/// commit order without skipping events whose sequence number was taken earlier but committed later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

impl Position {
    pub const START: Position = Position { tx: 0, seq: 0 };
    /// After every event.
    pub const END: Position = Position {
        tx: i64::MAX,
        seq: i64::MAX,
    };
}

/// The kind of an event: one of the six Segment message types, or an operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
    /// A command of an operator (a manual merge, a split, a rules change), appended to the log by the API
    /// so that it takes its place in the global order. Never accepted from ingestion: not in [`Self::ALL`].
    Operator,
}

impl MessageKind {
    pub const ALL: [MessageKind; 6] = [
        MessageKind::Track,
        MessageKind::Identify,
        MessageKind::Page,
        MessageKind::Screen,
        MessageKind::Group,
        MessageKind::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Track => "track",
            MessageKind::Identify => "identify",
            MessageKind::Page => "page",
            MessageKind::Screen => "screen",
            MessageKind::Group => "group",
            MessageKind::Alias => "alias",
            MessageKind::Operator => "operator",
        }
    }

    /// A Segment message type; never `operator`.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// A kind as the log stores it: a Segment type or `operator`.
    pub fn from_stored(raw: &str) -> Option<Self> {
        Self::parse(raw).or((raw == "operator").then_some(MessageKind::Operator))
    }
}

/// An event ready to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub workspace: String,
    pub message_id: String,
    pub kind: MessageKind,
    /// The `event` of a track, the `name` of a page or screen.
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// When it happened, clock skew corrected.
    pub event_time: DateTime<Utc>,
    /// When cdp received it.
    pub received_at: DateTime<Utc>,
    /// The normalised message as JSON.
    pub payload: String,
}

/// An event as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub position: Position,
    pub event: NewEvent,
}

/// Milliseconds since the epoch, the unit timestamps are stored in.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values clamp to the epoch rather than panic.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
