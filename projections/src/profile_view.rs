//! The first 360 view, keyed by identifier: traits (latest value wins, with when and from which event),
//! event counts, first and last seen, and the last events. `ProfileView::apply` is pure; the storage of
//! views (one JSON document per identifier) is `ProfileViews`.

use std::collections::{BTreeMap, HashMap};

use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::ident::IdentifierType;
use cdp_domain::message::{rfc3339, MessageKind};
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{QueryBuilder, Row};

use crate::runner::{ModelTx, Projection, ProjectionError};

/// How many recent events a view keeps.
pub const RECENT_EVENTS: usize = 50;

/// A trait value with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: Value,
    /// The event time of the message that set it.
    pub set_at: DateTime<Utc>,
    /// The messageId that set it.
    pub message_id: String,
    /// `identify`, `track`, … : the kind of message that set it.
    pub source: String,
}

/// One line of the recent-events list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// The view of one identifier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileView {
    pub traits: BTreeMap<String, TraitValue>,
    /// Messages by type (`track`, `identify`, …).
    pub counts_by_type: BTreeMap<String, u64>,
    /// Track messages by event name.
    pub counts_by_event: BTreeMap<String, u64>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Newest first by event time.
    pub recent_events: Vec<EventSummary>,
    /// Other identifiers seen on the same messages, by type.
    pub identifiers: BTreeMap<String, Vec<String>>,
    /// The last event applied; events at or before it are skipped (at-least-once delivery).
    pub applied_through: (i64, i64),
}

impl ProfileView {
    /// Folds one event into the view. Idempotent: an event at or before `applied_through` changes nothing.
    pub fn apply(
        &mut self,
        event: &StoredEvent,
        payload: &Value,
        ids: &[(IdentifierType, String)],
    ) {
        let at = (event.position.tx, event.position.seq);
        if at <= self.applied_through {
            return;
        }
        self.applied_through = at;
        let e = &event.event;
        let time = e.event_time;
        *self
            .counts_by_type
            .entry(e.kind.as_str().into())
            .or_default() += 1;
        if e.kind == MessageKind::Track {
            if let Some(name) = &e.name {
                *self.counts_by_event.entry(name.clone()).or_default() += 1;
            }
        }
        self.first_seen = Some(self.first_seen.map_or(time, |t| t.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |t| t.max(time)));

        let trait_sources = [payload.get("traits"), payload.pointer("/context/traits")];
        for traits in trait_sources.into_iter().flatten() {
            let Value::Object(traits) = traits else {
                continue;
            };
            for (key, value) in traits {
                // Latest event time wins; an older event arriving late does not overwrite a newer value.
                let newer = self.traits.get(key).is_none_or(|old| old.set_at <= time);
                if newer {
                    self.traits.insert(
                        key.clone(),
                        TraitValue {
                            value: value.clone(),
                            set_at: time,
                            message_id: e.message_id.clone(),
                            source: e.kind.as_str().into(),
                        },
                    );
                }
            }
        }

        let summary = EventSummary {
            message_id: e.message_id.clone(),
            kind: e.kind.as_str().into(),
            name: e.name.clone(),
            timestamp: time,
            received_at: e.received_at,
        };
        let slot = self
            .recent_events
            .partition_point(|s| s.timestamp >= summary.timestamp);
        if slot < RECENT_EVENTS {
            self.recent_events.insert(slot, summary);
            self.recent_events.truncate(RECENT_EVENTS);
        }

        for (kind, value) in ids {
            let seen = self.identifiers.entry(kind.as_str().into()).or_default();
            if !seen.contains(value) {
                seen.push(value.clone());
            }
        }
    }

    /// The view as the API shows it.
    pub fn to_json(&self, id_type: IdentifierType, value: &str) -> Value {
        let traits: serde_json::Map<String, Value> = self
            .traits
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    serde_json::json!({
                        "value": t.value,
                        "set_at": rfc3339(t.set_at),
                        "message_id": t.message_id,
                        "source": t.source,
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "key": {"type": id_type.as_str(), "value": value},
            "identifiers": self.identifiers,
            "traits": traits,
            "event_counts": {"by_type": self.counts_by_type, "by_event": self.counts_by_event},
            "first_seen": self.first_seen.map(rfc3339),
            "last_seen": self.last_seen.map(rfc3339),
            "recent_events": self.recent_events,
        })
    }
}

/// The identifiers an event carries, normalised as ingestion normalised them.
pub fn identifiers_of(event: &StoredEvent, payload: &Value) -> Vec<(IdentifierType, String)> {
    let e = &event.event;
    let mut ids = Vec::with_capacity(3);
    if let Some(u) = &e.user_id {
        ids.push((IdentifierType::UserId, u.clone()));
    }
    if let Some(a) = &e.anonymous_id {
        ids.push((IdentifierType::AnonymousId, a.clone()));
    }
    for (kind, field) in [
        (IdentifierType::Email, "email"),
        (IdentifierType::Phone, "phone"),
    ] {
        for traits in [payload.get("traits"), payload.pointer("/context/traits")] {
            if let Some(Value::String(v)) = traits.and_then(|t| t.get(field)) {
                let id = (kind, v.clone());
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

type ViewKey = (String, IdentifierType, String);

/// The profile-view projection and its storage.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProfileViews;

impl ProfileViews {
    pub const NAME: &'static str = "profile_views";

    /// The view of one identifier, if any event carried it.
    pub async fn load(
        store: &Store,
        workspace: &str,
        id_type: IdentifierType,
        value: &str,
    ) -> Result<Option<ProfileView>, ProjectionError> {
        let row = match store {
            Store::Sqlite(s) => sqlx::query(
                "SELECT view FROM profile_views WHERE workspace = ? AND id_type = ? AND id_value = ?",
            )
            .bind(workspace)
            .bind(id_type.as_str())
            .bind(value)
            .fetch_optional(s.read_pool())
            .await?
            .map(|r| r.try_get::<String, _>(0)),
            Store::Postgres(s) => sqlx::query(
                "SELECT view FROM profile_views WHERE workspace = $1 AND id_type = $2 AND id_value = $3",
            )
            .bind(workspace)
            .bind(id_type.as_str())
            .bind(value)
            .fetch_optional(s.pool())
            .await?
            .map(|r| r.try_get::<String, _>(0)),
        };
        row.transpose()?
            .map(|json| serde_json::from_str(&json).map_err(ProjectionError::corrupt))
            .transpose()
    }

    /// Reads through the pools, not the write transaction: only the runner writes views, and it checks
    /// its checkpoint again under the write lock.
    async fn load_many(
        store: &Store,
        keys: &[ViewKey],
    ) -> Result<HashMap<ViewKey, ProfileView>, ProjectionError> {
        let mut found = HashMap::with_capacity(keys.len());
        const KEYS_PER_STATEMENT: usize = 300;
        for chunk in keys.chunks(KEYS_PER_STATEMENT) {
            let rows = match store {
                Store::Sqlite(s) => {
                    let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
                        "SELECT workspace, id_type, id_value, view FROM profile_views \
                         WHERE (workspace, id_type, id_value) IN (VALUES ",
                    );
                    let mut sep = q.separated(", ");
                    for (w, t, v) in chunk {
                        sep.push("(")
                            .push_bind_unseparated(w)
                            .push_unseparated(", ")
                            .push_bind_unseparated(t.as_str())
                            .push_unseparated(", ")
                            .push_bind_unseparated(v)
                            .push_unseparated(")");
                    }
                    q.push(")");
                    q.build()
                        .fetch_all(s.read_pool())
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                        .collect::<Result<Vec<(String, String, String, String)>, sqlx::Error>>()?
                }
                Store::Postgres(s) => {
                    let (w, t, v) = unzip_keys(chunk);
                    sqlx::query(
                        "SELECT p.workspace, p.id_type, p.id_value, p.view FROM profile_views p \
                         JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS k(w, t, v) \
                           ON p.workspace = k.w AND p.id_type = k.t AND p.id_value = k.v",
                    )
                    .bind(&w)
                    .bind(&t)
                    .bind(&v)
                    .fetch_all(s.pool())
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                    .collect::<Result<Vec<(String, String, String, String)>, sqlx::Error>>()?
                }
            };
            for (w, t, v, json) in rows {
                let t = IdentifierType::parse(&t).map_err(ProjectionError::corrupt)?;
                let view = serde_json::from_str(&json).map_err(ProjectionError::corrupt)?;
                found.insert((w, t, v), view);
            }
        }
        Ok(found)
    }

    async fn save_many(
        tx: &mut ModelTx<'_>,
        views: &[(ViewKey, String)],
    ) -> Result<(), ProjectionError> {
        const ROWS_PER_STATEMENT: usize = 500;
        for chunk in views.chunks(ROWS_PER_STATEMENT) {
            match tx {
                ModelTx::Sqlite(tx) => {
                    let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
                        "INSERT INTO profile_views (workspace, id_type, id_value, view) ",
                    );
                    q.push_values(chunk, |mut row, ((w, t, v), json)| {
                        row.push_bind(w)
                            .push_bind(t.as_str())
                            .push_bind(v)
                            .push_bind(json);
                    });
                    q.push(
                        " ON CONFLICT (workspace, id_type, id_value) DO UPDATE SET view = excluded.view",
                    );
                    q.build().execute(&mut **tx).await?;
                }
                ModelTx::Postgres(tx) => {
                    let keys: Vec<ViewKey> = chunk.iter().map(|(k, _)| k.clone()).collect();
                    let (w, t, v) = unzip_keys(&keys);
                    let json: Vec<&str> = chunk.iter().map(|(_, j)| j.as_str()).collect();
                    sqlx::query(
                        "INSERT INTO profile_views (workspace, id_type, id_value, view) \
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) \
                         ON CONFLICT (workspace, id_type, id_value) DO UPDATE SET view = excluded.view",
                    )
                    .bind(&w)
                    .bind(&t)
                    .bind(&v)
                    .bind(&json)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
        Ok(())
    }
}

fn unzip_keys(keys: &[ViewKey]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let mut w = Vec::with_capacity(keys.len());
    let mut t = Vec::with_capacity(keys.len());
    let mut v = Vec::with_capacity(keys.len());
    for (a, b, c) in keys {
        w.push(a.as_str());
        t.push(b.as_str());
        v.push(c.as_str());
    }
    (w, t, v)
}

/// Views ready to be written: key and JSON document.
#[derive(Debug, Default)]
pub struct PreparedViews(Vec<(ViewKey, String)>);

impl Projection for ProfileViews {
    type Prepared = PreparedViews;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn prepare(
        &self,
        store: &Store,
        events: &[StoredEvent],
    ) -> Result<PreparedViews, ProjectionError> {
        let mut parsed = Vec::with_capacity(events.len());
        let mut keys: Vec<ViewKey> = Vec::new();
        for event in events {
            let payload: Value =
                serde_json::from_str(&event.event.payload).map_err(ProjectionError::corrupt)?;
            let ids = identifiers_of(event, &payload);
            for (t, v) in &ids {
                keys.push((event.event.workspace.clone(), *t, v.clone()));
            }
            parsed.push((event, payload, ids));
        }
        keys.sort_by(|a, b| (&a.0, a.1.as_str(), &a.2).cmp(&(&b.0, b.1.as_str(), &b.2)));
        keys.dedup();
        let mut views = Self::load_many(store, &keys).await?;
        for (event, payload, ids) in &parsed {
            for (t, v) in ids {
                let key = (event.event.workspace.clone(), *t, v.clone());
                views.entry(key).or_default().apply(event, payload, ids);
            }
        }
        let mut rows = Vec::with_capacity(views.len());
        for (key, view) in views {
            let json = serde_json::to_string(&view).map_err(ProjectionError::corrupt)?;
            rows.push((key, json));
        }
        Ok(PreparedViews(rows))
    }

    async fn write(
        &self,
        tx: &mut ModelTx<'_>,
        prepared: PreparedViews,
    ) -> Result<(), ProjectionError> {
        Self::save_many(tx, &prepared.0).await
    }
}

/// The position a view has applied through, for tests and diagnostics.
pub fn applied_through(view: &ProfileView) -> Position {
    Position {
        tx: view.applied_through.0,
        seq: view.applied_through.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::event::NewEvent;
    use chrono::TimeZone;
    use serde_json::json;

    fn event(seq: i64, hour: u32, payload: Value) -> (StoredEvent, Value) {
        let time = Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap();
        let stored = StoredEvent {
            position: Position { tx: 0, seq },
            event: NewEvent {
                workspace: "w".into(),
                message_id: format!("m{seq}"),
                kind: MessageKind::parse(payload["type"].as_str().unwrap()).unwrap(),
                name: payload["event"].as_str().map(String::from),
                user_id: Some("u".into()),
                anonymous_id: None,
                event_time: time,
                received_at: time,
                payload: payload.to_string(),
            },
        };
        (stored, payload)
    }

    #[test]
    fn the_latest_trait_wins_even_when_it_arrives_first() {
        let mut view = ProfileView::default();
        let (newer, p1) = event(
            1,
            10,
            json!({"type": "identify", "traits": {"plan": "gold"}}),
        );
        let (older, p2) = event(
            2,
            9,
            json!({"type": "identify", "traits": {"plan": "silver", "city": "SH"}}),
        );
        view.apply(&newer, &p1, &[]);
        view.apply(&older, &p2, &[]);
        assert_eq!(view.traits["plan"].value, json!("gold"));
        assert_eq!(view.traits["plan"].message_id, "m1");
        assert_eq!(view.traits["city"].value, json!("SH"));
        assert_eq!(view.first_seen.unwrap().format("%H").to_string(), "09");
        assert_eq!(view.recent_events[0].message_id, "m1");
    }

    #[test]
    fn applying_an_event_twice_changes_nothing() {
        let mut view = ProfileView::default();
        let (e, p) = event(1, 10, json!({"type": "track", "event": "Order Completed"}));
        view.apply(&e, &p, &[]);
        let once = view.clone();
        view.apply(&e, &p, &[]);
        assert_eq!(view, once);
        assert_eq!(view.counts_by_event["Order Completed"], 1);
    }

    #[test]
    fn recent_events_keep_the_newest_fifty() {
        let mut view = ProfileView::default();
        for i in 0..120 {
            let (e, p) = event(i + 1, (i % 24) as u32, json!({"type": "page"}));
            view.apply(&e, &p, &[]);
        }
        assert_eq!(view.recent_events.len(), RECENT_EVENTS);
        assert!(view
            .recent_events
            .windows(2)
            .all(|w| w[0].timestamp >= w[1].timestamp));
        assert_eq!(view.counts_by_type["page"], 120);
    }
}
