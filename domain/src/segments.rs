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
use serde_json::{json, Value};

use crate::computed::{Comparison, Function, TraitDef};
use crate::condition_tree::{find_cycle, BooleanTree, Shape};
use crate::tags::{field_holds, Facts};

pub use crate::tags::FieldKey;

mod json;

/// The longest segment name, in characters.
pub const MAX_NAME: usize = 200;
/// How deeply conditions may nest; deeper definitions are refused rather than risk the stack.
pub const MAX_DEPTH: usize = 32;
/// How many event conditions a segment may have: each is a computed trait the projection keeps per profile.
pub const MAX_EVENT_CONDITIONS: usize = 32;

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

#[cfg(test)]
mod tests;
