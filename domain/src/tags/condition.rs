//! Conditions on a profile: the profile-level part of the segment language — comparisons of a computed
//! trait, a tag or a profile trait, combined by the shared `all`/`any`/`not` tree of
//! [`crate::condition_tree`] — parsed from JSON and evaluated over `Facts`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{err, join, Facts};
use crate::computed::{Comparison, DefinitionError};
use crate::condition_tree::{self, BooleanTree, ConditionLanguage, Shape};

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

impl BooleanTree for Condition {
    fn all(parts: Vec<Self>) -> Self {
        Condition::All(parts)
    }

    fn any(parts: Vec<Self>) -> Self {
        Condition::Any(parts)
    }

    fn not(inner: Self) -> Self {
        Condition::Not(Box::new(inner))
    }

    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Condition::All(parts) => Shape::All(parts),
            Condition::Any(parts) => Shape::Any(parts),
            Condition::Not(inner) => Shape::Not(inner),
            Condition::Field { .. } => Shape::Leaf,
        }
    }
}

/// The tag language's leaves for the shared parser: field comparisons.
struct TagLanguage;

impl ConditionLanguage for TagLanguage {
    type Condition = Condition;

    fn unknown_key_beside(&self, key: &str) -> String {
        format!("unknown key beside {key} (a condition is one of all, any, not or a comparison)")
    }

    fn leaf(&mut self, obj: &Map<String, Value>, at: &str) -> Result<Condition, DefinitionError> {
        let (key, name, cmp) = parse_field(obj, at)?;
        Ok(Condition::Field { key, name, cmp })
    }
}

impl Condition {
    /// Parses a condition found at `at` (`"condition"` in a rule tag); errors name the place, e.g.
    /// `condition.all[1].any[0].op`. Unknown keys are refused, and so are empty `all`/`any` lists (an empty
    /// `any` never holds and an empty `all` always does: either is almost surely a mistake).
    pub fn parse(v: &Value, at: &str) -> Result<Condition, DefinitionError> {
        condition_tree::parse(&mut TagLanguage, v, at)
    }

    /// Whether the condition holds for the profile whose facts these are. A comparison sees every value of
    /// its field; a field without values is unknown, on which negations (`neq`, `not_in`, `is_not_set`, ..)
    /// hold and the others do not (that is [`Comparison::holds`]' rule).
    pub fn holds(&self, facts: &dyn Facts, now: DateTime<Utc>) -> bool {
        self.holds_when(&mut |leaf| match leaf {
            Condition::Field { key, name, cmp } => field_holds(facts, *key, name, cmp, now),
            combinator => combinator.holds(facts, now),
        })
    }

    /// The field names the condition reads, each once, in the order they first appear.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.for_each_leaf(&mut |leaf| {
            if let Condition::Field { name, .. } = leaf {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        });
        out
    }

    /// The JSON form `parse` reads.
    pub fn to_json(&self) -> Value {
        self.to_json_with(&|leaf| match leaf {
            Condition::Field { key, name, cmp } => field_json(*key, name, cmp),
            combinator => combinator.to_json(),
        })
    }
}

/// Reads a field comparison, `{"trait" | "tag" | "computed": name, "op": .., "value": ..}`: exactly one
/// field key, a non-empty name, and the comparison (no other key).
pub(crate) fn parse_field(
    obj: &Map<String, Value>,
    at: &str,
) -> Result<(FieldKey, String, Comparison), DefinitionError> {
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
    Ok((key, name, cmp))
}

/// Whether a field comparison holds: `cmp` sees every value the facts have for the field (none: unknown).
pub(crate) fn field_holds(
    facts: &dyn Facts,
    key: FieldKey,
    name: &str,
    cmp: &Comparison,
    now: DateTime<Utc>,
) -> bool {
    let values = facts.field(key, name);
    let actual: Vec<&Value> = values.iter().collect();
    cmp.holds(&actual, now)
}

/// The JSON form of a field comparison: the field key with the name, then the comparison's keys.
pub(crate) fn field_json(key: FieldKey, name: &str, cmp: &Comparison) -> Value {
    let mut obj = Map::new();
    obj.insert(key.as_str().into(), Value::String(name.to_owned()));
    if let Value::Object(cmp) = cmp.to_json() {
        obj.extend(cmp);
    }
    Value::Object(obj)
}
