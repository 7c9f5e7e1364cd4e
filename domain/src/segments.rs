//! Segments: named conditions on a profile — its traits, tags and computed traits, what it did (event
//! conditions) and its membership of other segments — parsed from JSON and evaluated over facts.
//!
//! A workspace defines a segment in JSON (`PUT /v1/segments/{id}`, body `{"name": .., "condition": {..}}`);
//! [`SegmentDef::parse`] reads it, refusing unknown keys with a [`DefinitionError`] that names the place
//! (`condition.all[1].any[0].op`). A condition is one of:
//! - `{"all": [..]}`, `{"any": [..]}` (never empty) and `{"not": {..}}`: the tree tags share
//!   ([`crate::condition_tree`]), which parses and evaluates them;
//! - `{"trait" | "tag" | "computed": name, "op": .., "value": ..}`, read as [`crate::tags::Condition`] reads it;
//! - `{"segment": "<id>"}`: the profile is a member of segment `<id>` (union is `any`, intersection `all`,
//!   difference `all` with a `not`);
//! - `{"consent": "sms"}` or `{"consent": {"channel": "sms", "purpose": "service"}}`: the profile may be
//!   reached there, under the workspace's consent policy — the rule the exports and messages apply, so
//!   a segment "reachable by SMS" and the SMS export agree under opt-in and opt-out alike;
//! - an event condition, `{"event": "Order Completed", "where": [..], "window": "7d", ..}` with either
//!   `"count": {"op": "gte", "value": 3}` (the number of matching events; neither `count` nor `aggregate`
//!   means at least one), or `"aggregate": {"function": "sum", "property": "properties.total"}` with `"op"` and
//!   `"value"` beside it. No window means all time. Only numeric operators (eq, neq, gt, gte, lt, lte, between,
//!   in, not_in) with numeric operands compare a count or an aggregate.
//!
//! Behavioural sequences (`{"sequence": [{"event": A}, {"event" | "not_event": B}], "within": "2h"}`) are
//! judged on the latest A: B came within the time after it, or (`not_event`) did not and the time has
//! passed — so "added to cart, no order within 2 hours" holds from the moment the 2 hours pass.
//!
//! # Evaluation
//! An event condition is compiled to a hidden computed trait ([`SegmentDef::hidden_traits`], named by
//! [`segment_trait_name`] after the segment and the condition's depth-first number), which the projection keeps
//! like any computed trait; [`SegmentDef::holds`] compares that trait's current value. A count, sum,
//! distinct_count or days_active that is unknown (nothing matched yet) is 0, so "fewer than 3 orders" holds
//! for a profile that never ordered.
//!
//! **Negation includes the unknown**: `{"trait": "gender", "op": "neq", "value": "male"}` holds for a profile
//! without gender, and so do `not_in`, `is_not_set` and the other negated operators ([`Comparison::holds`]'
//! rule), and `{"not": ..}` of a condition that does not hold. An unknown minimum or average (no event
//! matched) is unknown likewise: `lt` does not hold on it, `neq` does.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::computed::{Comparison, DefinitionError, Function, Op, TraitDef};
use crate::condition_tree::{
    self, find_cycle, join, refuse_keys_beside, BooleanTree, ConditionLanguage, Shape,
};
use crate::tags::{field_holds, field_json, parse_field, Facts};

pub use crate::tags::FieldKey;

/// The longest segment name, in characters.
pub const MAX_NAME: usize = 200;
/// How deeply conditions may nest; deeper definitions are refused rather than risk the stack.
pub const MAX_DEPTH: usize = 32;
/// How many event conditions a segment may have: each is a computed trait the projection keeps per profile.
pub const MAX_EVENT_CONDITIONS: usize = 32;

/// The operators that compare a count or an aggregate.
const NUMERIC_OPS: [Op; 9] = [
    Op::Eq,
    Op::Neq,
    Op::Gt,
    Op::Gte,
    Op::Lt,
    Op::Lte,
    Op::Between,
    Op::In,
    Op::NotIn,
];

/// The aggregate functions whose value is a number.
const NUMERIC_FUNCTIONS: [Function; 7] = [
    Function::Count,
    Function::Sum,
    Function::Min,
    Function::Max,
    Function::Average,
    Function::DistinctCount,
    Function::DaysActive,
];

/// The keys that say what kind of condition a node is; a node has exactly one.
const KINDS: [&str; 10] = [
    "all", "any", "not", "segment", "consent", "trait", "tag", "computed", "event", "sequence",
];

/// A condition on a profile (see the module documentation for the JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentCondition {
    /// Every condition holds (the list is never empty).
    All(Vec<SegmentCondition>),
    /// At least one condition holds (the list is never empty).
    Any(Vec<SegmentCondition>),
    /// The condition does not hold.
    Not(Box<SegmentCondition>),
    /// A comparison of all the values of one named field, as in [`crate::tags::Condition`].
    Field {
        key: FieldKey,
        name: String,
        cmp: Comparison,
    },
    /// Membership of another segment.
    Segment(String),
    /// The profile may be reached on the channel for the purpose: `{"consent": "sms"}` (marketing) or
    /// `{"consent": {"channel": "sms", "purpose": "service"}}` — under the workspace's consent policy,
    /// as the exports and messages decide it (`crate::consent::Consents::reaches`).
    Consent {
        channel: &'static str,
        purpose: &'static str,
    },
    /// `index`: the event condition's number in the definition (depth-first, from 0), naming its hidden trait.
    Event {
        index: usize,
        /// The node as given, for `to_json`.
        source: Value,
        def: TraitDef,
        cmp: Comparison,
    },
}

/// A segment's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDef {
    pub name: Option<String>,
    pub condition: SegmentCondition,
}

/// What a segment's evaluation reads: the tag facts, and other segments' membership.
pub trait SegmentFacts: Facts {
    fn in_segment(&self, id: &str) -> bool;
    /// Whether the profile may be reached on `channel` for `purpose` under the workspace's consent
    /// policy: `crate::consent::Consents::reaches`, the rule every output applies.
    fn consents(&self, channel: &str, purpose: &str) -> bool;
}

impl SegmentDef {
    /// Reads a definition, `{"name": .., "condition": {..}}`. Errors name the place: `name`,
    /// `condition.all[1].any[0].op`, `condition.any[0].aggregate.function`, `condition.sequence`, ..
    pub fn parse(v: &Value) -> Result<SegmentDef, DefinitionError> {
        let obj = v
            .as_object()
            .ok_or_else(|| err("definition", "a segment definition must be an object"))?;
        if let Some(k) = obj.keys().find(|k| *k != "name" && *k != "condition") {
            return Err(err(k.as_str(), "unknown key; expected name or condition"));
        }
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= MAX_NAME => Some(s.clone()),
            Some(_) => {
                return Err(err(
                    "name",
                    format!("must be a string of at most {MAX_NAME} characters"),
                ))
            }
        };
        let condition = obj
            .get("condition")
            .ok_or_else(|| err("condition", "required"))?;
        let condition = condition_tree::parse(
            &mut SegmentLanguage {
                event_conditions: 0,
            },
            condition,
            "condition",
        )?;
        Ok(SegmentDef { name, condition })
    }

    /// The JSON form `parse` reads: `parse(&def.to_json()) == Ok(def)`. Event conditions are given back as
    /// they were written.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        if let Some(name) = &self.name {
            obj.insert("name".into(), Value::String(name.clone()));
        }
        obj.insert("condition".into(), self.condition.to_json());
        Value::Object(obj)
    }

    /// The hidden computed traits the event conditions need, named `segment_trait_name(id, index)`.
    pub fn hidden_traits(&self, id: &str) -> Vec<(String, TraitDef)> {
        let mut out = Vec::new();
        self.condition.for_each_leaf(&mut |c| {
            if let SegmentCondition::Event { index, def, .. } = c {
                out.push((segment_trait_name(id, *index), def.clone()));
            }
        });
        out
    }

    /// The ids of the segments this one reads through `{"segment": ..}`, each once, in the order they first
    /// appear.
    pub fn references(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.condition.for_each_leaf(&mut |c| {
            if let SegmentCondition::Segment(other) = c {
                if !out.contains(other) {
                    out.push(other.clone());
                }
            }
        });
        out
    }

    /// Whether a condition reads consent (`{"consent": ..}`), whose answer depends on the workspace's
    /// consent policy.
    pub fn reads_consent(&self) -> bool {
        let mut found = false;
        self.condition.for_each_leaf(&mut |c| {
            found |= matches!(c, SegmentCondition::Consent { .. });
        });
        found
    }

    /// Whether the profile is in segment `id` now. Event conditions read the hidden trait's value
    /// (`facts.field(FieldKey::Computed, &segment_trait_name(id, index))`; a count of an unknown is 0) and
    /// compare it with their comparison; field conditions compare the field's values as
    /// [`crate::tags::Condition`] does; segment conditions ask [`SegmentFacts::in_segment`].
    pub fn holds(&self, id: &str, facts: &dyn SegmentFacts, now: DateTime<Utc>) -> bool {
        self.condition.holds(id, facts, now)
    }
}

impl BooleanTree for SegmentCondition {
    fn all(parts: Vec<Self>) -> Self {
        SegmentCondition::All(parts)
    }

    fn any(parts: Vec<Self>) -> Self {
        SegmentCondition::Any(parts)
    }

    fn not(inner: Self) -> Self {
        SegmentCondition::Not(Box::new(inner))
    }

    fn shape(&self) -> Shape<'_, Self> {
        match self {
            SegmentCondition::All(parts) => Shape::All(parts),
            SegmentCondition::Any(parts) => Shape::Any(parts),
            SegmentCondition::Not(inner) => Shape::Not(inner),
            SegmentCondition::Field { .. }
            | SegmentCondition::Segment(_)
            | SegmentCondition::Consent { .. }
            | SegmentCondition::Event { .. } => Shape::Leaf,
        }
    }
}

impl SegmentCondition {
    fn holds(&self, id: &str, facts: &dyn SegmentFacts, now: DateTime<Utc>) -> bool {
        self.holds_when(&mut |leaf| match leaf {
            SegmentCondition::Field { key, name, cmp } => field_holds(facts, *key, name, cmp, now),
            SegmentCondition::Segment(other) => facts.in_segment(other),
            SegmentCondition::Consent { channel, purpose } => facts.consents(channel, purpose),
            SegmentCondition::Event {
                index, def, cmp, ..
            } => {
                let mut values: Vec<Value> = facts
                    .field(FieldKey::Computed, &segment_trait_name(id, *index))
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .collect();
                if values.is_empty() && zero_when_nothing_matched(def.function) {
                    values.push(json!(0));
                }
                let actual: Vec<&Value> = values.iter().collect();
                cmp.holds(&actual, now)
            }
            combinator @ (SegmentCondition::All(_)
            | SegmentCondition::Any(_)
            | SegmentCondition::Not(_)) => combinator.holds(id, facts, now),
        })
    }

    /// The JSON form the parser reads.
    fn to_json(&self) -> Value {
        self.to_json_with(&|leaf| match leaf {
            SegmentCondition::Field { key, name, cmp } => field_json(*key, name, cmp),
            SegmentCondition::Segment(other) => json!({ "segment": other }),
            SegmentCondition::Consent { channel, purpose } => {
                json!({ "consent": {"channel": channel, "purpose": purpose} })
            }
            SegmentCondition::Event { source, .. } => source.clone(),
            combinator @ (SegmentCondition::All(_)
            | SegmentCondition::Any(_)
            | SegmentCondition::Not(_)) => combinator.to_json(),
        })
    }
}

/// `"sms"` or `{"channel": "sms", "purpose": "marketing"}` (the purpose defaults to marketing).
fn consent_condition(v: &Value, at: &str) -> Result<SegmentCondition, DefinitionError> {
    use crate::consent::{CHANNELS, DEFAULT_PURPOSE, PURPOSES};
    let (channel, purpose, channel_at, purpose_at) = match v {
        Value::String(c) => (
            Some(c.as_str()),
            Some(DEFAULT_PURPOSE),
            at.to_owned(),
            at.to_owned(),
        ),
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| *k != "channel" && *k != "purpose") {
                return Err(err(join(at, k), "unknown key; expected channel or purpose"));
            }
            (
                o.get("channel").and_then(Value::as_str),
                o.get("purpose")
                    .map_or(Some(DEFAULT_PURPOSE), Value::as_str),
                join(at, "channel"),
                join(at, "purpose"),
            )
        }
        _ => {
            return Err(err(
                at,
                "must be a channel, or {\"channel\": .., \"purpose\": ..}",
            ))
        }
    };
    let channel = channel
        .and_then(|c| CHANNELS.into_iter().find(|k| *k == c))
        .ok_or_else(|| {
            err(
                &channel_at,
                format!("must be one of {}", CHANNELS.join(", ")),
            )
        })?;
    let purpose = purpose
        .and_then(|p| PURPOSES.into_iter().find(|k| *k == p))
        .ok_or_else(|| {
            err(
                &purpose_at,
                format!("must be one of {}", PURPOSES.join(", ")),
            )
        })?;
    Ok(SegmentCondition::Consent { channel, purpose })
}

/// The name of the hidden computed trait of segment `id`'s event condition number `index`.
pub fn segment_trait_name(id: &str, index: usize) -> String {
    format!("seg:{id}:{index}")
}

/// Whether `name` is a segment's hidden computed trait ([`segment_trait_name`]).
pub fn is_segment_trait(name: &str) -> bool {
    name.starts_with("seg:")
}

/// The path by which segment `id` would read itself through `{"segment": ..}` references, e.g.
/// `["a", "b", "a"]` (`["a", "a"]` for a segment that reads itself), or `None`. `defs` holds id's new
/// definition; references to undefined segments lead nowhere.
pub fn segment_cycle(defs: &BTreeMap<String, SegmentDef>, id: &str) -> Option<Vec<String>> {
    find_cycle(id, |at| defs.get(at).map(SegmentDef::references))
}

/// Whether the function's value is 0 when no event matched (so an unknown reads as 0).
fn zero_when_nothing_matched(function: Function) -> bool {
    matches!(
        function,
        Function::Count | Function::Sum | Function::DistinctCount | Function::DaysActive
    )
}

/// The segment language's leaves for the shared parser; it numbers the event conditions as it meets them.
struct SegmentLanguage {
    event_conditions: usize,
}

impl ConditionLanguage for SegmentLanguage {
    type Condition = SegmentCondition;

    fn max_depth(&self) -> Option<usize> {
        Some(MAX_DEPTH)
    }

    /// A node is of exactly one kind: `{"all": [..], "segment": "x"}` is refused, naming the second key.
    fn check_node(&self, obj: &Map<String, Value>, at: &str) -> Result<(), DefinitionError> {
        let mut kinds = KINDS.into_iter().filter(|k| obj.contains_key(*k));
        let Some(kind) = kinds.next() else {
            return Err(err(
                at,
                format!("must have one of the keys {}", KINDS.join(", ")),
            ));
        };
        if let Some(other) = kinds.next() {
            return Err(err(
                join(at, other),
                format!("a condition is of one kind: {kind} is already given"),
            ));
        }
        Ok(())
    }

    fn unknown_key_beside(&self, key: &str) -> String {
        format!("unknown key beside {key}")
    }

    fn leaf(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<SegmentCondition, DefinitionError> {
        // `check_node` has made sure the node has exactly one kind, and the tree has read all, any and not.
        let kind = KINDS
            .into_iter()
            .find(|k| obj.contains_key(*k))
            .unwrap_or_default();
        match kind {
            "segment" => {
                refuse_keys_beside(obj, kind, at, &self.unknown_key_beside(kind))?;
                match &obj["segment"] {
                    Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_NAME => {
                        Ok(SegmentCondition::Segment(s.clone()))
                    }
                    _ => Err(err(
                        join(at, "segment"),
                        format!("must be a segment id: a non-empty string of at most {MAX_NAME} characters"),
                    )),
                }
            }
            "consent" => {
                refuse_keys_beside(obj, kind, at, &self.unknown_key_beside(kind))?;
                consent_condition(&obj["consent"], &join(at, "consent"))
            }
            "sequence" => self.sequence(obj, at),
            "event" => self.event(obj, at),
            _ => {
                let (key, name, cmp) = parse_field(obj, at)?;
                Ok(SegmentCondition::Field { key, name, cmp })
            }
        }
    }
}

impl SegmentLanguage {
    /// A behavioural sequence, `{"sequence": [{"event": "Product Added"}, {"not_event": "Order Completed"}],
    /// "within": "2h"}`: compiled to a hidden `sequence` trait (the latest first step followed — or, with
    /// `not_event`, not followed — by the second within the time), true when it holds.
    fn sequence(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<SegmentCondition, DefinitionError> {
        if let Some(k) = obj.keys().find(|k| *k != "sequence" && *k != "within") {
            return Err(err(
                join(at, k),
                "unknown key; a sequence has sequence and within",
            ));
        }
        if self.event_conditions >= MAX_EVENT_CONDITIONS {
            return Err(err(
                at,
                format!("a segment has at most {MAX_EVENT_CONDITIONS} event conditions"),
            ));
        }
        let here = join(at, "sequence");
        let steps = obj
            .get("sequence")
            .and_then(Value::as_array)
            .filter(|s| s.len() == 2)
            .ok_or_else(|| {
                err(
                    &here,
                    "must be two steps: [{\"event\": A}, {\"event\": B}] (A then B) or [{\"event\": A}, {\"not_event\": B}] (A and no B)",
                )
            })?;
        let step = |i: usize,
                    allowed: &[&str]|
         -> Result<(String, Option<Value>, bool), DefinitionError> {
            let place = format!("{here}[{i}]");
            let step = steps[i].as_object().ok_or_else(|| {
                err(
                    &place,
                    "must be an object such as {\"event\": \"Order Completed\"}",
                )
            })?;
            if let Some(k) = step
                .keys()
                .find(|k| !allowed.contains(&k.as_str()) && *k != "where")
            {
                return Err(err(
                    join(&place, k),
                    format!("unknown key; expected {} or where", allowed.join(" or ")),
                ));
            }
            let (key, absent) = match (step.get("event"), step.get("not_event")) {
                (Some(_), None) => ("event", false),
                (None, Some(_)) if allowed.contains(&"not_event") => ("not_event", true),
                _ => {
                    return Err(err(
                        &place,
                        format!("must have one of {}", allowed.join(", ")),
                    ))
                }
            };
            let name = step[key]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| err(join(&place, key), "must be an event name"))?;
            Ok((name.to_owned(), step.get("where").cloned(), absent))
        };
        let (first, first_where, _) = step(0, &["event"])?;
        let (second, second_where, absent) = step(1, &["event", "not_event"])?;
        let within = obj
            .get("within")
            .cloned()
            .ok_or_else(|| err(join(at, "within"), "is required, e.g. \"2h\""))?;
        let mut then = json!({"event": second, "within": within, "absent": absent});
        if let Some(w) = second_where {
            then["where"] = w;
        }
        let mut trait_def = json!({"event": first, "function": "sequence", "then": then});
        if let Some(w) = first_where {
            trait_def["where"] = w;
        }
        let def = TraitDef::parse(&trait_def).map_err(|e| {
            let field = match e.field.as_str() {
                "then.within" => join(at, "within"),
                f if f.starts_with("then.where") => {
                    format!("{here}[1].{}", f.trim_start_matches("then."))
                }
                f if f.starts_with("where") => format!("{here}[0].{f}"),
                _ => here.clone(),
            };
            DefinitionError::new(field, e.message)
        })?;
        let index = self.event_conditions;
        self.event_conditions += 1;
        Ok(SegmentCondition::Event {
            index,
            source: Value::Object(obj.clone()),
            def,
            cmp: Comparison {
                op: Op::IsTrue,
                value: Value::Null,
            },
        })
    }

    /// An event condition: compiles it to a hidden trait definition and the comparison of its value.
    fn event(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<SegmentCondition, DefinitionError> {
        const KEYS: [&str; 7] = [
            "event",
            "where",
            "window",
            "count",
            "aggregate",
            "op",
            "value",
        ];
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(err(
                join(at, k),
                "unknown key; an event condition has event, where, window and count, or aggregate with op and value",
            ));
        }
        if self.event_conditions >= MAX_EVENT_CONDITIONS {
            return Err(err(
                at,
                format!("a segment has at most {MAX_EVENT_CONDITIONS} event conditions"),
            ));
        }
        let mut trait_def = Map::new();
        for key in ["event", "where", "window"] {
            if let Some(v) = obj.get(key) {
                trait_def.insert(key.into(), v.clone());
            }
        }
        let cmp = match (obj.get("count"), obj.get("aggregate")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    join(at, "aggregate"),
                    "give count or aggregate, not both",
                ))
            }
            (count, None) => {
                if let Some(k) = ["op", "value"].into_iter().find(|k| obj.contains_key(*k)) {
                    return Err(err(
                        join(at, k),
                        "op and value compare an aggregate; compare the number of events with \"count\": {\"op\": .., \"value\": ..}",
                    ));
                }
                trait_def.insert("function".into(), json!("count"));
                match count {
                    None => Comparison {
                        op: Op::Gte,
                        value: json!(1),
                    },
                    Some(count) => {
                        let here = join(at, "count");
                        let count = count.as_object().ok_or_else(|| {
                            err(
                                &here,
                                "must be an object such as {\"op\": \"gte\", \"value\": 3}",
                            )
                        })?;
                        if let Some(k) = count.keys().find(|k| *k != "op" && *k != "value") {
                            return Err(err(join(&here, k), "unknown key; expected op or value"));
                        }
                        numeric_comparison(count, &here, "a count")?
                    }
                }
            }
            (None, Some(aggregate)) => {
                let here = join(at, "aggregate");
                let aggregate = aggregate.as_object().ok_or_else(|| {
                    err(
                        &here,
                        "must be an object such as {\"function\": \"sum\", \"property\": \"properties.total\"}",
                    )
                })?;
                if let Some(k) = aggregate
                    .keys()
                    .find(|k| *k != "function" && *k != "property")
                {
                    return Err(err(
                        join(&here, k),
                        "unknown key; expected function or property",
                    ));
                }
                let function = aggregate
                    .get("function")
                    .ok_or_else(|| err(join(&here, "function"), "is required"))?;
                if let Some(f) = function.as_str().and_then(Function::parse) {
                    if !NUMERIC_FUNCTIONS.contains(&f) {
                        return Err(err(
                            join(&here, "function"),
                            format!(
                                "a segment compares a number: use one of {} (for {} define a computed trait and compare it with \"computed\")",
                                names(NUMERIC_FUNCTIONS.iter().map(|f| f.as_str())),
                                f.as_str()
                            ),
                        ));
                    }
                }
                for (k, v) in aggregate {
                    trait_def.insert(k.clone(), v.clone());
                }
                numeric_comparison(obj, at, "an aggregate")?
            }
        };
        let def = TraitDef::parse(&Value::Object(trait_def)).map_err(|e| {
            let field = match e.field.as_str() {
                "function" | "property" => format!("{}.{}", join(at, "aggregate"), e.field),
                other => join(at, other),
            };
            DefinitionError::new(field, e.message)
        })?;
        let index = self.event_conditions;
        self.event_conditions += 1;
        Ok(SegmentCondition::Event {
            index,
            source: Value::Object(obj.clone()),
            def,
            cmp,
        })
    }
}

/// The `op` and `value` of `obj`, compared with a number: only numeric operators with numeric operands.
fn numeric_comparison(
    obj: &Map<String, Value>,
    at: &str,
    what: &str,
) -> Result<Comparison, DefinitionError> {
    let allowed = || names(NUMERIC_OPS.iter().map(|op| op.as_str()));
    if let Some(op) = obj.get("op").and_then(Value::as_str).and_then(Op::parse) {
        if !NUMERIC_OPS.contains(&op) {
            return Err(err(
                join(at, "op"),
                format!(
                    "{op} is not valid for {what}, which is a number: use one of the numeric operators {}",
                    allowed()
                ),
            ));
        }
    }
    let cmp = Comparison::parse(obj, at)?;
    let numeric = match &cmp.value {
        Value::Number(_) => true,
        Value::Array(items) => items.iter().all(Value::is_number),
        _ => false,
    };
    if !numeric {
        return Err(err(
            join(at, "value"),
            format!("{what} is compared with numbers: a number, or a list of numbers for between, in and not_in"),
        ));
    }
    Ok(cmp)
}

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    list.collect::<Vec<_>>().join(", ")
}

/// A definition error at `field`.
fn err(field: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError::new(field, message)
}

#[cfg(test)]
mod tests;
