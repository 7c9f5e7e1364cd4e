//! The OpenAPI schemas of `POST /v1/segments/preview`: the request (a segment definition with the
//! `breakdown` option beside it, as `preview::read_request` reads it) and the answer.

use serde_json::{json, Map, Value};

/// A breakdown field: exactly one of trait, tag or computed, naming the field.
fn breakdown_field() -> Value {
    let name = json!({"type": "string", "minLength": 1, "maxLength": 200});
    json!({"type": "object", "additionalProperties": false, "minProperties": 1, "maxProperties": 1,
        "properties": {"trait": name, "tag": name, "computed": name}})
}

/// `SegmentPreviewRequest` and `SegmentPreview`, to put under `components/schemas`.
pub(crate) fn schemas() -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "SegmentPreviewRequest".into(),
        json!({"type": "object", "additionalProperties": false, "required": ["condition"],
            "description": "A segment definition as `PUT /v1/segments/{id}` takes it, and `breakdown`: the members counted (and their spend summed) by the values of one or two fields — a profile with several values of a field (a list) is in the group of each, one with none in the group of null. A malformed field is refused (400 naming it); a field no profile has and the catalog does not define is a conflict with the workspace (409 naming `breakdown[i]`).",
            "properties": {
                "name": {"type": ["string", "null"], "maxLength": 200},
                "condition": {"$ref": "#/components/schemas/SegmentCondition"},
                "breakdown": {"type": ["array", "null"], "minItems": 1, "maxItems": 2, "items": breakdown_field()}}}),
    );
    let count = json!({"type": "integer", "minimum": 0});
    out.insert(
        "SegmentPreview".into(),
        json!({"type": "object", "required": ["count", "profiles", "sample", "totals", "overlap", "evaluated_by", "index", "took_ms"],
            "properties": {
                "count": count,
                "profiles": count,
                "sample": {"type": "array", "items": {"type": "string"}, "description": "The smallest member ids (10 at most), in order."},
                "totals": {"type": "object", "required": ["spend", "orders"], "properties": {
                    "spend": {"type": "number"}, "orders": count}},
                "overlap": {"type": "array", "description": "Each saved segment with the members it holds too (its stored members), the largest first.",
                    "items": {"type": "object", "required": ["segment", "count"], "properties": {
                        "segment": {"type": "string"}, "count": count}}},
                "evaluated_by": {"enum": ["index", "events"], "description": "`index`: every condition from the audience index; `events`: the members found by folding every profile's events (a sequence, `first`/`last`, a product of properties, or a `where` filter the events' facets cannot answer: outside `properties`, relative to the event's time, on objects or long text; or any definition while the index is not ready, `index.ready: false`), the rest from the index."},
                "fallback": {"type": "string", "description": "Why the index could not answer alone (with `evaluated_by: events`)."},
                "index": {"type": "object", "required": ["ready", "built_at", "read_whole", "profiles_read_again"], "properties": {
                    "ready": {"type": "boolean", "description": "Whether the workspace's index was ready. It is built in the background at start (once the engine has caught up) and again after a rebuild's switch, an erasure or another instance's batches; until then the exact path answers alone (`evaluated_by: events`), the breakdown and overlap from the members' rows."},
                    "built_at": {"type": ["string", "null"], "format": "date-time", "description": "When the index was last read whole from the tables."},
                    "read_whole": {"type": "boolean", "description": "Always false: the index is read whole in the background, never by a request (kept for clients of the first version)."},
                    "profiles_read_again": count}},
                "breakdown": {"type": "object", "required": ["fields", "groups", "total_groups"], "properties": {
                    "fields": {"type": "array", "items": breakdown_field()},
                    "groups": {"type": "array", "description": "The largest groups first (200 at most).", "items": {
                        "type": "object", "required": ["values", "count", "spend"], "properties": {
                            "values": {"type": "array", "description": "A value of each field; null: none."},
                            "count": count, "spend": {"type": "number"}}}},
                    "total_groups": count}},
                "took_ms": count}}),
    );
    out
}
