//! The audience index: the facts segments test, for every profile of a workspace, as columns and
//! roaring bitmaps, so that a segment definition is evaluated over a million profiles in milliseconds.
//!
//! It is a derived copy, never a second source of truth: each [`ProfileRow`] is read from the engine's
//! state of one profile (its stored document's traits, computed values, consent and counts; its stored
//! tags, segment memberships and spend; its events' summaries), and the index holds nothing else.
//! `cdp_projections::audience` builds it and keeps it current.
//!
//! - Traits, computed-trait values and tags are [`columns::Column`]s: each row's list of values is one
//!   dictionary code, so a comparison is decided once per distinct list (the same `Comparison::holds`
//!   on the same values as [`crate::segments`]), then the rows are read as codes. Tags keep a roaring
//!   bitmap per value besides; segments and reachable channels are bitmaps; spend, orders and the time
//!   the computed values next change by themselves are numeric arrays.
//! - Event conditions of an unsaved definition read [`events::EventSummaries`]: track events per
//!   name and UTC hour, and each event's [`facets`] (the scalars under its `properties`). `count`,
//!   `days_active` and aggregates of a property, with or without `where` filters on `properties…`,
//!   are answered from them; a sequence, `first`/`last`, a product of properties, or a filter the
//!   facets cannot answer is not ([`Unsupported`]) and the caller falls back to folding the
//!   profiles' events.
//!
//! [`AudienceIndex::matching`] gives the members of a definition as a bitmap; [`AudienceIndex::summary`],
//! [`AudienceIndex::breakdown`] and [`AudienceIndex::overlap`] read them.

mod columns;
mod evaluate;
mod events;
pub mod facets;
mod report;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use roaring::RoaringBitmap;
use serde_json::Value;

use columns::{BitmapColumn, Column};
use events::EventSummaries;

pub use evaluate::Unsupported;
pub use events::hour_of_micros;
pub use report::{parse_breakdown, Breakdown, BreakdownField, Group, Summary, MAX_GROUPS};

/// What the index knows of one profile: what [`crate::segments::SegmentFacts`] would read of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileRow {
    pub profile: String,
    /// The document's traits.
    pub traits: BTreeMap<String, Value>,
    /// Every computed trait the catalog folds (hidden ones included), valued at the index's time.
    pub computed: BTreeMap<String, Value>,
    /// The stored tags and their values.
    pub tags: BTreeMap<String, Value>,
    /// The saved segments the profile is a member of.
    pub segments: BTreeSet<String>,
    /// `(channel, purpose)` pairs the profile may be reached on under the catalog's consent policy
    /// (`crate::consent::Consents::reaches`): the index is read whole again when the policy changes.
    pub consents: BTreeSet<(String, String)>,
    /// The built-in spend at the index's time.
    pub spend: f64,
    /// `Order Completed` events.
    pub orders: u64,
    /// Track events as `(name, UTC hour, count)`; `None` when they are not known (events stored
    /// before their summaries were).
    pub events: Option<Vec<(String, i32, u32)>>,
    /// Track events with properties, one by one: `(name, UTC hour, facets)`; facets `None` when
    /// they are not known (stored before facets were, or too many values).
    pub faceted: Vec<(String, i32, Option<facets::Facets>)>,
    /// When a computed value next changes by itself (a window moves on, a sequence times out): the
    /// row is to be read again then.
    pub valid_until: Option<DateTime<Utc>>,
}

/// How the catalog resolves a name: `{"trait": x}` reads a computed trait `x` if there is one, else a
/// tag `x`, else the profile trait (`crate::tags::Facts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Every computed trait the catalog folds.
    pub computed: BTreeSet<String>,
    /// Every tag defined.
    pub tags: BTreeSet<String>,
}

/// The index of one workspace. Rows are numbered as profiles arrive; a profile that goes (merged away,
/// erased) leaves `alive`.
#[derive(Debug, Clone, Default)]
pub struct AudienceIndex {
    names: Names,
    ids: Vec<String>,
    rows: HashMap<String, u32>,
    alive: RoaringBitmap,
    traits: BTreeMap<String, Column>,
    computed: BTreeMap<String, Column>,
    tags: BTreeMap<String, BitmapColumn>,
    segments: BTreeMap<String, RoaringBitmap>,
    consents: BTreeMap<(String, String), RoaringBitmap>,
    spend: Vec<f64>,
    orders: Vec<u64>,
    /// Epoch ms; `i64::MAX`: never.
    valid_until: Vec<i64>,
    events: EventSummaries,
    /// Rows whose events are not summarised.
    events_unknown: RoaringBitmap,
}

impl AudienceIndex {
    /// An empty index under the catalog's names.
    pub fn new(names: Names) -> AudienceIndex {
        AudienceIndex {
            names,
            ..AudienceIndex::default()
        }
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Live profiles.
    pub fn profiles(&self) -> u64 {
        self.alive.len()
    }

    /// Whether the profile is in the index.
    pub fn contains(&self, profile: &str) -> bool {
        self.rows
            .get(profile)
            .is_some_and(|r| self.alive.contains(*r))
    }

    /// Whether any profile has, or the catalog defines, the field.
    pub fn knows(&self, field: &BreakdownField) -> bool {
        match self.source(field.key, &field.name) {
            evaluate::Source::Column(Some(_)) | evaluate::Source::Tags(Some(_)) => true,
            evaluate::Source::Column(None) | evaluate::Source::Tags(None) => {
                field.key != crate::tags::FieldKey::Trait
                    || self.names.computed.contains(&field.name)
                    || self.names.tags.contains(&field.name)
            }
            evaluate::Source::Nothing => false,
        }
    }

    /// The rows of these profiles (those the index holds).
    pub fn rows_of<'a>(&self, profiles: impl IntoIterator<Item = &'a str>) -> RoaringBitmap {
        profiles
            .into_iter()
            .filter_map(|p| self.rows.get(p).copied())
            .filter(|r| self.alive.contains(*r))
            .collect()
    }

    /// The profiles that enter the saved segment `segment` and those that leave it when its members
    /// become `members`, against its stored members (each list in profile id order).
    pub fn membership_change(
        &self,
        segment: &str,
        members: &RoaringBitmap,
    ) -> (Vec<String>, Vec<String>) {
        let empty = RoaringBitmap::new();
        let stored = self.segments.get(segment).unwrap_or(&empty) & &self.alive;
        let members = members & &self.alive;
        let ids = |rows: RoaringBitmap| {
            let mut ids: Vec<String> = rows.iter().map(|r| self.ids[r as usize].clone()).collect();
            ids.sort_unstable();
            ids
        };
        (ids(&members - &stored), ids(&stored - &members))
    }

    /// Puts a profile's facts in, replacing what the index held of it.
    pub fn upsert(&mut self, row: ProfileRow) {
        let r = match self.rows.get(&row.profile) {
            Some(r) => *r,
            None => {
                let r = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
                self.ids.push(row.profile.clone());
                self.rows.insert(row.profile.clone(), r);
                r
            }
        };
        self.alive.insert(r);
        let ProfileRow {
            traits,
            computed,
            tags,
            segments,
            consents,
            spend,
            orders,
            events,
            faceted,
            valid_until,
            ..
        } = row;
        set_all(&mut self.traits, r, traits, |c, r, v| {
            c.set(r, v);
        });
        set_all(&mut self.computed, r, computed, |c, r, v| {
            c.set(r, v);
        });
        set_all(&mut self.tags, r, tags, BitmapColumn::set);
        for (id, rows) in &mut self.segments {
            if !segments.contains(id) {
                rows.remove(r);
            }
        }
        for id in segments {
            self.segments.entry(id).or_default().insert(r);
        }
        for (pair, rows) in &mut self.consents {
            if !consents.contains(pair) {
                rows.remove(r);
            }
        }
        for pair in consents {
            self.consents.entry(pair).or_default().insert(r);
        }
        put(&mut self.spend, r, spend, 0.0);
        put(&mut self.orders, r, orders, 0);
        let until = valid_until.map_or(i64::MAX, |t| t.timestamp_millis());
        put(&mut self.valid_until, r, until, i64::MAX);
        match events {
            Some(events) => {
                self.events.set(r, &events, &faceted);
                self.events_unknown.remove(r);
            }
            None => {
                self.events.set(r, &[], &[]);
                self.events_unknown.insert(r);
            }
        }
    }

    /// Takes a profile out (merged away, erased, gone from the tables).
    pub fn remove(&mut self, profile: &str) {
        let Some(r) = self.rows.get(profile).copied() else {
            return;
        };
        if !self.alive.remove(r) {
            return;
        }
        for c in self.traits.values_mut().chain(self.computed.values_mut()) {
            c.set(r, Vec::new());
        }
        for c in self.tags.values_mut() {
            c.set(r, Vec::new());
        }
        for rows in self.segments.values_mut().chain(self.consents.values_mut()) {
            rows.remove(r);
        }
        self.events.set(r, &[], &[]);
        self.events_unknown.remove(r);
    }

    /// The profiles whose computed values have changed by themselves by `now`: to be read again.
    pub fn stale_at(&self, now: DateTime<Utc>) -> Vec<String> {
        let now = now.timestamp_millis();
        self.alive
            .iter()
            .filter(|r| self.valid_until.get(*r as usize).is_some_and(|t| *t <= now))
            .map(|r| self.ids[r as usize].clone())
            .collect()
    }

    /// The members of each saved segment, as the stored memberships say.
    pub fn segment_sizes(&self) -> BTreeMap<String, u64> {
        self.segments
            .iter()
            .map(|(id, rows)| (id.clone(), rows.len()))
            .collect()
    }

    /// The profiles carrying each tag.
    pub fn tag_sizes(&self) -> BTreeMap<String, u64> {
        self.tags
            .iter()
            .map(|(name, c)| (name.clone(), (c.present() & &self.alive).len()))
            .collect()
    }

    /// Approximate heap bytes the index holds.
    pub fn heap_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().map(|s| s.capacity() * 2 + 24 + 32).sum();
        let columns: usize = self
            .traits
            .values()
            .chain(self.computed.values())
            .map(Column::heap_bytes)
            .sum::<usize>()
            + self
                .tags
                .values()
                .map(BitmapColumn::heap_bytes)
                .sum::<usize>();
        let bitmaps: usize = self
            .segments
            .values()
            .chain(self.consents.values())
            .chain([&self.alive, &self.events_unknown])
            .map(RoaringBitmap::serialized_size)
            .sum();
        ids + columns
            + bitmaps
            + self.spend.capacity() * 8
            + self.orders.capacity() * 8
            + self.valid_until.capacity() * 8
            + self.events.heap_bytes()
    }
}

/// Sets row `r` in every column of `columns`: the values `fields` gives it, none in the others.
fn set_all<C: Default>(
    columns: &mut BTreeMap<String, C>,
    r: u32,
    mut fields: BTreeMap<String, Value>,
    set: impl Fn(&mut C, u32, Vec<Value>),
) {
    for (name, column) in columns.iter_mut() {
        let values = fields.remove(name).map(values_of).unwrap_or_default();
        set(column, r, values);
    }
    for (name, value) in fields {
        let values = values_of(value);
        if !values.is_empty() {
            set(columns.entry(name).or_default(), r, values);
        }
    }
}

fn put<T: Copy>(column: &mut Vec<T>, r: u32, value: T, default: T) {
    let at = r as usize;
    if at >= column.len() {
        column.resize(at + 1, default);
    }
    column[at] = value;
}

/// A field's values as segments read them: null is none, an array is its items.
pub fn values_of(v: Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        v => vec![v],
    }
}
