//! The segment paths of the OpenAPI document: definitions, preview, members, the schema conditions
//! read, and the stream of changes.

use serde_json::{json, Map, Value};

use super::{definition_responses, read_responses};

/// Segments: definitions, preview, members, the schema, the stream.
pub(super) fn paths(paths: &mut Map<String, Value>) {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    paths.insert(
        "/v1/segments".into(),
        json!({
            "get": {
                "tags": ["segments"],
                "summary": "The workspace's segments with their status and member counts",
                "security": [{"bearer": ["read"]}],
                "responses": read_responses("`items`: each as GET /v1/segments/{id}."),
            }
        }),
    );
    paths.insert("/v1/segments/{id}".into(), json!({
        "get": {
            "tags": ["segments"],
            "summary": "A segment: definition, version, evaluation status (`status`, `profiles_done`; `members_filled`: its members were filled at once from the audience index, complete while the job still backfills) and `members`",
            "security": [{"bearer": ["read"]}],
            "parameters": [id],
            "responses": read_responses("The segment."),
        },
        "put": {
            "tags": ["segments"],
            "summary": "Define or change a segment; every profile is evaluated, and every enter and exit is recorded and published on `cdp.out.<workspace>.segment.<id>.entered|exited`",
            "description": "Body `{\"name\": \"..\", \"condition\": {..}}`. Conditions: `{\"all\": [..]}`, `{\"any\": [..]}`, `{\"not\": {..}}`, `{\"segment\": \"<id>\"}`, `{\"trait\": \"gender\", \"op\": \"neq\", \"value\": \"male\"}` (also `computed`, `tag`; negations hold for an unknown field), `{\"event\": \"Order Completed\", \"where\": [..], \"count\": {\"op\": \"gte\", \"value\": 3}, \"window\": \"7d\"}`, `{\"event\": \"Order Completed\", \"aggregate\": {\"function\": \"sum\", \"property\": \"properties.total\"}, \"op\": \"gte\", \"value\": 1000}`. `{\"sequence\": [{\"event\": \"Product Added\"}, {\"not_event\": \"Order Completed\"}], \"within\": \"2h\"}` (judged on the latest first step; `not_event` holds once the time has passed with no second step).",
            "security": [{"bearer": ["admin"]}],
            "parameters": [id],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentDefinition"}}}},
            "responses": definition_responses("The stored segment with its status."),
        },
        "delete": {
            "tags": ["segments"],
            "summary": "Delete a segment (refused while another segment reads it); its members exit",
            "security": [{"bearer": ["admin"]}],
            "parameters": [id],
            "responses": definition_responses("`status`: deleted."),
        }
    }));
    let mut preview_responses = read_responses("The preview.");
    preview_responses["200"] = json!({"description": "The preview.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentPreview"}}}});
    preview_responses["409"] =
        json!({"description": "The condition reads a segment that does not exist."});
    paths.insert("/v1/segments/preview".into(), json!({
        "post": {
            "tags": ["segments"],
            "summary": "Insight before selection: a definition (as PUT /v1/segments/{id} takes it) evaluated over every profile without saving it, from the workspace's audience index — `count`, `profiles` looked at, a `sample` of members, `totals` (spend, orders), `overlap` with each saved segment, on request a `breakdown` by one or two fields, `took_ms`",
            "security": [{"bearer": ["read"]}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentPreviewRequest"}}}},
            "responses": preview_responses,
        }
    }));
    paths.insert("/v1/segments/{id}/members".into(), json!({
        "get": {
            "tags": ["segments"],
            "summary": "The segment's members in profile id order: `format=json` a page (`items`, `next_after`); `ndjson` or `csv` the whole segment streamed (one page of members in memory at a time), or a page with `limit` (next page in the `x-next-after` header). `fields` chooses the columns (CSV header, NDJSON and JSON keys); `channel` keeps the members who may be reached there and have its address, and adds the address",
            "security": [{"bearer": ["read"]}],
            "parameters": [id, {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100000}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "ndjson", "csv"]}},
                {"name": "fields", "in": "query", "description": "Comma-separated columns: `profile_id`, `since`, `caused_by`; `identifiers.<type>` (the most recently seen value; phones in E.164), `traits.<name>`, `computed_traits.<name>`, `tags.<name>`; a bare name is a membership column, else an identifier type the rules know, else a computed trait, else a tag, else a trait. Default `profile_id,since,caused_by`.", "schema": {"type": "string", "pattern": "^ *((identifiers|traits|computed_traits|tags)\\.)?[A-Za-z0-9_-]{1,64} *(, *((identifiers|traits|computed_traits|tags)\\.)?[A-Za-z0-9_-]{1,64} *)*$"}},
                {"name": "channel", "in": "query", "description": "Only members who may be reached on this channel and have its address (sms, phone: `phone`; email: `email`; wechat: `wechat_openid`; push: `device_id`), which is added as a column.", "schema": {"type": "string", "enum": ["sms", "email", "push", "wechat", "phone"]}},
                {"name": "purpose", "in": "query", "schema": {"type": "string", "enum": ["marketing", "service", "analytics"], "default": "marketing"}}],
            "responses": read_responses("The members."),
        }
    }));
    paths.insert("/v1/schema".into(), json!({
        "get": {
            "tags": ["segments"],
            "summary": "What conditions can use: `operators` per type (string, number, time, boolean, list), profile `traits` (type, candidate values, from a sample of profiles), `computed_traits`, `tags` (with their values), `segments`, and `events` with their property paths (line items as `properties.products[].category`; objects with id and name offer `<path>.id` with the name as label)",
            "security": [{"bearer": ["read"]}],
            "responses": read_responses("The schema."),
        }
    }));
    paths.insert("/v1/stream".into(), json!({
        "get": {
            "tags": ["segments"],
            "summary": "Server-sent events of the workspace's tag changes and segment enters and exits (`event`: the type, `id`: the outbox sequence, `data`: the message as published on NATS)",
            "security": [{"bearer": ["read"]}],
            "responses": read_responses("`text/event-stream`."),
        }
    }));
}
