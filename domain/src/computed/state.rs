//! A computed trait's per-profile state (time buckets of partial aggregates), its value at `now`, and the
//! reference computation from raw events that the state must agree with.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use crate::json::JsonRead;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::condition::as_number;
use super::path::number;
use super::{Function, TraitDef, Window};
use crate::message::MessageKind;
use crate::vecmap::{VecMap, VecSet};

const MICRO: i128 = 1_000_000;
/// Values of this magnitude or more are not aggregated: micro-units stay far inside i128.
const MAX_MAGNITUDE: f64 = 1e20;

/// One event as stored, for [`recompute`].
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    pub kind: MessageKind,
    pub name: Option<&'a str>,
    pub payload: &'a Value,
    pub event_time: DateTime<Utc>,
    pub message_id: &'a str,
}

/// A profile's state for one trait: buckets (UTC day, UTC hour for `h` windows, or one for `all`) of
/// partial aggregates. Merges are order-independent; see the module doc of `computed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraitState {
    #[serde(rename = "b", default)]
    buckets: VecMap<i64, Agg>,
    /// A sequence's state (function `sequence` only).
    #[serde(rename = "q", default)]
    seq: Option<Seq>,
}

/// How many second-step times a sequence keeps (the latest ones after its latest first step).
const SEQUENCE_KEEPS: usize = 256;

/// A sequence's state: the latest first-step event, and the second-step events after it. Merging takes
/// the later first step and the union of the second steps after it, so order does not matter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Seq {
    #[serde(default, with = "crate::codec::opt_time")]
    a: Option<DateTime<Utc>>,
    #[serde(default)]
    b: BTreeSet<DateTime<Utc>>,
}

impl Seq {
    fn prune(&mut self) {
        if let Some(a) = self.a {
            self.b = self.b.split_off(&(a + chrono::Duration::nanoseconds(1)));
        }
        while self.b.len() > SEQUENCE_KEEPS {
            self.b.pop_first();
        }
    }

    /// The sequence's value at `now` and, if it will change by itself (a time-out), when.
    fn judge(&self, then: &super::Then, now: DateTime<Utc>) -> (bool, Option<DateTime<Utc>>) {
        let Some(a) = self.a else {
            return (false, None);
        };
        let deadline = a + then.within;
        let followed = self.b.iter().next().is_some_and(|b| *b <= deadline);
        if then.absent {
            if followed {
                (false, None)
            } else if now >= deadline {
                (true, None)
            } else {
                (false, Some(deadline))
            }
        } else {
            (followed, None)
        }
    }
}

/// What one bucket holds; only the fields the trait's function uses are ever set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Agg {
    /// Events (count) or numeric values (average).
    #[serde(default)]
    n: u64,
    /// Sum in micro-units (sum, average).
    #[serde(default)]
    s: i128,
    #[serde(default)]
    lo: Option<i128>,
    #[serde(default)]
    hi: Option<i128>,
    #[serde(default)]
    /// Boxed: most traits set neither, and an unboxed pair is 128 bytes in every bucket.
    first: Option<Box<Mark>>,
    #[serde(default)]
    last: Option<Box<Mark>>,
    /// Occurrences per canonical value (most_frequent).
    #[serde(default)]
    f: VecMap<String, u64>,
    /// Distinct canonical values (distinct_count, unique_list).
    #[serde(default)]
    u: VecSet<String>,
}

/// An event's place in time and its value (canonical JSON text), for first/last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Mark {
    #[serde(with = "crate::codec::time")]
    t: DateTime<Utc>,
    i: String,
    v: String,
}

impl Agg {
    fn absorb(&mut self, other: Agg) {
        self.n += other.n;
        self.s = self.s.wrapping_add(other.s);
        self.lo = min_opt(self.lo, other.lo);
        self.hi = self.hi.max(other.hi);
        self.first = match (self.first.take(), other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = self.last.take().max(other.last);
        for (k, c) in other.f {
            *self.f.entry(k).or_default() += c;
        }
        self.u.extend(other.u);
    }
}

fn min_opt(a: Option<i128>, b: Option<i128>) -> Option<i128> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl TraitState {
    /// Folds one event in if `def.matches` it. `message_id` orders events with equal time (first/last).
    pub fn apply(
        &mut self,
        def: &TraitDef,
        kind: MessageKind,
        name: Option<&str>,
        payload: &impl JsonRead,
        event_time: DateTime<Utc>,
        message_id: &str,
    ) {
        if let Some(then) = &def.then {
            let seq = self.seq.get_or_insert_with(Seq::default);
            if def.matches_first(kind, name, payload, event_time) {
                seq.a = seq.a.max(Some(event_time));
            }
            if then.matches(kind, name, payload, event_time) {
                seq.b.insert(event_time);
            }
            seq.prune();
            return;
        }
        if !def.matches(kind, name, payload, event_time) {
            return;
        }
        let Some(agg) = contribution(def, payload, event_time, message_id) else {
            return;
        };
        self.buckets
            .entry(bucket_of(def, event_time))
            .or_default()
            .absorb(agg);
        self.prune(def);
    }

    /// Joins another profile's state (a merge).
    pub fn absorb(&mut self, def: &TraitDef, other: TraitState) {
        if let Some(theirs) = other.seq {
            let seq = self.seq.get_or_insert_with(Seq::default);
            seq.a = seq.a.max(theirs.a);
            seq.b.extend(theirs.b);
            seq.prune();
        }
        for (k, agg) in other.buckets {
            self.buckets.entry(k).or_default().absorb(agg);
        }
        self.prune(def);
    }

    /// The value at `now`: count/days_active/sum/distinct_count → a number (0 when none); unique_list → a
    /// sorted array; min/max/average/first/last/most_frequent → the value or null.
    pub fn value_at(&self, def: &TraitDef, now: DateTime<Utc>) -> Value {
        if let Some(then) = &def.then {
            let seq = self.seq.clone().unwrap_or_default();
            return Value::Bool(seq.judge(then, now).0);
        }
        let in_window = self.buckets.range(cutoff(def.window, now)..);
        if def.function == Function::DaysActive {
            let days: BTreeSet<i64> = in_window.map(|(k, _)| day_of_bucket(def, *k)).collect();
            return Value::from(days.len());
        }
        let mut total = Agg::default();
        for (_, agg) in in_window {
            total.absorb(agg.clone());
        }
        output(def.function, total)
    }

    /// The next time after `now` at which the oldest bucket still in the window leaves it (the value may
    /// change then without any new event); `None` for `all` or when no bucket is in the window.
    pub fn next_change(&self, def: &TraitDef, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if let Some(then) = &def.then {
            return self.seq.as_ref().and_then(|s| s.judge(then, now).1);
        }
        let (n, unit) = match def.window {
            Window::All => return None,
            Window::Days(n) => (n, 86_400),
            Window::Hours(n) => (n, 3_600),
        };
        let (oldest, _) = self.buckets.range(cutoff(def.window, now)..).next()?;
        DateTime::from_timestamp((oldest + i64::from(n)).checked_mul(unit)?, 0)
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty() && self.seq.is_none()
    }

    /// Drops buckets older than (newest bucket − window − 24 hours): whatever the order of events and merges,
    /// the buckets kept are those within the window of the newest one, plus a margin so that the value stays
    /// exact at any `now` up to 24 hours before the newest event (ingestion refuses timestamps further ahead).
    fn prune(&mut self, def: &TraitDef) {
        let keep = match def.window {
            Window::All => return,
            Window::Days(n) => i64::from(n) - 1 + 1,
            Window::Hours(n) => i64::from(n) - 1 + 24,
        };
        if let Some((&newest, _)) = self.buckets.last_key_value() {
            self.buckets = self.buckets.split_off(&(newest - keep));
        }
    }
}

fn day(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

fn hour(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3_600)
}

/// The bucket of an event: its UTC day (hour for `h` windows); `all` keeps one bucket, or days for days_active.
fn bucket_of(def: &TraitDef, t: DateTime<Utc>) -> i64 {
    match def.window {
        Window::Hours(_) => hour(t),
        Window::Days(_) => day(t),
        Window::All if def.function == Function::DaysActive => day(t),
        Window::All => 0,
    }
}

fn day_of_bucket(def: &TraitDef, key: i64) -> i64 {
    match def.window {
        Window::Hours(_) => key.div_euclid(24),
        _ => key,
    }
}

/// The oldest bucket in the window at `now`.
fn cutoff(window: Window, now: DateTime<Utc>) -> i64 {
    match window {
        Window::All => i64::MIN,
        Window::Days(n) => day(now) - (i64::from(n) - 1),
        Window::Hours(n) => hour(now) - (i64::from(n) - 1),
    }
}

/// The values an event contributes: the property's values, or for first/last without a property the event time.
fn event_values<J: JsonRead>(def: &TraitDef, payload: &J, event_time: DateTime<Utc>) -> Vec<Value> {
    match &def.property {
        Some(_) => def.values(payload, event_time),
        None => vec![Value::String(
            event_time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )],
    }
}

/// A numeric value in micro-units.
fn units(v: &Value) -> Option<i128> {
    let x = as_number(v)?;
    (x.abs() < MAX_MAGNITUDE).then(|| (x * 1e6).round() as i128)
}

fn units_value(u: i128) -> Value {
    if u % MICRO == 0 {
        if let Ok(whole) = i64::try_from(u / MICRO) {
            if whole.unsigned_abs() < (1 << 53) {
                return Value::from(whole);
            }
        }
    }
    number(u as f64 / 1e6).unwrap_or(Value::Null)
}

fn average_value(sum: i128, n: u64) -> Value {
    if n == 0 {
        return Value::Null;
    }
    let d = MICRO * i128::from(n);
    if sum % d == 0 {
        return units_value(sum / d * MICRO);
    }
    // One division, so the result is the double nearest the true quotient (425.9, not
    // 425.90000000000003 from dividing twice).
    number(sum as f64 / d as f64).unwrap_or(Value::Null)
}

/// The canonical JSON text of a value: integral numbers as integers, object keys sorted.
pub(crate) fn canonical(v: &Value) -> String {
    fn normalise(v: &Value) -> Value {
        match v {
            Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                n.as_f64().and_then(number).unwrap_or_else(|| v.clone())
            }
            Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
            Value::Object(obj) => {
                let sorted: BTreeMap<&String, Value> =
                    obj.iter().map(|(k, v)| (k, normalise(v))).collect();
                Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            other => other.clone(),
        }
    }
    normalise(v).to_string()
}

fn from_canonical(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// One matching event's partial aggregate, or `None` when it has nothing for the function.
fn contribution<J: JsonRead>(
    def: &TraitDef,
    payload: &J,
    event_time: DateTime<Utc>,
    message_id: &str,
) -> Option<Agg> {
    let mut agg = Agg::default();
    let values = || event_values(def, payload, event_time);
    let numbers = || values().iter().filter_map(units).collect::<Vec<_>>();
    match def.function {
        Function::Count => agg.n = 1,
        // Kept in `Seq`, never in buckets.
        Function::DaysActive | Function::Sequence => {}
        Function::Sum => agg.s = sum(&non_empty(numbers())?),
        Function::Average => {
            let xs = non_empty(numbers())?;
            agg.s = sum(&xs);
            agg.n = xs.len() as u64;
        }
        Function::Min => agg.lo = numbers().into_iter().min(),
        Function::Max => agg.hi = numbers().into_iter().max(),
        Function::First | Function::Last => {
            let v = values().into_iter().next()?;
            let mark = Mark {
                t: event_time,
                i: message_id.to_string(),
                v: canonical(&v),
            };
            if def.function == Function::First {
                agg.first = Some(Box::new(mark));
            } else {
                agg.last = Some(Box::new(mark));
            }
        }
        Function::MostFrequent => {
            for v in non_empty(values())? {
                *agg.f.entry(canonical(&v)).or_default() += 1;
            }
        }
        Function::DistinctCount | Function::UniqueList => {
            agg.u = non_empty(values())?.iter().map(canonical).collect();
        }
    }
    if matches!(def.function, Function::Min | Function::Max) && agg.lo.is_none() && agg.hi.is_none()
    {
        return None;
    }
    Some(agg)
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Wrapping addition is associative and commutative, so the sum never depends on order (and never panics).
fn sum(xs: &[i128]) -> i128 {
    xs.iter().fold(0i128, |a, b| a.wrapping_add(*b))
}

fn output(function: Function, agg: Agg) -> Value {
    match function {
        Function::Count => Value::from(agg.n),
        Function::Sequence => Value::Bool(false),
        Function::Sum => units_value(agg.s),
        Function::Average => average_value(agg.s, agg.n),
        Function::Min => agg.lo.map_or(Value::Null, units_value),
        Function::Max => agg.hi.map_or(Value::Null, units_value),
        Function::First => agg.first.map_or(Value::Null, |m| from_canonical(&m.v)),
        Function::Last => agg.last.map_or(Value::Null, |m| from_canonical(&m.v)),
        Function::MostFrequent => most_frequent(&agg.f),
        Function::DistinctCount => Value::from(agg.u.len()),
        Function::UniqueList => unique_list(agg.u.iter()),
        // Counted from the buckets themselves (see `value_at`); an aggregate alone cannot tell.
        Function::DaysActive => Value::from(0),
    }
}

fn most_frequent(f: &VecMap<String, u64>) -> Value {
    // Iteration is in ascending text order, so keeping only strictly greater counts picks the smallest text on ties.
    let mut best: Option<(&String, u64)> = None;
    for (k, &c) in f {
        if best.is_none_or(|(_, bc)| c > bc) {
            best = Some((k, c));
        }
    }
    best.map_or(Value::Null, |(k, _)| from_canonical(k))
}

fn unique_list<'a>(texts: impl Iterator<Item = &'a String>) -> Value {
    let mut values: Vec<(String, Value)> = texts.map(|t| (t.clone(), from_canonical(t))).collect();
    values.sort_by(|a, b| value_order(&a.1, &b.1).then_with(|| a.0.cmp(&b.0)));
    Value::Array(values.into_iter().map(|(_, v)| v).collect())
}

/// Booleans, then numbers by value, then strings, then everything else (ties broken by canonical text).
fn value_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The value straight from the raw events (no buckets): the reference the incremental state must equal.
pub fn recompute(def: &TraitDef, events: &[RawEvent<'_>], now: DateTime<Utc>) -> Value {
    if let Some(then) = &def.then {
        // The latest first step, and whether a second step came after it within the time.
        let latest = events
            .iter()
            .filter(|e| def.matches_first(e.kind, e.name, e.payload, e.event_time))
            .map(|e| e.event_time)
            .max();
        let Some(a) = latest else {
            return Value::Bool(false);
        };
        let followed = events.iter().any(|e| {
            then.matches(e.kind, e.name, e.payload, e.event_time)
                && e.event_time > a
                && e.event_time <= a + then.within
        });
        return Value::Bool(if then.absent {
            !followed && now >= a + then.within
        } else {
            followed
        });
    }
    let cut = cutoff(def.window, now);
    let in_window = |t: DateTime<Utc>| match def.window {
        Window::All => true,
        Window::Days(_) => day(t) >= cut,
        Window::Hours(_) => hour(t) >= cut,
    };
    let matched: Vec<&RawEvent<'_>> = events
        .iter()
        .filter(|e| in_window(e.event_time) && def.matches(e.kind, e.name, e.payload, e.event_time))
        .collect();
    let all_values = || {
        matched
            .iter()
            .flat_map(|e| event_values(def, e.payload, e.event_time))
    };
    let all_numbers = || all_values().filter_map(|v| units(&v)).collect::<Vec<_>>();
    match def.function {
        Function::Count => Value::from(matched.len()),
        Function::Sequence => Value::Bool(false),
        Function::DaysActive => Value::from(
            matched
                .iter()
                .map(|e| day(e.event_time))
                .collect::<BTreeSet<_>>()
                .len(),
        ),
        Function::Sum => units_value(sum(&all_numbers())),
        Function::Average => {
            let xs = all_numbers();
            average_value(sum(&xs), xs.len() as u64)
        }
        Function::Min => all_numbers()
            .into_iter()
            .min()
            .map_or(Value::Null, units_value),
        Function::Max => all_numbers()
            .into_iter()
            .max()
            .map_or(Value::Null, units_value),
        Function::First | Function::Last => {
            let marks = matched.iter().filter_map(|e| {
                let v = event_values(def, e.payload, e.event_time)
                    .into_iter()
                    .next()?;
                Some((e.event_time, e.message_id, canonical(&v)))
            });
            let chosen = if def.function == Function::First {
                marks.min()
            } else {
                marks.max()
            };
            chosen.map_or(Value::Null, |(_, _, text)| from_canonical(&text))
        }
        Function::MostFrequent => {
            let mut f = BTreeMap::new();
            for v in all_values() {
                *f.entry(canonical(&v)).or_insert(0u64) += 1;
            }
            most_frequent(&f.into_iter().collect())
        }
        Function::DistinctCount => Value::from(
            all_values()
                .map(|v| canonical(&v))
                .collect::<BTreeSet<_>>()
                .len(),
        ),
        Function::UniqueList => unique_list(
            all_values()
                .map(|v| canonical(&v))
                .collect::<BTreeSet<_>>()
                .iter(),
        ),
    }
}
