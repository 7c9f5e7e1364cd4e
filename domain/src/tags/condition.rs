//! Conditions on a profile: the profile-level part of the segment language (`all`, `any`, `not` and
//! comparisons of a computed trait, a tag or a profile trait), parsed from JSON and evaluated over `Facts`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{err, join, Facts};
use crate::computed::{Comparison, DefinitionError};

/// Which key named the field a comparison reads. All three are looked up the same way (through
/// [`Facts`]); the key is kept so that errors and `to_json` give back what the customer wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKey {
    /// `{"trait": "gender", ..}`
    Trait,
    /// `{"tag": "vip", ..}`
    Tag,
    /// `{"computed": "spend_30d", ..}`
    Computed,
}

impl FieldKey {
    const ALL: [FieldKey; 3] = [FieldKey::Trait, FieldKey::Tag, FieldKey::Computed];

    /// The JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKey::Trait => "trait",
            FieldKey::Tag => "tag",
            FieldKey::Computed => "computed",
        }
    }
}

/// A condition on a profile:
/// `{"all": [..]}`, `{"any": [..]}`, `{"not": {..}}` and
/// `{"trait" | "tag" | "computed": name, "op": .., "value": ..}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every condition holds (the list is never empty).
    All(Vec<Condition>),
    /// At least one condition holds (the list is never empty).
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
    /// A comparison of all the values of one named field.
    Field {
        key: FieldKey,
        name: String,
        cmp: Comparison,
    },
}

impl Condition {
    /// Parses a condition found at `at` (`"condition"` in a rule tag); errors name the place, e.g.
    /// `condition.all[1].any[0].op`. Unknown keys are refused, and so are empty `all`/`any` lists (an empty
    /// `any` never holds and an empty `all` always does: either is almost surely a mistake).
    pub fn parse(v: &Value, at: &str) -> Result<Condition, DefinitionError> {
        let obj = v.as_object().ok_or_else(|| err(at, "must be an object"))?;
        for combinator in ["all", "any"] {
            if let Some(list) = obj.get(combinator) {
                only_key(obj, combinator, at)?;
                let here = join(at, combinator);
                let list = list
                    .as_array()
                    .ok_or_else(|| err(&here, "must be a list of conditions"))?;
                if list.is_empty() {
                    return Err(err(&here, "must list at least one condition"));
                }
                let parts = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Condition::parse(c, &format!("{here}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if combinator == "all" {
                    Condition::All(parts)
                } else {
                    Condition::Any(parts)
                });
            }
        }
        if let Some(inner) = obj.get("not") {
            only_key(obj, "not", at)?;
            return Ok(Condition::Not(Box::new(Condition::parse(
                inner,
                &join(at, "not"),
            )?)));
        }
        let mut keys = FieldKey::ALL
            .into_iter()
            .filter(|k| obj.contains_key(k.as_str()));
        let Some(key) = keys.next() else {
            return Err(err(
                at,
                "must have one of the keys all, any, not, trait, tag, computed",
            ));
        };
        if let Some(other) = keys.next() {
            return Err(err(
                join(at, other.as_str()),
                format!(
                    "a condition names one field: {} is already given",
                    key.as_str()
                ),
            ));
        }
        let name = match obj.get(key.as_str()) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(err(join(at, key.as_str()), "must be a non-empty string")),
        };
        let mut rest = Map::new();
        for (k, v) in obj {
            match k.as_str() {
                "op" | "value" => {
                    rest.insert(k.clone(), v.clone());
                }
                k if k == key.as_str() => {}
                other => return Err(err(join(at, other), "unknown key")),
            }
        }
        let cmp = Comparison::parse(&rest, at)?;
        Ok(Condition::Field { key, name, cmp })
    }

    /// Whether the condition holds for the profile whose facts these are. A comparison sees every value of
    /// its field; a field without values is unknown, on which negations (`neq`, `not_in`, `is_not_set`, ..)
    /// hold and the others do not (that is [`Comparison::holds`]' rule).
    pub fn holds(&self, facts: &dyn Facts, now: DateTime<Utc>) -> bool {
        match self {
            Condition::All(parts) => parts.iter().all(|c| c.holds(facts, now)),
            Condition::Any(parts) => parts.iter().any(|c| c.holds(facts, now)),
            Condition::Not(inner) => !inner.holds(facts, now),
            Condition::Field { key, name, cmp } => {
                let values = facts.field(*key, name);
                let actual: Vec<&Value> = values.iter().collect();
                cmp.holds(&actual, now)
            }
        }
    }

    /// The field names the condition reads, each once, in the order they first appear.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_names(&mut out);
        out
    }

    fn collect_names(&self, out: &mut Vec<String>) {
        match self {
            Condition::All(parts) | Condition::Any(parts) => {
                parts.iter().for_each(|c| c.collect_names(out));
            }
            Condition::Not(inner) => inner.collect_names(out),
            Condition::Field { name, .. } => {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
    }

    /// The JSON form `parse` reads.
    pub fn to_json(&self) -> Value {
        let list =
            |parts: &[Condition]| Value::Array(parts.iter().map(Condition::to_json).collect());
        let mut obj = Map::new();
        match self {
            Condition::All(parts) => {
                obj.insert("all".into(), list(parts));
            }
            Condition::Any(parts) => {
                obj.insert("any".into(), list(parts));
            }
            Condition::Not(inner) => {
                obj.insert("not".into(), inner.to_json());
            }
            Condition::Field { key, name, cmp } => {
                obj.insert(key.as_str().into(), Value::String(name.clone()));
                if let Value::Object(cmp) = cmp.to_json() {
                    obj.extend(cmp);
                }
            }
        }
        Value::Object(obj)
    }
}

/// Refuses any key beside the combinator `key` (say `{"all": [..], "op": "eq"}`).
fn only_key(obj: &Map<String, Value>, key: &str, at: &str) -> Result<(), DefinitionError> {
    match obj.keys().find(|k| *k != key) {
        Some(other) => Err(err(
            join(at, other),
            format!(
                "unknown key beside {key} (a condition is one of all, any, not or a comparison)"
            ),
        )),
        None => Ok(()),
    }
}
