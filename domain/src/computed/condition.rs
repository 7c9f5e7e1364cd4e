//! Comparisons of a field's values with an operand (`{"op": "gt", "value": 10}`), shared by computed-trait
//! filters and by anything else that selects on event or profile fields.
//!
//! A field may have several values (a line-item path such as `properties.products[].category`, or an array
//! trait), or none (unknown). Positive operators hold if ANY value satisfies them; their negations (`neq`,
//! `not_in`, `not_contains`, `contains_none`, `is_not_set`, `not_within_last`) hold when NO value satisfies
//! the positive form, so they hold for an unknown field: "gender neq male" matches a profile with no gender.
//!
//! Operand kinds, checked when the comparison is parsed:
//! - `eq`/`neq`: a string, number or boolean. Numbers compare as numbers, and a numeric string equals the
//!   number it spells (`"5" eq 5`); strings compare case-sensitively.
//! - `in`/`not_in`/`contains_any`/`contains_all`/`contains_none`: a non-empty array of scalars. The `contains_*`
//!   operators compare the SET of actual values (arrays among them are flattened one level) with the list.
//! - `contains`/`not_contains`/`starts_with`: a non-empty string; substring tests on string values.
//! - `gt`/`gte`/`lt`/`lte`: a number (or numeric string) or a time; `between`: `[low, high]`, inclusive,
//!   both numbers or both times (bounds given high first are put in order: the range is the same);
//!   `before`/`after`: a time.
//!   Times are RFC 3339 strings (or `YYYY-MM-DD`, midnight UTC); actual times may also be epoch-millisecond numbers.
//! - `within_last`/`not_within_last`: a duration such as `"7d"`, `"24h"`, `"30m"`, relative to `now`; a time in
//!   the future of `now` counts as within.
//! - `is_set`/`is_not_set`/`is_true`/`is_false`: no operand (`value` absent or null). `null` counts as unset;
//!   `is_true`/`is_false` hold only for JSON booleans.

use crate::json::{JsonRead, Kind};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{Map, Value};

/// Why a definition was refused: the key it concerns (`where[1].op`) and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DefinitionError {
    pub field: String,
    pub message: String,
}

impl DefinitionError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Neq,
    In,
    NotIn,
    Contains,
    NotContains,
    StartsWith,
    IsSet,
    IsNotSet,
    Gt,
    Gte,
    Lt,
    Lte,
    Between,
    Before,
    After,
    WithinLast,
    NotWithinLast,
    ContainsAny,
    ContainsAll,
    ContainsNone,
    IsTrue,
    IsFalse,
}

impl Op {
    pub const ALL: [Op; 23] = [
        Op::Eq,
        Op::Neq,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::NotContains,
        Op::StartsWith,
        Op::IsSet,
        Op::IsNotSet,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Between,
        Op::Before,
        Op::After,
        Op::WithinLast,
        Op::NotWithinLast,
        Op::ContainsAny,
        Op::ContainsAll,
        Op::ContainsNone,
        Op::IsTrue,
        Op::IsFalse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Neq => "neq",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::NotContains => "not_contains",
            Op::StartsWith => "starts_with",
            Op::IsSet => "is_set",
            Op::IsNotSet => "is_not_set",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Between => "between",
            Op::Before => "before",
            Op::After => "after",
            Op::WithinLast => "within_last",
            Op::NotWithinLast => "not_within_last",
            Op::ContainsAny => "contains_any",
            Op::ContainsAll => "contains_all",
            Op::ContainsNone => "contains_none",
            Op::IsTrue => "is_true",
            Op::IsFalse => "is_false",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// The positive operator this one negates, if it is a negation.
    fn negated(self) -> Option<Op> {
        match self {
            Op::Neq => Some(Op::Eq),
            Op::NotIn => Some(Op::In),
            Op::NotContains => Some(Op::Contains),
            Op::ContainsNone => Some(Op::ContainsAny),
            Op::IsNotSet => Some(Op::IsSet),
            Op::NotWithinLast => Some(Op::WithinLast),
            _ => None,
        }
    }

    fn takes_value(self) -> bool {
        !matches!(self, Op::IsSet | Op::IsNotSet | Op::IsTrue | Op::IsFalse)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operator and its operand.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub op: Op,
    pub value: Value,
}

impl Comparison {
    /// `obj` holds "op" and (unless is_set/is_not_set/is_true/is_false) "value"; errors name `{at}.op` /
    /// `{at}.value`. Other keys of `obj` are left to the caller.
    pub fn parse(obj: &Map<String, Value>, at: &str) -> Result<Comparison, DefinitionError> {
        let op_field = format!("{at}.op");
        let value_field = format!("{at}.value");
        let op = match obj.get("op") {
            None => return Err(DefinitionError::new(op_field, "is required")),
            Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
                let names: Vec<&str> = Op::ALL.iter().map(|op| op.as_str()).collect();
                DefinitionError::new(
                    op_field,
                    format!(
                        "unknown operator {s:?}; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?,
            Some(_) => return Err(DefinitionError::new(op_field, "must be a string")),
        };
        let value = obj.get("value").cloned().unwrap_or(Value::Null);
        if !op.takes_value() {
            if !value.is_null() {
                return Err(DefinitionError::new(
                    value_field,
                    format!("{op} takes no value"),
                ));
            }
            return Ok(Comparison { op, value });
        }
        if value.is_null() {
            return Err(DefinitionError::new(
                value_field,
                format!("is required for {op}"),
            ));
        }
        check_operand(op, &value).map_err(|m| DefinitionError::new(value_field, m))?;
        let value = match (op, value) {
            (Op::Between, Value::Array(mut bounds)) => {
                if ordered_operand(&bounds[0]) > ordered_operand(&bounds[1]) {
                    bounds.swap(0, 1);
                }
                Value::Array(bounds)
            }
            (_, value) => value,
        };
        Ok(Comparison { op, value })
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("op".into(), Value::String(self.op.as_str().into()));
        if !self.value.is_null() {
            obj.insert("value".into(), self.value.clone());
        }
        Value::Object(obj)
    }

    /// Whether the comparison holds for a field whose values are `actual` (empty = unknown) at `now`.
    /// An operand of the wrong kind (a hand-built comparison that `parse` would refuse) never satisfies
    /// the positive form.
    pub fn holds<J: JsonRead>(&self, actual: &[&J], now: DateTime<Utc>) -> bool {
        match self.op.negated() {
            Some(positive) => !positive_holds(positive, &self.value, actual, now),
            None => positive_holds(self.op, &self.value, actual, now),
        }
    }
}

/// Parses "30d" / "12h" / "45m" (a positive whole number of days, hours or minutes, at most nine digits).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    match unit {
        'd' => Duration::try_days(n),
        'h' => Duration::try_hours(n),
        'm' => Duration::try_minutes(n),
        _ => None,
    }
}

/// A number, or a string spelling a finite number.
pub(crate) fn as_number<J: JsonRead>(v: &J) -> Option<f64> {
    match v.kind() {
        Kind::Number => v.as_number()?.as_f64().filter(|x| x.is_finite()),
        Kind::String => {
            let t = v.as_str()?.trim();
            // `f64::from_str` also accepts "inf" and "NaN"; a numeric string here starts like a number.
            let starts_numeric = t
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.');
            if !starts_numeric {
                return None;
            }
            t.parse::<f64>().ok().filter(|x| x.is_finite())
        }
        _ => None,
    }
}

/// An RFC 3339 time (or a `YYYY-MM-DD` date, midnight UTC).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A time string, or epoch milliseconds.
fn as_time<J: JsonRead>(v: &J) -> Option<DateTime<Utc>> {
    match v.kind() {
        Kind::String => parse_time(v.as_str()?),
        Kind::Number => {
            let ms = v.as_number()?.as_f64()?;
            if !ms.is_finite() || ms.abs() > 1e17 {
                return None;
            }
            DateTime::from_timestamp_millis(ms as i64)
        }
        _ => None,
    }
}

/// An ordered operand: a number or a time.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Ordered {
    Num(f64),
    Time(DateTime<Utc>),
}

/// Times first: "2024-01-01" is a time, not a number.
fn ordered_operand(v: &Value) -> Option<Ordered> {
    match v {
        Value::String(s) => parse_time(s)
            .map(Ordered::Time)
            .or_else(|| as_number(v).map(Ordered::Num)),
        Value::Number(_) => as_number(v).map(Ordered::Num),
        _ => None,
    }
}

/// The actual value read the way the operand is: as a number or as a time.
fn ordered_actual<J: JsonRead>(v: &J, like: Ordered) -> Option<Ordered> {
    match like {
        Ordered::Num(_) => as_number(v).map(Ordered::Num),
        Ordered::Time(_) => as_time(v).map(Ordered::Time),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn check_operand(op: Op, value: &Value) -> Result<(), String> {
    match op {
        Op::Eq | Op::Neq => {
            if !is_scalar(value) {
                return Err(format!(
                    "{op} needs a string, number or boolean (use in for a list)"
                ));
            }
        }
        Op::In | Op::NotIn | Op::ContainsAny | Op::ContainsAll | Op::ContainsNone => match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(is_scalar) => {}
            _ => {
                return Err(format!(
                    "{op} needs a non-empty array of strings, numbers or booleans"
                ))
            }
        },
        Op::Contains | Op::NotContains | Op::StartsWith => match value {
            Value::String(s) if !s.is_empty() => {}
            _ => return Err(format!("{op} needs a non-empty string")),
        },
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            if ordered_operand(value).is_none() {
                return Err(format!("{op} needs a number or an RFC 3339 time"));
            }
        }
        Op::Between => {
            let msg = || "between needs [low, high]: two numbers or two RFC 3339 times".to_string();
            let Value::Array(items) = value else {
                return Err(msg());
            };
            let [low, high] = items.as_slice() else {
                return Err(msg());
            };
            match (ordered_operand(low), ordered_operand(high)) {
                (Some(Ordered::Num(_)), Some(Ordered::Num(_)))
                | (Some(Ordered::Time(_)), Some(Ordered::Time(_))) => {}
                _ => return Err(msg()),
            }
        }
        Op::Before | Op::After => {
            if !matches!(value, Value::String(s) if parse_time(s).is_some()) {
                return Err(format!(
                    "{op} needs an RFC 3339 time such as \"2024-05-01T00:00:00Z\""
                ));
            }
        }
        Op::WithinLast | Op::NotWithinLast => {
            if !matches!(value, Value::String(s) if parse_duration(s).is_some()) {
                return Err(format!(
                    "{op} needs a duration such as \"7d\", \"24h\" or \"30m\""
                ));
            }
        }
        Op::IsSet | Op::IsNotSet | Op::IsTrue | Op::IsFalse => {}
    }
    Ok(())
}

/// Equality of an actual value and an operand element: JSON equality, or numeric equality when one side
/// is a JSON number and the other is numeric.
fn values_eq<J: JsonRead>(actual: &J, operand: &Value) -> bool {
    if actual.eq_value(operand) {
        return true;
    }
    if actual.is_number() || operand.is_number() {
        if let (Some(a), Some(b)) = (as_number(actual), as_number(operand)) {
            return a == b;
        }
    }
    false
}

/// The set of actual values for the `contains_*` operators: arrays are flattened one level.
fn flattened<'a, J: JsonRead>(actual: &[&'a J]) -> Vec<&'a J> {
    let mut out = Vec::new();
    for v in actual {
        match v.items() {
            Some(items) => out.extend(items.iter()),
            None => out.push(*v),
        }
    }
    out
}

fn positive_holds<J: JsonRead>(op: Op, operand: &Value, actual: &[&J], now: DateTime<Utc>) -> bool {
    let list = || operand.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let text = || operand.as_str();
    match op {
        Op::Eq => actual.iter().any(|a| values_eq(*a, operand)),
        Op::In => actual
            .iter()
            .any(|a| list().iter().any(|o| values_eq(*a, o))),
        Op::Contains => match text() {
            Some(t) => actual
                .iter()
                .any(|a| a.as_str().is_some_and(|s| s.contains(t))),
            None => false,
        },
        Op::StartsWith => match text() {
            Some(t) => actual
                .iter()
                .any(|a| a.as_str().is_some_and(|s| s.starts_with(t))),
            None => false,
        },
        Op::IsSet => actual.iter().any(|a| !a.is_null()),
        Op::IsTrue => actual.iter().any(|a| a.as_bool() == Some(true)),
        Op::IsFalse => actual.iter().any(|a| a.as_bool() == Some(false)),
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            let Some(bound) = ordered_operand(operand) else {
                return false;
            };
            actual
                .iter()
                .filter_map(|a| ordered_actual(*a, bound))
                .any(|a| match op {
                    Op::Gt => a > bound,
                    Op::Gte => a >= bound,
                    Op::Lt => a < bound,
                    _ => a <= bound,
                })
        }
        Op::Between => {
            let (low, high) = match list() {
                [l, h] => match (ordered_operand(l), ordered_operand(h)) {
                    (Some(l), Some(h)) => (l, h),
                    _ => return false,
                },
                _ => return false,
            };
            actual
                .iter()
                .filter_map(|a| ordered_actual(*a, low))
                .any(|a| low <= a && a <= high)
        }
        Op::Before | Op::After => {
            let Some(bound) = text().and_then(parse_time) else {
                return false;
            };
            actual.iter().filter_map(|a| as_time(*a)).any(|t| {
                if op == Op::Before {
                    t < bound
                } else {
                    t > bound
                }
            })
        }
        Op::WithinLast => {
            let Some(since) = text()
                .and_then(parse_duration)
                .and_then(|d| now.checked_sub_signed(d))
            else {
                return false;
            };
            actual
                .iter()
                .filter_map(|a| as_time(*a))
                .any(|t| t >= since)
        }
        Op::ContainsAny => {
            let set = flattened(actual);
            list().iter().any(|o| set.iter().any(|a| values_eq(*a, o)))
        }
        Op::ContainsAll => {
            let set = flattened(actual);
            !list().is_empty() && list().iter().all(|o| set.iter().any(|a| values_eq(*a, o)))
        }
        // `holds` evaluates negations through their positive form; answer the same way if called directly.
        Op::Neq
        | Op::NotIn
        | Op::NotContains
        | Op::ContainsNone
        | Op::IsNotSet
        | Op::NotWithinLast => op
            .negated()
            .is_some_and(|p| !positive_holds(p, operand, actual, now)),
    }
}

#[cfg(test)]
mod tests;
