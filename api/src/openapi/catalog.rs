//! The catalog paths of the OpenAPI document: computed-trait and tag definitions, and manual tags.

use serde_json::{json, Map, Value};

use super::{definition_responses, read_responses};

/// Computed traits, tags and a profile's manual tags.
pub(super) fn paths(paths: &mut Map<String, Value>) {
    let name = json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "1-64 of letters, digits, `_`, `-`, starting with a letter."});
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
}
