//! `GET /v1/schema`: what a segment or tag can be built from — every field with its type, the operators
//! the type allows, and candidate values — for a frontend's condition builder. Profile traits and event
//! properties are read from a sample (the first profiles, the latest events); computed traits, tags and
//! segments from the catalog. Where an event property is an object with `id` and `name` (a store, a
//! product), `<path>.id` is offered with each id's latest name as its label, so a saved segment compares
//! ids and keeps working when a name changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use cdp_domain::computed::Function;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use cdp_domain::tags::TagDef;
use cdp_domain::workspace::Scope;
use cdp_projections::catalog;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

mod sql;

/// Profiles and events sampled.
const SAMPLE: i64 = 2_000;
/// Candidate values offered per field.
const CANDIDATES: usize = 20;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/schema", get(schema))
}

/// The operators each type allows (negations hold for an unknown value).
fn operators() -> Value {
    json!({
        "string": ["eq", "neq", "in", "not_in", "contains", "not_contains", "starts_with", "is_set", "is_not_set"],
        "number": ["eq", "neq", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_set", "is_not_set"],
        "time": ["before", "after", "within_last", "not_within_last", "between", "is_set", "is_not_set"],
        "boolean": ["is_true", "is_false", "is_set", "is_not_set"],
        "list": ["contains_any", "contains_all", "contains_none", "is_set", "is_not_set"],
    })
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::Array(_) => "list",
        Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => "time",
        _ => "string",
    }
}

/// What was seen of one field: its types and its values with how often (and a label per value).
#[derive(Default)]
struct Seen {
    types: BTreeMap<&'static str, u64>,
    values: BTreeMap<String, (u64, Option<String>)>,
}

impl Seen {
    fn see(&mut self, v: &Value, label: Option<&str>) {
        if v.is_null() {
            return;
        }
        *self.types.entry(type_of(v)).or_default() += 1;
        if let Value::String(s) = v {
            let entry = self.values.entry(s.clone()).or_default();
            entry.0 += 1;
            if let Some(l) = label {
                entry.1 = Some(l.to_owned());
            }
        }
    }

    fn to_json(&self, name: &str) -> Value {
        let kind = self
            .types
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or("string", |(t, _)| *t);
        let mut values: Vec<(&String, &(u64, Option<String>))> = self.values.iter().collect();
        values.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let candidates: Vec<Value> = if kind == "string" {
            values
                .into_iter()
                .take(CANDIDATES)
                .map(|(v, (n, label))| match label {
                    Some(l) => json!({"value": v, "label": l, "seen": n}),
                    None => json!({"value": v, "seen": n}),
                })
                .collect()
        } else {
            Vec::new()
        };
        json!({"name": name, "type": kind, "candidates": candidates})
    }
}

/// Walks an event's properties into `paths` (`properties.products[].category`).
fn walk(prefix: &str, v: &Value, paths: &mut BTreeMap<String, Seen>) {
    match v {
        Value::Object(o) => {
            let label = o.get("name").and_then(Value::as_str);
            for (k, child) in o {
                let path = format!("{prefix}.{k}");
                if k == "id" && label.is_some() {
                    paths.entry(path).or_default().see(child, label);
                } else {
                    walk(&path, child, paths);
                }
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                walk(&format!("{prefix}[]"), item, paths);
            }
        }
        other => paths.entry(prefix.to_owned()).or_default().see(other, None),
    }
}

fn computed_type(function: Function, has_property: bool) -> &'static str {
    match function {
        Function::UniqueList => "list",
        Function::Sequence => "boolean",
        Function::First | Function::Last if !has_property => "time",
        Function::First | Function::Last | Function::MostFrequent => "string",
        _ => "number",
    }
}

async fn latest_events(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<Vec<(String, Value)>, ApiError> {
    let newest: Option<i64> = query(sql::NEWEST_EVENT)
        .bind(workspace.as_str())
        .scalar(store.reader())
        .await
        .map_err(ApiError::internal)?;
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let seqs: Vec<i64> = ((newest - SAMPLE * 4).max(0)..=newest).collect();
    let events = store
        .events_by_seq(&seqs)
        .await
        .map_err(ApiError::internal)?;
    Ok(events
        .into_iter()
        .filter(|e| e.event.workspace == workspace.as_str() && e.event.kind.as_str() == "track")
        .rev()
        .take(SAMPLE as usize)
        .filter_map(|e| {
            let payload: Value = serde_json::from_str(&e.event.payload).ok()?;
            Some((e.event.name.clone().unwrap_or_default(), payload))
        })
        .collect())
}

#[tracing::instrument(name = "schema.schema", skip_all, fields(workspace = %principal.workspace))]
async fn schema(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let ws = &principal.workspace;
    let mut traits: BTreeMap<String, Seen> = BTreeMap::new();
    for (_, doc) in catalog::profiles_after(&state.store, ws, "", SAMPLE).await? {
        for (name, t) in &doc.traits {
            traits.entry(name.clone()).or_default().see(&t.value, None);
        }
    }
    let mut events: BTreeMap<String, (u64, BTreeMap<String, Seen>)> = BTreeMap::new();
    for (name, payload) in latest_events(&state.store, ws).await? {
        let entry = events.entry(name).or_default();
        entry.0 += 1;
        if let Some(properties) = payload.get("properties") {
            walk("properties", properties, &mut entry.1);
        }
    }
    let cat = catalog::load(&state.store, ws).await?;
    let computed: Vec<Value> = cat
        .traits
        .iter()
        .map(|(name, t)| {
            json!({"name": name, "type": computed_type(t.def.function, t.def.property.is_some()),
                   "definition": t.def.to_json()})
        })
        .collect();
    let mut tags = Vec::new();
    for (name, t) in &cat.tags {
        let values: Vec<Value> = crate::catalog::tag_population(&state, ws, name)
            .await?
            .into_iter()
            .map(|s| json!({"value": s.value, "profiles": s.profiles}))
            .collect();
        let kind = match &t.def {
            TagDef::Rule { .. } => "rule",
            TagDef::Value { .. } => "value",
            TagDef::Rfm(_) => "rfm",
            TagDef::Manual => "manual",
        };
        tags.push(json!({"name": name, "kind": kind, "candidates": values}));
    }
    let segments: Vec<Value> = cat
        .segments
        .iter()
        .map(|(id, s)| json!({"id": id, "name": s.def.name}))
        .collect();
    Ok(Json(json!({
        "operators": operators(),
        "negation": "neq, not_in, not_contains, contains_none, is_not_set and not_within_last hold for a profile without the field",
        "traits": traits.iter().map(|(n, s)| s.to_json(n)).collect::<Vec<_>>(),
        "computed_traits": computed,
        "tags": tags,
        "segments": segments,
        "consent": {
            "condition": "{\"consent\": \"<channel>\"} or {\"consent\": {\"channel\": .., \"purpose\": ..}}: the profile may be reached there (opt-in: nothing recorded is not reachable)",
            "channels": cdp_domain::consent::CHANNELS,
            "purposes": cdp_domain::consent::PURPOSES,
            "default_purpose": cdp_domain::consent::DEFAULT_PURPOSE,
        },
        "events": events.iter().map(|(name, (n, props))| json!({
            "name": name,
            "seen": n,
            "properties": props.iter().map(|(p, s)| s.to_json(p)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "sampled": {"profiles": SAMPLE, "events": SAMPLE},
    })))
}
