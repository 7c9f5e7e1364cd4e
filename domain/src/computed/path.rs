//! Paths into an event payload (`properties.products[].category`) and value expressions (a path, or a
//! product of paths such as `properties.products[].price * properties.products[].quantity`).
//!
//! A path is dot-separated keys; a key ending in `[]` expands the array it names into one value per element.
//! A missing key, a non-object where a key is looked up, or a non-array at a `[]` step gives no values, and
//! `null` counts as missing, so a path's values never include `null`.

use serde_json::Value;

use super::condition::as_number;
use crate::json::{JsonRead, Kind};

const MAX_PATH_LEN: usize = 512;
const MAX_STEPS: usize = 16;
const MAX_FACTORS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    key: String,
    /// The key names an array whose elements are the values of this step (`key[]`).
    each: bool,
}

/// A path into an event payload (the normalised Segment message JSON): `properties.total`,
/// `properties.store.id`, `context.channel`, `timestamp`, `properties.products[].category`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    steps: Vec<Step>,
}

impl Path {
    pub fn parse(s: &str) -> Result<Path, String> {
        if s.is_empty() {
            return Err("a path must not be empty".into());
        }
        if s.len() > MAX_PATH_LEN {
            return Err(format!("a path has at most {MAX_PATH_LEN} characters"));
        }
        if s.chars()
            .any(|c| !in_key(c) && c != '.' && c != '[' && c != ']' && c != '*')
        {
            return Err(format!(
                "path {s:?}: a key must not contain spaces or control whitespace"
            ));
        }
        let mut steps = Vec::new();
        for part in s.split('.') {
            let (key, each) = match part.strip_suffix("[]") {
                Some(key) => (key, true),
                None => (part, false),
            };
            if key.is_empty() {
                return Err(format!("path {s:?} has an empty key"));
            }
            if key.contains(['[', ']', '*']) {
                return Err(format!(
                    "path {s:?}: a key may end in [] but not otherwise contain [, ] or *"
                ));
            }
            steps.push(Step {
                key: key.to_string(),
                each,
            });
        }
        if steps.len() > MAX_STEPS {
            return Err(format!("a path has at most {MAX_STEPS} keys"));
        }
        Ok(Path {
            text: s.to_string(),
            steps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value at the path (one per array element under `[]`), never `null`.
    pub fn values<'a, J: JsonRead>(&self, payload: &'a J) -> Vec<&'a J> {
        walk(&self.steps, payload)
    }

    fn expansions(&self) -> usize {
        self.steps.iter().filter(|s| s.each).count()
    }

    /// A payload holding `values` at this path and nothing else, such that [`Path::values`] reads
    /// them back in order: nested objects to the leaf, one array element per value under a `[]`.
    /// `None` for a path expanding more than one array, or for several values without a `[]`.
    pub fn payload_with(&self, values: &[Value]) -> Option<Value> {
        fn nest(steps: &[Step], leaf: Value) -> Value {
            steps.iter().rev().fold(leaf, |inner, step| {
                let mut object = serde_json::Map::new();
                object.insert(step.key.clone(), inner);
                Value::Object(object)
            })
        }
        match self.steps.iter().position(|s| s.each) {
            None => match values {
                [] => Some(Value::Object(serde_json::Map::new())),
                [one] => Some(nest(&self.steps, one.clone())),
                _ => None,
            },
            Some(at) if self.expansions() == 1 => {
                let rest = &self.steps[at + 1..];
                let items: Vec<Value> = values.iter().map(|v| nest(rest, v.clone())).collect();
                Some(nest(&self.steps[..=at], Value::Array(items)))
            }
            Some(_) => None,
        }
    }

    /// For a path expanding one array: the array's path (`properties.products[]`) and the rest of the path
    /// from an element (`category`; empty for the element itself).
    pub fn items(&self) -> Option<(String, Path)> {
        if self.expansions() != 1 {
            return None;
        }
        let at = self.steps.iter().position(|s| s.each)?;
        Some((text_of(&self.steps[..=at]), relative(&self.steps[at + 1..])))
    }

    /// The values of this path read from one line item (the path relative to it).
    fn values_in<'a, J: JsonRead>(&self, item: &'a J) -> Vec<&'a J> {
        walk(&self.steps, item)
    }
}

fn text_of(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            if s.each {
                format!("{}[]", s.key)
            } else {
                s.key.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn relative(steps: &[Step]) -> Path {
    Path {
        text: text_of(steps),
        steps: steps.to_vec(),
    }
}

/// A condition on one line item, as `where` filters on the items an expression expands become.
pub trait ItemFilter<J> {
    fn keeps(&self, item: &J) -> bool;
}

/// The values at `path` (relative to an item) of one item.
pub fn item_values<'a, J: JsonRead>(path: &Path, item: &'a J) -> Vec<&'a J> {
    path.values_in(item)
}

fn walk<'a, J: JsonRead>(steps: &[Step], start: &'a J) -> Vec<&'a J> {
    let mut current = vec![start];
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match v.get(&step.key) {
                Some(found) if step.each && found.kind() == Kind::Array => {
                    next.extend(found.items().unwrap_or_default().iter())
                }
                Some(found) if !step.each => next.push(found),
                _ => {}
            }
        }
        next.retain(|v| !v.is_null());
        current = next;
    }
    current
}

/// A value expression: a path, or a product of paths. In a product, paths under the same `[]` array pair
/// element by element (one product per line item) and factors without `[]` multiply each product. Each
/// factor must give exactly one number (or numeric string) per item, otherwise that item yields nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    text: String,
    factors: Vec<Path>,
    /// For a product with line items: the number of steps up to and including the shared `[]`.
    items_prefix: Option<usize>,
}

impl Expr {
    /// The one path the expression is, when it is not a product.
    pub fn as_path(&self) -> Option<&Path> {
        match self.factors.as_slice() {
            [single] => Some(single),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Result<Expr, String> {
        let factors = s
            .split('*')
            .map(|f| Path::parse(f.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if factors.len() > MAX_FACTORS {
            return Err(format!("a product has at most {MAX_FACTORS} factors"));
        }
        let mut items_prefix = None;
        if factors.len() > 1 {
            let mut shared: Option<&[Step]> = None;
            for f in &factors {
                match f.expansions() {
                    0 => continue,
                    1 => {}
                    _ => {
                        return Err(format!(
                            "{:?}: a factor of a product may expand one array ([]) only",
                            f.text
                        ))
                    }
                }
                let at = f.steps.iter().position(|s| s.each).unwrap_or(0);
                let prefix = &f.steps[..=at];
                match shared {
                    None => shared = Some(prefix),
                    Some(p) if p == prefix => {}
                    Some(_) => {
                        return Err("the factors of a product must expand the same array (same path up to [])".into());
                    }
                }
            }
            items_prefix = shared.map(<[Step]>::len);
        }
        let text = factors
            .iter()
            .map(Path::as_str)
            .collect::<Vec<_>>()
            .join(" * ");
        Ok(Expr {
            text,
            factors,
            items_prefix,
        })
    }

    /// The canonical text (factors joined by ` * `).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The line items the expression expands (`properties.products[]`), if it expands an array.
    pub fn items_path(&self) -> Option<String> {
        match self.factors.as_slice() {
            [single] => single.items().map(|(prefix, _)| prefix),
            _ => {
                let len = self.items_prefix?;
                let f = self.factors.iter().find(|f| f.expansions() == 1)?;
                Some(text_of(&f.steps[..len]))
            }
        }
    }

    /// The expression's values from the line items `keep` keeps only (all values when it expands no
    /// array).
    pub fn values_of_items<J: JsonRead>(
        &self,
        payload: &J,
        keep: &dyn ItemFilter<J>,
    ) -> Vec<Value> {
        if let [single] = self.factors.as_slice() {
            let Some((_, rest)) = single.items() else {
                return self.values(payload);
            };
            let at = single.steps.iter().position(|s| s.each).unwrap_or(0);
            return walk(&single.steps[..=at], payload)
                .into_iter()
                .filter(|item| keep.keeps(item))
                .flat_map(|item| rest.values_in(item))
                .map(JsonRead::to_value)
                .collect();
        }
        let Some(prefix_len) = self.items_prefix else {
            return self.values(payload);
        };
        let one_number = |vals: Vec<&J>| match vals.as_slice() {
            [v] => as_number(*v),
            _ => None,
        };
        let mut scalar = 1.0;
        for f in self.factors.iter().filter(|f| f.expansions() == 0) {
            match one_number(f.values(payload)) {
                Some(x) => scalar *= x,
                None => return Vec::new(),
            }
        }
        let expanded: Vec<&Path> = self
            .factors
            .iter()
            .filter(|f| f.expansions() == 1)
            .collect();
        walk(&expanded[0].steps[..prefix_len], payload)
            .into_iter()
            .filter(|item| keep.keeps(item))
            .filter_map(|item| {
                let mut product = scalar;
                for f in &expanded {
                    product *= one_number(walk(&f.steps[prefix_len..], item))?;
                }
                number(product)
            })
            .collect()
    }

    /// The expression's values: a path's values, or one number per line item (or one for a product without `[]`).
    pub fn values<J: JsonRead>(&self, payload: &J) -> Vec<Value> {
        if let [single] = self.factors.as_slice() {
            return single
                .values(payload)
                .into_iter()
                .map(JsonRead::to_value)
                .collect();
        }
        let one_number = |vals: Vec<&J>| match vals.as_slice() {
            [v] => as_number(*v),
            _ => None,
        };
        let mut scalar = 1.0;
        for f in self.factors.iter().filter(|f| f.expansions() == 0) {
            match one_number(f.values(payload)) {
                Some(x) => scalar *= x,
                None => return Vec::new(),
            }
        }
        let Some(prefix_len) = self.items_prefix else {
            return number(scalar).into_iter().collect();
        };
        let expanded: Vec<&Path> = self
            .factors
            .iter()
            .filter(|f| f.expansions() == 1)
            .collect();
        let items = walk(&expanded[0].steps[..prefix_len], payload);
        items
            .into_iter()
            .filter_map(|item| {
                let mut product = scalar;
                for f in &expanded {
                    product *= one_number(walk(&f.steps[prefix_len..], item))?;
                }
                number(product)
            })
            .collect()
    }
}

/// A JSON number for `x`, integral values as integers (one rule for every number this module produces).
pub(crate) fn number(x: f64) -> Option<Value> {
    if !x.is_finite() {
        return None;
    }
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        return Some(Value::from(x as i64));
    }
    serde_json::Number::from_f64(x).map(Value::Number)
}

/// Whether `c` may stand in a path's key besides the path's own signs (`.`, `[]`, `*`): not NUL and not
/// whitespace as the contract means it ([`is_space`]).
pub(crate) fn in_key(c: char) -> bool {
    c != '\0' && !is_space(c)
}

/// Whitespace as the contract's patterns mean it (`\s` of the JSON Schema's ECMA-262 regular
/// expressions), so that a path the OpenAPI document refuses is refused here too, and one it allows is
/// allowed.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}
