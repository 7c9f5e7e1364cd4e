//! Tags: rule, value, RFM and manual tags, evaluated from a profile's facts.
//!
//! A workspace defines its tags in JSON (`PUT /v1/tags/{name}`); [`TagDef::parse`] reads a definition,
//! refusing unknown keys with an error that names the place. The projection evaluates a tag for a profile
//! with [`TagDef::evaluate`] over [`Facts`] it implements, refuses a tag that reads itself ([`cycle`]) and
//! keeps the hidden computed traits an RFM tag needs ([`TagDef::hidden_traits`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::computed::{DefinitionError, TraitDef};
use crate::condition_tree::{find_cycle, join};

mod condition;
mod rfm;
#[cfg(test)]
mod tests;

pub(crate) use condition::{field_holds, field_json, parse_field};
pub use condition::{Condition, FieldKey};
pub use rfm::{
    group, rfm_trait_names, scores, RfmDef, RfmInputs, RfmScores, RfmThresholds, Scoring, GROUPS,
};

/// Where a tag's inputs come from. The projection implements it: a name is a computed trait (its current
/// value), else a tag (its current value), else a profile trait (the 360 profile's trait value).
/// Empty = unknown.
pub trait Facts {
    /// The values of `name` looked up as `key` says: `Computed` among computed traits only, `Tag` among
    /// tags only, `Trait` anywhere — a computed trait, else a tag, else a profile trait.
    fn field(&self, key: FieldKey, name: &str) -> Vec<Value>;
}

/// A tag's definition.
#[derive(Debug, Clone, PartialEq)]
pub enum TagDef {
    /// `{"type": "rule", "condition": {..}, "value": "vip"}`: present with `value` (default `true`) when the
    /// condition holds, absent otherwise.
    Rule { condition: Condition, value: Value },
    /// `{"type": "value", "trait": "spend_30d", "buckets": [{"value": "low", "lt": 100}, ..]}`: the value of
    /// the first bucket whose bounds hold for the field's number; absent when none does or the field is
    /// unknown.
    Value {
        trait_name: String,
        buckets: Vec<ValueBucket>,
    },
    /// `{"type": "rfm", ..}`: see [`RfmDef`].
    Rfm(RfmDef),
    /// `{"type": "manual"}`: values set by staff through the API; `evaluate` gives `None` and the projection
    /// keeps what staff set.
    Manual,
}

/// One bucket of a value tag: `{"value": "mid", "gte": 100, "lt": 1000}`. Every bound is optional; a bucket
/// without bounds takes every number.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueBucket {
    pub value: Value,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lt: Option<f64>,
    pub lte: Option<f64>,
}

impl ValueBucket {
    /// Whether every bound the bucket has holds for `x`.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }

    fn bounds(&self) -> [(&'static str, Option<f64>); 4] {
        [
            ("gt", self.gt),
            ("gte", self.gte),
            ("lt", self.lt),
            ("lte", self.lte),
        ]
    }
}

/// A tag's value on a profile, e.g. for RFM `"champions"` with detail
/// `{"r":5,"f":4,"m":3,"recency_days":3,"frequency":7,"monetary":1234.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagValue {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

impl TagValue {
    /// A value without detail.
    pub fn plain(value: Value) -> Self {
        Self {
            value,
            detail: Value::Null,
        }
    }
}

impl TagDef {
    /// Reads a definition. Errors name the key (`type`, `condition.all[0].op`, `buckets[1].gte`,
    /// `scoring.recency`, ..).
    pub fn parse(v: &Value) -> Result<TagDef, DefinitionError> {
        let obj = v
            .as_object()
            .ok_or_else(|| err("definition", "a tag definition must be an object"))?;
        let kind = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(err("type", "must be one of rule, value, rfm, manual")),
            None => return Err(err("type", "required: one of rule, value, rfm, manual")),
        };
        let allow = |keys: &[&str]| match obj
            .keys()
            .find(|k| *k != "type" && !keys.contains(&k.as_str()))
        {
            Some(k) => Err(err(k.as_str(), format!("unknown key for a {kind} tag"))),
            None => Ok(()),
        };
        match kind {
            "rule" => {
                allow(&["condition", "value"])?;
                let condition = obj
                    .get("condition")
                    .ok_or_else(|| err("condition", "required"))?;
                let condition = Condition::parse(condition, "condition")?;
                let value = match obj.get("value") {
                    None => Value::Bool(true),
                    Some(Value::Null) => return Err(err("value", "must not be null")),
                    Some(v) => v.clone(),
                };
                Ok(TagDef::Rule { condition, value })
            }
            "value" => {
                allow(&["trait", "buckets"])?;
                let trait_name = match obj.get("trait") {
                    Some(Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(_) => return Err(err("trait", "must be a non-empty string")),
                    None => return Err(err("trait", "required")),
                };
                let buckets = match obj.get("buckets") {
                    Some(Value::Array(list)) if !list.is_empty() => list
                        .iter()
                        .enumerate()
                        .map(|(i, b)| parse_bucket(b, &format!("buckets[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(_) => return Err(err("buckets", "must be a non-empty list of buckets")),
                    None => return Err(err("buckets", "required")),
                };
                Ok(TagDef::Value {
                    trait_name,
                    buckets,
                })
            }
            "rfm" => Ok(TagDef::Rfm(RfmDef::parse(obj)?)),
            "manual" => {
                allow(&[])?;
                Ok(TagDef::Manual)
            }
            _ => Err(err("type", "must be one of rule, value, rfm, manual")),
        }
    }

    /// The JSON form `parse` reads.
    pub fn to_json(&self) -> Value {
        match self {
            TagDef::Rule { condition, value } => json!({
                "type": "rule",
                "condition": condition.to_json(),
                "value": value,
            }),
            TagDef::Value {
                trait_name,
                buckets,
            } => {
                let buckets: Vec<Value> = buckets
                    .iter()
                    .map(|b| {
                        let mut obj = Map::new();
                        obj.insert("value".into(), b.value.clone());
                        for (key, bound) in b.bounds() {
                            if let Some(bound) = bound {
                                obj.insert(key.into(), json!(bound));
                            }
                        }
                        Value::Object(obj)
                    })
                    .collect();
                json!({"type": "value", "trait": trait_name, "buckets": buckets})
            }
            TagDef::Rfm(def) => def.to_json(),
            TagDef::Manual => json!({"type": "manual"}),
        }
    }

    /// Names (computed traits, tags, traits) this tag reads, each once: a rule's condition fields, a value
    /// tag's trait, an RFM tag's hidden traits (named after `tag_name`); nothing for a manual tag.
    pub fn inputs(&self, tag_name: &str) -> Vec<String> {
        match self {
            TagDef::Rule { condition, .. } => condition.names(),
            TagDef::Value { trait_name, .. } => vec![trait_name.clone()],
            TagDef::Rfm(_) => rfm_trait_names(tag_name).to_vec(),
            TagDef::Manual => Vec::new(),
        }
    }

    /// The hidden computed traits this tag needs, with their names: for an RFM tag, under
    /// [`rfm_trait_names`], the time of the last matching event, their count and the sum of `monetary`,
    /// all over `window`. Empty for the other kinds.
    pub fn hidden_traits(&self, tag_name: &str) -> Vec<(String, TraitDef)> {
        match self {
            TagDef::Rfm(def) => rfm_trait_names(tag_name)
                .into_iter()
                .zip(def.trait_defs())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The tag's value for a profile now: `Some` present, `None` absent. `rfm` is the population's
    /// thresholds for an RFM tag with quantile scoring (`None` until the projection has computed them,
    /// and then the tag is absent); other tags ignore it. A manual tag always gives `None`.
    pub fn evaluate(
        &self,
        tag_name: &str,
        facts: &dyn Facts,
        rfm: Option<&RfmThresholds>,
        now: DateTime<Utc>,
    ) -> Option<TagValue> {
        match self {
            TagDef::Rule { condition, value } => condition
                .holds(facts, now)
                .then(|| TagValue::plain(value.clone())),
            TagDef::Value {
                trait_name,
                buckets,
            } => {
                let x = facts
                    .field(FieldKey::Computed, trait_name)
                    .iter()
                    .find_map(rfm::number)?;
                buckets
                    .iter()
                    .find(|b| b.contains(x))
                    .map(|b| TagValue::plain(b.value.clone()))
            }
            TagDef::Rfm(def) => def.evaluate(tag_name, facts, rfm, now),
            TagDef::Manual => None,
        }
    }
}

/// The path of tags by which `name` would read itself, e.g. `["a", "b", "a"]`, or `None`. An input counts
/// as a tag when `defs` defines it; that is conservative, since the projection looks a name up as a
/// computed trait first, and a loop through a name that is also a computed trait is refused all the same.
/// `defs` should hold `name`'s new definition.
pub fn cycle(defs: &BTreeMap<String, TagDef>, name: &str) -> Option<Vec<String>> {
    find_cycle(name, |at| defs.get(at).map(|def| def.inputs(at)))
}

fn parse_bucket(v: &Value, at: &str) -> Result<ValueBucket, DefinitionError> {
    let obj = v.as_object().ok_or_else(|| {
        err(
            at,
            "must be an object such as {\"value\": \"low\", \"lt\": 100}",
        )
    })?;
    let mut bucket = ValueBucket {
        value: Value::Null,
        gt: None,
        gte: None,
        lt: None,
        lte: None,
    };
    for (k, v) in obj {
        let here = join(at, k);
        let bound = match k.as_str() {
            "value" => {
                if v.is_null() {
                    return Err(err(&here, "must not be null"));
                }
                bucket.value = v.clone();
                continue;
            }
            "gt" => &mut bucket.gt,
            "gte" => &mut bucket.gte,
            "lt" => &mut bucket.lt,
            "lte" => &mut bucket.lte,
            _ => {
                return Err(err(
                    &here,
                    "unknown key (a bucket has value, gt, gte, lt, lte)",
                ))
            }
        };
        *bound = Some(v.as_f64().ok_or_else(|| err(&here, "must be a number"))?);
    }
    if bucket.value.is_null() {
        return Err(err(join(at, "value"), "required"));
    }
    if bucket.gt.is_some() && bucket.gte.is_some() {
        return Err(err(join(at, "gte"), "give gt or gte, not both"));
    }
    if bucket.lt.is_some() && bucket.lte.is_some() {
        return Err(err(join(at, "lte"), "give lt or lte, not both"));
    }
    Ok(bucket)
}

/// A definition error at `field`.
fn err(field: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        field: field.into(),
        message: message.into(),
    }
}
