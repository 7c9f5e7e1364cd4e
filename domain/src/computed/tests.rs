//! Tests of computed traits: definitions, paths, each function and window, and the incremental state held
//! to `recompute` (property tests over random event streams, splits, merges and restarts). The
//! comparisons have their own file (`condition/tests.rs`).

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn def(v: Value) -> TraitDef {
    TraitDef::parse(&v).unwrap()
}

#[derive(Debug, Clone)]
struct Ev {
    kind: MessageKind,
    name: String,
    payload: Value,
    time: DateTime<Utc>,
    id: String,
}

fn ev(name: &str, time: &str, id: &str, properties: Value) -> Ev {
    Ev {
        kind: MessageKind::Track,
        name: name.into(),
        payload: json!({ "type": "track", "event": name, "properties": properties, "timestamp": time }),
        time: t(time),
        id: id.into(),
    }
}

fn fold(d: &TraitDef, events: &[Ev]) -> TraitState {
    let mut s = TraitState::default();
    for e in events {
        s.apply(d, e.kind, Some(&e.name), &e.payload, e.time, &e.id);
    }
    s
}

fn raw(events: &[Ev]) -> Vec<RawEvent<'_>> {
    events
        .iter()
        .map(|e| RawEvent {
            kind: e.kind,
            name: Some(&e.name),
            payload: &e.payload,
            event_time: e.time,
            message_id: &e.id,
        })
        .collect()
}

/// The state's value, checked against the reference.
fn value(d: &TraitDef, events: &[Ev], now: &str) -> Value {
    let got = fold(d, events).value_at(d, t(now));
    assert_eq!(
        got,
        recompute(d, &raw(events), t(now)),
        "state and recompute disagree at {now}"
    );
    got
}

fn orders() -> Vec<Ev> {
    vec![
        ev(
            "Order Completed",
            "2024-05-01T10:00:00Z",
            "a",
            json!({"total": 10.5, "category": "shoes"}),
        ),
        ev(
            "Order Completed",
            "2024-05-05T23:59:59Z",
            "b",
            json!({"total": 20, "category": "hats"}),
        ),
        ev(
            "Order Completed",
            "2024-05-07T00:00:00Z",
            "c",
            json!({"total": "4.25", "category": "shoes"}),
        ),
        ev(
            "Product Viewed",
            "2024-05-07T01:00:00Z",
            "d",
            json!({"total": 1000}),
        ),
    ]
}

// ---- Given a definition, when events are folded, then the value at now is ... ----

#[test]
fn count_counts_matching_track_events() {
    let d = def(json!({"event": "Order Completed", "function": "count"}));
    assert_eq!(value(&d, &orders(), "2024-05-08T00:00:00Z"), json!(3));
    assert_eq!(value(&d, &[], "2024-05-08T00:00:00Z"), json!(0));
    let mut identify = orders()[0].clone();
    identify.kind = MessageKind::Identify;
    assert_eq!(value(&d, &[identify], "2024-05-08T00:00:00Z"), json!(0));
}

#[test]
fn sum_is_exact_and_decays_with_the_window() {
    let d = def(
        json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "7d"}),
    );
    let events = orders();
    // 7d at 2024-05-07 covers 2024-05-01..=2024-05-07.
    assert_eq!(value(&d, &events, "2024-05-07T12:00:00Z"), json!(34.75));
    // A day later 2024-05-01 has left the window.
    assert_eq!(value(&d, &events, "2024-05-08T00:00:00Z"), json!(24.25));
    assert_eq!(value(&d, &events, "2024-05-12T00:00:00Z"), json!(4.25));
    assert_eq!(value(&d, &events, "2024-05-14T00:00:00Z"), json!(0));
    // Exact: 0.1 + 0.2 is 0.3, in any order.
    let cents = [
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "x",
            json!({"total": 0.1}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:01Z",
            "y",
            json!({"total": 0.2}),
        ),
    ];
    assert_eq!(value(&d, &cents, "2024-05-01T00:00:02Z"), json!(0.3));
}

#[test]
fn min_max_average_use_numbers_only() {
    let mut events = orders();
    events.push(ev(
        "Order Completed",
        "2024-05-07T02:00:00Z",
        "e",
        json!({"total": "n/a"}),
    ));
    let f = |function: &str| {
        def(
            json!({"event": "Order Completed", "function": function, "property": "properties.total"}),
        )
    };
    let now = "2024-05-08T00:00:00Z";
    assert_eq!(value(&f("min"), &events, now), json!(4.25));
    assert_eq!(value(&f("max"), &events, now), json!(20));
    assert_eq!(
        value(&f("average"), &events, now),
        json!(11.583333333333334)
    );
    assert_eq!(value(&f("average"), &events[..2], now), json!(15.25));
    assert_eq!(value(&f("min"), &[], now), Value::Null);
    assert_eq!(value(&f("average"), &events[3..], now), Value::Null);
}

#[test]
fn first_and_last_order_by_time_then_message_id() {
    let mut events = orders();
    events.push(ev(
        "Order Completed",
        "2024-05-07T00:00:00Z",
        "a-earlier-id",
        json!({"total": 1, "category": "bags"}),
    ));
    let now = "2024-05-08T00:00:00Z";
    let first = def(
        json!({"event": "Order Completed", "function": "first", "property": "properties.category"}),
    );
    let last = def(
        json!({"event": "Order Completed", "function": "last", "property": "properties.category"}),
    );
    assert_eq!(value(&first, &events, now), json!("shoes"));
    // Two events at 2024-05-07T00:00:00Z: "c" sorts after "a-earlier-id".
    assert_eq!(value(&last, &events, now), json!("shoes"));
    let last_time = def(json!({"event": "Order Completed", "function": "last"}));
    assert_eq!(
        value(&last_time, &events, now),
        json!("2024-05-07T00:00:00Z")
    );
    let first_in_window = def(
        json!({"event": "Order Completed", "function": "first", "property": "properties.total", "window": "2d"}),
    );
    assert_eq!(value(&first_in_window, &events, now), json!(1));
    assert_eq!(value(&first, &[], now), Value::Null);
}

#[test]
fn most_frequent_distinct_count_and_unique_list() {
    let now = "2024-05-08T00:00:00Z";
    let f = |function: &str| {
        def(
            json!({"event": "Order Completed", "function": function, "property": "properties.category"}),
        )
    };
    assert_eq!(value(&f("most_frequent"), &orders(), now), json!("shoes"));
    assert_eq!(value(&f("distinct_count"), &orders(), now), json!(2));
    assert_eq!(
        value(&f("unique_list"), &orders(), now),
        json!(["hats", "shoes"])
    );
    // Ties go to the smallest canonical text.
    assert_eq!(
        value(&f("most_frequent"), &orders()[..2], now),
        json!("hats")
    );
    assert_eq!(value(&f("unique_list"), &[], now), json!([]));
    assert_eq!(value(&f("distinct_count"), &[], now), json!(0));
    // Numbers sort by value, before strings; 20 and 20.0 are one value.
    let mixed = [
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "1",
            json!({"category": 20.0}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "2",
            json!({"category": 20}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "3",
            json!({"category": 9}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "4",
            json!({"category": "a"}),
        ),
    ];
    assert_eq!(value(&f("unique_list"), &mixed, now), json!([9, 20, "a"]));
    assert_eq!(value(&f("most_frequent"), &mixed, now), json!(20));
}

#[test]
fn days_active_counts_utc_days() {
    let now = "2024-05-08T00:00:00Z";
    let all = def(json!({"event": "Order Completed", "function": "days_active"}));
    assert_eq!(value(&all, &orders(), now), json!(3));
    let week = def(json!({"event": "Order Completed", "function": "days_active", "window": "3d"}));
    assert_eq!(value(&week, &orders(), now), json!(1));
    let hours =
        def(json!({"event": "Order Completed", "function": "days_active", "window": "48h"}));
    assert_eq!(value(&hours, &orders(), "2024-05-07T01:00:00Z"), json!(2));
    assert_eq!(value(&hours, &orders(), "2024-05-07T23:00:00Z"), json!(1));
}

#[test]
fn hour_windows_count_the_current_hour_and_future_events() {
    let d = def(json!({"event": "Order Completed", "function": "count", "window": "2h"}));
    let events = [
        ev("Order Completed", "2024-05-01T08:59:59Z", "a", json!({})),
        ev("Order Completed", "2024-05-01T09:00:00Z", "b", json!({})),
        ev("Order Completed", "2024-05-01T10:30:00Z", "c", json!({})),
    ];
    assert_eq!(value(&d, &events, "2024-05-01T10:59:00Z"), json!(2));
    assert_eq!(value(&d, &events, "2024-05-01T11:00:00Z"), json!(1));
    // An event after now is in the window (and the bucket of 08:00, older than the newest bucket's window,
    // is still kept: pruning leaves a 24-hour margin for future timestamps).
    assert_eq!(value(&d, &events, "2024-05-01T09:10:00Z"), json!(3));
}

#[test]
fn line_items_filter_and_multiply_per_item() {
    let order = ev(
        "Order Completed",
        "2024-05-01T10:00:00Z",
        "a",
        json!({"products": [
            {"category": "running shoes", "price": 50, "quantity": 2},
            {"category": "socks", "price": "2.5", "quantity": 4},
            {"category": "hats", "price": 10},
        ]}),
    );
    let other = ev(
        "Order Completed",
        "2024-05-02T10:00:00Z",
        "b",
        json!({"products": [{"category": "hats", "price": 5, "quantity": 1}]}),
    );
    let events = [order, other];
    let now = "2024-05-03T00:00:00Z";
    let revenue = def(json!({
        "event": "Order Completed", "function": "sum",
        "property": "properties.products[].price * properties.products[].quantity",
        "where": [{"property": "properties.products[].category", "op": "contains", "value": "shoes"}]
    }));
    // A filter on the lines the property expands keeps the shoe lines only (the socks of the same order
    // are not shoe revenue); the order without shoes does not count.
    assert_eq!(value(&revenue, &events, now), json!(100));
    let all_lines = def(json!({
        "event": "Order Completed", "function": "sum",
        "property": "properties.products[].price * properties.products[].quantity",
    }));
    // The item without a quantity yields nothing.
    assert_eq!(value(&all_lines, &events, now), json!(110 + 5));
    // Without a property over the lines, the filter is on the order: the orders containing shoes.
    let shoe_orders = def(json!({
        "event": "Order Completed", "function": "count",
        "where": [{"property": "properties.products[].category", "op": "contains", "value": "shoes"}]
    }));
    assert_eq!(value(&shoe_orders, &events, now), json!(1));
    let pricey = def(json!({
        "event": "Order Completed", "function": "unique_list", "property": "properties.products[].category",
        "where": [{"property": "properties.products[].price", "op": "gte", "value": 10}]
    }));
    assert_eq!(
        value(&pricey, &events, now),
        json!(["hats", "running shoes"])
    );
    let categories = def(
        json!({"event": "Order Completed", "function": "unique_list", "property": "properties.products[].category"}),
    );
    assert_eq!(
        value(&categories, &events, now),
        json!(["hats", "running shoes", "socks"])
    );
    let items = def(
        json!({"event": "Order Completed", "function": "most_frequent", "property": "properties.products[].category"}),
    );
    assert_eq!(value(&items, &events, now), json!("hats"));
    let first_item = def(
        json!({"event": "Order Completed", "function": "first", "property": "properties.products[].category"}),
    );
    assert_eq!(value(&first_item, &events, now), json!("running shoes"));
}

#[test]
fn where_filters_combine_operators() {
    let events = [
        ev(
            "Order Completed",
            "2024-05-01T10:00:00Z",
            "a",
            json!({"total": 120, "coupon": true, "tags": ["vip", "eu"]}),
        ),
        ev(
            "Order Completed",
            "2024-05-02T10:00:00Z",
            "b",
            json!({"total": 80, "coupon": false, "tags": ["eu"]}),
        ),
        ev(
            "Order Completed",
            "2024-05-03T10:00:00Z",
            "c",
            json!({"total": 300, "tags": ["us"]}),
        ),
    ];
    let now = "2024-05-04T00:00:00Z";
    let count_where = |filters: Value| {
        def(json!({"event": "Order Completed", "function": "count", "where": filters}))
    };
    let big = count_where(
        json!([{"property": "properties.total", "op": "between", "value": [100, 200]}]),
    );
    assert_eq!(value(&big, &events, now), json!(1));
    let no_coupon = count_where(json!([{"property": "properties.coupon", "op": "is_not_set"}]));
    assert_eq!(value(&no_coupon, &events, now), json!(1));
    let eu_not_vip = count_where(json!([
        {"property": "properties.tags", "op": "contains_any", "value": ["eu"]},
        {"property": "properties.tags", "op": "contains_none", "value": ["vip"]},
        {"property": "properties.coupon", "op": "is_false"},
    ]));
    assert_eq!(value(&eu_not_vip, &events, now), json!(1));
    let after = count_where(json!([
        {"property": "timestamp", "op": "after", "value": "2024-05-01T12:00:00Z"},
        {"property": "properties.total", "op": "gte", "value": "80"},
    ]));
    assert_eq!(value(&after, &events, now), json!(2));
}

#[test]
fn next_change_is_when_the_oldest_bucket_leaves() {
    let d = def(
        json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "7d"}),
    );
    let s = fold(&d, &orders());
    assert_eq!(
        s.next_change(&d, t("2024-05-07T12:00:00Z")),
        Some(t("2024-05-08T00:00:00Z"))
    );
    assert_eq!(
        s.next_change(&d, t("2024-05-08T00:00:00Z")),
        Some(t("2024-05-12T00:00:00Z"))
    );
    assert_eq!(s.next_change(&d, t("2024-05-14T00:00:00Z")), None);
    let all = def(json!({"event": "Order Completed", "function": "count"}));
    assert_eq!(
        fold(&all, &orders()).next_change(&all, t("2024-05-07T12:00:00Z")),
        None
    );
    assert!(TraitState::default().is_empty());
    assert!(!s.is_empty());
}

#[test]
fn state_is_compact_and_pruned() {
    let d = def(json!({"event": "Order Completed", "function": "count", "window": "2d"}));
    let s = fold(&d, &orders());
    // Only the newest bucket's window (2024-05-06..=07) and a day of margin (05-05) remain; 2024-05-01 is
    // gone. Stored in binary: a few bytes per bucket.
    let v = serde_json::to_value(&s).unwrap();
    let days: Vec<&String> = v["b"].as_object().unwrap().keys().collect();
    assert_eq!(days, ["19848", "19850"]);
    assert_eq!(v["b"]["19848"]["n"], 1);
    assert_eq!(v["b"]["19850"]["n"], 1);
    assert!(crate::codec::encode(&s).unwrap().len() <= 32);
    assert_eq!(
        crate::codec::encode(&TraitState::default()).unwrap().len(),
        3
    );
}

#[test]
fn large_sums_are_exact_and_survive_a_restart() {
    let d =
        def(json!({"event": "Order Completed", "function": "sum", "property": "properties.total"}));
    let events = [
        ev(
            "Order Completed",
            "2024-05-01T00:00:00Z",
            "a",
            json!({"total": 9e18}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:01Z",
            "b",
            json!({"total": 9e18}),
        ),
        ev(
            "Order Completed",
            "2024-05-01T00:00:02Z",
            "c",
            json!({"total": 0.000001}),
        ),
        // Too large to aggregate: ignored.
        ev(
            "Order Completed",
            "2024-05-01T00:00:03Z",
            "d",
            json!({"total": 1e25}),
        ),
    ];
    let s = fold(&d, &events);
    let restarted: TraitState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(restarted, s);
    assert_eq!(round_trip(&s), s);
    assert_eq!(value(&d, &events, "2024-05-02T00:00:00Z"), json!(1.8e19));
}

// ---- Definitions ----

#[test]
fn definitions_round_trip_through_canonical_json() {
    let d = def(json!({
        "event": "Order Completed", "function": "sum", "window": "30d",
        "property": "properties.products[].price   *properties.products[].quantity",
        "where": [
            {"property": "properties.category", "op": "eq", "value": "shoes"},
            {"property": "context.channel", "op": "is_set"},
        ]
    }));
    let canonical = d.to_json();
    assert_eq!(
        canonical["property"],
        json!("properties.products[].price * properties.products[].quantity")
    );
    assert_eq!(
        canonical["where"][1],
        json!({"property": "context.channel", "op": "is_set"})
    );
    assert_eq!(TraitDef::parse(&canonical), Ok(d));
    let minimal = def(json!({"event": "Signed Up", "function": "count"}));
    assert_eq!(minimal.window, Window::All);
    assert_eq!(TraitDef::parse(&minimal.to_json()), Ok(minimal));
}

#[test]
fn parse_errors_name_the_field() {
    let field = |v: Value| TraitDef::parse(&v).unwrap_err().field;
    let base = |extra: Value| {
        let mut v =
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(field(base(json!({"colour": "red"}))), "colour");
    assert_eq!(
        field(json!({"event": "Order Completed", "function": "sum"})),
        "property"
    );
    assert_eq!(
        field(
            json!({"event": "Order Completed", "function": "count", "property": "properties.total"})
        ),
        "property"
    );
    assert_eq!(
        field(
            json!({"event": "Order Completed", "function": "days_active", "property": "properties.total"})
        ),
        "property"
    );
    assert_eq!(field(json!({"function": "count"})), "event");
    assert_eq!(field(json!({"event": "", "function": "count"})), "event");
    assert_eq!(
        field(json!({"event": "x", "function": "median"})),
        "function"
    );
    assert_eq!(
        field(base(json!({"property": "properties..total"}))),
        "property"
    );
    assert_eq!(
        field(base(json!({"property": "properties.a[] * properties.b[]"}))),
        "property"
    );
    for bad in [
        "0d", "3651d", "8761h", "7w", "d", "-1d", "30 d", "1.5d", "7é", "é", "",
    ] {
        assert_eq!(field(base(json!({"window": bad}))), "window", "{bad}");
    }
    assert_eq!(
        TraitDef::parse(&base(json!({"window": "3650d"})))
            .unwrap()
            .window,
        Window::Days(3650)
    );
    assert_eq!(
        TraitDef::parse(&base(json!({"window": "8760h"})))
            .unwrap()
            .window,
        Window::Hours(8760)
    );
    let with_where = |filter: Value| {
        field(base(
            json!({"where": [{"property": "properties.a", "op": "is_set"}, filter]}),
        ))
    };
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "like", "value": "x"})),
        "where[1].op"
    );
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "gt", "value": "soon"})),
        "where[1].value"
    );
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "in", "value": "x"})),
        "where[1].value"
    );
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "between", "value": [3]})),
        "where[1].value"
    );
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "is_set", "value": 1})),
        "where[1].value"
    );
    assert_eq!(with_where(json!({"op": "is_set"})), "where[1].property");
    assert_eq!(
        with_where(json!({"property": "properties.a", "op": "is_set", "extra": 1})),
        "where[1].extra"
    );
    let err = TraitDef::parse(&base(json!({"window": "7w"}))).unwrap_err();
    assert!(err.to_string().starts_with("window: expected"), "{err}");
}

#[test]
fn paths_and_expressions() {
    let payload = json!({"properties": {"store": {"id": 7}, "n": null, "items": [{"p": 2, "q": 3}, {"p": 1.5, "q": "2"}, {"p": "x", "q": 1}], "rate": 10}});
    let values = |p: &str| {
        Path::parse(p)
            .unwrap()
            .values(&payload)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(values("properties.store.id"), vec![json!(7)]);
    assert_eq!(values("properties.n"), Vec::<Value>::new());
    assert_eq!(values("properties.missing.deeper"), Vec::<Value>::new());
    assert_eq!(values("properties.store[]"), Vec::<Value>::new());
    assert_eq!(
        values("properties.items[].p"),
        vec![json!(2), json!(1.5), json!("x")]
    );
    let expr = |e: &str| Expr::parse(e).unwrap().values(&payload);
    assert_eq!(
        expr("properties.items[].p * properties.items[].q"),
        vec![json!(6), json!(3)]
    );
    assert_eq!(
        expr("properties.items[].p*properties.items[].q*properties.rate"),
        vec![json!(60), json!(30)]
    );
    assert_eq!(
        expr("properties.store.id * properties.rate"),
        vec![json!(70)]
    );
    assert_eq!(
        expr("properties.store.id * properties.missing"),
        Vec::<Value>::new()
    );
    for bad in [
        "",
        " properties.a",
        "properties.",
        "a[]b",
        "a.[]",
        "properties.a[][]",
        "properties.a b",
        "properties.a\u{b}b",
        "properties.a\u{0}",
        "properties.\u{3000}a",
        "properties.a\u{feff}",
    ] {
        assert!(Path::parse(bad).is_err(), "{bad:?}");
    }
    // What the contract's `\s` does not name stays a key character.
    assert!(Path::parse("properties.a\u{85}b").is_ok());
    assert!(Path::parse("properties.商品").is_ok());
    assert!(Expr::parse("properties.a[].x * properties.b[].y").is_err());
    assert!(Expr::parse("properties.a * ").is_err());
}

// ---- Properties ----

const NAMES: [&str; 3] = ["Order Completed", "Product Viewed", "Signed Up"];
const CATEGORIES: [&str; 3] = ["shoes", "hats", "running shoes"];

fn base_time() -> DateTime<Utc> {
    t("2024-03-01T00:00:00Z")
}

fn number_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-5000i64..5000).prop_map(|c| json!(c as f64 / 100.0)),
        (0i64..50).prop_map(|n| json!(n)),
        (0i64..500).prop_map(|c| json!(format!("{}", c as f64 / 10.0))),
        Just(json!("n/a")),
        Just(json!(0.1)),
        Just(json!(1e-7)),
    ]
}

fn event_strategy() -> impl Strategy<Value = Ev> {
    let product = (number_strategy(), prop::option::of(0i64..4), 0usize..3).prop_map(
        |(price, qty, cat)| json!({"price": price, "quantity": qty, "category": CATEGORIES[cat]}),
    );
    (
        0usize..NAMES.len(),
        prop::bool::weighted(0.9),
        prop::option::of(number_strategy()),
        prop::option::of(0usize..3),
        prop::collection::vec(product, 0..3),
        0i64..60 * 86_400,
        0u32..6,
        prop::bool::ANY,
    )
        .prop_map(|(name, track, total, category, products, secs, id, coupon)| {
            let mut properties = json!({"products": products, "coupon": coupon});
            if let Some(total) = total {
                properties["total"] = total;
            }
            if let Some(c) = category {
                properties["category"] = json!(CATEGORIES[c]);
            }
            let time = base_time() + Duration::seconds(secs);
            Ev {
                kind: if track { MessageKind::Track } else { MessageKind::Identify },
                name: NAMES[name].into(),
                payload: json!({"event": NAMES[name], "properties": properties, "timestamp": time.to_rfc3339()}),
                time,
                id: format!("m{id}"),
            }
        })
}

fn def_strategy() -> impl Strategy<Value = TraitDef> {
    let properties = [
        "properties.total",
        "properties.category",
        "properties.products[].price",
        "properties.products[].category",
        "properties.products[].price * properties.products[].quantity",
        "properties.products[].quantity * properties.total",
    ];
    let windows = ["all", "1d", "7d", "30d", "1h", "24h", "100h"];
    let filters = [
        json!({"property": "properties.category", "op": "eq", "value": "shoes"}),
        json!({"property": "properties.products[].category", "op": "contains", "value": "shoes"}),
        json!({"property": "properties.total", "op": "gt", "value": 5}),
        json!({"property": "properties.coupon", "op": "is_true"}),
        json!({"property": "properties.category", "op": "neq", "value": "hats"}),
        json!({"property": "timestamp", "op": "after", "value": "2024-03-20T00:00:00Z"}),
    ];
    (
        0usize..Function::ALL.len(),
        0usize..properties.len() + 1,
        0usize..windows.len(),
        prop::collection::vec(0usize..filters.len(), 0..3),
        0usize..2,
    )
        .prop_map(move |(f, p, w, fs, name)| {
            let function = Function::ALL[f];
            let mut v =
                json!({"event": NAMES[name], "function": function.as_str(), "window": windows[w]});
            let property = properties[p % properties.len()];
            match function {
                Function::Count | Function::DaysActive => {}
                Function::Sequence => {
                    v["window"] = json!("all");
                    let within = ["2h", "30m", "3d"][w % 3];
                    v["then"] = json!({"event": NAMES[(name + p) % 2], "within": within,
                        "absent": p % 2 == 0});
                }
                Function::First | Function::Last if p == properties.len() => {}
                _ => v["property"] = json!(property),
            }
            v["where"] = Value::Array(fs.into_iter().map(|i| filters[i].clone()).collect());
            TraitDef::parse(&v).unwrap()
        })
}

/// The state through its stored binary form, checked against its JSON form (documents of earlier
/// versions) on the way.
fn round_trip(s: &TraitState) -> TraitState {
    let from_json: TraitState = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
    let from_binary: TraitState = crate::codec::decode(&crate::codec::encode(s).unwrap()).unwrap();
    assert_eq!(from_json, from_binary);
    from_binary
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "eq",
            "between",
            "within_last",
            "7d",
            "0d",
            "properties.total",
            "properties.a[].b",
            "count",
            "sum",
            "first",
            "30d",
            "9999999999h",
            "2024-01-01T00:00:00Z",
            "a[]*b[]",
            "[]",
            "",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "event", "function", "property", "window", "where", "op", "value", "x"
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kvs| Value::Object(
                kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// One fold, two groups folded separately and merged either way, and restarts through JSON all give
    /// the reference value, at several times including after the window has passed.
    #[test]
    fn state_equals_recompute(
        d in def_strategy(),
        events in prop::collection::vec(event_strategy(), 0..40),
        groups in prop::collection::vec(any::<bool>(), 40),
        later in prop::collection::vec(0i64..40 * 86_400, 3),
    ) {
        let whole = fold(&d, &events);
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for (e, to_left) in events.iter().zip(&groups) {
            if *to_left { left.push(e.clone()) } else { right.push(e.clone()) }
        }
        let (a, b) = (round_trip(&fold(&d, &left)), round_trip(&fold(&d, &right)));
        let mut ab = a.clone();
        ab.absorb(&d, b.clone());
        let mut ba = b;
        ba.absorb(&d, a);
        let mut reversed: Vec<Ev> = events.clone();
        reversed.reverse();
        prop_assert_eq!(&whole, &ab);
        prop_assert_eq!(&whole, &ba);
        prop_assert_eq!(&whole, &fold(&d, &reversed));
        let restarted = round_trip(&whole);
        prop_assert_eq!(&whole, &restarted);

        // The value is exact for any `now` no more than 24 hours before the newest event (see the module doc
        // on pruning), in particular after the window has passed.
        let newest = events.iter().map(|e| e.time).max().unwrap_or_else(base_time);
        let mut nows = vec![
            newest - Duration::hours(24),
            newest - Duration::minutes(61),
            newest,
            newest + Duration::seconds(1),
            newest + Duration::days(1),
        ];
        nows.extend(later.iter().map(|s| newest + Duration::seconds(*s)));
        let raws = raw(&events);
        for now in nows {
            let expected = recompute(&d, &raws, now);
            prop_assert_eq!(&restarted.value_at(&d, now), &expected, "at {}", now);
            if let Some(change) = whole.next_change(&d, now) {
                prop_assert!(change > now);
                // Nothing changes before the announced time.
                let just_before = change - Duration::seconds(1);
                prop_assert_eq!(whole.value_at(&d, just_before), expected);
            }
        }
        // Without pruning (all), the value is exact at any time, including before events.
        if d.window == Window::All {
            let early = base_time() + Duration::days(10);
            prop_assert_eq!(whole.value_at(&d, early), recompute(&d, &raws, early));
        }
    }

    #[test]
    fn parsing_never_panics(v in arbitrary_json()) {
        let _ = TraitDef::parse(&v);
        if let Value::Object(obj) = &v {
            let _ = Comparison::parse(obj, "where[0]");
            if let Ok(def) = TraitDef::parse(&v) {
                prop_assert_eq!(TraitDef::parse(&def.to_json()), Ok(def));
            }
        }
    }

    #[test]
    fn comparisons_never_panic(op in 0usize..Op::ALL.len(), operand in arbitrary_json(), actual in prop::collection::vec(arbitrary_json(), 0..3)) {
        let mut obj = serde_json::Map::new();
        obj.insert("op".into(), json!(Op::ALL[op].as_str()));
        obj.insert("value".into(), operand.clone());
        let _ = Comparison::parse(&obj, "where[0]");
        // Hand-built comparisons with any operand must not panic either.
        let c = Comparison { op: Op::ALL[op], value: operand };
        let _ = c.holds(&actual.iter().collect::<Vec<_>>(), base_time());
    }
}
