//! The 360 view's JSON shape: a profile document and its recent events as `GET /v1/profiles/{id}` shows them.

use cdp_domain::message::rfc3339;
use cdp_domain::profile::{EventSummary, ProfileDoc};
use serde_json::{json, Value};

/// The profile as the API shows it, with its most recent events (newest first).
pub fn profile_view(doc: &ProfileDoc, recent_events: &[EventSummary]) -> Value {
    let identifiers: Vec<Value> = doc
        .linked
        .iter()
        .map(|id| {
            let seen = doc.seen.get(&id.id_type).and_then(|v| v.get(&id.value));
            json!({
                "type": id.id_type,
                "value": id.value,
                "first_seen": seen.map(|s| rfc3339(s.first)),
                "last_seen": seen.map(|s| rfc3339(s.last)),
            })
        })
        .collect();
    let traits: serde_json::Map<String, Value> = doc
        .traits
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                json!({
                    "value": t.value,
                    "set_at": rfc3339(t.set_at),
                    "message_id": t.message_id,
                    "channel": t.channel,
                    "type": t.kind,
                }),
            )
        })
        .collect();
    let recent: Vec<Value> = recent_events
        .iter()
        .map(|e| {
            json!({
                "message_id": e.message_id,
                "type": e.kind,
                "name": e.name,
                "channel": e.channel,
                "timestamp": rfc3339(e.timestamp),
                "received_at": rfc3339(e.received_at),
            })
        })
        .collect();
    json!({
        "identifiers": identifiers,
        "traits": traits,
        "event_counts": {
            "total": doc.events,
            "by_type": doc.counts_by_type,
            "by_event": doc.counts_by_event,
            "by_channel": doc.counts_by_channel,
        },
        "first_seen": doc.first_seen.map(rfc3339),
        "last_seen": doc.last_seen.map(rfc3339),
        "recent_events": recent,
    })
}
