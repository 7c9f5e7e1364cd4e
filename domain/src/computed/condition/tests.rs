//! Tests of the comparisons of `where` filters and conditions: every operator, its negation on unknown
//! fields, parsing and printing.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::parse_duration;
use crate::computed::{Comparison, Function, Op};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn cmp(op: &str, value: Value) -> Comparison {
    let mut obj = serde_json::Map::new();
    obj.insert("op".into(), json!(op));
    if !value.is_null() {
        obj.insert("value".into(), value);
    }
    Comparison::parse(&obj, "where[0]").unwrap()
}

fn holds(c: &Comparison, actual: &[Value]) -> bool {
    c.holds(
        &actual.iter().collect::<Vec<_>>(),
        t("2024-05-10T12:00:00Z"),
    )
}

#[test]
fn ops_parse_and_print_every_name() {
    for op in Op::ALL {
        assert_eq!(Op::parse(op.as_str()), Some(op));
    }
    assert_eq!(Op::parse("EQ"), None);
    for f in Function::ALL {
        assert_eq!(Function::parse(f.as_str()), Some(f));
    }
}

#[test]
fn every_operator_and_its_negation_on_unknown() {
    let cases: Vec<(&str, Value, Vec<Value>, Vec<Value>)> = vec![
        // op, operand, values that satisfy it, values that do not
        (
            "eq",
            json!(5),
            vec![json!(5.0), json!("5")],
            vec![json!(6), json!("five")],
        ),
        (
            "eq",
            json!("male"),
            vec![json!("male")],
            vec![json!("Male")],
        ),
        (
            "neq",
            json!("male"),
            vec![json!("female")],
            vec![json!("male")],
        ),
        (
            "in",
            json!(["a", 2]),
            vec![json!(2), json!("a")],
            vec![json!("b")],
        ),
        (
            "not_in",
            json!(["a", 2]),
            vec![json!("b")],
            vec![json!("a")],
        ),
        (
            "contains",
            json!("sho"),
            vec![json!("shoes")],
            vec![json!("hats"), json!(["shoes"])],
        ),
        (
            "not_contains",
            json!("sho"),
            vec![json!("hats")],
            vec![json!("running shoes")],
        ),
        (
            "starts_with",
            json!("run"),
            vec![json!("running")],
            vec![json!("I run")],
        ),
        (
            "is_set",
            Value::Null,
            vec![json!(""), json!(0)],
            vec![Value::Null],
        ),
        (
            "is_not_set",
            Value::Null,
            vec![Value::Null],
            vec![json!(false)],
        ),
        (
            "gt",
            json!(10),
            vec![json!(11), json!("10.5")],
            vec![json!(10), json!("abc")],
        ),
        ("gte", json!(10), vec![json!(10)], vec![json!(9.99)]),
        ("lt", json!(10), vec![json!(-1)], vec![json!(10)]),
        ("lte", json!(10), vec![json!(10)], vec![json!(11)]),
        (
            "gt",
            json!("2024-05-01T00:00:00Z"),
            vec![
                json!("2024-05-02T00:00:00+02:00"),
                json!(1_714_608_000_000i64),
            ],
            vec![json!("2024-04-30T00:00:00Z")],
        ),
        (
            "between",
            json!([1, 3]),
            vec![json!(1), json!(3), json!("2")],
            vec![json!(0), json!(3.5)],
        ),
        (
            "between",
            json!(["2024-05-01", "2024-05-31T23:59:59Z"]),
            vec![json!("2024-05-15T00:00:00Z")],
            vec![json!("2024-06-01T00:00:00Z")],
        ),
        (
            "before",
            json!("2024-05-01T00:00:00Z"),
            vec![json!("2024-04-30T23:59:59Z")],
            vec![json!("2024-05-01T00:00:00Z"), json!("soon")],
        ),
        (
            "after",
            json!("2024-05-01T00:00:00Z"),
            vec![json!("2024-05-01T00:00:01Z")],
            vec![json!("2024-05-01T00:00:00Z")],
        ),
        (
            "within_last",
            json!("7d"),
            vec![json!("2024-05-04T00:00:00Z"), json!("2024-06-01T00:00:00Z")],
            vec![json!("2024-05-03T11:59:59Z")],
        ),
        (
            "within_last",
            json!("30m"),
            vec![json!("2024-05-10T11:30:00Z")],
            vec![json!("2024-05-10T11:29:59Z")],
        ),
        (
            "not_within_last",
            json!("24h"),
            vec![json!("2024-05-09T11:00:00Z")],
            vec![json!("2024-05-10T00:00:00Z")],
        ),
        (
            "contains_any",
            json!(["vip", "eu"]),
            vec![json!(["us", "eu"]), json!("vip")],
            vec![json!(["us"])],
        ),
        (
            "contains_all",
            json!(["vip", "eu"]),
            vec![json!(["eu", "x", "vip"])],
            vec![json!(["eu"])],
        ),
        (
            "contains_none",
            json!(["vip"]),
            vec![json!(["eu"])],
            vec![json!(["eu", "vip"])],
        ),
        (
            "is_true",
            Value::Null,
            vec![json!(true)],
            vec![json!(false), json!("true")],
        ),
        (
            "is_false",
            Value::Null,
            vec![json!(false)],
            vec![json!(true), json!(0)],
        ),
    ];
    let mut covered = std::collections::HashSet::new();
    for (op, operand, yes, no) in cases {
        let c = cmp(op, operand);
        covered.insert(c.op);
        for v in &yes {
            assert!(
                holds(&c, std::slice::from_ref(v)),
                "{op} should hold for {v}"
            );
        }
        for v in &no {
            assert!(
                !holds(&c, std::slice::from_ref(v)),
                "{op} should not hold for {v}"
            );
        }
        // Several values: a positive holds if any does; a negation only if none fails it.
        let mut both = yes.clone();
        both.extend(no.iter().cloned());
        let negation = [
            "neq",
            "not_in",
            "not_contains",
            "contains_none",
            "is_not_set",
            "not_within_last",
        ]
        .contains(&op);
        if !(op == "contains_all" || op == "is_not_set") {
            assert_eq!(holds(&c, &both), !negation, "{op} over {both:?}");
        }
        // Unknown field: only negations hold.
        assert_eq!(holds(&c, &[]), negation, "{op} on an unknown field");
    }
    assert_eq!(covered.len(), Op::ALL.len());
    // contains_all compares the set of all values, not each.
    assert!(holds(
        &cmp("contains_all", json!(["a", "b"])),
        &[json!("a"), json!("b")]
    ));
}

#[test]
fn comparisons_round_trip_and_refuse_bad_operands() {
    let c = cmp("between", json!([1, 2]));
    assert_eq!(c.to_json(), json!({"op": "between", "value": [1, 2]}));
    // Bounds given high first are the same range, kept in order.
    assert_eq!(cmp("between", json!([3, 1])).value, json!([1, 3]));
    assert_eq!(
        cmp("between", json!(["2024-02-01", "2024-01-01T12:00:00Z"])).value,
        json!(["2024-01-01T12:00:00Z", "2024-02-01"])
    );
    assert_eq!(
        cmp("is_set", Value::Null).to_json(),
        json!({"op": "is_set"})
    );
    let err = |v: Value| Comparison::parse(v.as_object().unwrap(), "where[3]").unwrap_err();
    assert_eq!(err(json!({"value": 1})).field, "where[3].op");
    assert_eq!(err(json!({"op": 1})).field, "where[3].op");
    for (op, bad) in [
        ("eq", json!(null)),
        ("eq", json!(["a"])),
        ("in", json!([])),
        ("in", json!([{"a": 1}])),
        ("contains", json!(3)),
        ("gt", json!(true)),
        ("between", json!([1, "2024-01-01T00:00:00Z"])),
        ("before", json!(12)),
        ("within_last", json!("7 days")),
        ("within_last", json!("0d")),
        ("contains_all", json!("vip")),
    ] {
        let e = err(json!({"op": op, "value": bad}));
        assert_eq!(e.field, "where[3].value", "{op} {bad}");
        assert!(!e.message.is_empty());
    }
    assert_eq!(parse_duration("30d"), Some(Duration::days(30)));
    assert_eq!(parse_duration("12h"), Some(Duration::hours(12)));
    assert_eq!(parse_duration("45m"), Some(Duration::minutes(45)));
    for bad in ["", "d", "0h", "5s", "-5m", "5", "1000000000d", "５d"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
}
