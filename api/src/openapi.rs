//! The OpenAPI 3.1 document served at `/openapi.json`, describing every endpoint of the service.

use serde_json::{json, Value};

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
    let command_responses = |ok: &str| {
        json!({
            "200": {"description": ok},
            "202": {"description": "In the log, not decided within 20 s; it will be applied in log order (`command_id`)."},
            "400": {"description": "Invalid body; names the field.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "Missing or unknown token."},
            "403": {"description": "The token lacks the admin scope."},
            "404": {"description": "No such profile; names the field."},
            "409": {"description": "Refused as the graph stands (already one profile, an identifier it does not hold, a cap)."},
            "503": unavailable_response(),
        })
    };
    paths.insert("/v1/identity/merge".into(), json!({
        "post": {
            "tags": ["identity"],
            "summary": "Operator merge of profiles into the earliest of them",
            "security": [{"bearer": ["admin"]}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["profile_ids"], "properties": {
                    "profile_ids": {"type": "array", "items": {"type": "string", "pattern": "^p_[0-9a-f]{20}$"}, "minItems": 2, "maxItems": 100, "uniqueItems": true},
                    "reason": {"type": "string"}}}}}},
            "responses": command_responses("`profile_id` (the survivor), `merged`, `command_id`, `decisions`."),
        }
    }));
    paths.insert("/v1/identity/split".into(), json!({
        "post": {
            "tags": ["identity"],
            "summary": "Move identifiers, and the events that carried them, to a new profile kept apart from the old one",
            "security": [{"bearer": ["admin"]}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["profile_id", "identifiers"], "properties": {
                    "profile_id": {"type": "string", "pattern": "^p_[0-9a-f]{20}$"},
                    "identifiers": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["type", "value"],
                        "properties": {"type": {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"},
                                       "value": {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}}}},
                    "reason": {"type": "string"}}}}}},
            "responses": command_responses("`profile_id` (the new profile), `from`, `identifiers`, `command_id`, `decisions`."),
        }
    }));
    let name = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "1-64 of letters, digits, `_`, `-`, starting with a letter."});
    let definition_responses = |ok: &str| {
        json!({
            "200": {"description": ok},
            "202": {"description": "In the log, not applied within 20 s; it will be applied in log order (`command_id`)."},
            "400": {"description": "Invalid definition; `field` names the place (e.g. `where[1].op`, `condition.all[0].value`).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "Missing or unknown token."},
            "403": {"description": "The token lacks the admin scope."},
            "409": {"description": "Refused as the catalog stands (e.g. a tag reads the trait being deleted, a segment reads a segment that does not exist or reads itself)."},
        })
    };
    paths.insert(
        "/v1/traits".into(),
        json!({
            "get": {
                "tags": ["catalog"],
                "summary": "The workspace's computed traits with their backfill status",
                "security": [{"bearer": ["read"]}],
                "responses": read_responses("`items`: each as GET /v1/traits/{name}."),
            }
        }),
    );
    paths.insert("/v1/traits/{name}".into(), json!({
        "get": {
            "tags": ["catalog"],
            "summary": "A computed trait: its definition, version, and backfill progress (`status` backfilling|ready, `profiles_done`, `profiles_total`)",
            "security": [{"bearer": ["read"]}],
            "parameters": [name],
            "responses": read_responses("The trait."),
        },
        "put": {
            "tags": ["catalog"],
            "summary": "Define or change a computed trait; every existing profile gets it from the log (backfill), new events update it live",
            "description": "Body: `{\"event\": \"Order Completed\", \"function\": \"sum\", \"property\": \"properties.total\", \"window\": \"30d\", \"where\": [{\"property\": \"properties.products[].category\", \"op\": \"eq\", \"value\": \"shoes\"}]}`. Functions: count, sum, min, max, average, first, last, most_frequent, distinct_count, unique_list, days_active. Windows: `Nd` (UTC calendar days counting today), `Nh`, or absent / `all`. Properties are paths (`properties.store.id`, `properties.products[].category`) or products of paths over line items (`properties.products[].price * properties.products[].quantity`). Filter operators: eq neq in not_in contains not_contains starts_with is_set is_not_set gt gte lt lte between before after within_last not_within_last contains_any contains_all contains_none is_true is_false; negations hold for an unknown property.",
            "security": [{"bearer": ["admin"]}],
            "parameters": [name],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TraitDefinition"}}}},
            "responses": definition_responses("The stored trait with its backfill status."),
        },
        "delete": {
            "tags": ["catalog"],
            "summary": "Delete a computed trait (refused while a tag reads it)",
            "security": [{"bearer": ["admin"]}],
            "parameters": [name],
            "responses": definition_responses("`status`: deleted."),
        }
    }));
    paths.insert(
        "/v1/tags".into(),
        json!({
            "get": {
                "tags": ["catalog"],
                "summary": "The workspace's tags with their populations",
                "security": [{"bearer": ["read"]}],
                "responses": read_responses("`items`: each as GET /v1/tags/{name}."),
            }
        }),
    );
    paths.insert("/v1/tags/{name}".into(), json!({
        "get": {
            "tags": ["catalog"],
            "summary": "A tag: its definition, status, and how many profiles have each value and what they spent (`values`: value, profiles, total_spend, average_spend)",
            "security": [{"bearer": ["read"]}],
            "parameters": [name],
            "responses": read_responses("The tag."),
        },
        "put": {
            "tags": ["catalog"],
            "summary": "Define or change a tag; every profile is evaluated, and every change of a tag value is published on `cdp.out.<workspace>.tag.<tag>.changed`",
            "description": "Rule: `{\"type\": \"rule\", \"condition\": {\"all\": [{\"computed\": \"spend_30d\", \"op\": \"gte\", \"value\": 1000}, {\"trait\": \"gender\", \"op\": \"neq\", \"value\": \"male\"}]}, \"value\": true}` (all / any / not; `trait`, `computed`, `tag` fields). Value: `{\"type\": \"value\", \"trait\": \"spend_30d\", \"buckets\": [{\"value\": \"low\", \"lt\": 100}, {\"value\": \"high\", \"gte\": 100}]}`. RFM: `{\"type\": \"rfm\", \"event\": \"Order Completed\", \"monetary\": \"properties.total\", \"window\": \"365d\", \"scoring\": \"quantiles\"}` (or fixed cut points `{\"recency\": [7, 30, 90, 180], \"frequency\": [..4], \"monetary\": [..4]}`); the value is the group (champions, loyal, new, potential, at_risk, hibernating, lost) with the scores in `detail`. Manual: `{\"type\": \"manual\"}`.",
            "security": [{"bearer": ["admin"]}],
            "parameters": [name],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TagDefinition"}}}},
            "responses": definition_responses("The stored tag with its status and population."),
        },
        "delete": {
            "tags": ["catalog"],
            "summary": "Delete a tag; it leaves every profile (each removal published)",
            "security": [{"bearer": ["admin"]}],
            "parameters": [name],
            "responses": definition_responses("`status`: deleted."),
        }
    }));
    paths.insert("/v1/profiles/{id}/tags/{tag}".into(), json!({
        "post": {
            "tags": ["catalog"],
            "summary": "Set a manual tag on a profile (store staff tagging a member); body `{\"value\": \"gold\"}` or empty for `true`",
            "security": [{"bearer": ["write"]}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                           {"name": "tag", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": definition_responses("`profile_id`, `tag`, `value`."),
        },
        "delete": {
            "tags": ["catalog"],
            "summary": "Take a manual tag off a profile",
            "security": [{"bearer": ["write"]}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                           {"name": "tag", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": definition_responses("`profile_id`, `tag`, `value` (null)."),
        }
    }));
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
    paths.insert("/v1/profiles/{id}/identity".into(), json!({
        "get": {
            "tags": ["identity"],
            "summary": "Why these identifiers are one customer: every link and merge with the event, rule version and time that caused it",
            "security": [{"bearer": ["read"]}],
            "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
                "description": "A profile id; a merged-away id answers with its survivor (`merged_away`: true)."}],
            "responses": read_responses("`profile_id`, `merged_profiles`, `identifiers`, `merges`, `decisions`."),
        }
    }));
    paths.insert("/v1/identity/conflicts".into(), json!({
        "get": {
            "tags": ["identity"],
            "summary": "Rejected merges and links with their evidence, newest first",
            "security": [{"bearer": ["read"]}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "before", "in": "query", "schema": {"type": "integer"}}
            ],
            "responses": read_responses("`items` and `next_before`."),
        }
    }));
    paths.insert("/v1/identity/rules".into(), json!({
        "get": {
            "tags": ["identity"],
            "summary": "The identity rules in force: identifier types with priority, limit, may_merge, blocked values; caps; version",
            "security": [{"bearer": ["read"]}],
            "responses": read_responses("The rules (set in `CDP_CONFIG` under `[workspace.identity]`)."),
        },
        "put": {
            "tags": ["identity"],
            "summary": "Replace the rules and apply them retroactively: existing profiles merge and split as re-resolving the log under the new rules says, as identity events",
            "security": [{"bearer": ["admin"]}],
            "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"},
                "description": "Only answer what would merge and split, computed by re-resolving the log into a shadow."}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                "required": ["types"], "properties": {
                    "types": {"type": "object", "propertyNames": {"pattern": "^[a-z0-9_]{1,64}$"}, "additionalProperties": {"type": "object",
                        "required": ["priority", "limit"], "properties": {
                            "priority": {"type": "integer", "minimum": 0, "maximum": 4294967295u64}, "limit": {"type": "integer", "minimum": 1, "maximum": 4294967295u64},
                            "may_merge": {"type": "boolean"}, "blocked": {"type": "array", "items": {"type": "string"}}}}},
                    "max_merges": {"type": "integer", "minimum": 1, "maximum": 4294967295u64}, "max_identifiers": {"type": "integer", "minimum": 1, "maximum": 4294967295u64},
                    "source_priority": {"type": "array", "items": {"type": "string"},
                        "description": "Channels whose trait values win, strongest first."}}}}}},
            "responses": command_responses("Dry run: `changes` {merges, splits}. Otherwise `rules` (new version), `merges`, `splits`."),
        }
    }));
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
        ("/readyz", "Readiness: database and NATS reachable"),
        ("/metrics", "Prometheus metrics"),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(
            path.into(),
            json!({"get": {"tags": ["operations"], "summary": summary,
            "responses": {"200": {"description": "OK"}, "503": {"description": "Not ready"}}}}),
        );
    }
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
