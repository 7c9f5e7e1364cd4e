//! Tests of the shared boolean tree over a small language of its own (`{"is": name}`: the fact is true),
//! of negation over unknown fields with the tag language's comparisons, of the JSON form of both real
//! languages, and of the cycle finder.

use std::cell::Cell;
use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};

use super::*;
use crate::segments::SegmentDef;
use crate::tags::{Condition, Facts, FieldKey, TagDef};

/// A language whose only leaf is `{"is": name}`: it holds when the fact is known to be true.
#[derive(Debug, Clone, PartialEq)]
enum Toy {
    All(Vec<Toy>),
    Any(Vec<Toy>),
    Not(Box<Toy>),
    Is(String),
}

impl BooleanTree for Toy {
    fn all(parts: Vec<Self>) -> Self {
        Toy::All(parts)
    }

    fn any(parts: Vec<Self>) -> Self {
        Toy::Any(parts)
    }

    fn not(inner: Self) -> Self {
        Toy::Not(Box::new(inner))
    }

    fn shape(&self) -> Shape<'_, Self> {
        match self {
            Toy::All(parts) => Shape::All(parts),
            Toy::Any(parts) => Shape::Any(parts),
            Toy::Not(inner) => Shape::Not(inner),
            Toy::Is(_) => Shape::Leaf,
        }
    }
}

/// The toy language's parser; `max_depth` limits nesting when set.
struct ToyLanguage {
    max_depth: Option<usize>,
}

impl ConditionLanguage for ToyLanguage {
    type Condition = Toy;

    fn max_depth(&self) -> Option<usize> {
        self.max_depth
    }

    fn unknown_key_beside(&self, key: &str) -> String {
        format!("nothing goes beside {key}")
    }

    fn leaf(&mut self, obj: &Map<String, Value>, at: &str) -> Result<Toy, DefinitionError> {
        match obj.get("is") {
            Some(Value::String(name)) if obj.len() == 1 => Ok(Toy::Is(name.clone())),
            _ => Err(DefinitionError::new(at, "must be {\"is\": name}")),
        }
    }
}

fn toy(v: Value) -> Toy {
    parse(&mut ToyLanguage { max_depth: None }, &v, "condition")
        .unwrap_or_else(|e| panic!("{v} should parse: {e}"))
}

fn toy_error(v: Value, max_depth: Option<usize>) -> DefinitionError {
    match parse(&mut ToyLanguage { max_depth }, &v, "condition") {
        Ok(c) => panic!("{v} should be refused, got {c:?}"),
        Err(e) => e,
    }
}

/// Judges `c` over facts given as name → known value; a name not listed is unknown and its leaf does
/// not hold.
fn toy_holds(c: &Toy, facts: &[(&str, bool)]) -> bool {
    c.holds_when(&mut |leaf| match leaf {
        Toy::Is(name) => facts.iter().any(|(n, v)| n == name && *v),
        combinator => panic!("the tree judges combinators itself, got {combinator:?}"),
    })
}

fn toy_json(c: &Toy) -> Value {
    c.to_json_with(&|leaf| match leaf {
        Toy::Is(name) => json!({ "is": name }),
        combinator => panic!("the tree writes combinators itself, got {combinator:?}"),
    })
}

#[test]
fn all_any_and_not_combine_what_the_leaves_say() {
    // Given
    let c = toy(json!({"all": [
        {"is": "a"},
        {"any": [{"is": "b"}, {"is": "c"}]},
        {"not": {"is": "d"}},
    ]}));
    // Then
    assert!(toy_holds(&c, &[("a", true), ("b", true), ("d", false)]));
    assert!(toy_holds(&c, &[("a", true), ("c", true)]));
    assert!(!toy_holds(&c, &[("a", true), ("b", false), ("c", false)]));
    assert!(!toy_holds(&c, &[("a", false), ("b", true)]));
    assert!(!toy_holds(&c, &[("a", true), ("b", true), ("d", true)]));
}

#[test]
fn a_negation_holds_where_its_part_is_unknown_and_a_double_negation_does_not() {
    // Given
    let not = toy(json!({"not": {"is": "vip"}}));
    let not_not = toy(json!({"not": {"not": {"is": "vip"}}}));
    // Then: nothing is known about vip
    assert!(toy_holds(&not, &[]));
    assert!(!toy_holds(&not_not, &[]));
    assert!(!toy_holds(&not, &[("vip", true)]));
    assert!(toy_holds(&not_not, &[("vip", true)]));
}

#[test]
fn all_and_any_stop_at_the_first_part_that_decides_them() {
    // Given
    let all = toy(json!({"all": [{"is": "no"}, {"is": "a"}, {"is": "b"}]}));
    let any = toy(json!({"any": [{"is": "yes"}, {"is": "a"}, {"is": "b"}]}));
    let judged = Cell::new(0);
    let mut leaf = |c: &Toy| {
        judged.set(judged.get() + 1);
        matches!(c, Toy::Is(name) if name == "yes")
    };
    // Then
    assert!(!all.holds_when(&mut leaf));
    assert_eq!(judged.replace(0), 1);
    assert!(any.holds_when(&mut leaf));
    assert_eq!(judged.get(), 1);
}

#[test]
fn the_walk_meets_every_leaf_depth_first_in_definition_order() {
    // Given
    let c = toy(json!({"any": [
        {"all": [{"is": "a"}, {"not": {"is": "b"}}]},
        {"is": "c"},
        {"not": {"any": [{"is": "d"}, {"is": "a"}]}},
    ]}));
    // When
    let mut met = Vec::new();
    c.for_each_leaf(&mut |leaf| {
        if let Toy::Is(name) = leaf {
            met.push(name.clone());
        }
    });
    // Then
    assert_eq!(met, ["a", "b", "c", "d", "a"]);
}

#[test]
fn the_json_form_is_what_was_read() {
    // Given
    let v = json!({"all": [{"is": "a"}, {"any": [{"not": {"is": "b"}}, {"is": "c"}]}]});
    // When
    let c = toy(v.clone());
    // Then
    assert_eq!(
        c,
        Toy::All(vec![
            Toy::Is("a".into()),
            Toy::Any(vec![
                Toy::Not(Box::new(Toy::Is("b".into()))),
                Toy::Is("c".into())
            ]),
        ])
    );
    assert_eq!(toy_json(&c).to_string(), v.to_string());
}

#[test]
fn the_parser_names_the_place_of_each_mistake() {
    let cases = [
        (json!([]), "condition", "must be an object"),
        (
            json!({"all": []}),
            "condition.all",
            "must list at least one condition",
        ),
        (
            json!({"any": {"is": "a"}}),
            "condition.any",
            "must be a list of conditions",
        ),
        (
            json!({"all": [{"is": "a"}], "is": "b"}),
            "condition.is",
            "nothing goes beside all",
        ),
        (
            json!({"any": [{"is": "a"}, {"not": {"is": 3}}]}),
            "condition.any[1].not",
            "must be {\"is\": name}",
        ),
    ];
    for (v, field, message) in cases {
        let e = toy_error(v.clone(), None);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            (field, message),
            "{v}"
        );
    }
}

#[test]
fn a_language_may_limit_how_deeply_conditions_nest() {
    // Given
    let v = json!({"not": {"not": {"is": "a"}}});
    // Then: the leaf is at depth 2
    assert!(parse(&mut ToyLanguage { max_depth: Some(3) }, &v, "condition").is_ok());
    let e = toy_error(v, Some(2));
    assert_eq!(e.field, "condition.not.not");
    assert_eq!(e.message, "conditions nest at most 2 deep");
}

/// A profile whose only fact is its country.
struct Country(Option<&'static str>);

impl Facts for Country {
    fn field(&self, _key: FieldKey, name: &str) -> Vec<Value> {
        match (name, self.0) {
            ("country", Some(c)) => vec![json!(c)],
            _ => Vec::new(),
        }
    }
}

#[test]
fn negations_of_tag_comparisons_hold_on_an_unknown_field() {
    // Given
    let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
    let not_eq = json!({"not": {"trait": "country", "op": "eq", "value": "FR"}});
    let neq = json!({"trait": "country", "op": "neq", "value": "FR"});
    let eq = json!({"trait": "country", "op": "eq", "value": "FR"});
    let holds =
        |v: &Value, facts: &Country| Condition::parse(v, "condition").unwrap().holds(facts, now);
    // Then
    for unknown_or_other in [Country(None), Country(Some("DE"))] {
        assert!(holds(&not_eq, &unknown_or_other));
        assert!(holds(&neq, &unknown_or_other));
        assert!(!holds(&eq, &unknown_or_other));
    }
    assert!(!holds(&not_eq, &Country(Some("FR"))));
    assert!(!holds(&neq, &Country(Some("FR"))));
}

#[test]
fn tag_and_segment_definitions_are_written_back_byte_for_byte() {
    // Given: every kind of node of both languages, keys in the order the JSON form writes them (so the
    // comparison holds whether serde_json keeps keys sorted or in insertion order)
    let tag = r#"{"type":"rule","condition":{"all":[{"trait":"country","op":"eq","value":"FR"},{"any":[{"tag":"vip","op":"is_set"},{"not":{"computed":"spend_30d","op":"between","value":[10,20]}}]}]},"value":"vip"}"#;
    let segment = r#"{"name":"Buyers","condition":{"any":[{"segment":"b"},{"not":{"consent":{"channel":"sms","purpose":"marketing"}}},{"all":[{"event":"Order Completed","window":"7d","count":{"op":"gte","value":3}},{"sequence":[{"event":"Product Added"},{"not_event":"Order Completed"}],"within":"2h"},{"trait":"gender","op":"neq","value":"male"}]}]}}"#;
    let tag: Value = serde_json::from_str(tag).unwrap();
    let segment: Value = serde_json::from_str(segment).unwrap();
    // When
    let tag_json = TagDef::parse(&tag).unwrap().to_json();
    let segment_json = SegmentDef::parse(&segment).unwrap().to_json();
    // Then
    assert_eq!(tag_json.to_string(), tag.to_string());
    assert_eq!(segment_json.to_string(), segment.to_string());
}

fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    edges
        .iter()
        .map(|(name, refs)| {
            (
                name.to_string(),
                refs.iter().map(|r| r.to_string()).collect(),
            )
        })
        .collect()
}

fn cycle_in(defs: &BTreeMap<String, Vec<String>>, start: &str) -> Option<Vec<String>> {
    find_cycle(start, |at| defs.get(at).cloned())
}

#[test]
fn the_cycle_finder_gives_the_path_back_to_the_start() {
    // Given
    let defs = graph(&[
        ("a", &["x", "b"]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("self", &["self"]),
    ]);
    // Then
    assert_eq!(cycle_in(&defs, "a").unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(cycle_in(&defs, "c").unwrap(), ["c", "a", "b", "c"]);
    assert_eq!(cycle_in(&defs, "self").unwrap(), ["self", "self"]);
}

#[test]
fn undefined_names_shared_inputs_and_loops_elsewhere_are_no_cycle() {
    // Given: d and e share f; g and h loop without reaching d
    let defs = graph(&[
        ("d", &["e", "f", "g", "missing"]),
        ("e", &["f"]),
        ("f", &[]),
        ("g", &["h"]),
        ("h", &["g"]),
    ]);
    // Then
    assert_eq!(cycle_in(&defs, "d"), None);
    assert_eq!(cycle_in(&defs, "missing"), None);
    assert_eq!(cycle_in(&defs, "g").unwrap(), ["g", "h", "g"]);
}
