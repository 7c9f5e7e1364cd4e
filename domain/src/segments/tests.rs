//! Given/when/then tests of segment definitions: parsing and its errors, evaluation over facts (negation on
//! the unknown, event conditions through their hidden traits, segment references), cycles, and properties
//! of parse over arbitrary JSON.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::computed::{DefinitionError, Op, Window};

/// A profile's facts: every name with its values, and the segments it is in.
#[derive(Default)]
struct Profile {
    fields: BTreeMap<String, Vec<Value>>,
    segments: BTreeSet<String>,
    /// `channel:purpose` granted.
    consents: BTreeSet<String>,
}

impl Profile {
    fn with(mut self, name: &str, value: Value) -> Self {
        self.fields.entry(name.to_string()).or_default().push(value);
        self
    }

    fn in_(mut self, id: &str) -> Self {
        self.segments.insert(id.to_string());
        self
    }

    fn consenting(mut self, channel: &str, purpose: &str) -> Self {
        self.consents.insert(format!("{channel}:{purpose}"));
        self
    }
}

impl Facts for Profile {
    fn field(&self, _key: FieldKey, name: &str) -> Vec<Value> {
        self.fields.get(name).cloned().unwrap_or_default()
    }
}

impl SegmentFacts for Profile {
    fn in_segment(&self, id: &str) -> bool {
        self.segments.contains(id)
    }

    fn consents(&self, channel: &str, purpose: &str) -> bool {
        self.consents.contains(&format!("{channel}:{purpose}"))
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn segment(condition: Value) -> SegmentDef {
    let v = json!({"name": "test", "condition": condition});
    SegmentDef::parse(&v).unwrap_or_else(|e| panic!("{v} should parse: {e}"))
}

fn holds(def: &SegmentDef, profile: &Profile) -> bool {
    def.holds("s", profile, now())
}

fn error(condition: Value) -> DefinitionError {
    let v = json!({"condition": condition});
    match SegmentDef::parse(&v) {
        Ok(def) => panic!("{v} should be refused, got {def:?}"),
        Err(e) => e,
    }
}

fn round_trips(def: &SegmentDef) {
    assert_eq!(SegmentDef::parse(&def.to_json()).as_ref(), Ok(def));
}

// --- parsing -------------------------------------------------------------------------------------------

#[test]
fn each_shape_parses_and_survives_its_json() {
    let shapes = [
        json!({"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"tag": "vip", "op": "is_set"}]}),
        json!({"any": [{"computed": "spend_30d", "op": "gte", "value": 100}, {"segment": "b"}]}),
        json!({"not": {"trait": "gender", "op": "neq", "value": "male"}}),
        json!({"segment": "vip"}),
        json!({"event": "Order Completed",
               "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}],
               "count": {"op": "gte", "value": 3}, "window": "7d"}),
        json!({"event": "Order Completed",
               "aggregate": {"function": "sum", "property": "properties.total"},
               "op": "gte", "value": 1000}),
        json!({"event": "Signed Up"}),
    ];
    for shape in shapes {
        let def = segment(shape.clone());
        round_trips(&def);
        assert_eq!(def.to_json()["condition"], shape);
    }
}

#[test]
fn a_name_is_optional_and_at_most_200_characters() {
    let bare = SegmentDef::parse(&json!({"condition": {"segment": "a"}})).unwrap();
    assert_eq!(bare.name, None);
    round_trips(&bare);
    let long = "é".repeat(201);
    let e = SegmentDef::parse(&json!({"name": long, "condition": {"segment": "a"}})).unwrap_err();
    assert_eq!(e.field, "name");
    let e = SegmentDef::parse(&json!({"name": "x"})).unwrap_err();
    assert_eq!(e.field, "condition");
    let e = SegmentDef::parse(&json!({"condition": {"segment": "a"}, "rules": []})).unwrap_err();
    assert_eq!(e.field, "rules");
}

#[test]
fn a_count_condition_compiles_to_a_hidden_count_trait() {
    // Given
    let def = segment(json!({"event": "Order Completed",
        "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}],
        "count": {"op": "gte", "value": 3}, "window": "7d"}));
    // When
    let hidden = def.hidden_traits("shoe_buyers");
    // Then
    assert_eq!(hidden.len(), 1);
    let (name, trait_def) = &hidden[0];
    assert_eq!(name, "seg:shoe_buyers:0");
    assert_eq!(trait_def.event, "Order Completed");
    assert_eq!(trait_def.function, Function::Count);
    assert_eq!(trait_def.window, Window::Days(7));
    assert_eq!(trait_def.filters.len(), 1);
    let SegmentCondition::Event { cmp, .. } = &def.condition else {
        panic!("an event condition, got {:?}", def.condition);
    };
    assert_eq!((cmp.op, &cmp.value), (Op::Gte, &json!(3)));
}

#[test]
fn an_aggregate_condition_compiles_to_its_function_over_all_time() {
    let def = segment(json!({"event": "Order Completed",
        "aggregate": {"function": "sum", "property": "properties.total"},
        "op": "gte", "value": 1000}));
    let (_, trait_def) = &def.hidden_traits("big")[0];
    assert_eq!(trait_def.function, Function::Sum);
    assert_eq!(trait_def.window, Window::All);
    assert_eq!(
        trait_def.property.as_ref().map(|p| p.as_str()),
        Some("properties.total")
    );
}

#[test]
fn an_event_condition_alone_means_at_least_one() {
    let def = segment(json!({"event": "Signed Up"}));
    let SegmentCondition::Event { def: t, cmp, .. } = &def.condition else {
        panic!("an event condition, got {:?}", def.condition);
    };
    assert_eq!(t.function, Function::Count);
    assert_eq!((cmp.op, &cmp.value), (Op::Gte, &json!(1)));
}

#[test]
fn event_conditions_are_numbered_depth_first() {
    let def = segment(json!({"all": [
        {"event": "A"},
        {"any": [{"trait": "x", "op": "is_set"}, {"not": {"event": "B"}}]},
        {"event": "C", "count": {"op": "lt", "value": 2}},
    ]}));
    let hidden: Vec<(String, String)> = def
        .hidden_traits("s")
        .into_iter()
        .map(|(name, t)| (name, t.event))
        .collect();
    assert_eq!(
        hidden,
        [("seg:s:0", "A"), ("seg:s:1", "B"), ("seg:s:2", "C")]
            .map(|(n, e)| (n.to_string(), e.to_string()))
    );
}

#[test]
fn references_list_each_segment_once() {
    let def = segment(
        json!({"all": [{"segment": "a"}, {"any": [{"segment": "b"}, {"not": {"segment": "a"}}]}]}),
    );
    assert_eq!(def.references(), ["a", "b"]);
}

// --- errors name the place ------------------------------------------------------------------------------

#[test]
fn an_unknown_key_is_refused_where_it_is() {
    let e = error(
        json!({"all": [{"trait": "a", "op": "is_set"}, {"trait": "b", "op": "is_set", "colour": 1}]}),
    );
    assert_eq!(e.field, "condition.all[1].colour");
    let e = error(json!({"any": [{"event": "A", "within": "2h"}]}));
    assert_eq!(e.field, "condition.any[0].within");
    let e = error(json!({"all": [{"segment": "a"}], "op": "eq"}));
    assert_eq!(e.field, "condition.op");
    let e = error(json!({"bogus": 1}));
    assert_eq!(e.field, "condition");
}

#[test]
fn a_node_of_two_kinds_is_refused() {
    let e = error(json!({"trait": "a", "event": "A", "op": "is_set"}));
    assert_eq!(e.field, "condition.event");
    assert!(e.message.contains("one kind"), "{}", e.message);
    let e = error(json!({"all": [{"segment": "a"}], "any": [{"segment": "b"}]}));
    assert_eq!(e.field, "condition.any");
}

#[test]
fn an_empty_all_or_any_is_refused() {
    assert_eq!(error(json!({"all": []})).field, "condition.all");
    assert_eq!(
        error(json!({"not": {"any": []}})).field,
        "condition.not.any"
    );
}

#[test]
fn a_bad_operator_names_its_place() {
    let e = error(
        json!({"all": [{"segment": "a"}, {"any": [{"trait": "x", "op": "like", "value": 1}]}]}),
    );
    assert_eq!(e.field, "condition.all[1].any[0].op");
}

#[test]
fn a_count_refuses_a_non_numeric_operator_and_says_so() {
    // Given a count compared with a string operator
    let e = error(json!({"all": [{"segment": "a"},
        {"event": "A", "count": {"op": "contains", "value": "x"}}]}));
    // Then
    assert_eq!(e.field, "condition.all[1].count.op");
    assert!(e.message.contains("numeric"), "{}", e.message);
    let e = error(json!({"event": "A", "count": {"op": "gte", "value": "2024-01-01"}}));
    assert_eq!(e.field, "condition.count.value");
    let e = error(json!({"event": "A", "count": {"op": "gte", "value": 1, "x": 1}}));
    assert_eq!(e.field, "condition.count.x");
}

#[test]
fn an_aggregate_refuses_a_non_numeric_operator_and_function() {
    let e = error(
        json!({"event": "A", "aggregate": {"function": "sum", "property": "properties.total"},
        "op": "is_set"}),
    );
    assert_eq!(e.field, "condition.op");
    assert!(e.message.contains("numeric"), "{}", e.message);
    let e = error(json!({"any": [{"event": "A",
        "aggregate": {"function": "unique_list", "property": "properties.sku"}, "op": "gt", "value": 1}]}));
    assert_eq!(e.field, "condition.any[0].aggregate.function");
    let e = error(json!({"any": [{"event": "A",
        "aggregate": {"function": "median", "property": "properties.total"}, "op": "gt", "value": 1}]}));
    assert_eq!(e.field, "condition.any[0].aggregate.function");
    let e = error(json!({"event": "A", "aggregate": {"function": "sum"}, "op": "gt", "value": 1}));
    assert_eq!(e.field, "condition.aggregate.property");
    let e = error(
        json!({"event": "A", "aggregate": {"function": "sum", "property": "properties.total"}}),
    );
    assert_eq!(e.field, "condition.op");
}

#[test]
fn count_and_aggregate_together_or_op_without_aggregate_are_refused() {
    let e = error(json!({"event": "A", "count": {"op": "gte", "value": 1},
        "aggregate": {"function": "sum", "property": "properties.total"}, "op": "gt", "value": 1}));
    assert_eq!(e.field, "condition.aggregate");
    let e = error(json!({"event": "A", "op": "gte", "value": 3}));
    assert_eq!(e.field, "condition.op");
}

#[test]
fn a_bad_where_inside_an_event_condition_names_its_place() {
    let e = error(json!({"all": [{"segment": "a"}, {"event": "A",
        "where": [{"property": "properties.category", "op": "sorta", "value": "x"}]}]}));
    assert_eq!(e.field, "condition.all[1].where[0].op");
    let e = error(json!({"event": "A", "window": "7y"}));
    assert_eq!(e.field, "condition.window");
    let e = error(json!({"event": ""}));
    assert_eq!(e.field, "condition.event");
}

#[test]
fn a_sequence_compiles_to_a_hidden_sequence_trait() {
    let abandoned = segment(
        json!({"sequence": [{"event": "Product Added"}, {"not_event": "Order Completed"}],
        "within": "2h"}),
    );
    round_trips(&abandoned);
    let hidden = abandoned.hidden_traits("s");
    assert_eq!(hidden.len(), 1);
    let then = hidden[0].1.then.as_ref().expect("a sequence trait");
    assert_eq!(hidden[0].1.event, "Product Added");
    assert_eq!(then.event, "Order Completed");
    assert!(then.absent);
    assert_eq!(then.within, chrono::Duration::hours(2));
    // It holds when its hidden trait is true.
    assert!(holds(
        &abandoned,
        &Profile::default().with("seg:s:0", json!(true))
    ));
    assert!(!holds(
        &abandoned,
        &Profile::default().with("seg:s:0", json!(false))
    ));
    assert!(!holds(&abandoned, &Profile::default()));
    // Errors name the place.
    let e = error(json!({"sequence": [{"event": "A"}], "within": "2h"}));
    assert_eq!(e.field, "condition.sequence");
    let e = error(json!({"any": [{"sequence": [{"event": "A"}, {"event": "B"}]}]}));
    assert_eq!(e.field, "condition.any[0].within");
    let e = error(json!({"sequence": [{"event": "A"}, {"event": "B"}], "within": "soon"}));
    assert_eq!(e.field, "condition.within");
    let e = error(json!({"sequence": [{"not_event": "A"}, {"event": "B"}], "within": "1h"}));
    assert_eq!(e.field, "condition.sequence[0].not_event");
}

#[test]
fn nesting_is_bounded() {
    let mut c = json!({"segment": "a"});
    for _ in 0..MAX_DEPTH {
        c = json!({"not": c});
    }
    assert!(error(c).message.contains("nest"));
}

// --- evaluation -----------------------------------------------------------------------------------------

#[test]
fn all_any_and_not_combine() {
    // Given
    let def = segment(json!({"all": [
        {"trait": "plan", "op": "eq", "value": "pro"},
        {"any": [{"tag": "vip", "op": "is_set"}, {"computed": "spend_30d", "op": "gte", "value": 100}]},
        {"not": {"trait": "country", "op": "eq", "value": "FR"}},
    ]}));
    let pro = || Profile::default().with("plan", json!("pro"));
    // Then
    assert!(holds(&def, &pro().with("vip", json!(true))));
    assert!(holds(&def, &pro().with("spend_30d", json!(150))));
    assert!(!holds(&def, &pro()));
    assert!(!holds(
        &def,
        &pro().with("vip", json!(true)).with("country", json!("FR"))
    ));
    assert!(!holds(&def, &Profile::default().with("vip", json!(true))));
}

#[test]
fn a_negation_holds_on_an_unknown_field() {
    // Given a profile without gender
    let def = segment(json!({"trait": "gender", "op": "neq", "value": "male"}));
    // Then it is in the segment, and a male is not
    assert!(holds(&def, &Profile::default()));
    assert!(holds(
        &def,
        &Profile::default().with("gender", json!("female"))
    ));
    assert!(!holds(
        &def,
        &Profile::default().with("gender", json!("male"))
    ));
}

#[test]
fn a_count_condition_compares_the_hidden_trait() {
    // Given at least 3 shoe orders in 7 days
    let def = segment(json!({"event": "Order Completed",
        "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}],
        "count": {"op": "gte", "value": 3}, "window": "7d"}));
    // Then the value of seg:s:0 decides
    assert!(holds(&def, &Profile::default().with("seg:s:0", json!(3))));
    assert!(!holds(&def, &Profile::default().with("seg:s:0", json!(2))));
    assert!(!holds(&def, &Profile::default()));
    // and another segment's trait does not count
    assert!(!holds(&def, &Profile::default().with("seg:t:0", json!(9))));
}

#[test]
fn a_count_of_an_unknown_is_zero() {
    let fewer = segment(json!({"event": "Order Completed", "count": {"op": "lt", "value": 2}}));
    assert!(holds(&fewer, &Profile::default()));
    assert!(holds(
        &fewer,
        &Profile::default().with("seg:s:0", Value::Null)
    ));
    let none = segment(json!({"event": "Order Completed", "count": {"op": "eq", "value": 0}}));
    assert!(holds(&none, &Profile::default()));
    assert!(!holds(&none, &Profile::default().with("seg:s:0", json!(1))));
}

#[test]
fn an_aggregate_condition_compares_the_hidden_trait() {
    let def = segment(json!({"event": "Order Completed",
        "aggregate": {"function": "sum", "property": "properties.total"},
        "op": "between", "value": [1000, 5000]}));
    assert!(holds(
        &def,
        &Profile::default().with("seg:s:0", json!(1000))
    ));
    assert!(holds(
        &def,
        &Profile::default().with("seg:s:0", json!(4999.5))
    ));
    assert!(!holds(
        &def,
        &Profile::default().with("seg:s:0", json!(5001))
    ));
    assert!(!holds(&def, &Profile::default()));
}

#[test]
fn an_unknown_average_is_unknown_not_zero() {
    let def = segment(json!({"event": "Order Completed",
        "aggregate": {"function": "average", "property": "properties.total"},
        "op": "lt", "value": 50}));
    assert!(!holds(&def, &Profile::default()));
    assert!(holds(&def, &Profile::default().with("seg:s:0", json!(20))));
}

#[test]
fn event_conditions_read_their_own_hidden_traits() {
    let def = segment(json!({"all": [
        {"event": "A"},
        {"not": {"event": "B"}},
    ]}));
    let did_a = Profile::default().with("seg:s:0", json!(1));
    assert!(holds(&def, &did_a));
    assert!(!holds(&def, &did_a.with("seg:s:1", json!(1))));
}

#[test]
fn segment_references_give_union_intersection_and_difference() {
    // Given three profiles: in a only, in b only, in both
    let only_a = Profile::default().in_("a");
    let only_b = Profile::default().in_("b");
    let both = Profile::default().in_("a").in_("b");
    let union = segment(json!({"any": [{"segment": "a"}, {"segment": "b"}]}));
    let intersection = segment(json!({"all": [{"segment": "a"}, {"segment": "b"}]}));
    let difference = segment(json!({"all": [{"segment": "a"}, {"not": {"segment": "b"}}]}));
    // Then
    let members =
        |def: &SegmentDef| [&only_a, &only_b, &both, &Profile::default()].map(|p| holds(def, p));
    assert_eq!(members(&union), [true, true, true, false]);
    assert_eq!(members(&intersection), [false, false, true, false]);
    assert_eq!(members(&difference), [true, false, false, false]);
}

// --- cycles ---------------------------------------------------------------------------------------------

fn defs(list: &[(&str, Value)]) -> BTreeMap<String, SegmentDef> {
    list.iter()
        .map(|(id, c)| (id.to_string(), segment(c.clone())))
        .collect()
}

#[test]
fn a_segment_that_reads_itself_through_another_is_a_cycle() {
    let defs = defs(&[
        (
            "a",
            json!({"any": [{"segment": "b"}, {"trait": "x", "op": "is_set"}]}),
        ),
        ("b", json!({"not": {"segment": "a"}})),
        ("c", json!({"segment": "a"})),
    ]);
    assert_eq!(
        segment_cycle(&defs, "a"),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    assert_eq!(segment_cycle(&defs, "c"), None);
}

#[test]
fn a_segment_that_reads_itself_is_a_cycle() {
    let defs = defs(&[("a", json!({"all": [{"segment": "a"}]}))]);
    assert_eq!(
        segment_cycle(&defs, "a"),
        Some(vec!["a".into(), "a".into()])
    );
}

#[test]
fn a_chain_without_a_loop_and_undefined_references_are_no_cycle() {
    let defs = defs(&[
        ("a", json!({"segment": "b"})),
        (
            "b",
            json!({"all": [{"segment": "c"}, {"segment": "missing"}]}),
        ),
        ("c", json!({"trait": "x", "op": "is_set"})),
    ]);
    for id in ["a", "b", "c", "missing"] {
        assert_eq!(segment_cycle(&defs, id), None, "{id}");
    }
}

// --- properties -----------------------------------------------------------------------------------------

fn any_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "name",
        "condition",
        "all",
        "any",
        "not",
        "segment",
        "trait",
        "tag",
        "computed",
        "event",
        "sequence",
        "where",
        "window",
        "count",
        "aggregate",
        "function",
        "property",
        "op",
        "value",
        "within",
        "x",
    ])
    .prop_map(String::from);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|x| json!(x)),
        prop::sample::select(vec![
            "eq",
            "neq",
            "gte",
            "between",
            "in",
            "contains",
            "is_set",
            "sum",
            "count",
            "unique_list",
            "7d",
            "all",
            "properties.total",
            "Order Completed",
            "",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_numeric_comparison() -> impl Strategy<Value = Value> {
    prop_oneof![
        (
            prop::sample::select(vec!["eq", "neq", "gt", "gte", "lt", "lte"]),
            0i64..1000
        )
            .prop_map(|(op, n)| json!({"op": op, "value": n})),
        (0i64..100, 0i64..100).prop_map(|(a, d)| json!({"op": "between", "value": [a, a + d]})),
        prop::collection::vec(0i64..10, 1..4).prop_map(|l| json!({"op": "not_in", "value": l})),
    ]
}

fn any_condition() -> impl Strategy<Value = Value> {
    let field = (
        prop::sample::select(vec!["trait", "tag", "computed"]),
        "[a-z_]{1,8}",
        prop_oneof![
            "[a-z]{0,5}".prop_map(|s| json!({"op": "neq", "value": s})),
            Just(json!({"op": "is_set"})),
            (-1000i64..1000).prop_map(|n| json!({"op": "gte", "value": n})),
        ],
    )
        .prop_map(|(key, name, mut cmp)| {
            cmp[key] = json!(name);
            cmp
        });
    let reference = "[a-z]{1,6}".prop_map(|id| json!({"segment": id}));
    let window = prop::option::of(prop::sample::select(vec!["7d", "24h", "all"]));
    let filters = prop::option::of(
        "[a-z]{1,5}"
            .prop_map(|s| json!([{"property": "properties.category", "op": "eq", "value": s}])),
    );
    let count = (
        window.clone(),
        filters.clone(),
        prop::option::of(any_numeric_comparison()),
    )
        .prop_map(|(window, filters, count)| {
            let mut c = json!({"event": "Order Completed"});
            if let Some(w) = window {
                c["window"] = json!(w);
            }
            if let Some(f) = filters {
                c["where"] = f;
            }
            if let Some(count) = count {
                c["count"] = count;
            }
            c
        });
    let aggregate = (
        window,
        filters,
        prop::sample::select(vec!["sum", "min", "max", "average", "distinct_count"]),
        any_numeric_comparison(),
    )
        .prop_map(|(window, filters, function, mut c)| {
            c["event"] = json!("Order Completed");
            c["aggregate"] = json!({"function": function, "property": "properties.total"});
            if let Some(w) = window {
                c["window"] = json!(w);
            }
            if let Some(f) = filters {
                c["where"] = f;
            }
            c
        });
    prop_oneof![field, reference, count, aggregate].prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|l| json!({"all": l})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|l| json!({"any": l})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_json(v in any_json()) {
        if let Ok(def) = SegmentDef::parse(&v) {
            prop_assert_eq!(SegmentDef::parse(&def.to_json()), Ok(def));
        }
        let wrapped = json!({"condition": v});
        if let Ok(def) = SegmentDef::parse(&wrapped) {
            prop_assert_eq!(SegmentDef::parse(&def.to_json()), Ok(def));
        }
    }

    #[test]
    fn a_valid_definition_survives_its_json(
        name in prop::option::of("[ -~]{0,20}"),
        condition in any_condition(),
    ) {
        let mut v = json!({"condition": condition});
        if let Some(name) = name {
            v["name"] = json!(name);
        }
        let def = SegmentDef::parse(&v);
        prop_assert!(def.is_ok(), "{} should parse: {:?}", v, def);
        let def = def.unwrap();
        prop_assert_eq!(SegmentDef::parse(&def.to_json()), Ok(def.clone()));
        // Every event condition has its own hidden trait.
        let names: BTreeSet<String> = def.hidden_traits("s").into_iter().map(|(n, _)| n).collect();
        let events = def.to_json().to_string().matches("\"event\"").count();
        prop_assert_eq!(names.len(), events);
    }
}

#[test]
fn consent_is_a_condition() {
    let sms =
        segment(json!({"all": [{"consent": "sms"}, {"trait": "city", "op": "eq", "value": "sh"}]}));
    let shanghai = Profile::default().with("city", json!("sh"));
    assert!(
        !holds(&sms, &shanghai),
        "no consent recorded: not reachable"
    );
    assert!(holds(&sms, &shanghai.consenting("sms", "marketing")));
    let service = segment(json!({"consent": {"channel": "email", "purpose": "service"}}));
    assert!(!holds(
        &service,
        &Profile::default().consenting("email", "marketing")
    ));
    assert!(holds(
        &service,
        &Profile::default().consenting("email", "service")
    ));
    let not_sms = segment(json!({"not": {"consent": "sms"}}));
    assert!(holds(&not_sms, &Profile::default()));
    assert_eq!(error(json!({"consent": "fax"})).field, "condition.consent");
    assert_eq!(
        error(json!({"consent": {"channel": "sms", "purpose": "ads"}})).field,
        "condition.consent.purpose"
    );
    assert_eq!(
        error(json!({"consent": {"chanel": "sms"}})).field,
        "condition.consent.chanel"
    );
    // The canonical JSON reads back the same.
    assert_eq!(segment(service.to_json()["condition"].clone()), service);
}

#[test]
fn a_segment_holds_at_most_its_bound_of_event_conditions_and_sequences() {
    let event = json!({"event": "Order Completed", "count": {"op": "gte", "value": 1}});
    let sequence = json!({"sequence": [{"event": "Product Added"}, {"not_event": "Order Completed"}],
                          "within": "2h"});
    for last in [&event, &sequence] {
        let mut parts = vec![event.clone(); MAX_EVENT_CONDITIONS - 1];
        parts.push(last.clone());
        segment(json!({"all": parts.clone()}));
        parts.push(last.clone());
        let e = error(json!({"all": parts}));
        assert!(
            e.to_string()
                .contains(&format!("at most {MAX_EVENT_CONDITIONS} event conditions")),
            "{e}"
        );
    }
}
