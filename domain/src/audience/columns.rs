//! The index's columns: a field's values per profile, dictionary-encoded (one code per distinct list of
//! values, 0 for none), and the per-value roaring bitmaps of the low-cardinality columns (tags).

use std::collections::HashMap;

use roaring::RoaringBitmap;
use serde_json::Value;

/// The values one field has for each row, dictionary-encoded. A row's whole list of values is one code,
/// so a comparison — which reads all of a field's values at once (`any` for positive operators, `none`
/// for negated ones) — is decided once per distinct list, never per row.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    /// The code of each row's values; rows past the end have none (code 0).
    codes: Vec<u32>,
    /// The values of each code; `dict[0]` is the empty list (unknown).
    dict: Vec<Box<[Value]>>,
    /// Each list's canonical JSON text → its code.
    lookup: HashMap<Box<str>, u32>,
}

impl Default for Column {
    fn default() -> Self {
        let mut lookup = HashMap::new();
        lookup.insert(Box::from("[]"), 0);
        Column {
            codes: Vec::new(),
            dict: vec![Box::from([])],
            lookup,
        }
    }
}

impl Column {
    /// The code of `values`, added to the dictionary if new. Codes are never reused: a list no row has
    /// any more keeps its code until the index is built again.
    fn code_of(&mut self, values: Vec<Value>) -> u32 {
        let text = serde_json::to_string(&values).unwrap_or_default();
        if let Some(code) = self.lookup.get(text.as_str()) {
            return *code;
        }
        let code = u32::try_from(self.dict.len()).unwrap_or(u32::MAX);
        self.dict.push(values.into_boxed_slice());
        self.lookup.insert(text.into_boxed_str(), code);
        code
    }

    /// Gives `row` these values (none: the field is unknown); returns the code it had before.
    pub(crate) fn set(&mut self, row: u32, values: Vec<Value>) -> (u32, u32) {
        let code = if values.is_empty() {
            0
        } else {
            self.code_of(values)
        };
        let at = row as usize;
        if at >= self.codes.len() {
            if code == 0 {
                return (0, 0);
            }
            self.codes.resize(at + 1, 0);
        }
        let before = std::mem::replace(&mut self.codes[at], code);
        (before, code)
    }

    /// The code of `row`'s values.
    pub(crate) fn code(&self, row: u32) -> u32 {
        self.codes.get(row as usize).copied().unwrap_or(0)
    }

    /// The values of a code.
    pub(crate) fn values(&self, code: u32) -> &[Value] {
        self.dict.get(code as usize).map_or(&[], |v| v)
    }

    /// The rows of `alive` whose values satisfy `holds`, which is asked once per distinct list.
    pub(crate) fn matching(
        &self,
        alive: &RoaringBitmap,
        mut holds: impl FnMut(&[Value]) -> bool,
    ) -> RoaringBitmap {
        let hits: Vec<bool> = self.dict.iter().map(|values| holds(values)).collect();
        // Few rows asked about: read theirs only; many: read the codes in one pass.
        if alive.len() < (self.codes.len() / 8) as u64 {
            return alive
                .iter()
                .filter(|r| hits[self.code(*r) as usize])
                .collect();
        }
        let stored = self
            .codes
            .iter()
            .enumerate()
            .filter(|(_, code)| hits[**code as usize])
            .map(|(row, _)| row as u32);
        let mut out = RoaringBitmap::from_sorted_iter(stored).unwrap_or_default();
        if hits[0] {
            // Rows past the stored codes have no values either.
            if let Some(max) = alive.max() {
                if max as usize >= self.codes.len() {
                    out.insert_range(self.codes.len() as u32..=max);
                }
            }
        }
        out &= alive;
        out
    }

    /// Approximate heap bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        let dict: usize = self
            .dict
            .iter()
            .map(|values| values.iter().map(value_bytes).sum::<usize>() + 16)
            .sum();
        let lookup: usize = self.lookup.keys().map(|k| k.len() + 16 + 8).sum();
        self.codes.capacity() * 4 + dict + lookup
    }
}

/// Approximate bytes of a JSON value.
fn value_bytes(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::String(s) => s.capacity(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| k.capacity() + value_bytes(v)).sum(),
            _ => 0,
        }
}

/// A column with a roaring bitmap per code besides (tags: few distinct values, read often whole —
/// a tag's population is its bitmaps' union).
#[derive(Debug, Clone, Default)]
pub(crate) struct BitmapColumn {
    pub(crate) column: Column,
    /// The rows of each code but 0.
    by_code: HashMap<u32, RoaringBitmap>,
}

impl BitmapColumn {
    pub(crate) fn set(&mut self, row: u32, values: Vec<Value>) {
        let (before, after) = self.column.set(row, values);
        if before == after {
            return;
        }
        if before != 0 {
            if let Some(rows) = self.by_code.get_mut(&before) {
                rows.remove(row);
                if rows.is_empty() {
                    self.by_code.remove(&before);
                }
            }
        }
        if after != 0 {
            self.by_code.entry(after).or_default().insert(row);
        }
    }

    /// Each distinct list of values with its rows.
    pub(crate) fn groups(&self) -> impl Iterator<Item = (&[Value], &RoaringBitmap)> {
        self.by_code
            .iter()
            .map(|(code, rows)| (self.column.values(*code), rows))
    }

    /// Every row with a value.
    pub(crate) fn present(&self) -> RoaringBitmap {
        self.by_code
            .values()
            .fold(RoaringBitmap::new(), |acc, b| acc | b)
    }

    /// As [`Column::matching`], from the bitmaps.
    pub(crate) fn matching(
        &self,
        alive: &RoaringBitmap,
        mut holds: impl FnMut(&[Value]) -> bool,
    ) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (code, rows) in &self.by_code {
            if holds(self.column.values(*code)) {
                out |= rows;
            }
        }
        if holds(&[]) {
            out |= alive - self.present();
        }
        out &= alive;
        out
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.column.heap_bytes()
            + self
                .by_code
                .values()
                .map(|b| b.serialized_size() + 16)
                .sum::<usize>()
    }
}
