//! The JSON form of a segment definition: [`SegmentDef::parse`] reads it through the shared condition
//! parser with this module's leaves (one kind per node; segment, consent, event and sequence
//! conditions, the last two compiled to hidden computed traits), and [`SegmentDef::to_json`] gives it back.

use serde_json::{json, Map, Value};

use super::{SegmentCondition, SegmentDef, MAX_DEPTH, MAX_EVENT_CONDITIONS, MAX_NAME};
use crate::computed::{Comparison, DefinitionError, Function, Op, TraitDef};
use crate::condition_tree::{self, join, refuse_keys_beside, BooleanTree, ConditionLanguage};
use crate::tags::{field_json, parse_field};

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
}

impl SegmentCondition {
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
    /// Refuses one event condition (or sequence) more than a segment may hold.
    fn room_for_an_event_condition(&self, at: &str) -> Result<(), DefinitionError> {
        if self.event_conditions >= MAX_EVENT_CONDITIONS {
            return Err(err(
                at,
                format!("a segment has at most {MAX_EVENT_CONDITIONS} event conditions"),
            ));
        }
        Ok(())
    }

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
        self.room_for_an_event_condition(at)?;
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
        self.room_for_an_event_condition(at)?;
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
