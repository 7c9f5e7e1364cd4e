//! A segment definition evaluated over the whole index at once: each leaf becomes a bitmap of rows
//! (a field comparison decided once per distinct list of values, a segment or channel read as its
//! bitmap, an event condition from the summaries), and all / any / not become intersections, unions
//! and differences from the live rows — so negation includes the unknown exactly as
//! [`crate::segments`] has it: `not` of a leaf that does not hold for a row holds for it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use roaring::RoaringBitmap;
use serde_json::{json, Value};

use super::events::unanswerable;
use super::AudienceIndex;
use crate::computed::{Comparison, Function};
use crate::segments::{SegmentCondition, SegmentDef};
use crate::tags::FieldKey;

/// Why a definition cannot be answered from the index alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// An event condition the per-hour summaries cannot answer.
    #[error("event condition {index}: {reason}")]
    EventCondition { index: usize, reason: &'static str },
    /// Some profiles' events have no summaries (stored by an earlier version).
    #[error("{0} profiles' events have no summaries")]
    EventsUnknown(u64),
}

impl AudienceIndex {
    /// The rows of the profiles `def` holds for at `now`, or why the index cannot say.
    pub fn matching(
        &self,
        def: &SegmentDef,
        now: DateTime<Utc>,
    ) -> Result<RoaringBitmap, Unsupported> {
        self.check(&def.condition)?;
        Ok(self.rows_where(&def.condition, &self.alive, now))
    }

    /// Whether every leaf of `condition` can be answered.
    fn check(&self, condition: &SegmentCondition) -> Result<(), Unsupported> {
        let mut found = Ok(());
        let mut events = false;
        condition_leaves(condition, &mut |leaf| {
            if let SegmentCondition::Event { index, def, .. } = leaf {
                events = true;
                let reason = unanswerable(def).or_else(|| self.events.unanswered_filters(def));
                if let (Some(reason), Ok(())) = (reason, &found) {
                    found = Err(Unsupported::EventCondition {
                        index: *index,
                        reason,
                    });
                }
            }
        });
        found?;
        let unknown = (&self.events_unknown & &self.alive).len();
        if events && unknown > 0 {
            return Err(Unsupported::EventsUnknown(unknown));
        }
        Ok(())
    }

    /// The rows of `within` for which `condition` holds. A part of an `all` is evaluated only over
    /// the rows the parts before it left, and an `any` only over the rows not yet in it, so the
    /// costlier leaves (event conditions, read row by row) see few rows; those go last.
    fn rows_where(
        &self,
        condition: &SegmentCondition,
        within: &RoaringBitmap,
        now: DateTime<Utc>,
    ) -> RoaringBitmap {
        match condition {
            SegmentCondition::All(parts) => {
                let mut rows = within.clone();
                for part in by_cost(parts) {
                    if rows.is_empty() {
                        break;
                    }
                    rows = self.rows_where(part, &rows, now);
                }
                rows
            }
            SegmentCondition::Any(parts) => {
                let mut rows = RoaringBitmap::new();
                let mut rest = within.clone();
                for part in by_cost(parts) {
                    if rest.is_empty() {
                        break;
                    }
                    let hits = self.rows_where(part, &rest, now);
                    rest -= &hits;
                    rows |= hits;
                }
                rows
            }
            SegmentCondition::Not(inner) => within - self.rows_where(inner, within, now),
            SegmentCondition::Field { key, name, cmp } => {
                self.field_rows(*key, name, cmp, within, now)
            }
            SegmentCondition::Segment(id) => self
                .segments
                .get(id)
                .map_or_else(RoaringBitmap::new, |rows| rows & within),
            SegmentCondition::Consent { channel, purpose } => self
                .consents
                .get(&((*channel).to_owned(), (*purpose).to_owned()))
                .map_or_else(RoaringBitmap::new, |rows| rows & within),
            SegmentCondition::Event { def, cmp, .. }
                if !matches!(def.function, Function::Count | Function::DaysActive) =>
            {
                self.events.aggregate_rows(def, cmp, within, now)
            }
            SegmentCondition::Event { def, cmp, .. } => {
                let mut decided: HashMap<u64, bool> = HashMap::new();
                let mut holds = |count: u64| {
                    *decided
                        .entry(count)
                        .or_insert_with(|| cmp.holds(&[&json!(count)], now))
                };
                match self.events.reader(def, now) {
                    // No profile ever had the event: every value is 0.
                    None if holds(0) => within.clone(),
                    None => RoaringBitmap::new(),
                    Some(reader) => within.iter().filter(|r| holds(reader.value(*r))).collect(),
                }
            }
        }
    }

    /// The rows of `within` whose values of the field satisfy the comparison, the field found as
    /// `crate::tags::Facts::field` finds it.
    fn field_rows(
        &self,
        key: FieldKey,
        name: &str,
        cmp: &Comparison,
        within: &RoaringBitmap,
        now: DateTime<Utc>,
    ) -> RoaringBitmap {
        let holds = |values: &[Value]| {
            let actual: Vec<&Value> = values.iter().collect();
            cmp.holds(&actual, now)
        };
        let none = || {
            if holds(&[]) {
                within.clone()
            } else {
                RoaringBitmap::new()
            }
        };
        match self.source(key, name) {
            Source::Column(Some(c)) => c.matching(within, holds),
            Source::Tags(Some(c)) => c.matching(within, holds),
            Source::Column(None) | Source::Tags(None) | Source::Nothing => none(),
        }
    }

    /// Where a field's values are.
    pub(super) fn source(&self, key: FieldKey, name: &str) -> Source<'_> {
        let computed = self.names.computed.contains(name);
        let tag = self.names.tags.contains(name);
        match key {
            FieldKey::Computed if computed => Source::Column(self.computed.get(name)),
            FieldKey::Tag if tag => Source::Tags(self.tags.get(name)),
            FieldKey::Trait if computed => Source::Column(self.computed.get(name)),
            FieldKey::Trait if tag => Source::Tags(self.tags.get(name)),
            FieldKey::Trait => Source::Column(self.traits.get(name)),
            FieldKey::Computed | FieldKey::Tag => Source::Nothing,
        }
    }
}

/// Where a field's values are: a column, a tag column (absent: no row has a value yet), or nowhere.
pub(super) enum Source<'a> {
    Column(Option<&'a super::columns::Column>),
    Tags(Option<&'a super::columns::BitmapColumn>),
    Nothing,
}

impl Source<'_> {
    /// The code of a row's values and the values of a code.
    pub(super) fn code(&self, row: u32) -> u32 {
        match self {
            Source::Column(Some(c)) => c.code(row),
            Source::Tags(Some(c)) => c.column.code(row),
            _ => 0,
        }
    }

    pub(super) fn values(&self, code: u32) -> &[Value] {
        match self {
            Source::Column(Some(c)) => c.values(code),
            Source::Tags(Some(c)) => c.column.values(code),
            _ => &[],
        }
    }
}

/// The parts in the order they are evaluated: those without event conditions first.
fn by_cost(parts: &[SegmentCondition]) -> Vec<&SegmentCondition> {
    let reads_events = |part: &SegmentCondition| {
        let mut events = false;
        condition_leaves(part, &mut |leaf| {
            events |= matches!(leaf, SegmentCondition::Event { .. });
        });
        events
    };
    let mut ordered: Vec<&SegmentCondition> = parts.iter().collect();
    ordered.sort_by_key(|p| reads_events(p));
    ordered
}

/// Calls `f` on every leaf of the tree.
fn condition_leaves(condition: &SegmentCondition, f: &mut impl FnMut(&SegmentCondition)) {
    match condition {
        SegmentCondition::All(parts) | SegmentCondition::Any(parts) => {
            for p in parts {
                condition_leaves(p, f);
            }
        }
        SegmentCondition::Not(inner) => condition_leaves(inner, f),
        leaf => f(leaf),
    }
}
