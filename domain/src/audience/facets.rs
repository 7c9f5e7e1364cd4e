//! An event's facets: the values a `where` filter on `properties…` can read, kept with the event's
//! summary (`event_profiles.facets`) so that the audience index answers "≥ 2 Product Added in 14 days
//! with category shoes" without reading the log.
//!
//! The facets of a track event are every scalar under its `properties`, by the path a filter names
//! it with ([`crate::computed::Path`]: `properties.category`, `properties.store.id`,
//! `properties.products[].category`), in the order `Path::values` finds them. A place holding what
//! the facets do not keep — an object or an array (a filter on it reads the container itself), a
//! string longer than [`MAX_STRING`] — is recorded as unkept (`null`), and a filter on it is not
//! answered from the facets. An event with more than [`MAX_VALUES`] values and unkept places or deeper than
//! [`MAX_DEPTH`] has no facets at all (`null`): no filter on its event name is answered from them.
//!
//! Stored as JSON text: `{"properties.category":["shoes"],"properties.products":null,…}`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::json::{JsonRead, Kind};

/// The longest string value kept.
pub const MAX_STRING: usize = 64;
/// The most values an event keeps.
pub const MAX_VALUES: usize = 64;
/// The deepest a kept value sits below `properties`.
pub const MAX_DEPTH: usize = 4;

/// An event's facets: each path's values, `None` where the path holds something not kept.
pub type Facets = BTreeMap<String, Option<Vec<Value>>>;

/// The facets of a track event's payload as stored text; `"{}"` when it has no properties, `"null"`
/// when it has too many values to keep. Written for every track event the resolver folds: the values
/// are borrowed from the payload, a path is allocated once, when it is first found, and the text is
/// what `serde_json` writes for the [`Facets`] map.
pub fn facets_text<J: JsonRead>(payload: &J) -> String {
    let Some(facets) = borrowed(payload) else {
        return "null".to_owned();
    };
    let mut text = Vec::with_capacity(64 * facets.entries.len() + 2);
    text.push(b'{');
    for (i, (path, values)) in facets.entries.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        let written = serde_json::to_writer(&mut text, path).and_then(|()| {
            text.push(b':');
            serde_json::to_writer(&mut text, values)
        });
        if written.is_err() {
            return "null".to_owned();
        }
    }
    text.push(b'}');
    String::from_utf8(text).unwrap_or_else(|_| "null".to_owned())
}

/// The facets of a payload; `None` when it has more than [`MAX_VALUES`] values or nests deeper.
pub fn facets_of<J: JsonRead>(payload: &J) -> Option<Facets> {
    let facets = borrowed(payload)?;
    Some(
        facets
            .entries
            .into_iter()
            .map(|(path, values)| {
                (
                    path,
                    values.map(|v| v.into_iter().map(JsonRead::to_value).collect()),
                )
            })
            .collect(),
    )
}

/// Facets whose values are the payload's own, in the order the walk finds their paths (sorted by
/// path when the walk is done).
struct Borrowed<'a, J> {
    entries: Vec<(String, Option<Vec<&'a J>>)>,
    /// Where the entries of the outermost array being walked begin. A path is found again only
    /// under an array (an object's keys are distinct), in another of its elements: only these
    /// entries are searched.
    array_from: Option<usize>,
}

impl<'a, J> Borrowed<'a, J> {
    /// The values found at `path` so far, if it was found before.
    fn slot(&mut self, path: &str) -> Option<&mut Option<Vec<&'a J>>> {
        let from = self.array_from?;
        self.entries[from..]
            .iter_mut()
            .find(|(p, _)| p == path)
            .map(|(_, slot)| slot)
    }
}

fn borrowed<J: JsonRead>(payload: &J) -> Option<Borrowed<'_, J>> {
    let mut facets = Borrowed {
        entries: Vec::new(),
        array_from: None,
    };
    let mut kept = 0usize;
    if let Some(properties) = payload
        .get("properties")
        .filter(|p| p.kind() == Kind::Object)
    {
        let mut path = String::from("properties");
        walk_object(&mut path, properties, 0, &mut facets, &mut kept)?;
    }
    facets.entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some(facets)
}

/// Parses stored facets; `None` for `null` (too many to keep) or text that is not facets.
pub fn parse_facets(text: &str) -> Option<Facets> {
    serde_json::from_str::<Option<Facets>>(text).ok().flatten()
}

/// Whether a path's key can be named in a filter path (`Path::parse` refuses the others).
fn addressable(key: &str) -> bool {
    // The common key, checked without decoding characters.
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return true;
    }
    !key.is_empty()
        && !key.contains(['.', '[', ']', '*'])
        && key.chars().all(crate::computed::path::in_key)
}

/// Walks an object found at `path` (restored as it was on return).
fn walk_object<'a, J: JsonRead>(
    path: &mut String,
    object: &'a J,
    depth: usize,
    facets: &mut Borrowed<'a, J>,
    kept: &mut usize,
) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    let at = path.len();
    for (key, value) in object.members().into_iter().flatten() {
        if !addressable(key) {
            continue;
        }
        path.push('.');
        path.push_str(key);
        let walked = walk_value(path, value, depth, facets, kept);
        path.truncate(at);
        walked?;
    }
    Some(())
}

/// Records `value` found at `path`: a scalar kept, a container unkept and walked into.
fn walk_value<'a, J: JsonRead>(
    path: &mut String,
    value: &'a J,
    depth: usize,
    facets: &mut Borrowed<'a, J>,
    kept: &mut usize,
) -> Option<()> {
    match value.kind() {
        Kind::Null => {}
        Kind::String if value.as_str().map_or(0, str::len) > MAX_STRING => {
            unkept(path, facets, kept)?
        }
        Kind::String | Kind::Number | Kind::Bool => {
            count(kept)?;
            match facets.slot(path) {
                Some(Some(values)) => values.push(value),
                Some(None) => {}
                None => facets.entries.push((path.clone(), Some(vec![value]))),
            }
        }
        Kind::Object => {
            unkept(path, facets, kept)?;
            walk_object(path, value, depth + 1, facets, kept)?;
        }
        Kind::Array => {
            unkept(path, facets, kept)?;
            let outermost = facets.array_from.is_none();
            if outermost {
                facets.array_from = Some(facets.entries.len());
            }
            let at = path.len();
            path.push_str("[]");
            let mut walked = Some(());
            for item in value.items().unwrap_or_default() {
                walked = match item.kind() {
                    // `[]` on an array element gives the element: an array is a container.
                    Kind::Array => unkept(path, facets, kept),
                    _ => walk_value(path, item, depth + 1, facets, kept),
                };
                if walked.is_none() {
                    break;
                }
            }
            path.truncate(at);
            if outermost {
                facets.array_from = None;
            }
            walked?;
        }
    }
    Some(())
}

/// Marks `path` as holding what the facets do not keep.
fn unkept<J>(path: &str, facets: &mut Borrowed<'_, J>, kept: &mut usize) -> Option<()> {
    count(kept)?;
    match facets.slot(path) {
        Some(slot) => *slot = None,
        None => facets.entries.push((path.to_owned(), None)),
    }
    Some(())
}

/// Counts one more entry; `None` past [`MAX_VALUES`].
fn count(kept: &mut usize) -> Option<()> {
    *kept += 1;
    (*kept <= MAX_VALUES).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::computed::Path;
    use proptest::prelude::*;
    use serde_json::json;

    /// What the facets say a path's values are: `None` when they cannot say.
    fn read<'a>(facets: &'a Facets, path: &str) -> Option<Vec<&'a Value>> {
        match facets.get(path) {
            Some(Some(values)) => Some(values.iter().collect()),
            Some(None) => None,
            None => Some(Vec::new()),
        }
    }

    #[test]
    fn line_items_and_nested_objects_are_kept_by_their_paths() {
        let payload = json!({"properties": {
            "category": "shoes", "total": 399.5, "gift": false, "none": null,
            "store": {"id": "S1"},
            "products": [{"category": "shoes", "price": 1}, {"category": "socks"}, "loose"],
            "long": "x".repeat(MAX_STRING + 1),
            "a.b": 1,
        }});
        let facets = facets_of(&payload).unwrap();
        assert_eq!(
            read(&facets, "properties.category"),
            Some(vec![&json!("shoes")])
        );
        assert_eq!(read(&facets, "properties.total"), Some(vec![&json!(399.5)]));
        assert_eq!(
            read(&facets, "properties.store.id"),
            Some(vec![&json!("S1")])
        );
        assert_eq!(
            read(&facets, "properties.products[].category"),
            Some(vec![&json!("shoes"), &json!("socks")])
        );
        assert_eq!(read(&facets, "properties.none"), Some(vec![]));
        for unkept in [
            "properties.store",
            "properties.products",
            "properties.products[]",
            "properties.long",
        ] {
            assert_eq!(read(&facets, unkept), None, "{unkept}");
        }
        let text = facets_text(&payload);
        assert_eq!(parse_facets(&text), Some(facets));
    }

    #[test]
    fn too_many_values_keep_no_facets() {
        let many: Vec<u32> = (0..=MAX_VALUES as u32).collect();
        let payload = json!({"properties": {"ids": many}});
        assert_eq!(facets_of(&payload), None);
        assert_eq!(parse_facets(&facets_text(&payload)), None);
        assert_eq!(facets_text(&json!({"event": "x"})), "{}");
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..5).prop_map(|n| json!(n)),
            prop_oneof![Just("a"), Just("b"), Just("shoes")].prop_map(|s| json!(s)),
            Just(json!("y".repeat(MAX_STRING + 1))),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        let key = prop_oneof![Just("a"), Just("b"), Just("c.d")].prop_map(str::to_owned);
        scalar().prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn path() -> impl Strategy<Value = String> {
        let step = prop_oneof![Just("a"), Just("b"), Just("a[]"), Just("b[]")];
        prop::collection::vec(step, 1..4).prop_map(|s| format!("properties.{}", s.join(".")))
    }

    proptest! {
        /// The stored text is the facets map as `serde_json` writes it, whether the payload was
        /// parsed into a `serde_json::Value` or borrowed (`crate::json::Json`).
        #[test]
        fn the_text_is_the_facets_map_as_serde_json_writes_it(properties in tree()) {
            let payload = json!({"properties": properties});
            let expected = facets_of(&payload)
                .map_or_else(|| "null".to_owned(), |f| serde_json::to_string(&f).unwrap());
            prop_assert_eq!(&facets_text(&payload), &expected);
            let text = payload.to_string();
            let borrowed = crate::json::Json::parse(&text).unwrap();
            prop_assert_eq!(&facets_text(&borrowed), &expected);
        }

        /// Wherever the facets can say, they say what the path finds in the payload.
        #[test]
        fn facets_read_as_the_path_does(properties in tree(), path in path()) {
            let payload = json!({"properties": properties});
            let Some(facets) = facets_of(&payload) else { return Ok(()) };
            let facets = parse_facets(&serde_json::to_string(&facets).unwrap()).unwrap();
            let exact = Path::parse(&path).unwrap().values(&payload);
            if let Some(from_facets) = read(&facets, &path) {
                // And a payload rebuilt from them reads the same (as an aggregate folds it).
                let parsed = Path::parse(&path).unwrap();
                let values: Vec<Value> = from_facets.iter().map(|v| (*v).clone()).collect();
                if let Some(rebuilt) = parsed.payload_with(&values) {
                    let again: Vec<Value> = parsed.values(&rebuilt).into_iter().cloned().collect();
                    prop_assert_eq!(&again, &values);
                }
                prop_assert_eq!(from_facets, exact);
            } else {
                // Unkept: the path holds a container or a long string somewhere.
                prop_assert!(!exact.is_empty());
            }
        }
    }
}
