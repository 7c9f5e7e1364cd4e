//! RFM tags: recency, frequency and monetary scores (1 to 5 each) from three hidden computed traits, the
//! cut points that turn inputs into scores (fixed by the customer or the quintiles of the workspace's
//! population), and the named customer groups the scores fall into.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{err, join, Facts, FieldKey, TagValue};
use crate::computed::{DefinitionError, Expr, Function, TraitDef, Window};

/// An RFM tag's definition:
/// `{"type": "rfm", "event": "Order Completed", "monetary": "properties.total", "window": "365d",
/// "scoring": "quantiles"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RfmDef {
    /// The event that counts as a purchase.
    pub event: String,
    /// The purchase's amount, summed into the monetary input.
    pub monetary: Expr,
    /// How far back purchases count (`"365d"`, `"720h"`, `"all"`; no `window` key = all of them).
    pub window: Window,
    pub scoring: Scoring,
}

/// How inputs become scores.
#[derive(Debug, Clone, PartialEq)]
pub enum Scoring {
    /// `"quantiles"`: the quintile cut points of the workspace's population ([`RfmThresholds::from_population`]),
    /// computed by the projection and passed to `evaluate`.
    Quantiles,
    /// `{"recency": [7, 30, 90, 180], "frequency": [1, 2, 4, 8], "monetary": [100, 500, 1000, 5000]}`.
    Fixed(RfmThresholds),
}

/// Four ascending cut points per input. For frequency and monetary (more is better) the score is 1 plus
/// the number of cut points the input is above: at or below the first → 1, above the fourth → 5. For
/// recency in days (fewer is better) it is 5 minus that number: within the first → 5, past the fourth → 1.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RfmThresholds {
    pub recency_days: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
}

/// One profile's inputs: whole days since its last purchase, its purchase count and their summed amount.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfmInputs {
    pub recency_days: f64,
    pub frequency: f64,
    pub monetary: f64,
}

/// One profile's scores, each in `1..=5`, 5 the best.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmScores {
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

impl RfmThresholds {
    /// The quintile cut points (20th, 40th, 60th and 80th percentiles) of each input over the population,
    /// by the nearest-rank method: sorted ascending, the k-th cut point is the value of rank ⌈k·n/5⌉
    /// (1-based), so every cut point is a value some profile has and the result does not depend on the
    /// order of `values`. For 1..=100 that gives 20, 40, 60, 80, and each score takes 20 profiles.
    ///
    /// Profiles without a purchase (frequency 0 or less) have no RFM tag and are left out, and so are
    /// inputs that are not finite numbers. `None` when no profile is left.
    pub fn from_population(values: &[RfmInputs]) -> Option<RfmThresholds> {
        let members: Vec<&RfmInputs> = values
            .iter()
            .filter(|v| {
                v.frequency > 0.0
                    && v.recency_days.is_finite()
                    && v.frequency.is_finite()
                    && v.monetary.is_finite()
            })
            .collect();
        if members.is_empty() {
            return None;
        }
        let cuts = |input: fn(&RfmInputs) -> f64| -> [f64; 4] {
            let mut sorted: Vec<f64> = members.iter().map(|v| input(v)).collect();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            [1, 2, 3, 4].map(|k| sorted[(k * n).div_ceil(5).max(1) - 1])
        };
        Some(RfmThresholds {
            recency_days: cuts(|v| v.recency_days),
            frequency: cuts(|v| v.frequency),
            monetary: cuts(|v| v.monetary),
        })
    }
}

/// The number of cut points `value` is strictly above.
fn above(value: f64, cuts: &[f64; 4]) -> u8 {
    cuts.iter().filter(|c| value > **c).count() as u8
}

/// Scores a profile's inputs against the cut points (see [`RfmThresholds`] for the rule).
pub fn scores(inputs: &RfmInputs, thresholds: &RfmThresholds) -> RfmScores {
    RfmScores {
        r: 5 - above(inputs.recency_days, &thresholds.recency_days),
        f: 1 + above(inputs.frequency, &thresholds.frequency),
        m: 1 + above(inputs.monetary, &thresholds.monetary),
    }
}

/// The named group of a profile's scores, by the first row of this table that matches, where
/// `fm` = (f + m) / 2:
///
/// | order | group         | when                |
/// |-------|---------------|---------------------|
/// | 1     | `champions`   | r ≥ 4 and fm ≥ 4    |
/// | 2     | `loyal`       | r ≥ 3 and fm ≥ 3    |
/// | 3     | `new`         | r = 5 and f = 1     |
/// | 4     | `potential`   | r ≥ 3               |
/// | 5     | `at_risk`     | r ≤ 2 and fm ≥ 3    |
/// | 6     | `hibernating` | r = 2               |
/// | 7     | `lost`        | otherwise (r = 1, fm < 3) |
///
/// Order matters: a recent single big purchase (r 5, f 1, m 5) is `loyal`, not `new`.
pub fn group(scores: &RfmScores) -> &'static str {
    let RfmScores { r, f, m } = *scores;
    // Twice fm, to stay in integers.
    let fm2 = f + m;
    if r >= 4 && fm2 >= 8 {
        "champions"
    } else if r >= 3 && fm2 >= 6 {
        "loyal"
    } else if r == 5 && f == 1 {
        "new"
    } else if r >= 3 {
        "potential"
    } else if fm2 >= 6 {
        "at_risk"
    } else if r == 2 {
        "hibernating"
    } else {
        "lost"
    }
}

/// The group names, in the order of [`group`]'s table.
pub const GROUPS: [&str; 7] = [
    "champions",
    "loyal",
    "new",
    "potential",
    "at_risk",
    "hibernating",
    "lost",
];

/// The names of an RFM tag's three hidden computed traits: recency, frequency, monetary.
pub fn rfm_trait_names(tag: &str) -> [String; 3] {
    ["recency", "frequency", "monetary"].map(|input| format!("rfm:{tag}:{input}"))
}

impl RfmDef {
    /// Parses the keys of an RFM definition beside `type` (which the caller has checked).
    pub(super) fn parse(obj: &Map<String, Value>) -> Result<RfmDef, DefinitionError> {
        for k in obj.keys() {
            if !["type", "event", "monetary", "window", "scoring"].contains(&k.as_str()) {
                return Err(err(k.as_str(), "unknown key"));
            }
        }
        let event = match obj.get("event") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(err("event", "must be a non-empty string")),
            None => return Err(err("event", "required")),
        };
        let monetary = match obj.get("monetary") {
            Some(Value::String(s)) => Expr::parse(s).map_err(|e| err("monetary", e))?,
            Some(_) => {
                return Err(err(
                    "monetary",
                    "must be a property path such as properties.total",
                ))
            }
            None => return Err(err("monetary", "required")),
        };
        let window = match obj.get("window") {
            None => Window::All,
            Some(Value::String(s)) => Window::parse(s).ok_or_else(|| {
                err(
                    "window",
                    format!(
                        "must be \"all\", \"Nd\" (N in 1..={}) or \"Nh\" (N in 1..={})",
                        Window::MAX_DAYS,
                        Window::MAX_HOURS
                    ),
                )
            })?,
            Some(_) => return Err(err("window", "must be a string such as 365d")),
        };
        let scoring = match obj.get("scoring") {
            None => Scoring::Quantiles,
            Some(v) => parse_scoring(v)?,
        };
        let def = RfmDef {
            event,
            monetary,
            window,
            scoring,
        };
        // The hidden traits must be traits a user could define: the computed traits' own parse has the
        // last word on the event name (its length, say) and the amount's expression.
        for hidden in def.trait_defs() {
            TraitDef::parse(&hidden.to_json()).map_err(|e| {
                let field = if e.field == "property" {
                    "monetary"
                } else {
                    e.field.as_str()
                };
                err(field, e.message)
            })?;
        }
        Ok(def)
    }

    pub(super) fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), json!("rfm"));
        obj.insert("event".into(), json!(self.event));
        obj.insert("monetary".into(), json!(self.monetary.as_str()));
        obj.insert("window".into(), json!(self.window.to_string()));
        let scoring = match &self.scoring {
            Scoring::Quantiles => json!("quantiles"),
            Scoring::Fixed(t) => json!({
                "recency": t.recency_days,
                "frequency": t.frequency,
                "monetary": t.monetary,
            }),
        };
        obj.insert("scoring".into(), scoring);
        Value::Object(obj)
    }

    /// The three hidden computed traits: the time of the last matching event, their count and the sum of
    /// `monetary`, all over `window`.
    pub fn trait_defs(&self) -> [TraitDef; 3] {
        let def = |function, property: Option<&Expr>| TraitDef {
            event: self.event.clone(),
            function,
            property: property.cloned(),
            window: self.window,
            filters: Vec::new(),
            then: None,
        };
        [
            def(Function::Last, None),
            def(Function::Count, None),
            def(Function::Sum, Some(&self.monetary)),
        ]
    }

    /// The profile's inputs read from the hidden traits: `None` without a purchase (no count, a count of 0,
    /// or no last-purchase time). A missing sum counts as 0.
    pub fn inputs(
        &self,
        tag_name: &str,
        facts: &dyn Facts,
        now: DateTime<Utc>,
    ) -> Option<RfmInputs> {
        let [recency, frequency, monetary] = rfm_trait_names(tag_name);
        let frequency = facts
            .field(FieldKey::Computed, &frequency)
            .first()
            .and_then(number)?;
        if frequency <= 0.0 {
            return None;
        }
        let last = facts
            .field(FieldKey::Computed, &recency)
            .into_iter()
            .find_map(|v| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc))
            })?;
        // Whole days, rounded down; a purchase stamped after `now` (clock skew) is 0 days old.
        let recency_days = (now - last).num_days().max(0) as f64;
        let monetary = facts
            .field(FieldKey::Computed, &monetary)
            .first()
            .and_then(number)
            .unwrap_or(0.0);
        Some(RfmInputs {
            recency_days,
            frequency,
            monetary,
        })
    }

    /// The tag's value: the group name, with the scores and inputs as detail. Absent without a purchase, and
    /// with quantile scoring before the population's thresholds are known.
    pub(super) fn evaluate(
        &self,
        tag_name: &str,
        facts: &dyn Facts,
        population: Option<&RfmThresholds>,
        now: DateTime<Utc>,
    ) -> Option<TagValue> {
        let thresholds = match &self.scoring {
            Scoring::Fixed(t) => t,
            Scoring::Quantiles => population?,
        };
        let inputs = self.inputs(tag_name, facts, now)?;
        let s = scores(&inputs, thresholds);
        Some(TagValue {
            value: json!(group(&s)),
            detail: json!({
                "r": s.r,
                "f": s.f,
                "m": s.m,
                "recency_days": whole(inputs.recency_days),
                "frequency": whole(inputs.frequency),
                "monetary": whole(inputs.monetary),
            }),
        })
    }
}

/// A number, or a string holding one (profile traits often carry numbers as strings).
pub(super) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// `7.0` as `7`, so that counts and whole amounts read naturally in the detail.
fn whole(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn parse_scoring(v: &Value) -> Result<Scoring, DefinitionError> {
    let obj = match v {
        Value::String(s) if s == "quantiles" => return Ok(Scoring::Quantiles),
        Value::Object(obj) => obj,
        _ => return Err(err(
            "scoring",
            "must be \"quantiles\" or {\"recency\": [..], \"frequency\": [..], \"monetary\": [..]}",
        )),
    };
    for k in obj.keys() {
        if !["recency", "frequency", "monetary"].contains(&k.as_str()) {
            return Err(err(join("scoring", k), "unknown key"));
        }
    }
    let cuts = |key: &str| -> Result<[f64; 4], DefinitionError> {
        let at = join("scoring", key);
        let list = obj
            .get(key)
            .ok_or_else(|| err(&at, "required: 4 cut points"))?
            .as_array()
            .filter(|l| l.len() == 4)
            .ok_or_else(|| err(&at, "must be a list of 4 numbers"))?;
        let mut out = [0.0; 4];
        for (i, v) in list.iter().enumerate() {
            out[i] = v
                .as_f64()
                .ok_or_else(|| err(format!("{at}[{i}]"), "must be a number"))?;
        }
        // The cut points are thresholds: given in any order, they are kept ascending.
        out.sort_by(f64::total_cmp);
        if out.windows(2).any(|w| w[0] >= w[1]) {
            return Err(err(&at, "cut points must be 4 different numbers"));
        }
        Ok(out)
    };
    Ok(Scoring::Fixed(RfmThresholds {
        recency_days: cuts("recency")?,
        frequency: cuts("frequency")?,
        monetary: cuts("monetary")?,
    }))
}
