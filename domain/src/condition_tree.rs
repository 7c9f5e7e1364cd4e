//! The boolean tree shared by the condition languages of tags and segments: `{"all": [..]}`,
//! `{"any": [..]}`, `{"not": {..}}` over leaves each language defines — one parser of the tree's JSON
//! shape, one evaluation of all/any/not, one walk over the leaves — and the one cycle finder over
//! definitions that reference each other by name.
//!
//! A language's condition type is a flat enum whose combinator variants the tree reads through
//! [`BooleanTree::shape`]; its other variants are its leaves (a tag's field comparisons; a segment's field
//! comparisons, segment references, consents and event conditions). The language supplies what the tree
//! cannot know: how to read a leaf ([`ConditionLanguage::leaf`]), how to judge one (the closure given to
//! [`BooleanTree::holds_when`]) and its JSON (the closure given to [`BooleanTree::to_json_with`]).
//!
//! **Negation includes the unknown**: the tree negates what the leaf says, and a leaf comparison on an
//! unknown field already says "holds" for the negated operators ([`crate::computed::Comparison::holds`]'
//! rule) and "does not hold" for the others, so `{"not": {"trait": "gender", "op": "eq", ..}}` holds for a
//! profile without gender, as `neq` does.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::computed::DefinitionError;

/// How a condition looks to the tree: a combinator with its parts, or a leaf of the language.
#[derive(Debug)]
pub enum Shape<'a, C> {
    /// Every part holds (the list is never empty).
    All(&'a [C]),
    /// At least one part holds (the list is never empty).
    Any(&'a [C]),
    /// The inner condition does not hold.
    Not(&'a C),
    /// A condition of the language itself, judged by the language.
    Leaf,
}

/// A condition type built on the shared boolean tree: the language's enum says which of its variants are
/// `all`, `any` and `not`, and gets the tree's evaluation, walk and JSON.
pub trait BooleanTree: Sized {
    /// `{"all": parts}`.
    fn all(parts: Vec<Self>) -> Self;
    /// `{"any": parts}`.
    fn any(parts: Vec<Self>) -> Self;
    /// `{"not": inner}`.
    fn not(inner: Self) -> Self;
    /// Whether this node is a combinator (with its parts) or a leaf.
    fn shape(&self) -> Shape<'_, Self>;

    /// Whether the condition holds, `leaf_holds` judging each leaf it reaches. `all` and `any` stop at the
    /// first part that decides them; `not` negates its part, so a negation holds where its part is unknown
    /// and therefore does not hold.
    fn holds_when<F: FnMut(&Self) -> bool>(&self, leaf_holds: &mut F) -> bool {
        match self.shape() {
            Shape::All(parts) => parts.iter().all(|c| c.holds_when(leaf_holds)),
            Shape::Any(parts) => parts.iter().any(|c| c.holds_when(leaf_holds)),
            Shape::Not(inner) => !inner.holds_when(leaf_holds),
            Shape::Leaf => leaf_holds(self),
        }
    }

    /// Calls `visit` on every leaf, depth-first in definition order (the order a parser meets them).
    fn for_each_leaf<F: FnMut(&Self)>(&self, visit: &mut F) {
        match self.shape() {
            Shape::All(parts) | Shape::Any(parts) => {
                parts.iter().for_each(|c| c.for_each_leaf(visit));
            }
            Shape::Not(inner) => inner.for_each_leaf(visit),
            Shape::Leaf => visit(self),
        }
    }

    /// The JSON form [`parse`] reads: `{"all": [..]}`, `{"any": [..]}`, `{"not": ..}`, and `leaf_json` of
    /// each leaf.
    fn to_json_with<F: Fn(&Self) -> Value>(&self, leaf_json: &F) -> Value {
        let list = |parts: &[Self]| {
            Value::Array(parts.iter().map(|c| c.to_json_with(leaf_json)).collect())
        };
        let (key, value) = match self.shape() {
            Shape::All(parts) => ("all", list(parts)),
            Shape::Any(parts) => ("any", list(parts)),
            Shape::Not(inner) => ("not", inner.to_json_with(leaf_json)),
            Shape::Leaf => return leaf_json(self),
        };
        let mut obj = Map::new();
        obj.insert(key.into(), value);
        Value::Object(obj)
    }
}

/// What a language adds to the tree's parser: its leaves, and the few places where the languages word or
/// limit the tree differently (kept as they are, since stored definitions and clients depend on them).
pub trait ConditionLanguage {
    /// The language's condition type.
    type Condition: BooleanTree;

    /// How deeply conditions may nest (a node at this depth is refused), or `None` for no limit.
    fn max_depth(&self) -> Option<usize> {
        None
    }

    /// Refuses a node before the tree reads it, e.g. one with the keys of two kinds of condition.
    fn check_node(&self, _obj: &Map<String, Value>, _at: &str) -> Result<(), DefinitionError> {
        Ok(())
    }

    /// The message for a key found beside the combinator `key` (`{"all": [..], "op": "eq"}`).
    fn unknown_key_beside(&self, key: &str) -> String;

    /// Reads a node that has none of the keys `all`, `any` and `not`. Called depth-first in definition
    /// order, so a language may number its leaves as it meets them.
    fn leaf(
        &mut self,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<Self::Condition, DefinitionError>;
}

/// Reads a condition found at `at` (`"condition"` in a definition); errors name the place, e.g.
/// `condition.all[1].any[0].op`. A combinator has no other key, and an empty `all`/`any` list is refused
/// (an empty `any` never holds and an empty `all` always does: either is almost surely a mistake).
pub fn parse<L: ConditionLanguage>(
    language: &mut L,
    v: &Value,
    at: &str,
) -> Result<L::Condition, DefinitionError> {
    parse_at_depth(language, v, at, 0)
}

fn parse_at_depth<L: ConditionLanguage>(
    language: &mut L,
    v: &Value,
    at: &str,
    depth: usize,
) -> Result<L::Condition, DefinitionError> {
    if let Some(max) = language.max_depth() {
        if depth >= max {
            return Err(DefinitionError::new(
                at,
                format!("conditions nest at most {max} deep"),
            ));
        }
    }
    let obj = v
        .as_object()
        .ok_or_else(|| DefinitionError::new(at, "must be an object"))?;
    language.check_node(obj, at)?;
    for combinator in ["all", "any"] {
        if let Some(list) = obj.get(combinator) {
            refuse_keys_beside(
                obj,
                combinator,
                at,
                &language.unknown_key_beside(combinator),
            )?;
            let here = join(at, combinator);
            let list = list
                .as_array()
                .ok_or_else(|| DefinitionError::new(&here, "must be a list of conditions"))?;
            if list.is_empty() {
                return Err(DefinitionError::new(
                    &here,
                    "must list at least one condition",
                ));
            }
            let parts = list
                .iter()
                .enumerate()
                .map(|(i, c)| parse_at_depth(language, c, &format!("{here}[{i}]"), depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(if combinator == "all" {
                L::Condition::all(parts)
            } else {
                L::Condition::any(parts)
            });
        }
    }
    if let Some(inner) = obj.get("not") {
        refuse_keys_beside(obj, "not", at, &language.unknown_key_beside("not"))?;
        let inner = parse_at_depth(language, inner, &join(at, "not"), depth + 1)?;
        return Ok(L::Condition::not(inner));
    }
    language.leaf(obj, at)
}

/// Refuses any key of `obj` beside `key` (the first other key is named, with `message`).
pub fn refuse_keys_beside(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    message: &str,
) -> Result<(), DefinitionError> {
    match obj.keys().find(|k| *k != key) {
        Some(other) => Err(DefinitionError::new(join(at, other), message)),
        None => Ok(()),
    }
}

/// `at.key`, or `key` at the top.
pub(crate) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// The path by which definition `start` would reach itself through the names definitions reference, e.g.
/// `["a", "b", "a"]` (`["a", "a"]` for one that references itself), or `None`. `references(name)` gives
/// the names a definition references, in its order, or `None` when no definition has that name: a name
/// without a definition leads nowhere. Each definition is entered once, so shared inputs cost nothing more
/// and the search ends on any graph.
pub fn find_cycle<F>(start: &str, references: F) -> Option<Vec<String>>
where
    F: Fn(&str) -> Option<Vec<String>>,
{
    fn walk<F: Fn(&str) -> Option<Vec<String>>>(
        references: &F,
        target: &str,
        at: &str,
        path: &mut Vec<String>,
        entered: &mut BTreeSet<String>,
    ) -> bool {
        let Some(next) = references(at) else {
            return false;
        };
        for name in next {
            if name == target {
                path.push(name);
                return true;
            }
            if entered.insert(name.clone()) {
                path.push(name.clone());
                if walk(references, target, &name, path, entered) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut entered = BTreeSet::new();
    walk(&references, start, start, &mut path, &mut entered).then_some(path)
}

#[cfg(test)]
mod tests;
