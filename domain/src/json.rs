//! Reading into a parsed message without allocating. [`Json`] is a payload parsed once into nodes that
//! borrow its text: an object is a sorted vector of members, a string a slice of the payload unless it
//! held an escape — where `serde_json::Value` allocates every key and string and builds a B-tree per
//! object (on the engine's hot path the parse and the drop of the batch's payloads were ~a quarter of
//! the resolver's instructions). [`JsonRead`] is what the fold reads through, for both; [`at`] walks
//! object keys, where `serde_json::Value::pointer` parses its pointer text (and allocates a string per
//! step) on every call.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

use crate::vecmap::SCANNED;

/// The kind of a JSON node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// Read access to a parsed JSON node: `serde_json::Value`, or a payload's [`Json`]. An object's members
/// come in key order (as a `serde_json::Map` gives them), and serialising either gives the same text.
pub trait JsonRead: Serialize + Sized {
    fn kind(&self) -> Kind;
    /// The member `key` of an object; `None` for anything else.
    fn get(&self, key: &str) -> Option<&Self>;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    fn as_number(&self) -> Option<&Number>;
    /// The elements of an array.
    fn items(&self) -> Option<&[Self]>;
    /// The members of an object, in key order.
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + '_>;
    /// The node as an owned `serde_json::Value`.
    fn to_value(&self) -> Value;
    /// JSON equality with `other` (as `serde_json::Value`'s `==`).
    fn eq_value(&self, other: &Value) -> bool;

    fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }
    fn is_number(&self) -> bool {
        self.kind() == Kind::Number
    }
}

impl JsonRead for Value {
    fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(_) => Kind::Object,
        }
    }
    fn get(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
    fn as_str(&self) -> Option<&str> {
        Value::as_str(self)
    }
    fn as_bool(&self) -> Option<bool> {
        Value::as_bool(self)
    }
    fn as_number(&self) -> Option<&Number> {
        match self {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
    fn items(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + '_> {
        self.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.as_str(), v)))
    }
    fn to_value(&self) -> Value {
        self.clone()
    }
    fn eq_value(&self, other: &Value) -> bool {
        self == other
    }
}

/// A JSON node borrowing the text it was parsed from. Objects hold their members sorted by key, a
/// repeated key's last value kept (what parsing into a `serde_json::Map` keeps).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses `text`, borrowing every string without an escape.
    pub fn parse(text: &'a str) -> serde_json::Result<Json<'a>> {
        serde_json::from_str(text)
    }
}

impl JsonRead for Json<'_> {
    fn kind(&self) -> Kind {
        match self {
            Json::Null => Kind::Null,
            Json::Bool(_) => Kind::Bool,
            Json::Number(_) => Kind::Number,
            Json::String(_) => Kind::String,
            Json::Array(_) => Kind::Array,
            Json::Object(_) => Kind::Object,
        }
    }
    fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Json::Object(members) if members.len() <= SCANNED => members
                .iter()
                .find(|(k, _)| k.as_ref() == key)
                .map(|(_, v)| v),
            Json::Object(members) => members
                .binary_search_by(|(k, _)| k.as_ref().cmp(key))
                .ok()
                .map(|i| &members[i].1),
            _ => None,
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_number(&self) -> Option<&Number> {
        match self {
            Json::Number(n) => Some(n),
            _ => None,
        }
    }
    fn items(&self) -> Option<&[Self]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }
    fn members(&self) -> Option<impl Iterator<Item = (&str, &Self)> + '_> {
        match self {
            Json::Object(members) => Some(members.iter().map(|(k, v)| (k.as_ref(), v))),
            _ => None,
        }
    }
    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.as_ref().to_owned()),
            Json::Array(items) => Value::Array(items.iter().map(JsonRead::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.as_ref().to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
    fn eq_value(&self, other: &Value) -> bool {
        match (self, other) {
            (Json::Null, Value::Null) => true,
            (Json::Bool(a), Value::Bool(b)) => a == b,
            (Json::Number(a), Value::Number(b)) => a == b,
            (Json::String(a), Value::String(b)) => a.as_ref() == b.as_str(),
            (Json::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_value(y))
            }
            (Json::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b.iter())
                        .all(|((ka, va), (kb, vb))| ka.as_ref() == kb.as_str() && va.eq_value(vb))
            }
            _ => false,
        }
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(text) => s.serialize_str(text),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// A string of the text when it holds no escape, else a copy.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        Deserialize::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value`: a float that is no JSON number is `null`.
        Ok(Number::from_f64(x).map_or(Json::Null, Json::Number))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Text(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        // Sorted by key, stable: of a repeated key the last value is kept, as a map keeps it.
        if !members.is_sorted_by(|a, b| a.0 < b.0) {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            members.reverse();
            members.dedup_by(|a, b| a.0 == b.0);
            members.reverse();
        }
        Ok(Json::Object(members))
    }
}

/// The value at `path` (object keys, outermost first), if every step is an object holding the key.
pub fn at<'a, J: JsonRead>(value: &'a J, path: &[&str]) -> Option<&'a J> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::{at, Json, JsonRead};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn walks_object_keys_like_a_json_pointer() {
        let v = json!({"context": {"library": {"name": "analytics.js"}, "list": [1]}, "a/b": 1});
        for (path, pointer) in [
            (&["context", "library", "name"][..], "/context/library/name"),
            (&["context", "library"][..], "/context/library"),
            (&["context", "missing"][..], "/context/missing"),
            (
                &["context", "library", "name", "deeper"][..],
                "/context/library/name/deeper",
            ),
            (&["a/b"][..], "/a~1b"),
            (&[][..], ""),
        ] {
            assert_eq!(at(&v, path), v.pointer(pointer), "{path:?}");
        }
        // Unlike a pointer, a step never indexes into an array.
        assert_eq!(at(&v, &["context", "list", "0"]), None);
    }

    #[test]
    fn a_payload_parses_borrowing_its_strings_and_keeps_a_repeated_keys_last_value() {
        let text = r#"{"b": "plain", "a": "esc\"aped", "b": 2, "n": [1, -2, 3.5, 1e300]}"#;
        let parsed = Json::parse(text).unwrap();
        let Json::Object(members) = &parsed else {
            panic!("an object")
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "n"]);
        assert!(matches!(&members[0].0, std::borrow::Cow::Borrowed(_)));
        assert!(matches!(
            parsed.get("a"),
            Some(Json::String(std::borrow::Cow::Owned(_)))
        ));
        assert_eq!(parsed.get("b").and_then(|b| b.as_number()), Some(&2.into()));
    }

    /// Any JSON: scalars, with keys drawn from a few so that objects repeat them.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
            "[\"\\\\\\n\\t a-z\\u{e9}\\u{4e2d}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-e]{1,2}|\\PC{0,4}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any text, JSON or not (cut, spliced, nested past the parser's depth limit): the borrowed
        /// parse refuses exactly what `serde_json::Value`'s refuses, never panics, and reads the
        /// rest the same.
        #[test]
        fn any_text_parses_or_is_refused_as_serde_json_value_would(
            v in any_json(),
            cut in any::<prop::sample::Index>(),
            splice in "\\PC{0,6}",
            depth in 0usize..200,
            noise in "\\PC{0,40}",
        ) {
            let text = serde_json::to_string(&v).unwrap();
            let at = cut.index(text.len() + 1);
            let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let nested = format!("{}{}{}", "[".repeat(depth), text, "]".repeat(depth));
            for candidate in [
                format!("{}{}{}", &text[..at], splice, &text[at..]),
                text[..at].to_owned(),
                nested,
                noise.clone(),
            ] {
                let theirs = serde_json::from_str::<Value>(&candidate);
                let ours = Json::parse(&candidate);
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}", candidate);
                if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                    prop_assert_eq!(ours.to_value(), theirs);
                }
            }
        }

        /// An object's member is found by its key as `serde_json::Value` finds it, whether the object
        /// is small enough to be scanned or searched in order.
        #[test]
        fn a_member_is_found_as_serde_json_value_finds_it(
            members in prop::collection::vec(("[a-e]{1,3}", any_json()), 0..30),
            probes in prop::collection::vec("[a-e]{1,3}", 0..12),
        ) {
            let expected = Value::Object(members.into_iter().collect());
            let text = serde_json::to_string(&expected).unwrap();
            let parsed = Json::parse(&text).unwrap();
            let keys = expected.members().into_iter().flatten().map(|(k, _)| k.to_owned());
            for key in keys.chain(probes) {
                match (parsed.get(&key), expected.get(&key)) {
                    (Some(ours), Some(theirs)) => prop_assert!(ours.eq_value(theirs), "{}", key),
                    (ours, theirs) => prop_assert_eq!(ours.is_none(), theirs.is_none(), "{}", key),
                }
            }
        }

        /// Whatever the text, the borrowed parse reads as `serde_json::Value` does: the same members
        /// in the same order, the same text when written again, equal by `eq_value`.
        #[test]
        fn the_borrowed_parse_reads_as_serde_json_value_does(v in any_json(), repeat in any::<bool>()) {
            let mut text = serde_json::to_string(&v).unwrap();
            if repeat {
                // A key repeated: `{"k": 1, ...rest, "k": <v>}` keeps the last.
                text = format!("{{\"k\": 1, \"k\": {text}}}");
            }
            let expected: Value = serde_json::from_str(&text).unwrap();
            let parsed = Json::parse(&text).unwrap();
            prop_assert_eq!(parsed.to_value(), expected.clone());
            prop_assert!(parsed.eq_value(&expected));
            prop_assert_eq!(serde_json::to_string(&parsed).unwrap(), serde_json::to_string(&expected).unwrap());
            let keys_of = |j: &Json<'_>| j.members().map(|m| m.map(|(k, _)| k.to_owned()).collect::<Vec<_>>());
            let ours = keys_of(&parsed);
            let theirs = expected.members().map(|m| m.map(|(k, _)| k.to_owned()).collect::<Vec<_>>());
            prop_assert_eq!(ours, theirs);
        }
    }
}
