//! Evaluation: a profile's facts as tags and segments read them (its computed traits at a time, its
//! manual tags, RFM cut points, its traits) and what its tags, segments, worth and next due time are.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use cdp_domain::catalog::{Catalog, SPEND_TRAIT};
use cdp_domain::profile::ProfileDoc;
use cdp_domain::segments::SegmentFacts;
use cdp_domain::tags::{Facts, FieldKey, RfmThresholds, TagDef, TagValue};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// A profile's facts as tags read them: computed traits, then tags, then the profile's traits.
pub(crate) struct ProfileFacts<'a> {
    doc: &'a ProfileDoc,
    catalog: &'a Catalog,
    computed: BTreeMap<String, Value>,
    manual: &'a BTreeMap<String, Value>,
    thresholds: &'a BTreeMap<String, RfmThresholds>,
    now: DateTime<Utc>,
    tags: RefCell<BTreeMap<String, Option<TagValue>>>,
    visiting: RefCell<BTreeSet<String>>,
    segments: RefCell<BTreeMap<String, bool>>,
}

impl SegmentFacts for ProfileFacts<'_> {
    fn in_segment(&self, id: &str) -> bool {
        if let Some(known) = self.segments.borrow().get(id) {
            return *known;
        }
        // Definitions that read themselves are refused; this guards against one slipping through.
        let key = format!("segment {id}");
        if !self.visiting.borrow_mut().insert(key.clone()) {
            return false;
        }
        let member = self
            .catalog
            .segments
            .get(id)
            .is_some_and(|s| s.def.holds(id, self, self.now));
        self.visiting.borrow_mut().remove(&key);
        self.segments.borrow_mut().insert(id.to_owned(), member);
        member
    }

    fn consents(&self, channel: &str, purpose: &str) -> bool {
        // The rule every output applies, under the policy in force in the catalog.
        self.doc
            .consent
            .reaches(channel, purpose, &self.catalog.consent.policy)
            .is_some()
    }
}

fn values_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        v => vec![v.clone()],
    }
}

impl<'a> ProfileFacts<'a> {
    /// The facts of `doc` under `catalog` at `now`.
    pub(crate) fn new(
        doc: &'a ProfileDoc,
        catalog: &'a Catalog,
        manual: &'a BTreeMap<String, Value>,
        thresholds: &'a BTreeMap<String, RfmThresholds>,
        now: DateTime<Utc>,
    ) -> ProfileFacts<'a> {
        ProfileFacts {
            doc,
            catalog,
            computed: computed_and_spend(doc, catalog, now).0,
            manual,
            thresholds,
            now,
            tags: RefCell::new(BTreeMap::new()),
            visiting: RefCell::new(BTreeSet::new()),
            segments: RefCell::new(BTreeMap::new()),
        }
    }

    fn tag(&self, name: &str) -> Option<TagValue> {
        if let Some(known) = self.tags.borrow().get(name) {
            return known.clone();
        }
        // Definitions that read themselves are refused; this guards against one slipping through.
        if !self.visiting.borrow_mut().insert(name.to_owned()) {
            return None;
        }
        let value = match self.catalog.tags.get(name).map(|t| &t.def) {
            Some(TagDef::Manual) => self.manual.get(name).cloned().map(TagValue::plain),
            Some(def) => def.evaluate(name, self, self.thresholds.get(name), self.now),
            None => None,
        };
        self.visiting.borrow_mut().remove(name);
        self.tags
            .borrow_mut()
            .insert(name.to_owned(), value.clone());
        value
    }
}

impl Facts for ProfileFacts<'_> {
    fn field(&self, key: FieldKey, name: &str) -> Vec<Value> {
        let computed = || self.computed.get(name).map(values_of);
        let tag = || {
            self.catalog.tags.contains_key(name).then(|| {
                self.tag(name)
                    .map(|t| values_of(&t.value))
                    .unwrap_or_default()
            })
        };
        let found = match key {
            FieldKey::Computed => computed(),
            FieldKey::Tag => tag(),
            FieldKey::Trait => computed()
                .or_else(tag)
                .or_else(|| self.doc.traits.get(name).map(|t| values_of(&t.value))),
        };
        found.unwrap_or_default()
    }
}

/// What one profile's tags, worth and next due time are now.
pub struct Evaluation {
    /// Every tag the profile has, manual ones included.
    pub tags: BTreeMap<String, TagValue>,
    /// The segments the profile is in.
    pub segments: BTreeSet<String>,
    pub spend: f64,
    pub due_at: Option<DateTime<Utc>>,
}

/// A profile's computed traits at `now` as name → value, and what it is worth (its spend trait, 0 without
/// one): what tags and segments read, and what the audience index holds.
pub(crate) fn computed_and_spend(
    doc: &ProfileDoc,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> (BTreeMap<String, Value>, f64) {
    let computed: BTreeMap<String, Value> = doc
        .computed_values(catalog.folded(), now)
        .into_iter()
        .map(|(name, v)| (name, v.value))
        .collect();
    let spend = computed
        .get(SPEND_TRAIT)
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    (computed, spend)
}

/// Evaluates every tag of `catalog` on a profile.
pub fn evaluate(
    doc: &ProfileDoc,
    catalog: &Catalog,
    manual: &BTreeMap<String, Value>,
    thresholds: &BTreeMap<String, RfmThresholds>,
    now: DateTime<Utc>,
) -> Evaluation {
    let (computed, spend) = computed_and_spend(doc, catalog, now);
    let facts = ProfileFacts {
        doc,
        catalog,
        computed,
        manual,
        thresholds,
        now,
        tags: RefCell::new(BTreeMap::new()),
        visiting: RefCell::new(BTreeSet::new()),
        segments: RefCell::new(BTreeMap::new()),
    };
    let tags: BTreeMap<String, TagValue> = catalog
        .tags
        .keys()
        .filter_map(|name| facts.tag(name).map(|v| (name.clone(), v)))
        .collect();
    let segments: BTreeSet<String> = catalog
        .segments
        .keys()
        .filter(|id| facts.in_segment(id))
        .cloned()
        .collect();
    // Tags and segments read windows and the age of the last purchase, which move with the clock.
    let mut due_at = if catalog.tags.is_empty() && catalog.segments.is_empty() {
        None
    } else {
        doc.next_computed_change(catalog.folded(), now)
    };
    let ages = catalog
        .tags
        .iter()
        .any(|(name, t)| matches!(t.def, TagDef::Rfm(_)) && tags.contains_key(name));
    if ages {
        let midnight = (now + Duration::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc());
        due_at = match (due_at, midnight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Evaluation {
        tags,
        segments,
        spend,
        due_at,
    }
}
