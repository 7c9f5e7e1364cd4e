//! What event conditions need, per profile: its track events counted per event name and UTC hour —
//! the buckets a `count` or `days_active` over a window of days or hours reads — and each event's
//! facets ([`super::facets`]: the scalars under its `properties`, by path), so an unsaved definition's
//! "≥ 2 Product Added in 14 days with category shoes" is answered without reading events.
//!
//! Only events with facets are kept one by one (an event without properties is counted in its hour's
//! bucket alone: a filter reads no value on it). An aggregate of a property (sum, min, max, average,
//! most_frequent, distinct_count, unique_list) folds each row's events of the name from their facets
//! with the engine's own [`TraitState`], at the start of their hour (first and last, which read the
//! order within an hour, and products of properties, which pair values by line item, are not
//! answered). A filter or an aggregated property is answered from the facets unless its
//! path is outside `properties`, some event held something unkept there, some event of the name has
//! no facets (stored before facets were, or too many values), the path has more than
//! [`MAX_DISTINCT`] distinct values, or it compares with `now` (`within_last`: a filter sees the
//! event's own time, which the hour does not give).

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use roaring::RoaringBitmap;

use super::facets::Facets;
use crate::computed::{Comparison, Filter, Function, Op, TraitDef, TraitState, Window};
use crate::message::MessageKind;

/// The most distinct values a path keeps in the index; past it, filters on the path are not answered
/// from the facets (an order id, a free text).
pub const MAX_DISTINCT: usize = 100_000;

/// One row's track events of one name in one UTC hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Bucket {
    event: u32,
    hour: i32,
    n: u32,
}

/// The UTC hour of an epoch-microsecond time (as `event_profiles.event_time` holds it), clamped to
/// what an `i32` holds (beyond year 200,000).
pub fn hour_of_micros(us: i64) -> i32 {
    let hour = us.div_euclid(3_600_000_000);
    i32::try_from(hour).unwrap_or(if hour < 0 { i32::MIN } else { i32::MAX })
}

/// One track event with facets: its name, hour and `len` facet values from `start` in its row's
/// values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Faceted {
    event: u32,
    hour: i32,
    start: u32,
    len: u32,
}

/// One row's events with facets, by (name, hour), and their facet values (codes of `(path, value)`).
#[derive(Debug, Clone, Default)]
struct RowFacets {
    events: Box<[Faceted]>,
    values: Box<[u32]>,
}

/// The `(path, value)` pairs the rows' facets name, each coded once.
#[derive(Debug, Clone, Default)]
struct FacetValues {
    paths: HashMap<String, u32>,
    /// Per path: its distinct values, and whether it is not answered (unkept somewhere, too many).
    per_path: Vec<(usize, bool)>,
    codes: HashMap<(u32, String), u32>,
    pairs: Vec<(u32, Value)>,
}

impl FacetValues {
    fn path(&mut self, path: &str) -> u32 {
        if let Some(p) = self.paths.get(path) {
            return *p;
        }
        let p = u32::try_from(self.per_path.len()).unwrap_or(u32::MAX);
        self.paths.insert(path.to_owned(), p);
        self.per_path.push((0, false));
        p
    }

    /// The code of `value` at `path`; `None` when the path is not answered (then nothing is kept).
    fn code(&mut self, path: u32, value: &Value) -> Option<u32> {
        let (distinct, refused) = self.per_path[path as usize];
        if refused {
            return None;
        }
        let key = (path, value.to_string());
        if let Some(c) = self.codes.get(&key) {
            return Some(*c);
        }
        if distinct >= MAX_DISTINCT {
            self.per_path[path as usize].1 = true;
            return None;
        }
        let c = u32::try_from(self.pairs.len()).unwrap_or(u32::MAX);
        self.codes.insert(key, c);
        self.pairs.push((path, value.clone()));
        self.per_path[path as usize].0 += 1;
        Some(c)
    }

    fn refuse(&mut self, path: u32) {
        self.per_path[path as usize].1 = true;
    }

    fn answered(&self, path: &str) -> Option<u32> {
        let p = *self.paths.get(path)?;
        (!self.per_path[p as usize].1).then_some(p)
    }
}

/// Per row, its track events by (name, hour), and those with facets one by one.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSummaries {
    names: HashMap<String, u32>,
    rows: Vec<Box<[Bucket]>>,
    faceted: Vec<RowFacets>,
    values: FacetValues,
    /// Event names some event of which has no facets.
    without_facets: HashSet<u32>,
}

/// Why an event condition cannot be answered from the summaries, whatever they hold.
pub(crate) fn unanswerable(def: &TraitDef) -> Option<&'static str> {
    if def.then.is_some() {
        return Some("a sequence reads the order of events, which the summaries do not keep");
    }
    match def.function {
        Function::Count | Function::DaysActive => {}
        Function::First | Function::Last => {
            return Some(
                "first and last read the order of events, which the summaries round to the hour",
            )
        }
        _ => {
            let Some(path) = def.property.as_ref().and_then(|e| e.as_path()) else {
                return Some("a product of properties pairs values by line item, which the facets do not keep");
            };
            if !path.as_str().starts_with("properties.") {
                return Some("an aggregate of a value outside properties reads what the summaries do not keep");
            }
            if path.payload_with(&[]).is_none() {
                return Some(
                    "an aggregate over nested line items reads what the facets do not keep",
                );
            }
            if path.as_str().contains("[]")
                && def.filters.iter().any(|f| f.path.as_str().contains("[]"))
            {
                return Some("a where filter on the line items an aggregate reads pairs values by item, which the facets do not keep");
            }
        }
    }
    let at_event_time = |f: &Filter| matches!(f.cmp.op, Op::WithinLast | Op::NotWithinLast);
    if def.filters.iter().any(at_event_time) {
        return Some("a where filter relative to the event's time needs the time, which the summaries round to the hour");
    }
    if def
        .filters
        .iter()
        .any(|f| !f.path.as_str().starts_with("properties."))
    {
        return Some("a where filter outside properties reads what the summaries do not keep");
    }
    None
}

impl EventSummaries {
    /// Why the summaries as they are cannot answer `def`'s filters or its aggregated property
    /// (after [`unanswerable`]).
    pub(crate) fn unanswered_filters(&self, def: &TraitDef) -> Option<&'static str> {
        let counts = matches!(def.function, Function::Count | Function::DaysActive);
        if counts && def.filters.is_empty() {
            return None;
        }
        if let Some(event) = self.names.get(&def.event) {
            if self.without_facets.contains(event) {
                return Some("some of these events have no facets (stored before facets were, or too many values)");
            }
        }
        let known = |path: &str| match self.values.paths.get(path) {
            // No event ever had the path: every event reads no value there.
            None => true,
            Some(_) => self.values.answered(path).is_some(),
        };
        if !def.filters.iter().all(|f| known(f.path.as_str())) {
            return Some(
                "a where filter's property holds objects, long text or too many distinct values",
            );
        }
        if let Some(path) = def.property.as_ref().and_then(|e| e.as_path()) {
            if !known(path.as_str()) {
                return Some(
                    "the aggregated property holds objects, long text or too many distinct values",
                );
            }
        }
        None
    }

    /// The rows of `within` whose value of the aggregate `def` (sum, min, max, average,
    /// most_frequent, distinct_count, unique_list of a property) satisfies `cmp` at `now`: each
    /// row's events of the name that pass the filters folded by [`TraitState`] — the engine's own
    /// fold — from their facets, at the start of their hour (the day or hour bucket a window reads).
    pub(crate) fn aggregate_rows(
        &self,
        def: &TraitDef,
        cmp: &Comparison,
        within: &RoaringBitmap,
        now: DateTime<Utc>,
    ) -> RoaringBitmap {
        let plain = TraitDef {
            filters: Vec::new(),
            ..def.clone()
        };
        let holds = |value: Value| {
            let values = super::values_of(value);
            let refs: Vec<&Value> = values.iter().collect();
            cmp.holds(&refs, now)
        };
        let none_holds = holds(TraitState::default().value_at(&plain, now));
        let nobody = || {
            if none_holds {
                within.clone()
            } else {
                RoaringBitmap::new()
            }
        };
        let (Some(event), Some(path)) = (
            self.names.get(&def.event).copied(),
            def.property.as_ref().and_then(|e| e.as_path()),
        ) else {
            return nobody();
        };
        let Some(at) = self.values.answered(path.as_str()) else {
            // No event has the property: no event gives a value.
            return nobody();
        };
        let filters: Vec<(Option<u32>, &Comparison)> = def
            .filters
            .iter()
            .map(|f| (self.values.answered(f.path.as_str()), &f.cmp))
            .collect();
        let passes = |codes: &[u32]| {
            filters.iter().all(|(p, c)| {
                let values: Vec<&Value> = match p {
                    Some(p) => codes
                        .iter()
                        .filter_map(|c| self.values.pairs.get(*c as usize))
                        .filter(|(path, _)| path == p)
                        .map(|(_, v)| v)
                        .collect(),
                    None => Vec::new(),
                };
                c.holds(&values, now)
            })
        };
        let empty = RowFacets::default();
        within
            .iter()
            .filter(|r| {
                let facets = self.faceted.get(*r as usize).unwrap_or(&empty);
                let lo = facets.events.partition_point(|f| f.event < event);
                let hi = facets.events.partition_point(|f| f.event <= event);
                let mut state: Option<TraitState> = None;
                for f in facets.events.get(lo..hi).unwrap_or(&[]) {
                    let from = f.start as usize;
                    let codes = facets
                        .values
                        .get(from..from + f.len as usize)
                        .unwrap_or(&[]);
                    if !passes(codes) {
                        continue;
                    }
                    let values: Vec<Value> = codes
                        .iter()
                        .filter_map(|c| self.values.pairs.get(*c as usize))
                        .filter(|(p, _)| *p == at)
                        .map(|(_, v)| v.clone())
                        .collect();
                    let (Some(payload), Some(time)) = (
                        path.payload_with(&values),
                        DateTime::from_timestamp(i64::from(f.hour) * 3_600, 0),
                    ) else {
                        continue;
                    };
                    state.get_or_insert_with(TraitState::default).apply(
                        &plain,
                        MessageKind::Track,
                        Some(&def.event),
                        &payload,
                        time,
                        "",
                    );
                }
                match state {
                    Some(state) => holds(state.value_at(&plain, now)),
                    None => none_holds,
                }
            })
            .collect()
    }

    /// Sets `row`'s events: `(name, hour, count)` in any order, a name and hour possibly repeated,
    /// and each of its events with facets, `(name, hour, facets)` (`None`: not known).
    pub(crate) fn set(
        &mut self,
        row: u32,
        events: &[(String, i32, u32)],
        faceted: &[(String, i32, Option<Facets>)],
    ) {
        let mut buckets: Vec<Bucket> = Vec::with_capacity(events.len());
        for (name, hour, n) in events {
            let event = self.event_code(name);
            buckets.push(Bucket {
                event,
                hour: *hour,
                n: *n,
            });
        }
        buckets.sort_unstable();
        let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
        for b in buckets {
            match merged.last_mut() {
                Some(last) if last.event == b.event && last.hour == b.hour => {
                    last.n = last.n.saturating_add(b.n)
                }
                _ => merged.push(b),
            }
        }
        let at = row as usize;
        if at >= self.rows.len() {
            self.rows.resize(at + 1, Box::from([]));
        }
        self.rows[at] = merged.into_boxed_slice();
        self.set_facets(row, faceted);
    }

    fn event_code(&mut self, name: &str) -> u32 {
        if let Some(e) = self.names.get(name) {
            return *e;
        }
        let next = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.insert(name.to_owned(), next);
        next
    }

    fn set_facets(&mut self, row: u32, faceted: &[(String, i32, Option<Facets>)]) {
        let mut events: Vec<(Faceted, Vec<u32>)> = Vec::with_capacity(faceted.len());
        for (name, hour, facets) in faceted {
            let event = self.event_code(name);
            let Some(facets) = facets else {
                self.without_facets.insert(event);
                continue;
            };
            let mut codes = Vec::new();
            for (path, values) in facets {
                let p = self.values.path(path);
                match values {
                    None => self.values.refuse(p),
                    Some(values) => {
                        for v in values {
                            if let Some(c) = self.values.code(p, v) {
                                codes.push(c);
                            }
                        }
                    }
                }
            }
            let head = Faceted {
                event,
                hour: *hour,
                start: 0,
                len: u32::try_from(codes.len()).unwrap_or(u32::MAX),
            };
            events.push((head, codes));
        }
        events.sort_by_key(|(f, _)| (f.event, f.hour));
        let mut values: Vec<u32> = Vec::new();
        let mut heads: Vec<Faceted> = Vec::with_capacity(events.len());
        for (mut head, codes) in events {
            head.start = u32::try_from(values.len()).unwrap_or(u32::MAX);
            values.extend(codes);
            heads.push(head);
        }
        let at = row as usize;
        if at >= self.faceted.len() {
            self.faceted.resize(at + 1, RowFacets::default());
        }
        self.faceted[at] = RowFacets {
            events: heads.into_boxed_slice(),
            values: values.into_boxed_slice(),
        };
    }

    /// A condition's reading of the summaries: `None` when no profile had such an event.
    pub(crate) fn reader<'a>(
        &'a self,
        def: &'a TraitDef,
        now: DateTime<Utc>,
    ) -> Option<EventReader<'a>> {
        let event = *self.names.get(&def.event)?;
        let from = match def.window {
            Window::All => i32::MIN,
            Window::Days(n) => {
                let day = now.timestamp().div_euclid(86_400) - (i64::from(n) - 1);
                clamp(day * 24)
            }
            Window::Hours(n) => clamp(now.timestamp().div_euclid(3_600) - (i64::from(n) - 1)),
        };
        let filters = def
            .filters
            .iter()
            .map(|f| (self.values.answered(f.path.as_str()), &f.cmp))
            .collect();
        Some(EventReader {
            rows: &self.rows,
            faceted: &self.faceted,
            pairs: &self.values.pairs,
            event,
            from,
            days: def.function == Function::DaysActive,
            filters,
            now,
        })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * 16
            + self.rows.iter().map(|r| r.len() * 12).sum::<usize>()
            + self.names.keys().map(|k| k.capacity() + 32).sum::<usize>()
            + self.faceted.capacity() * 32
            + self
                .faceted
                .iter()
                .map(|f| f.events.len() * 16 + f.values.len() * 4)
                .sum::<usize>()
            + self
                .values
                .codes
                .keys()
                .map(|(_, v)| v.capacity() + 48)
                .sum::<usize>()
            + self.values.pairs.capacity() * 40
    }
}

fn clamp(hour: i64) -> i32 {
    i32::try_from(hour).unwrap_or(if hour < 0 { i32::MIN } else { i32::MAX })
}

/// The value of one event condition per row: the number of matching events in the window (`count`),
/// or of distinct UTC days with one (`days_active`).
pub(crate) struct EventReader<'a> {
    rows: &'a [Box<[Bucket]>],
    faceted: &'a [RowFacets],
    pairs: &'a [(u32, Value)],
    event: u32,
    from: i32,
    days: bool,
    /// The `where` filters: the path's code (`None`: no event has the path) and the comparison.
    filters: Vec<(Option<u32>, &'a Comparison)>,
    now: DateTime<Utc>,
}

impl EventReader<'_> {
    pub(crate) fn value(&self, row: u32) -> u64 {
        let Some(buckets) = self.rows.get(row as usize) else {
            return 0;
        };
        let start = buckets.partition_point(|b| (b.event, b.hour) < (self.event, self.from));
        let end = buckets.partition_point(|b| b.event <= self.event);
        let in_window = buckets.get(start..end).unwrap_or(&[]);
        if self.filters.is_empty() {
            return if self.days {
                let days: BTreeSet<i32> = in_window.iter().map(|b| b.hour.div_euclid(24)).collect();
                days.len() as u64
            } else {
                in_window.iter().map(|b| u64::from(b.n)).sum()
            };
        }
        // An event without facets reads no value anywhere: the filters hold for all or none of them.
        let bare_holds = self.holds(&[]);
        let empty = RowFacets::default();
        let facets = self.faceted.get(row as usize).unwrap_or(&empty);
        let mut days: BTreeSet<i32> = BTreeSet::new();
        let mut count = 0u64;
        for b in in_window {
            let lo = facets
                .events
                .partition_point(|f| (f.event, f.hour) < (b.event, b.hour));
            let hi = facets
                .events
                .partition_point(|f| (f.event, f.hour) <= (b.event, b.hour));
            let with_facets = facets.events.get(lo..hi).unwrap_or(&[]);
            let mut matching = with_facets
                .iter()
                .filter(|f| {
                    let from = f.start as usize;
                    let codes = facets
                        .values
                        .get(from..from + f.len as usize)
                        .unwrap_or(&[]);
                    self.holds(codes)
                })
                .count() as u64;
            if bare_holds {
                matching += u64::from(b.n).saturating_sub(with_facets.len() as u64);
            }
            count += matching;
            if matching > 0 {
                days.insert(b.hour.div_euclid(24));
            }
        }
        if self.days {
            days.len() as u64
        } else {
            count
        }
    }

    /// Whether every filter holds for an event whose facet values are `codes`.
    fn holds(&self, codes: &[u32]) -> bool {
        self.filters.iter().all(|(path, cmp)| {
            let values: Vec<&Value> = match path {
                Some(p) => codes
                    .iter()
                    .filter_map(|c| self.pairs.get(*c as usize))
                    .filter(|(at, _)| at == p)
                    .map(|(_, v)| v)
                    .collect(),
                None => Vec::new(),
            };
            cmp.holds(&values, self.now)
        })
    }
}
