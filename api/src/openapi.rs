//! The OpenAPI 3.1 document served at `/openapi.json`, describing every endpoint of the service. Each
//! area's paths are a module of their own (`ingestion`, `profiles`, `identity`, `catalog`, `segments`);
//! here are the answers they share, the audit, operations and console paths, the components, and what
//! holds for every operation (`tighten`). The definition languages' schemas are `openapi_definitions`
//! and `openapi_preview`.

use serde_json::{json, Value};

mod catalog;
mod identity;
mod ingestion;
mod profiles;
mod segments;

/// Every (method, path) the router serves; the end-to-end suite checks each one answers.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("post", "/v1/track"),
    ("post", "/v1/identify"),
    ("post", "/v1/page"),
    ("post", "/v1/screen"),
    ("post", "/v1/group"),
    ("post", "/v1/alias"),
    ("post", "/v1/batch"),
    ("get", "/v1/profiles/lookup"),
    ("get", "/v1/profiles/{id}"),
    ("get", "/v1/profiles/{id}/events"),
    ("get", "/v1/quarantine"),
    ("get", "/v1/quality"),
    ("get", "/v1/profiles/{id}/identity"),
    ("get", "/v1/identity/conflicts"),
    ("get", "/v1/identity/rules"),
    ("put", "/v1/identity/rules"),
    ("post", "/v1/identity/merge"),
    ("post", "/v1/identity/split"),
    ("get", "/v1/traits"),
    ("get", "/v1/traits/{name}"),
    ("put", "/v1/traits/{name}"),
    ("delete", "/v1/traits/{name}"),
    ("get", "/v1/tags"),
    ("get", "/v1/tags/{name}"),
    ("put", "/v1/tags/{name}"),
    ("delete", "/v1/tags/{name}"),
    ("post", "/v1/profiles/{id}/tags/{tag}"),
    ("delete", "/v1/profiles/{id}/tags/{tag}"),
    ("get", "/v1/segments"),
    ("post", "/v1/segments/preview"),
    ("get", "/v1/segments/{id}"),
    ("put", "/v1/segments/{id}"),
    ("delete", "/v1/segments/{id}"),
    ("get", "/v1/segments/{id}/members"),
    ("get", "/v1/profiles/{id}/memberships"),
    ("delete", "/v1/profiles/lookup"),
    ("delete", "/v1/profiles/{id}"),
    ("get", "/v1/profiles/{id}/consent"),
    ("put", "/v1/profiles/{id}/consent"),
    ("get", "/v1/stream"),
    ("get", "/v1/schema"),
    ("get", "/v1/audit"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/"),
    ("get", "/v1/console/session"),
    ("get", "/v1/console/segment-sizes"),
];

/// The database is out of reach: `Retry-After` and `{"error": {"code": "unavailable", "field": "database"}}`.
fn unavailable_response() -> Value {
    json!({"description": "The database cannot be reached; retry after `Retry-After` seconds (a retried message is stored once, by its messageId).",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

pub(crate) fn read_responses(ok: &str) -> Value {
    json!({
        "200": {"description": ok},
        "400": {"description": "Invalid parameter.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "Missing or unknown token.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "403": {"description": "The token lacks the scope.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "404": {"description": "Not found.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "429": {"description": "The workspace's API budget (`CDP_RATE_API` requests/s) is spent; retry after `Retry-After` seconds.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "503": unavailable_response(),
    })
}

/// The answers of a definition's change (trait, tag, segment), applied in log order by the resolver.
fn definition_responses(ok: &str) -> Value {
    json!({
        "200": {"description": ok},
        "202": {"description": "In the log, not applied within 20 s; it will be applied in log order (`command_id`)."},
        "400": {"description": "Invalid definition; `field` names the place (e.g. `where[1].op`, `condition.all[0].value`).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "Missing or unknown token."},
        "403": {"description": "The token lacks the admin scope."},
        "409": {"description": "Refused as the catalog stands (e.g. a tag reads the trait being deleted, a segment reads a segment that does not exist or reads itself)."},
    })
}

/// The console's endpoints (`crate::console`) for `/openapi.json`.
fn console_paths(paths: &mut serde_json::Map<String, Value>) {
    paths.insert(
        "/".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "The marketer's web console (static; every call it makes carries the Bearer token typed into it)",
            "responses": {"200": {"description": "`text/html`."}},
        }}),
    );
    paths.insert(
        "/v1/console/session".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "The calling token's workspace and scopes (`read`, `write`, `admin`: every scope it allows)",
            "security": [{"bearer": ["read"]}],
            "responses": read_responses("`workspace` and `scopes`."),
        }}),
    );
    paths.insert(
        "/v1/console/segment-sizes".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "Each segment's members at the end of each of the last `days` UTC days: its members now, less the enters and more the exits the membership history recorded after each day",
            "security": [{"bearer": ["read"]}],
            "parameters": [{"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366}}],
            "responses": read_responses("`dates` and `items` (`segment`, `sizes`, one per date)."),
        }}),
    );
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    ingestion::paths(&mut paths);
    profiles::paths(&mut paths);
    identity::paths(&mut paths);
    catalog::paths(&mut paths);
    segments::paths(&mut paths);
    operations_paths(&mut paths);
    console_paths(&mut paths);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {"title": "cdp", "version": env!("CARGO_PKG_VERSION"),
            "description": "Customer data platform: Segment-compatible collection, immutable event log, 360 view."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic", "description": "The write key as user name, empty password."},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {
                "Success": {"type": "object", "properties": {
                    "success": {"type": "boolean"},
                    "dropped_identifiers": {"$ref": "#/components/schemas/DroppedIdentifiers"}}},
                "DroppedIdentifiers": {"type": "array", "description": "Values the message(s) carried that were kept but are no identifier (GET /v1/quality); the message was stored.",
                    "items": {"type": "object", "properties": {
                        "index": {"type": "integer", "description": "The message's index in a batch."},
                        "field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}},
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "field": {"type": "string"}, "message": {"type": "string"}}},
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "code": {"type": "string"},
                        "field": {"type": "string"}, "message": {"type": "string"}}}},
                    "dropped_identifiers": {"$ref": "#/components/schemas/DroppedIdentifiers"}}},
                "Message": {"type": "object", "properties": {
                    "type": {"type": "string", "enum": ["track", "identify", "page", "screen", "group", "alias"]},
                    "userId": {"type": ["string", "number"]},
                    "anonymousId": {"type": ["string", "number"]},
                    "previousId": {"type": ["string", "number"]},
                    "groupId": {"type": ["string", "number"]},
                    "messageId": {"type": "string"},
                    "event": {"type": "string"},
                    "name": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "sentAt": {"type": "string", "format": "date-time"},
                    "context": {"type": "object"},
                    "properties": {"type": "object"},
                    "traits": {"type": "object"},
                    "integrations": {"type": "object"}
                }}
            }
        }
    });
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        schemas.extend(crate::openapi_definitions::schemas());
        schemas.extend(crate::openapi_preview::schemas());
    }
    tighten(&mut document);
    document
}

/// The workspace's audit log and the operations endpoints (health, readiness, metrics, this document).
fn operations_paths(paths: &mut serde_json::Map<String, Value>) {
    paths.insert("/v1/audit".into(), json!({
        "get": {
            "tags": ["security"],
            "summary": "The workspace's audit log (append-only), newest first: every call with a token that needed the admin scope or changed something, and every segment export — `seq`, `at`, `actor` (the credential's kind and the start of its SHA-256, never the secret), `scope`, `action` (identity.merge, identity.split, identity.rules, trait.put, trait.delete, tag.put, tag.delete, profile.tag, profile.untag, segment.put, segment.delete, segment.preview, segment.export, admin.read, …), `method`, `path` (without the query string), `target`, `status`, `request_id` (the caller's X-Request-Id)",
            "security": [{"bearer": ["admin"]}],
            "parameters": [
                {"name": "action", "in": "query", "schema": {"type": "string"}},
                {"name": "actor", "in": "query", "schema": {"type": "string"}},
                {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Inclusive."},
                {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "Inclusive."},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "after", "in": "query", "schema": {"type": "integer"}, "description": "Only entries with a larger seq."},
                {"name": "before", "in": "query", "schema": {"type": "integer"}, "description": "Only entries with a smaller seq."},
                {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["desc", "asc"], "default": "desc"}}
            ],
            "responses": read_responses("`items`, `order` and `next` (`{\"before\": seq}` newest first, `{\"after\": seq}` oldest first; null on the last page)."),
        }
    }));
    for (path, summary) in [
        ("/healthz", "Liveness"),
        ("/readyz", "Readiness: database and NATS reachable; the engine partitions this instance runs and every partition's lease"),
        ("/metrics", "Prometheus metrics"),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {"tags": ["operations"], "summary": summary,
            "responses": {"200": {"description": "OK"}, "503": {"description": "Not ready"}}}}),
        );
    }
}

/// What holds for every operation, written once: a string parameter never holds U+0000 (the edge
/// refuses it) and a required one is not empty; an integer parameter is a 64-bit one; every operation
/// may answer 404 and 503, and every error has the JSON error body.
fn tighten(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operations in paths.values_mut() {
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let parameters = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut);
            for parameter in parameters.into_iter().flatten() {
                let required = parameter["required"] == json!(true);
                let schema = &mut parameter["schema"];
                match schema["type"].as_str() {
                    Some("string") if schema.get("enum").is_none() => {
                        if schema.get("pattern").is_none() {
                            schema["pattern"] = json!("^[^\\u0000]*$");
                        }
                        if required {
                            schema["minLength"] = json!(1);
                        }
                    }
                    Some("integer") => {
                        schema["format"] = json!("int64");
                        if schema.get("minimum").is_none() {
                            schema["minimum"] = json!(i64::MIN);
                        }
                        if schema.get("maximum").is_none() {
                            schema["maximum"] = json!(i64::MAX);
                        }
                    }
                    _ => {}
                }
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            responses
                .entry("404")
                .or_insert_with(|| json!({"description": "Not found."}));
            responses.entry("503").or_insert_with(unavailable_response);
            for (status, response) in responses.iter_mut() {
                if status.starts_with('4') && response.get("content").is_none() {
                    response["content"] = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
                }
            }
        }
    }
}
