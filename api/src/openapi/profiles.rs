//! The profile paths of the OpenAPI document: the 360 profile (by id or identifier), its timeline,
//! memberships and consent, and erasure.

use serde_json::{json, Map, Value};

use super::read_responses;

/// A profile: lookup, the 360 view, erasure, timeline, memberships, consent.
pub(super) fn paths(paths: &mut Map<String, Value>) {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    paths.insert("/v1/profiles/lookup".into(), json!({
        "get": {
            "tags": ["query"],
            "summary": "The 360 profile holding an identifier",
            "security": [{"bearer": ["read"]}],
            "parameters": [
                {"name": "type", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"},
                 "description": "user_id, anonymous_id, email, phone, device_id, an externalIds type or a declared trait."},
                {"name": "value", "in": "query", "required": true, "schema": {"type": "string"},
                 "description": "Normalised as ingestion normalises it."}
            ],
            "responses": read_responses("The profile (as GET /v1/profiles/{id}) and `matched`."),
        },
        "delete": {
            "tags": ["compliance"],
            "summary": "Erases the profile holding an identifier (as DELETE /v1/profiles/{id}); the identifier is not echoed",
            "security": [{"bearer": ["admin"]}],
            "parameters": [
                {"name": "type", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}},
                {"name": "value", "in": "query", "required": true, "schema": {"type": "string"}}
            ],
            "responses": read_responses("What was erased."),
        }
    }));
    paths.insert("/v1/profiles/{id}".into(), json!({
        "get": {
            "tags": ["query"],
            "summary": "The 360 profile: identifiers with first/last seen, traits merged across sources (source priority, then event time, then message id; each with the event and channel that set it), event counts by type, event and channel, first/last seen, recent events, computed traits (`value`, `complete`, `last_event_at`) and tags (`value`, `manual`, `changed_at`, `caused_by`, `detail`)",
            "security": [{"bearer": ["read"]}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
                "description": "A profile id; a merged-away id answers with its survivor (`merged_away`: true)."}],
            "responses": read_responses("The profile."),
        },
        "delete": {
            "tags": ["compliance"],
            "summary": "Right to erasure: the profile and every profile merged into it. The subject keys of its events are destroyed (crypto-shredding: the log keeps rows nobody can read, so no replay or rebuild brings them back), its read models deleted, its identifiers redacted from the identity decisions, its messages dropped from the outbox and its refused messages from the quarantine; its segments are left and its tags taken off (published, cause `erasure`, no values). Recorded (who, when, which profile). Answers `erasure`, `profile_id`, `profiles`, `events`, `keys_destroyed`, `segments_left`, `profiles_refolded` (other profiles that held events under an erased subject, re-folded without them)",
            "security": [{"bearer": ["admin"]}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": read_responses("What was erased."),
        }
    }));
    paths.insert("/v1/profiles/{id}/events".into(), json!({
        "get": {
            "tags": ["query"],
            "summary": "The profile's timeline across every identity merged into it, newest first",
            "security": [{"bearer": ["read"]}],
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer"},
                 "description": "Page: events with `seq` below this (`next_before` of the previous page)."}
            ],
            "responses": read_responses("`items` (seq, message_id, type, name, channel, timestamp, received_at, message) and `next_before`."),
        }
    }));
    paths.insert("/v1/profiles/{id}/memberships".into(), json!({
        "get": {
            "tags": ["segments"],
            "summary": "Every enter and exit of the profile (and of profiles merged into it) with its cause; `segments` now, or with `at` the segments it was in then and why (`segments_at`, the recorded history) and `by_event_time` (`segments` its events up to `at` make it by event time under today's definitions, `events`, `latest_event`) — also for a time before a segment was defined",
            "security": [{"bearer": ["read"]}],
            "parameters": [id, {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
            "responses": read_responses("`history`, and `segments` or `segments_at`."),
        }
    }));
    paths.insert("/v1/profiles/{id}/consent".into(), json!({
        "get": {
            "tags": ["profiles"],
            "summary": "Where the profile stands per channel and purpose (granted, time, source; `revoked_by` when its identities disagree: a revoke wins) and the channels it may be reached on per purpose (opt-in: nothing recorded, not reachable)",
            "security": [{"bearer": ["read"]}],
            "parameters": [id],
            "responses": read_responses("`consent`, `reachable`."),
        },
        "put": {
            "tags": ["profiles"],
            "summary": "Records a choice `{channel: sms|email|push|wechat|phone, purpose: marketing|service|analytics (default marketing), granted, source}` as a `Segment Consent Preference Updated` message of the profile; answers once folded (202 if not within 20 s)",
            "security": [{"bearer": ["write"]}],
            "parameters": [id],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["channel", "granted"], "additionalProperties": false, "properties": {
                    "channel": {"type": "string", "enum": ["sms", "email", "push", "wechat", "phone"]},
                    "purpose": {"enum": ["marketing", "service", "analytics", null], "description": "marketing when absent or null"},
                    "granted": {"type": "boolean"},
                    "source": {"type": ["string", "null"]}}}}}},
            "responses": read_responses("The profile's consent after the change."),
        }
    }));
}
