//! Given/when/then tests of tag definitions: parsing and its errors, each kind's evaluation, RFM scoring and
//! groups, cycle detection, and properties of parse over arbitrary JSON.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// A profile's facts: every name with its values.
#[derive(Default)]
struct Profile(BTreeMap<String, Vec<Value>>);

impl Profile {
    fn with(mut self, name: &str, value: Value) -> Self {
        self.0.entry(name.to_string()).or_default().push(value);
        self
    }
}

impl Facts for Profile {
    fn field(&self, _key: FieldKey, name: &str) -> Vec<Value> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn tag(v: Value) -> TagDef {
    TagDef::parse(&v).unwrap_or_else(|e| panic!("{v} should parse: {e}"))
}

fn eval(def: &TagDef, profile: &Profile) -> Option<TagValue> {
    def.evaluate("t", profile, None, now())
}

fn error_field(v: Value) -> String {
    match TagDef::parse(&v) {
        Ok(def) => panic!("{v} should be refused, got {def:?}"),
        Err(e) => e.field,
    }
}

// --- rule tags -----------------------------------------------------------------------------------------

#[test]
fn a_rule_tag_is_present_with_its_value_when_the_condition_holds() {
    // Given
    let def = tag(json!({
        "type": "rule",
        "condition": {"computed": "spend_30d", "op": "gte", "value": 1000},
        "value": "vip",
    }));
    // When
    let big = eval(&def, &Profile::default().with("spend_30d", json!(1500)));
    let small = eval(&def, &Profile::default().with("spend_30d", json!(10)));
    // Then
    assert_eq!(big, Some(TagValue::plain(json!("vip"))));
    assert_eq!(small, None);
}

#[test]
fn a_rule_tag_without_value_is_true() {
    let def = tag(json!({"type": "rule", "condition": {"tag": "vip", "op": "is_set"}}));
    assert_eq!(
        eval(&def, &Profile::default().with("vip", json!("gold"))),
        Some(TagValue::plain(json!(true)))
    );
    assert_eq!(eval(&def, &Profile::default()), None);
}

#[test]
fn a_negation_holds_on_an_unknown_field() {
    // Given a profile without gender
    let def = tag(json!({
        "type": "rule",
        "condition": {"trait": "gender", "op": "neq", "value": "male"},
    }));
    // When / Then
    assert!(eval(&def, &Profile::default()).is_some());
    assert!(eval(&def, &Profile::default().with("gender", json!("female"))).is_some());
    assert!(eval(&def, &Profile::default().with("gender", json!("male"))).is_none());
}

#[test]
fn nested_all_any_and_not_combine() {
    // Given: (country = FR or country = BE) and not (vip is set) and spend ≥ 100
    let def = tag(json!({
        "type": "rule",
        "condition": {"all": [
            {"any": [
                {"trait": "country", "op": "eq", "value": "FR"},
                {"trait": "country", "op": "eq", "value": "BE"},
            ]},
            {"not": {"tag": "vip", "op": "is_set"}},
            {"computed": "spend", "op": "gte", "value": 100},
        ]},
        "value": "prospect",
    }));
    let base = || Profile::default().with("spend", json!(150));
    // Then
    assert!(eval(&def, &base().with("country", json!("BE"))).is_some());
    assert!(eval(&def, &base().with("country", json!("DE"))).is_none());
    assert!(eval(
        &def,
        &base().with("country", json!("FR")).with("vip", json!(true))
    )
    .is_none());
    assert!(eval(&def, &Profile::default().with("country", json!("FR"))).is_none());
    assert_eq!(def.inputs("prospect"), ["country", "vip", "spend"]);
}

#[test]
fn a_condition_keeps_the_key_that_named_its_field() {
    let v = json!({"any": [
        {"trait": "a", "op": "eq", "value": 1},
        {"tag": "b", "op": "is_set"},
        {"computed": "c", "op": "gt", "value": 2},
    ]});
    let c = Condition::parse(&v, "condition").unwrap();
    let Condition::Any(parts) = &c else {
        panic!("{c:?}")
    };
    let keys: Vec<FieldKey> = parts
        .iter()
        .map(|p| match p {
            Condition::Field { key, .. } => *key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, [FieldKey::Trait, FieldKey::Tag, FieldKey::Computed]);
    assert_eq!(Condition::parse(&c.to_json(), "condition").unwrap(), c);
}

// --- value tags ----------------------------------------------------------------------------------------

fn spend_buckets() -> TagDef {
    tag(json!({
        "type": "value",
        "trait": "spend_30d",
        "buckets": [
            {"value": "low", "lt": 100},
            {"value": "mid", "gte": 100, "lt": 1000},
            {"value": "high", "gte": 1000},
        ],
    }))
}

#[test]
fn a_value_tag_takes_the_first_bucket_whose_bounds_hold() {
    let def = spend_buckets();
    let at = |x: Value| eval(&def, &Profile::default().with("spend_30d", x)).map(|v| v.value);
    assert_eq!(at(json!(-5)), Some(json!("low")));
    assert_eq!(at(json!(99.99)), Some(json!("low")));
    assert_eq!(at(json!(100)), Some(json!("mid")));
    assert_eq!(at(json!(999.5)), Some(json!("mid")));
    assert_eq!(at(json!(1000)), Some(json!("high")));
    // A number held as a string counts; anything else is unknown.
    assert_eq!(at(json!("150")), Some(json!("mid")));
    assert_eq!(at(json!("lots")), None);
    assert_eq!(eval(&def, &Profile::default()), None);
    assert_eq!(def.inputs("spend_band"), ["spend_30d"]);
}

#[test]
fn a_value_tag_is_absent_when_no_bucket_holds() {
    // Given exclusive bounds that leave gaps
    let def = tag(json!({
        "type": "value",
        "trait": "age",
        "buckets": [{"value": "teen", "gt": 12, "lte": 19}, {"value": "twenties", "gt": 19, "lt": 30}],
    }));
    let at = |x: i64| eval(&def, &Profile::default().with("age", json!(x))).map(|v| v.value);
    assert_eq!(at(12), None);
    assert_eq!(at(13), Some(json!("teen")));
    assert_eq!(at(19), Some(json!("teen")));
    assert_eq!(at(20), Some(json!("twenties")));
    assert_eq!(at(30), None);
}

// --- manual tags ---------------------------------------------------------------------------------------

#[test]
fn a_manual_tag_is_never_evaluated() {
    let def = tag(json!({"type": "manual"}));
    assert_eq!(eval(&def, &Profile::default().with("t", json!("x"))), None);
    assert!(def.inputs("t").is_empty());
    assert!(def.hidden_traits("t").is_empty());
}

// --- RFM -----------------------------------------------------------------------------------------------

fn inputs(r: f64, f: f64, m: f64) -> RfmInputs {
    RfmInputs {
        recency_days: r,
        frequency: f,
        monetary: m,
    }
}

#[test]
fn quintiles_of_1_to_100_are_20_40_60_80() {
    // Given a population whose every input runs 1..=100, listed backwards
    let population: Vec<RfmInputs> = (1..=100)
        .rev()
        .map(|i| inputs(i as f64, i as f64, i as f64))
        .collect();
    // When
    let t = RfmThresholds::from_population(&population).unwrap();
    // Then
    assert_eq!(t.recency_days, [20.0, 40.0, 60.0, 80.0]);
    assert_eq!(t.frequency, [20.0, 40.0, 60.0, 80.0]);
    assert_eq!(t.monetary, [20.0, 40.0, 60.0, 80.0]);
    // And each score takes a fifth of the population
    let s = |x: f64| scores(&inputs(x, x, x), &t);
    assert_eq!(s(1.0), RfmScores { r: 5, f: 1, m: 1 });
    assert_eq!(s(20.0), RfmScores { r: 5, f: 1, m: 1 });
    assert_eq!(s(21.0), RfmScores { r: 4, f: 2, m: 2 });
    assert_eq!(s(60.0), RfmScores { r: 3, f: 3, m: 3 });
    assert_eq!(s(80.0), RfmScores { r: 2, f: 4, m: 4 });
    assert_eq!(s(81.0), RfmScores { r: 1, f: 5, m: 5 });
    let mut per_score = [0; 5];
    for p in &population {
        per_score[scores(p, &t).f as usize - 1] += 1;
    }
    assert_eq!(per_score, [20; 5]);
}

#[test]
fn quintiles_use_the_nearest_rank_and_leave_out_profiles_without_purchases() {
    // Given three buyers and one profile without a purchase
    let population = [
        inputs(3.0, 5.0, 30.0),
        inputs(1.0, 1.0, 10.0),
        inputs(2.0, 2.0, 20.0),
        inputs(0.0, 0.0, 0.0),
    ];
    // When
    let t = RfmThresholds::from_population(&population).unwrap();
    // Then ranks ⌈k·3/5⌉ = 1, 2, 2, 3
    assert_eq!(t.recency_days, [1.0, 2.0, 2.0, 3.0]);
    assert_eq!(t.frequency, [1.0, 2.0, 2.0, 5.0]);
    assert_eq!(t.monetary, [10.0, 20.0, 20.0, 30.0]);
    assert_eq!(RfmThresholds::from_population(&[]), None);
    assert_eq!(
        RfmThresholds::from_population(&[inputs(1.0, 0.0, 5.0)]),
        None
    );
}

#[test]
fn every_named_group_is_reached_in_table_order() {
    let g = |r, f, m| group(&RfmScores { r, f, m });
    assert_eq!(g(5, 5, 5), "champions");
    assert_eq!(g(4, 4, 4), "champions");
    assert_eq!(g(4, 3, 4), "loyal"); // fm 3.5
    assert_eq!(g(3, 5, 5), "loyal");
    assert_eq!(g(5, 1, 5), "loyal"); // one big recent purchase: loyal comes before new
    assert_eq!(g(5, 1, 1), "new");
    assert_eq!(g(5, 1, 4), "new");
    assert_eq!(g(5, 2, 1), "potential");
    assert_eq!(g(3, 1, 1), "potential");
    assert_eq!(g(2, 5, 5), "at_risk");
    assert_eq!(g(1, 3, 3), "at_risk");
    assert_eq!(g(2, 2, 3), "hibernating");
    assert_eq!(g(1, 2, 3), "lost");
    assert_eq!(g(1, 1, 1), "lost");
    // Every score combination falls in one of the named groups, and every group is used.
    let mut seen = std::collections::BTreeSet::new();
    for r in 1..=5 {
        for f in 1..=5 {
            for m in 1..=5 {
                let name = g(r, f, m);
                assert!(GROUPS.contains(&name));
                seen.insert(name);
            }
        }
    }
    assert_eq!(seen.len(), GROUPS.len());
}

fn fixed_rfm() -> TagDef {
    tag(json!({
        "type": "rfm",
        "event": "Order Completed",
        "monetary": "properties.total",
        "window": "365d",
        "scoring": {
            "recency": [7, 30, 90, 180],
            "frequency": [1, 2, 4, 8],
            "monetary": [100, 500, 1000, 5000],
        },
    }))
}

/// A buyer whose last order was `ago` before `now()`.
fn buyer(ago: Duration, count: i64, total: f64) -> Profile {
    let [recency, frequency, monetary] = rfm_trait_names("rfm");
    Profile::default()
        .with(&recency, json!((now() - ago).to_rfc3339()))
        .with(&frequency, json!(count))
        .with(&monetary, json!(total))
}

#[test]
fn an_rfm_tag_with_fixed_thresholds_gives_the_group_with_scores_and_inputs() {
    // Given a buyer whose last order was 3 days and 20 hours ago
    let profile = buyer(Duration::hours(3 * 24 + 20), 7, 1234.5);
    // When
    let value = fixed_rfm().evaluate("rfm", &profile, None, now());
    // Then recency is whole days, rounded down
    assert_eq!(
        value,
        Some(TagValue {
            value: json!("champions"),
            detail: json!({"r": 5, "f": 4, "m": 4, "recency_days": 3, "frequency": 7, "monetary": 1234.5}),
        })
    );
}

#[test]
fn an_rfm_tag_with_fixed_thresholds_reaches_other_groups() {
    let def = fixed_rfm();
    let group_of = |p: &Profile| def.evaluate("rfm", p, None, now()).map(|v| v.value);
    assert_eq!(
        group_of(&buyer(Duration::days(2), 1, 40.0)),
        Some(json!("new"))
    );
    assert_eq!(
        group_of(&buyer(Duration::days(200), 20, 9000.0)),
        Some(json!("at_risk"))
    );
    assert_eq!(
        group_of(&buyer(Duration::days(400), 1, 10.0)),
        Some(json!("lost"))
    );
    // A cut point itself scores low: 30 days → r 4, 2 orders → f 2, 500 → m 2
    let detail = def
        .evaluate("rfm", &buyer(Duration::days(30), 2, 500.0), None, now())
        .unwrap()
        .detail;
    assert_eq!(
        (&detail["r"], &detail["f"], &detail["m"]),
        (&json!(4), &json!(2), &json!(2))
    );
}

#[test]
fn an_rfm_tag_is_absent_without_a_purchase() {
    let def = fixed_rfm();
    let [recency, frequency, _] = rfm_trait_names("rfm");
    assert_eq!(def.evaluate("rfm", &Profile::default(), None, now()), None);
    let zero = Profile::default().with(&frequency, json!(0));
    assert_eq!(def.evaluate("rfm", &zero, None, now()), None);
    let no_time = Profile::default().with(&frequency, json!(3));
    assert_eq!(def.evaluate("rfm", &no_time, None, now()), None);
    // A missing sum is 0, a purchase stamped in the future is 0 days old.
    let future = Profile::default()
        .with(&frequency, json!(3))
        .with(&recency, json!((now() + Duration::hours(5)).to_rfc3339()));
    let detail = def.evaluate("rfm", &future, None, now()).unwrap().detail;
    assert_eq!(
        (&detail["recency_days"], &detail["monetary"]),
        (&json!(0), &json!(0))
    );
}

#[test]
fn an_rfm_tag_with_quantiles_waits_for_the_population_thresholds() {
    // Given
    let def =
        tag(json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total"}));
    let profile = buyer(Duration::days(10), 90, 95.0);
    let population: Vec<RfmInputs> = (1..=100)
        .map(|i| inputs(i as f64, i as f64, i as f64))
        .collect();
    let thresholds = RfmThresholds::from_population(&population).unwrap();
    // When / Then: absent before, scored against the population after
    assert_eq!(def.evaluate("rfm", &profile, None, now()), None);
    let value = def
        .evaluate("rfm", &profile, Some(&thresholds), now())
        .unwrap();
    assert_eq!(value.value, json!("champions"));
    assert_eq!(
        (&value.detail["r"], &value.detail["f"], &value.detail["m"]),
        (&json!(5), &json!(5), &json!(5))
    );
    // And scoring defaults to quantiles
    assert_eq!(def.to_json()["scoring"], json!("quantiles"));
}

#[test]
fn fixed_thresholds_ignore_the_population() {
    let profile = buyer(Duration::days(3), 7, 1234.5);
    let other = RfmThresholds {
        recency_days: [1.0, 2.0, 3.0, 4.0],
        frequency: [100.0, 200.0, 300.0, 400.0],
        monetary: [1e6, 2e6, 3e6, 4e6],
    };
    assert_eq!(
        fixed_rfm().evaluate("rfm", &profile, Some(&other), now()),
        fixed_rfm().evaluate("rfm", &profile, None, now())
    );
}

#[test]
fn an_rfm_tag_reads_three_hidden_computed_traits() {
    // Given
    let def = fixed_rfm();
    // When
    let hidden = def.hidden_traits("shoppers");
    // Then
    let names: Vec<&str> = hidden.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "rfm:shoppers:recency",
            "rfm:shoppers:frequency",
            "rfm:shoppers:monetary"
        ]
    );
    assert_eq!(def.inputs("shoppers"), names);
    let functions: Vec<Value> = hidden
        .iter()
        .map(|(_, d)| d.to_json()["function"].clone())
        .collect();
    assert_eq!(functions, [json!("last"), json!("count"), json!("sum")]);
    for (_, d) in &hidden {
        let d = d.to_json();
        assert_eq!(d["event"], json!("Order Completed"));
        assert_eq!(d["window"], json!("365d"));
    }
    assert_eq!(hidden[2].1.to_json()["property"], json!("properties.total"));
    assert!(hidden[0].1.to_json().get("property").is_none());
    assert!(spend_buckets().hidden_traits("x").is_empty());
}

// --- parse errors --------------------------------------------------------------------------------------

#[test]
fn parse_errors_name_the_place() {
    assert_eq!(error_field(json!({})), "type");
    assert_eq!(error_field(json!({"type": "smart"})), "type");
    assert_eq!(error_field(json!([])), "definition");
    assert_eq!(
        error_field(json!({"type": "manual", "colour": "red"})),
        "colour"
    );
    assert_eq!(error_field(json!({"type": "rule"})), "condition");
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"all": [{"trait": "x", "op": "nope"}]}})),
        "condition.all[0].op"
    );
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"all": [
            {"trait": "x", "op": "is_set"},
            {"any": [{"trait": "y"}]},
        ]}})),
        "condition.all[1].any[0].op"
    );
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"not": {"trait": "", "op": "is_set"}}})),
        "condition.not.trait"
    );
    assert_eq!(
        error_field(
            json!({"type": "rule", "condition": {"trait": "x", "tag": "y", "op": "is_set"}})
        ),
        "condition.tag"
    );
    assert_eq!(
        error_field(
            json!({"type": "rule", "condition": {"trait": "x", "op": "is_set", "when": 1}})
        ),
        "condition.when"
    );
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"all": [], "any": []}})),
        "condition.any"
    );
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"any": []}})),
        "condition.any"
    );
    assert_eq!(
        error_field(json!({"type": "rule", "condition": {"name": "x"}})),
        "condition"
    );
    assert_eq!(
        error_field(
            json!({"type": "value", "trait": "s", "buckets": [{"value": "a"}, {"value": "b", "gte": "ten"}]})
        ),
        "buckets[1].gte"
    );
    assert_eq!(
        error_field(
            json!({"type": "value", "trait": "s", "buckets": [{"value": "a", "gt": 1, "gte": 2}]})
        ),
        "buckets[0].gte"
    );
    assert_eq!(
        error_field(json!({"type": "value", "trait": "s", "buckets": [{"lt": 1}]})),
        "buckets[0].value"
    );
    assert_eq!(
        error_field(json!({"type": "value", "trait": "s", "buckets": []})),
        "buckets"
    );
    let rfm = |scoring: Value| json!({"type": "rfm", "event": "E", "monetary": "properties.total", "scoring": scoring});
    assert_eq!(
        error_field(rfm(
            json!({"recency": [1, 2, 3], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]})
        )),
        "scoring.recency"
    );
    assert_eq!(
        error_field(rfm(
            json!({"recency": [1, 2, 2, 4], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]})
        )),
        "scoring.recency"
    );
    assert_eq!(
        error_field(rfm(
            json!({"recency": [1, 2, 3, 4], "frequency": [1, 2, 3, 4]})
        )),
        "scoring.monetary"
    );
    assert_eq!(
        error_field(rfm(
            json!({"recency": [1, 2, 3, 4], "frequency": [1, "x", 3, 4], "monetary": [1, 2, 3, 4]})
        )),
        "scoring.frequency[1]"
    );
    assert_eq!(error_field(rfm(json!("deciles"))), "scoring");
    // Cut points are thresholds: given in any order they are kept ascending.
    let def = TagDef::parse(&rfm(
        json!({"recency": [90, 7, 180, 30], "frequency": [1, 2, 3, 4], "monetary": [1, 2, 3, 4]}),
    ))
    .unwrap();
    assert_eq!(
        def.to_json()["scoring"]["recency"],
        json!([7.0, 30.0, 90.0, 180.0])
    );
    assert_eq!(
        error_field(
            json!({"type": "rfm", "event": "E", "monetary": "properties.total", "window": "soon"})
        ),
        "window"
    );
    assert_eq!(
        error_field(json!({"type": "rfm", "monetary": "properties.total"})),
        "event"
    );
    // The hidden traits' own rules apply: a blank event name is refused by the computed traits.
    assert_eq!(
        error_field(json!({"type": "rfm", "event": "   ", "monetary": "properties.total"})),
        "event"
    );
    assert_eq!(
        error_field(
            json!({"type": "rfm", "event": "E", "monetary": "properties.total", "window": "9999d"})
        ),
        "window"
    );
    assert_eq!(
        error_field(json!({"type": "rfm", "event": "E"})),
        "monetary"
    );
}

#[test]
fn a_definition_error_reads_field_then_message() {
    let e = TagDef::parse(&json!({"type": "manual", "colour": "red"})).unwrap_err();
    assert!(e.to_string().starts_with("colour: "), "{e}");
}

// --- cycles --------------------------------------------------------------------------------------------

fn reads(names: &[&str]) -> TagDef {
    let parts: Vec<Value> = names
        .iter()
        .map(|n| json!({"tag": n, "op": "is_set"}))
        .collect();
    tag(json!({"type": "rule", "condition": {"any": parts}}))
}

#[test]
fn a_tag_that_reads_itself_through_other_tags_is_a_cycle() {
    // Given a → b → c → a, and d → b
    let defs: BTreeMap<String, TagDef> = [
        ("a", reads(&["gender", "b"])),
        ("b", reads(&["c"])),
        ("c", reads(&["spend", "a"])),
        ("d", reads(&["b"])),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    // Then
    assert_eq!(
        cycle(&defs, "a"),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        cycle(&defs, "c"),
        Some(vec!["c".into(), "a".into(), "b".into(), "c".into()])
    );
    // d reads a cycle but is not on it
    assert_eq!(cycle(&defs, "d"), None);
}

#[test]
fn a_tag_that_reads_itself_directly_is_a_cycle_and_a_diamond_is_not() {
    let defs: BTreeMap<String, TagDef> = [
        ("self", reads(&["self"])),
        ("top", reads(&["left", "right"])),
        ("left", reads(&["bottom"])),
        ("right", reads(&["bottom"])),
        ("bottom", spend_buckets()),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    assert_eq!(
        cycle(&defs, "self"),
        Some(vec!["self".into(), "self".into()])
    );
    assert_eq!(cycle(&defs, "top"), None);
    assert_eq!(cycle(&defs, "missing"), None);
}

// --- properties ----------------------------------------------------------------------------------------

/// Arbitrary JSON, its object keys drawn mostly from the words definitions use so that parse goes deep.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "type",
            "rule",
            "value",
            "rfm",
            "manual",
            "condition",
            "all",
            "any",
            "not",
            "trait",
            "tag",
            "computed",
            "op",
            "buckets",
            "gt",
            "gte",
            "lt",
            "lte",
            "event",
            "monetary",
            "window",
            "scoring",
            "recency",
            "frequency",
        ])
        .prop_map(String::from),
        "[a-z]{1,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        prop::sample::select(vec![
            "rule",
            "value",
            "rfm",
            "manual",
            "eq",
            "neq",
            "is_set",
            "gte",
            "quantiles",
            "365d",
            "12h",
            "properties.total",
            "",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_name() -> impl Strategy<Value = String> {
    "[a-z_]{1,8}"
}

fn any_comparison() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{0,5}".prop_map(|s| json!({"op": "eq", "value": s})),
        "[a-z]{0,5}".prop_map(|s| json!({"op": "neq", "value": s})),
        Just(json!({"op": "is_set"})),
        Just(json!({"op": "is_not_set"})),
        (-1000i64..1000).prop_map(|n| json!({"op": "gte", "value": n})),
        (-1000i64..1000).prop_map(|n| json!({"op": "lt", "value": n})),
        prop::collection::vec("[a-z]{1,3}", 1..4).prop_map(|l| json!({"op": "in", "value": l})),
    ]
}

fn any_condition() -> impl Strategy<Value = Value> {
    let field = (
        prop::sample::select(vec!["trait", "tag", "computed"]),
        any_name(),
        any_comparison(),
    )
        .prop_map(|(key, name, mut cmp)| {
            cmp[key] = json!(name);
            cmp
        });
    field.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|l| json!({"all": l})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|l| json!({"any": l})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

fn ascending() -> impl Strategy<Value = [f64; 4]> {
    (0.0f64..100.0, prop::array::uniform3(0.001f64..1000.0))
        .prop_map(|(a, [d1, d2, d3])| [a, a + d1, a + d1 + d2, a + d1 + d2 + d3])
}

/// Valid definitions of every kind.
fn any_definition() -> impl Strategy<Value = Value> {
    let bound = prop::option::of(-1e6f64..1e6);
    let bucket = (
        any_json().prop_filter("not null", |v| !v.is_null()),
        bound.clone(),
        bound.clone(),
        bound.clone(),
        bound,
    )
        .prop_map(|(value, gt, gte, lt, lte)| {
            let mut b = json!({"value": value});
            // gt and gte (lt and lte) may not both be given
            if let Some(x) = gt.or(gte) {
                b[if gt.is_some() { "gt" } else { "gte" }] = json!(x);
            }
            if let Some(x) = lt.or(lte) {
                b[if lt.is_some() { "lt" } else { "lte" }] = json!(x);
            }
            b
        });
    let scoring = prop_oneof![
        Just(json!("quantiles")),
        (ascending(), ascending(), ascending())
            .prop_map(|(r, f, m)| json!({"recency": r, "frequency": f, "monetary": m})),
    ];
    prop_oneof![
        (any_condition(), prop::option::of(any_json().prop_filter("not null", |v| !v.is_null())))
            .prop_map(|(c, v)| match v {
                Some(v) => json!({"type": "rule", "condition": c, "value": v}),
                None => json!({"type": "rule", "condition": c}),
            }),
        (any_name(), prop::collection::vec(bucket, 1..5))
            .prop_map(|(t, b)| json!({"type": "value", "trait": t, "buckets": b})),
        (
            "[A-Z][a-z]{0,6}( [A-Z][a-z]{0,6})?",
            prop::sample::select(vec![None, Some("all"), Some("365d"), Some("30d"), Some("12h")]),
            scoring,
        )
            .prop_map(|(event, window, scoring)| {
                let mut d = json!({"type": "rfm", "event": event, "monetary": "properties.total", "scoring": scoring});
                if let Some(w) = window {
                    d["window"] = json!(w);
                }
                d
            }),
        Just(json!({"type": "manual"})),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_json(v in any_json()) {
        if let Ok(def) = TagDef::parse(&v) {
            prop_assert_eq!(TagDef::parse(&def.to_json()), Ok(def));
        }
        if let Ok(c) = Condition::parse(&v, "condition") {
            prop_assert_eq!(Condition::parse(&c.to_json(), "condition"), Ok(c));
        }
    }

    #[test]
    fn a_definition_survives_its_json(v in any_definition()) {
        let def = TagDef::parse(&v);
        prop_assert!(def.is_ok(), "{} refused: {:?}", v, def);
        let def = def.unwrap();
        prop_assert_eq!(TagDef::parse(&def.to_json()), Ok(def.clone()));
        // And evaluating never panics, even on an empty profile.
        let _ = def.evaluate("t", &Profile::default(), None, now());
    }
}
