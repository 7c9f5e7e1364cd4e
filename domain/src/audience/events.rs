//! What event conditions need, per profile: its track events counted per event name and UTC hour —
//! the buckets a `count` or `days_active` over a window of days or hours reads — so an unsaved
//! definition's "≥ 2 Product Added in 14 days" is answered without reading events.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::computed::{Function, TraitDef, Window};

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

/// Per row, its track events by (name, hour).
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSummaries {
    names: HashMap<String, u32>,
    rows: Vec<Box<[Bucket]>>,
}

/// Why an event condition cannot be answered from the summaries.
pub(crate) fn unanswerable(def: &TraitDef) -> Option<&'static str> {
    if def.then.is_some() {
        return Some("a sequence reads the order of events, which the summaries do not keep");
    }
    if !def.filters.is_empty() {
        return Some("a where filter reads event properties, which the summaries do not keep");
    }
    if !matches!(def.function, Function::Count | Function::DaysActive) {
        return Some("an aggregate reads event properties, which the summaries do not keep");
    }
    None
}

impl EventSummaries {
    /// Sets `row`'s events: `(name, hour, count)` in any order, a name and hour possibly repeated.
    pub(crate) fn set(&mut self, row: u32, events: &[(String, i32, u32)]) {
        let mut buckets: Vec<Bucket> = Vec::with_capacity(events.len());
        for (name, hour, n) in events {
            let next = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            let event = *self.names.entry(name.clone()).or_insert(next);
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
    }

    /// A condition's reading of the summaries: `None` when no profile had such an event.
    pub(crate) fn reader(&self, def: &TraitDef, now: DateTime<Utc>) -> Option<EventReader<'_>> {
        let event = *self.names.get(&def.event)?;
        let from = match def.window {
            Window::All => i32::MIN,
            Window::Days(n) => {
                let day = now.timestamp().div_euclid(86_400) - (i64::from(n) - 1);
                clamp(day * 24)
            }
            Window::Hours(n) => clamp(now.timestamp().div_euclid(3_600) - (i64::from(n) - 1)),
        };
        Some(EventReader {
            rows: &self.rows,
            event,
            from,
            days: def.function == Function::DaysActive,
        })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.capacity() * 16
            + self.rows.iter().map(|r| r.len() * 12).sum::<usize>()
            + self.names.keys().map(|k| k.capacity() + 32).sum::<usize>()
    }
}

fn clamp(hour: i64) -> i32 {
    i32::try_from(hour).unwrap_or(if hour < 0 { i32::MIN } else { i32::MAX })
}

/// The value of one event condition per row: the number of matching events in the window (`count`),
/// or of distinct UTC days with one (`days_active`).
pub(crate) struct EventReader<'a> {
    rows: &'a [Box<[Bucket]>],
    event: u32,
    from: i32,
    days: bool,
}

impl EventReader<'_> {
    pub(crate) fn value(&self, row: u32) -> u64 {
        let Some(buckets) = self.rows.get(row as usize) else {
            return 0;
        };
        let start = buckets.partition_point(|b| (b.event, b.hour) < (self.event, self.from));
        let end = buckets.partition_point(|b| b.event <= self.event);
        let in_window = buckets.get(start..end).unwrap_or(&[]);
        if self.days {
            let days: BTreeSet<i32> = in_window.iter().map(|b| b.hour.div_euclid(24)).collect();
            days.len() as u64
        } else {
            in_window.iter().map(|b| u64::from(b.n)).sum()
        }
    }
}
