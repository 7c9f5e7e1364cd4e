//! The identity paths of the OpenAPI document: why identifiers are one customer, the rejected merges,
//! the rules, and the operator's merge and split.

use serde_json::{json, Map, Value};

use super::{read_responses, unavailable_response};

/// Identity: operator merge and split, a profile's identity, conflicts, the rules.
pub(super) fn paths(paths: &mut Map<String, Value>) {
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
}

/// The answers of an operator command, applied in log order by the resolver.
fn command_responses(ok: &str) -> Value {
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
}
