//! The ingestion paths of the OpenAPI document: the Segment calls and `/v1/batch`, and what became of
//! what came in (`/v1/quarantine`, `/v1/quality`).

use serde_json::{json, Map, Value};

use super::{read_responses, unavailable_response};

/// The Segment calls, the batch, the quarantine and the data-quality findings.
pub(super) fn paths(paths: &mut Map<String, Value>) {
    for kind in ["track", "identify", "page", "screen", "group", "alias"] {
        paths.insert(format!("/v1/{kind}"), ingest_operation(kind));
    }
    paths.insert("/v1/batch".into(), json!({
        "post": {
            "tags": ["ingestion"],
            "summary": "Segment batch: up to 500 KB of messages",
            "security": [{"writeKey": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["batch"],
                "properties": {
                    "batch": {"type": "array", "items": {"$ref": "#/components/schemas/Message"}},
                    "sentAt": {"type": "string", "format": "date-time"},
                    "writeKey": {"type": "string"}
                }}}}},
            "responses": ingest_responses(),
        }
    }));
    paths.insert("/v1/quarantine".into(), json!({
        "get": {
            "tags": ["query"],
            "summary": "Refused messages of the workspace with their reasons, newest first",
            "security": [{"bearer": ["read"]}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer"},
                 "description": "Page: only entries with ids below this (`next_before` of the previous page)."}
            ],
            "responses": read_responses("`items` ([{id, source, received_at, code, field, reason, payload}], newest first) and `next_before`; the first page (no `before`) also `total` and `by_reason` ([{field, code, count}] over every refusal of the workspace, the most frequent first; `field` null for a refusal of the whole message)."),
        }
    }));
    paths.insert("/v1/quality".into(), json!({
        "get": {
            "tags": ["query"],
            "summary": "Data quality: values accepted messages carried that were kept but not used as identifiers (a phone \"N/A\", a placeholder e-mail), counted by field and reason, and listed newest first with their message",
            "security": [{"bearer": ["read"]}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer"},
                 "description": "Page: only findings with ids below this (`next_before` of the previous page)."}
            ],
            "responses": read_responses("`total`, `by_reason` ([{field, code, count}], the most frequent first), `items` ([{id, message_id, field, code, reason, source, received_at}], newest first; no value is repeated) and `next_before`."),
        }
    }));
}

fn ingest_operation(kind: &str) -> Value {
    json!({
        "post": {
            "tags": ["ingestion"],
            "summary": format!("Segment `{kind}` call"),
            "description": "Segment Tracking API compatible. Auth: HTTP Basic with the write key as user \
                name, or `writeKey` in the body. `Content-Encoding: gzip` accepted. 32 KB per message.",
            "security": [{"writeKey": []}],
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Message"}}}},
            "responses": ingest_responses(),
        }
    })
}

fn ingest_responses() -> Value {
    json!({
        "200": {"description": "Committed (or already stored under this messageId).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}},
        "400": {"description": "Refused and quarantined; names the field and the reason. For a batch, \
            the other messages were stored and `rejected` lists the refused ones by index.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "Missing or unknown write key.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "413": {"description": "A message over 32 KB or a body over 500 KB.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "429": {"description": "The workspace's ingestion budget (`CDP_RATE_INGEST` messages/s, every message of a batch counted) is spent: nothing of the request was stored; retry after `Retry-After` seconds.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "503": unavailable_response(),
    })
}
