//! Computed traits: per-profile aggregates of events (count, sum, … over a window), kept as compact mergeable state.
//!
//! A workspace defines a trait as JSON (see [`TraitDef::parse`]):
//! `{"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "30d",
//!   "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}]}`.
//! An event counts when it is a `track` named `event` and every `where` filter holds (filters see `now` = the
//! event's time). Per profile, the matching events are folded into a [`TraitState`]; the trait's value is read
//! at a time `now` that is always passed in.
//!
//! # Semantics
//! - **Windows** are calendar buckets in UTC. `Nd` holds the events whose UTC day is one of the last N days
//!   counting today (the day of `now`): bucket >= today − (N − 1). `Nh` is the same with hours, counting the
//!   current hour. Events later than `now` (future timestamps) are in the window. `all` (or no window) is one
//!   all-time aggregate; `days_active` over `all` keeps the set of active days.
//! - **State** is one bucket per day (per hour for `h` windows; a single bucket for `all`) holding only what
//!   the function needs. Buckets older than (newest bucket − window − 24 hours) are pruned on apply and
//!   absorb; the result does not depend on the order of events or merges. The 24-hour margin keeps the value
//!   exact at any `now` up to 24 hours before the newest event, which covers future timestamps: ingestion
//!   refuses timestamps more than 24 hours ahead. (At a `now` earlier still, pruned buckets would be missing.)
//! - **Numbers**: a value is numeric if it is a JSON number or a string spelling a finite number. Sums, minima,
//!   maxima and averages are exact fixed point (i128 micro-units: 6 decimals, rounded half away from zero;
//!   values of magnitude 1e20 or more are ignored), so they do not depend on order. Every number this module
//!   outputs is printed as an integer when it is integral (and below 2^53), otherwise as a float.
//! - **Multi-valued properties** (line items, `properties.products[].price * properties.products[].quantity`):
//!   sum, min, max, average, most_frequent, distinct_count and unique_list take every value; `count` counts
//!   events; first/last take the first value of the expansion. Events with no value (property missing) are
//!   skipped by every function except `count` and `days_active`.
//! - **Line-item filters**: a `where` on the same line items the property expands
//!   (`properties.products[].category` with `properties.products[].price * properties.products[].quantity`)
//!   keeps the lines it holds for — the sum is the shoe lines' revenue — and the event counts when a line
//!   is kept. Other `where` filters are on the whole event (`count` with a `where` on
//!   `properties.products[].category eq shoes` counts the orders that contain shoes).
//! - **first/last**: the earliest/latest event by (event time, message id); without a property the value is
//!   the event time as RFC 3339. **most_frequent**: ties go to the smallest canonical JSON text.
//!   **unique_list**: sorted (booleans, then numbers by value, then strings, then the rest by canonical text).
//!   Values are compared by their canonical JSON text (numbers normalised, object keys sorted), so `6` and `6.0`
//!   are the same value.
//! - **Values when nothing matched**: count, days_active, sum and distinct_count give 0; unique_list `[]`;
//!   the others `null`.
//!
//! [`recompute`] computes the same value straight from the raw events; tests hold the state to it.

mod condition;
pub(crate) mod path;
mod state;
#[cfg(test)]
mod tests;

use crate::json::JsonRead;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::message::MessageKind;

pub use condition::{parse_duration, Comparison, DefinitionError, Op};
pub use path::{Expr, Path};
pub use state::{recompute, RawEvent, TraitState};

const MAX_EVENT_NAME: usize = 200;
const MAX_FILTERS: usize = 32;

/// How a trait aggregates the values of its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Count,
    Sum,
    Min,
    Max,
    Average,
    First,
    Last,
    MostFrequent,
    DistinctCount,
    UniqueList,
    DaysActive,
    /// Whether the latest `event` was followed by `then.event` within `then.within` (or, with
    /// `then.absent`, was not, once that time has passed): a boolean.
    Sequence,
}

impl Function {
    pub const ALL: [Function; 12] = [
        Function::Count,
        Function::Sum,
        Function::Min,
        Function::Max,
        Function::Average,
        Function::First,
        Function::Last,
        Function::MostFrequent,
        Function::DistinctCount,
        Function::UniqueList,
        Function::DaysActive,
        Function::Sequence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Count => "count",
            Function::Sum => "sum",
            Function::Min => "min",
            Function::Max => "max",
            Function::Average => "average",
            Function::First => "first",
            Function::Last => "last",
            Function::MostFrequent => "most_frequent",
            Function::DistinctCount => "distinct_count",
            Function::UniqueList => "unique_list",
            Function::DaysActive => "days_active",
            Function::Sequence => "sequence",
        }
    }

    pub fn parse(s: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn property_rule(self) -> PropertyRule {
        match self {
            Function::Count | Function::DaysActive | Function::Sequence => PropertyRule::Forbidden,
            Function::First | Function::Last => PropertyRule::Optional,
            _ => PropertyRule::Required,
        }
    }
}

enum PropertyRule {
    Required,
    Optional,
    Forbidden,
}

/// Which events' buckets count at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    All,
    /// The last N UTC days counting today, 1..=3650.
    Days(u32),
    /// The last N hours counting the current hour, 1..=8760.
    Hours(u32),
}

impl Window {
    pub const MAX_DAYS: u32 = 3650;
    pub const MAX_HOURS: u32 = 8760;

    /// `"30d"`, `"12h"` or `"all"`.
    pub fn parse(s: &str) -> Option<Window> {
        if s == "all" {
            return Some(Window::All);
        }
        // Split on a char boundary: the last character may be any (multi-byte) character.
        let unit = s.chars().last()?;
        let digits = &s[..s.len() - unit.len_utf8()];
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        match unit {
            'd' if (1..=Self::MAX_DAYS).contains(&n) => Some(Window::Days(n)),
            'h' if (1..=Self::MAX_HOURS).contains(&n) => Some(Window::Hours(n)),
            _ => None,
        }
    }
}

/// `"all"`, `"30d"` or `"12h"`, as [`Window::parse`] reads it.
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Window::All => f.write_str("all"),
            Window::Days(n) => write!(f, "{n}d"),
            Window::Hours(n) => write!(f, "{n}h"),
        }
    }
}

/// A `where` condition: the values at `path` compared with `cmp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub path: Path,
    pub cmp: Comparison,
}

impl Filter {
    pub fn holds<J: JsonRead>(&self, payload: &J, now: DateTime<Utc>) -> bool {
        self.cmp.holds(&self.path.values(payload), now)
    }
}

/// The `where` filters on the line items a trait's property expands, applied to one item.
struct LineItems<'a> {
    filters: Vec<(Path, &'a Comparison)>,
    now: DateTime<Utc>,
}

impl<J: JsonRead> path::ItemFilter<J> for LineItems<'_> {
    fn keeps(&self, item: &J) -> bool {
        self.filters
            .iter()
            .all(|(rest, cmp)| cmp.holds(&path::item_values(rest, item), self.now))
    }
}

/// The second step of a sequence: `{"event": "Order Completed", "where": [..], "within": "2h",
/// "absent": true}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Then {
    pub event: String,
    pub filters: Vec<Filter>,
    pub within: chrono::Duration,
    /// "A and not B within T" rather than "A then B within T".
    pub absent: bool,
}

impl Then {
    fn matches(
        &self,
        kind: MessageKind,
        name: Option<&str>,
        payload: &impl JsonRead,
        t: DateTime<Utc>,
    ) -> bool {
        kind == MessageKind::Track
            && name == Some(self.event.as_str())
            && self.filters.iter().all(|f| f.holds(payload, t))
    }
}

/// A computed trait's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct TraitDef {
    pub event: String,
    pub function: Function,
    pub property: Option<Expr>,
    pub window: Window,
    pub filters: Vec<Filter>,
    /// The second step of a `sequence`; `None` for every other function.
    pub then: Option<Box<Then>>,
}

impl TraitDef {
    /// Errors name the key: "event", "function", "property", "window", "where[2].property", "where[2].op";
    /// unknown keys are refused. `property` is required for sum/min/max/average/most_frequent/distinct_count/
    /// unique_list, optional for first/last (absent: the value is the event time) and not allowed for count
    /// and days_active.
    pub fn parse(v: &Value) -> Result<TraitDef, DefinitionError> {
        let Value::Object(obj) = v else {
            return Err(DefinitionError::new("definition", "must be a JSON object"));
        };
        for key in obj.keys() {
            if !["event", "function", "property", "window", "where", "then"].contains(&key.as_str())
            {
                return Err(DefinitionError::new(
                    key.clone(),
                    "unknown key; expected event, function, property, window, where or then",
                ));
            }
        }
        let event = match obj.get("event") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_EVENT_NAME => {
                s.clone()
            }
            Some(Value::String(_)) => {
                return Err(DefinitionError::new(
                    "event",
                    format!("must be a non-empty event name of at most {MAX_EVENT_NAME} bytes"),
                ))
            }
            Some(_) => return Err(DefinitionError::new("event", "must be a string")),
            None => return Err(DefinitionError::new("event", "is required")),
        };
        let function = match obj.get("function") {
            Some(Value::String(s)) => Function::parse(s).ok_or_else(|| {
                let names: Vec<&str> = Function::ALL.iter().map(|f| f.as_str()).collect();
                DefinitionError::new(
                    "function",
                    format!(
                        "unknown function {s:?}; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?,
            Some(_) => return Err(DefinitionError::new("function", "must be a string")),
            None => return Err(DefinitionError::new("function", "is required")),
        };
        let property = match obj.get("property") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(Expr::parse(s).map_err(|m| DefinitionError::new("property", m))?)
            }
            Some(_) => {
                return Err(DefinitionError::new(
                    "property",
                    "must be a string such as \"properties.total\"",
                ))
            }
        };
        match (function.property_rule(), &property) {
            (PropertyRule::Required, None) => {
                return Err(DefinitionError::new(
                    "property",
                    format!("is required for {}", function.as_str()),
                ))
            }
            (PropertyRule::Forbidden, Some(_)) => {
                return Err(DefinitionError::new(
                    "property",
                    format!("is not allowed for {}", function.as_str()),
                ))
            }
            _ => {}
        }
        let window = match obj.get("window") {
            None | Some(Value::Null) => Window::All,
            Some(Value::String(s)) => Window::parse(s).ok_or_else(|| {
                DefinitionError::new(
                    "window",
                    format!(
                        "expected \"all\", \"Nd\" (N in 1..={}) or \"Nh\" (N in 1..={}), got {s:?}",
                        Window::MAX_DAYS,
                        Window::MAX_HOURS
                    ),
                )
            })?,
            Some(_) => {
                return Err(DefinitionError::new(
                    "window",
                    "must be a string such as \"30d\"",
                ))
            }
        };
        let filters = match obj.get("where") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= MAX_FILTERS => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_filter(item, i))
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => {
                return Err(DefinitionError::new(
                    "where",
                    format!("at most {MAX_FILTERS} conditions"),
                ))
            }
            Some(_) => {
                return Err(DefinitionError::new(
                    "where",
                    "must be an array of conditions",
                ))
            }
        };
        let then = match (function, obj.get("then")) {
            (Function::Sequence, Some(then)) => Some(Box::new(parse_then(then)?)),
            (Function::Sequence, None) => {
                return Err(DefinitionError::new("then", "is required for sequence"))
            }
            (_, None | Some(Value::Null)) => None,
            (_, Some(_)) => {
                return Err(DefinitionError::new("then", "is allowed for sequence only"))
            }
        };
        if function == Function::Sequence && window != Window::All {
            return Err(DefinitionError::new(
                "window",
                "a sequence has no window: `then.within` bounds it",
            ));
        }
        Ok(TraitDef {
            event,
            function,
            property,
            window,
            filters,
            then,
        })
    }

    /// The canonical definition: `TraitDef::parse(&def.to_json()) == Ok(def)`.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("event".into(), json!(self.event));
        obj.insert("function".into(), json!(self.function.as_str()));
        if let Some(p) = &self.property {
            obj.insert("property".into(), json!(p.as_str()));
        }
        obj.insert("window".into(), json!(self.window.to_string()));
        if !self.filters.is_empty() {
            obj.insert("where".into(), Value::Array(filters_json(&self.filters)));
        }
        if let Some(then) = &self.then {
            let mut t = Map::new();
            t.insert("event".into(), json!(then.event));
            if !then.filters.is_empty() {
                t.insert("where".into(), Value::Array(filters_json(&then.filters)));
            }
            t.insert("within".into(), json!(duration_text(then.within)));
            t.insert("absent".into(), json!(then.absent));
            obj.insert("then".into(), Value::Object(t));
        }
        Value::Object(obj)
    }

    /// Whether the event counts: a `track` whose event name equals `event` and every filter holds
    /// (filters evaluated with `now` = the event's time).
    pub fn matches(
        &self,
        kind: MessageKind,
        name: Option<&str>,
        payload: &impl JsonRead,
        event_time: DateTime<Utc>,
    ) -> bool {
        if let Some(then) = &self.then {
            if then.matches(kind, name, payload, event_time) {
                return true;
            }
        }
        self.matches_first(kind, name, payload, event_time)
    }

    /// Whether the event is one of `event` with every filter holding (for a sequence: its first step).
    pub(crate) fn matches_first(
        &self,
        kind: MessageKind,
        name: Option<&str>,
        payload: &impl JsonRead,
        event_time: DateTime<Utc>,
    ) -> bool {
        if kind != MessageKind::Track || name != Some(self.event.as_str()) {
            return false;
        }
        let items = self.line_item_filters(event_time);
        let event_level = self
            .filters
            .iter()
            .filter(|f| !items.filters.iter().any(|(_, c)| std::ptr::eq(*c, &f.cmp)));
        for f in event_level {
            if !f.holds(payload, event_time) {
                return false;
            }
        }
        items.filters.is_empty() || !self.values(payload, event_time).is_empty()
    }

    /// The filters on the property's line items: a `where` on `properties.products[].category` with the
    /// property `properties.products[].price * properties.products[].quantity` keeps the line items of
    /// that category (the sum is of those lines only), and the event counts if any line is kept.
    fn line_item_filters(&self, now: DateTime<Utc>) -> LineItems<'_> {
        let prefix = self.property.as_ref().and_then(Expr::items_path);
        let filters = match prefix {
            None => Vec::new(),
            Some(prefix) => self
                .filters
                .iter()
                .filter_map(|f| match f.path.items() {
                    Some((p, rest)) if p == prefix => Some((rest, &f.cmp)),
                    _ => None,
                })
                .collect(),
        };
        LineItems { filters, now }
    }

    /// The values a matching event contributes: the property's values from the line items the filters keep
    /// (all of them without such filters).
    pub(crate) fn values<J: JsonRead>(&self, payload: &J, event_time: DateTime<Utc>) -> Vec<Value> {
        match &self.property {
            Some(expr) => expr.values_of_items(payload, &self.line_item_filters(event_time)),
            None => Vec::new(),
        }
    }
}

fn filters_json(filters: &[Filter]) -> Vec<Value> {
    filters
        .iter()
        .map(|f| {
            let mut c = f.cmp.to_json();
            if let Value::Object(o) = &mut c {
                o.insert("property".into(), json!(f.path.as_str()));
            }
            c
        })
        .collect()
}

/// "2h", "90m", "3d": the shortest exact spelling of a duration.
fn duration_text(d: chrono::Duration) -> String {
    let minutes = d.num_minutes();
    if minutes % (24 * 60) == 0 {
        format!("{}d", minutes / (24 * 60))
    } else if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

fn parse_then(v: &Value) -> Result<Then, DefinitionError> {
    let Value::Object(obj) = v else {
        return Err(DefinitionError::new(
            "then",
            "must be an object with event, within and optionally where and absent",
        ));
    };
    for key in obj.keys() {
        if !["event", "where", "within", "absent"].contains(&key.as_str()) {
            return Err(DefinitionError::new(
                format!("then.{key}"),
                "unknown key; expected event, where, within or absent",
            ));
        }
    }
    let event = match obj.get("event") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_EVENT_NAME => s.clone(),
        _ => {
            return Err(DefinitionError::new(
                "then.event",
                "must be a non-empty event name",
            ))
        }
    };
    let within = obj
        .get("within")
        .and_then(Value::as_str)
        .and_then(parse_duration)
        .filter(|d| *d > chrono::Duration::zero() && *d <= chrono::Duration::days(366))
        .filter(|d| d.num_seconds() % 60 == 0)
        .ok_or_else(|| {
            DefinitionError::new(
                "then.within",
                "must be a duration such as \"2h\", \"30m\" or \"7d\" (whole minutes, at most 366 days)",
            )
        })?;
    let absent = match obj.get("absent") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(DefinitionError::new("then.absent", "must be true or false")),
    };
    let filters = match obj.get("where") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_FILTERS => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                parse_filter(item, i)
                    .map_err(|e| DefinitionError::new(format!("then.{}", e.field), e.message))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(DefinitionError::new(
                "then.where",
                format!("must be an array of at most {MAX_FILTERS} conditions"),
            ))
        }
    };
    Ok(Then {
        event,
        filters,
        within,
        absent,
    })
}

fn parse_filter(item: &Value, i: usize) -> Result<Filter, DefinitionError> {
    let at = format!("where[{i}]");
    let Value::Object(obj) = item else {
        return Err(DefinitionError::new(
            at,
            "must be an object with property, op and value",
        ));
    };
    for key in obj.keys() {
        if !["property", "op", "value"].contains(&key.as_str()) {
            return Err(DefinitionError::new(
                format!("{at}.{key}"),
                "unknown key; expected property, op or value",
            ));
        }
    }
    let path = match obj.get("property") {
        Some(Value::String(s)) => {
            Path::parse(s).map_err(|m| DefinitionError::new(format!("{at}.property"), m))?
        }
        Some(_) => {
            return Err(DefinitionError::new(
                format!("{at}.property"),
                "must be a string",
            ))
        }
        None => {
            return Err(DefinitionError::new(
                format!("{at}.property"),
                "is required",
            ))
        }
    };
    let cmp = Comparison::parse(obj, &at)?;
    Ok(Filter { path, cmp })
}
