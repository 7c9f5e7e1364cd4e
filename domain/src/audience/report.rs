//! What a preview says of its members: how many, a sample, what they spent and ordered, how they break
//! down by up to two fields, and how they overlap the saved segments.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use roaring::RoaringBitmap;
use serde_json::{Map, Value};

use super::AudienceIndex;
use crate::computed::DefinitionError;
use crate::tags::FieldKey;

/// The most groups a breakdown lists (the largest first).
pub const MAX_GROUPS: usize = 200;
/// The most fields a breakdown is by.
pub const MAX_FIELDS: usize = 2;

/// Count, sample and totals of a set of members.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: u64,
    /// Live profiles in the index.
    pub profiles: u64,
    /// The smallest profile ids among the members, in order.
    pub sample: Vec<String>,
    pub spend: f64,
    pub orders: u64,
}

/// A field to break members down by: `{"trait": "city"}`, `{"tag": "rfm"}`, `{"computed": "spend_30d"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakdownField {
    pub key: FieldKey,
    pub name: String,
}

/// One group of a breakdown: a value of each field (null: none), its members and their spend.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub values: Vec<Value>,
    pub count: u64,
    pub spend: f64,
}

/// Members by the values of up to two fields. A profile with several values of a field (a list) is in
/// the group of each; one with none is in the group of null.
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    pub fields: Vec<BreakdownField>,
    /// The largest groups (by members, then values), at most [`MAX_GROUPS`].
    pub groups: Vec<Group>,
    /// How many groups there are in all.
    pub total_groups: usize,
}

/// Reads a request's `breakdown`: a list of one or two fields. Errors name `breakdown[i]`.
pub fn parse_breakdown(v: &Value) -> Result<Vec<BreakdownField>, DefinitionError> {
    let items = v.as_array().ok_or_else(|| {
        DefinitionError::new(
            "breakdown",
            "must be a list of one or two fields such as [{\"trait\": \"city\"}, {\"tag\": \"rfm\"}]",
        )
    })?;
    if items.is_empty() || items.len() > MAX_FIELDS {
        return Err(DefinitionError::new(
            "breakdown",
            format!("must name 1 to {MAX_FIELDS} fields"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("breakdown[{i}]");
            let obj: &Map<String, Value> = item.as_object().ok_or_else(|| {
                DefinitionError::new(&at, "must be an object such as {\"trait\": \"city\"}")
            })?;
            let mut keys = obj.iter();
            let (Some((k, name)), None) = (keys.next(), keys.next()) else {
                return Err(DefinitionError::new(
                    &at,
                    "must have exactly one key: trait, tag or computed",
                ));
            };
            let key = match k.as_str() {
                "trait" => FieldKey::Trait,
                "tag" => FieldKey::Tag,
                "computed" => FieldKey::Computed,
                other => {
                    return Err(DefinitionError::new(
                        format!("{at}.{other}"),
                        "unknown key; expected trait, tag or computed",
                    ))
                }
            };
            let name = name
                .as_str()
                .filter(|n| !n.is_empty() && n.chars().count() <= 200)
                .ok_or_else(|| {
                    DefinitionError::new(
                        format!("{at}.{k}"),
                        "must be a field name: a non-empty string of at most 200 characters",
                    )
                })?;
            Ok(BreakdownField {
                key,
                name: name.to_owned(),
            })
        })
        .collect()
}

/// Spend in exact micro-units, so totals do not depend on the order rows are added in.
fn micro(spend: f64) -> i128 {
    if spend.is_finite() {
        (spend * 1e6).round() as i128
    } else {
        0
    }
}

fn from_micro(total: i128) -> f64 {
    total as f64 / 1e6
}

impl AudienceIndex {
    fn spend_of(&self, row: u32) -> f64 {
        self.spend.get(row as usize).copied().unwrap_or(0.0)
    }

    /// Count, the `sample` smallest profile ids, spend and orders of `members`.
    pub fn summary(&self, members: &RoaringBitmap, sample: usize) -> Summary {
        let mut smallest: BinaryHeap<&str> = BinaryHeap::with_capacity(sample + 1);
        let mut spend: i128 = 0;
        let mut orders: u64 = 0;
        for r in members {
            spend += micro(self.spend_of(r));
            orders += self.orders.get(r as usize).copied().unwrap_or(0);
            if sample > 0 {
                let id = self.ids[r as usize].as_str();
                if smallest.len() < sample {
                    smallest.push(id);
                } else if smallest.peek().is_some_and(|top| id < *top) {
                    smallest.pop();
                    smallest.push(id);
                }
            }
        }
        Summary {
            count: members.len(),
            profiles: self.profiles(),
            sample: smallest
                .into_sorted_vec()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            spend: from_micro(spend),
            orders,
        }
    }

    /// `members` by the values of `fields` (one or two).
    pub fn breakdown(&self, members: &RoaringBitmap, fields: &[BreakdownField]) -> Breakdown {
        let fields = &fields[..fields.len().min(MAX_FIELDS)];
        let sources: Vec<_> = fields.iter().map(|f| self.source(f.key, &f.name)).collect();
        let Some(first) = sources.first() else {
            return Breakdown {
                fields: Vec::new(),
                groups: Vec::new(),
                total_groups: 0,
            };
        };
        // Rows are counted per combination of codes (few), then each code is spread over its values.
        let mut by_codes: HashMap<(u32, u32), (u64, i128)> = HashMap::new();
        for r in members {
            let c0 = first.code(r);
            let c1 = sources.get(1).map_or(0, |s| s.code(r));
            let e = by_codes.entry((c0, c1)).or_default();
            e.0 += 1;
            e.1 += micro(self.spend_of(r));
        }
        let distinct_values = |source: &super::evaluate::Source<'_>, code: u32| -> Vec<Value> {
            let mut values: Vec<Value> = Vec::new();
            for v in source.values(code) {
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
            if values.is_empty() {
                values.push(Value::Null);
            }
            values
        };
        let mut groups: BTreeMap<String, (Vec<Value>, u64, i128)> = BTreeMap::new();
        for ((c0, c1), (n, spend)) in by_codes {
            let firsts = distinct_values(first, c0);
            let seconds = match sources.get(1) {
                Some(s) => distinct_values(s, c1).into_iter().map(Some).collect(),
                None => vec![None],
            };
            for a in &firsts {
                for b in &seconds {
                    let values: Vec<Value> = std::iter::once(a.clone()).chain(b.clone()).collect();
                    let key = serde_json::to_string(&values).unwrap_or_default();
                    let g = groups.entry(key).or_insert_with(|| (values, 0, 0));
                    g.1 += n;
                    g.2 += spend;
                }
            }
        }
        let total_groups = groups.len();
        let mut groups: Vec<(String, Group)> = groups
            .into_iter()
            .map(|(key, (values, count, spend))| {
                (
                    key,
                    Group {
                        values,
                        count,
                        spend: from_micro(spend),
                    },
                )
            })
            .collect();
        groups.sort_by(|(ka, a), (kb, b)| b.count.cmp(&a.count).then_with(|| ka.cmp(kb)));
        groups.truncate(MAX_GROUPS);
        Breakdown {
            fields: fields.to_vec(),
            groups: groups.into_iter().map(|(_, g)| g).collect(),
            total_groups,
        }
    }

    /// A tag's population: each value its live profiles have, with how many and what they spent, in
    /// no particular order (none when no profile has the tag). `None` when the catalog defines no
    /// such tag, or when some profile's value is a list (the stored rows count a list as one value;
    /// the index spreads it over its items).
    pub fn tag_values(&self, tag: &str) -> Option<Vec<(Value, u64, f64)>> {
        if !self.names.tags.contains(tag) {
            return None;
        }
        let Some(column) = self.tags.get(tag) else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        for (values, rows) in column.groups() {
            let [value] = values else {
                return None;
            };
            let live = rows & &self.alive;
            if live.is_empty() {
                continue;
            }
            let spend: i128 = live.iter().map(|r| micro(self.spend_of(r))).sum();
            out.push((value.clone(), live.len(), from_micro(spend)));
        }
        Some(out)
    }

    /// How many of `members` each saved segment holds, the largest overlap first.
    pub fn overlap(&self, members: &RoaringBitmap) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .segments
            .iter()
            .map(|(id, rows)| (id.clone(), members.intersection_len(rows)))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}
