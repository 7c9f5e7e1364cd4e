//! The index's answers held to the definition evaluated on each profile's facts one by one
//! (`SegmentDef::holds`, event conditions folded by `TraitState` from the profile's events), for random
//! definitions over random profiles: traits missing, null, multi-valued, numeric strings; names a
//! computed trait or tag shadows; events on both sides of a window's edge, and in the future.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::computed::TraitState;
use crate::message::MessageKind;
use crate::segments::{SegmentDef, SegmentFacts};
use crate::tags::{Facts, FieldKey};

const ID: &str = "~preview";
const EVENTS: [&str; 2] = ["Product Added", "Order Completed"];

/// An event as it happened: its name, time and payload (`properties` only).
type Event = (String, DateTime<Utc>, Value);

/// A profile as the test knows it: its row, and its events as they happened.
#[derive(Debug, Clone)]
struct Profile {
    row: ProfileRow,
    events: Vec<Event>,
}

fn now() -> DateTime<Utc> {
    // Mid-afternoon, so windows of hours and days cut differently.
    Utc.with_ymd_and_hms(2026, 12, 6, 15, 30, 0).unwrap()
}

fn names() -> Names {
    Names {
        computed: ["score", "spend_30d", "~spend"].map(String::from).into(),
        tags: ["tier", "rfm", "vip_tag"].map(String::from).into(),
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("Shanghai")),
        Just(json!("Beijing")),
        Just(json!("shoes")),
        Just(json!("tea")),
        Just(json!(true)),
        Just(json!(false)),
        Just(json!(0)),
        Just(json!(100)),
        Just(json!(150.5)),
        Just(json!("100")),
        Just(Value::Null),
    ]
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ]
}

fn fields(names: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, Value>> {
    prop::collection::btree_map(prop::sample::select(names), field_value(), 0..names.len())
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// An event's properties: a category, a price, line items' categories, each maybe missing.
fn properties() -> impl Strategy<Value = Value> {
    let category = prop::option::of(prop::sample::select(vec!["shoes", "tea", "Shoes"]));
    let price = prop::option::of(prop::sample::select(vec![
        json!(0),
        json!(100),
        json!("150.5"),
    ]));
    let items = prop::option::of(prop::collection::vec(
        prop::sample::select(vec!["shoes", "socks"]),
        0..3,
    ));
    (category, price, items).prop_map(|(category, price, items)| {
        let mut properties = serde_json::Map::new();
        if let Some(c) = category {
            properties.insert("category".into(), json!(c));
        }
        if let Some(p) = price {
            properties.insert("price".into(), p);
        }
        if let Some(items) = items {
            let lines: Vec<Value> = items.iter().map(|c| json!({"category": c})).collect();
            properties.insert("products".into(), Value::Array(lines));
        }
        json!({"properties": properties})
    })
}

fn event() -> impl Strategy<Value = Event> {
    // Whole days back from today's midnight, then an hour and minute: every window edge gets hit.
    let midnight = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
    (
        0..2usize,
        -1i64..35,
        0i64..24,
        prop::sample::select(vec![0i64, 29, 59]),
        properties(),
    )
        .prop_map(move |(e, days, hours, minutes, payload)| {
            let at = midnight - Duration::days(days)
                + Duration::hours(hours)
                + Duration::minutes(minutes);
            // Ingestion refuses times more than 24 hours ahead.
            (
                EVENTS[e].to_owned(),
                at.min(now() + Duration::hours(20)),
                payload,
            )
        })
}

fn profile(i: usize) -> impl Strategy<Value = Profile> {
    let traits = fields(&[
        "city",
        "gender",
        "vip",
        "categories",
        "age",
        "tier",
        "score",
    ]);
    let computed = (field_value(), field_value(), 0u32..500);
    let tags = fields(&["tier", "rfm", "vip_tag"]);
    let segments = prop::collection::btree_set(prop::sample::select(vec!["a", "b"]), 0..3);
    let consents = prop::collection::btree_set(prop::sample::select(vec!["sms", "email"]), 0..3);
    let events = prop::collection::vec(event(), 0..6);
    (traits, computed, tags, segments, consents, events, 0u64..4).prop_map(
        move |(traits, (score, spend_30d, spend), tags, segments, consents, events, orders)| {
            let computed = BTreeMap::from([
                ("score".to_owned(), score),
                ("spend_30d".to_owned(), spend_30d),
                ("~spend".to_owned(), json!(spend)),
            ]);
            let row = ProfileRow {
                profile: format!("p_{:03}", (i * 37) % 101),
                traits,
                computed,
                tags,
                segments: segments.into_iter().map(String::from).collect(),
                consents: consents
                    .into_iter()
                    .map(|c| (c.to_owned(), "marketing".to_owned()))
                    .collect(),
                spend: f64::from(spend),
                orders,
                events: Some(summaries(&events)),
                faceted: faceted(&events),
                valid_until: None,
            };
            Profile { row, events }
        },
    )
}

fn summaries(events: &[Event]) -> Vec<(String, i32, u32)> {
    events
        .iter()
        .map(|(name, at, _)| (name.clone(), hour_of_micros(at.timestamp_micros()), 1))
        .collect()
}

/// The events with facets, as `event_profiles` gives them to the index (those without are not
/// read one by one).
fn faceted(events: &[Event]) -> Vec<(String, i32, Option<facets::Facets>)> {
    events
        .iter()
        .filter_map(|(name, at, payload)| {
            let facets = facets::parse_facets(&facets::facets_text(payload));
            (facets.as_ref() != Some(&facets::Facets::new()))
                .then(|| (name.clone(), hour_of_micros(at.timestamp_micros()), facets))
        })
        .collect()
}

fn profiles() -> impl Strategy<Value = Vec<Profile>> {
    (1usize..24).prop_flat_map(|n| (0..n).map(profile).collect::<Vec<_>>())
}

fn leaf() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec![
        ("trait", "city"),
        ("trait", "gender"),
        ("trait", "vip"),
        ("trait", "categories"),
        ("trait", "age"),
        ("trait", "tier"),
        ("trait", "score"),
        ("trait", "nowhere"),
        ("tag", "tier"),
        ("tag", "rfm"),
        ("tag", "city"),
        ("computed", "spend_30d"),
        ("computed", "~spend"),
        ("computed", "age"),
    ]);
    let comparison = prop_oneof![
        (prop::sample::select(vec!["eq", "neq"]), scalar())
            .prop_map(|(op, v)| json!({"op": op, "value": v})),
        (
            prop::sample::select(vec![
                "in",
                "not_in",
                "contains_any",
                "contains_all",
                "contains_none"
            ]),
            prop::collection::vec(scalar(), 1..3)
        )
            .prop_map(|(op, v)| json!({"op": op, "value": v})),
        (
            prop::sample::select(vec!["gt", "gte", "lt", "lte"]),
            prop::sample::select(vec![0, 100, 150])
        )
            .prop_map(|(op, v)| json!({"op": op, "value": v})),
        Just(json!({"op": "between", "value": [50, 150]})),
        Just(json!({"op": "contains", "value": "ang"})),
        Just(json!({"op": "starts_with", "value": "Sh"})),
        prop::sample::select(vec!["is_set", "is_not_set", "is_true", "is_false"])
            .prop_map(|op| json!({"op": op})),
    ];
    let field_leaf = (field, comparison).prop_map(|((key, name), mut cmp)| {
        cmp[key] = json!(name);
        cmp
    });
    let window = prop::sample::select(vec!["1d", "2d", "7d", "30d", "1h", "12h", "48h", "all"]);
    let count = (
        prop::sample::select(EVENTS.to_vec()),
        window.clone(),
        prop::sample::select(vec!["gte", "lt", "eq", "neq", "between"]),
        0u32..4,
        prop::option::of(filter()),
    )
        .prop_map(|(event, window, op, n, filter)| {
            let value = if op == "between" {
                json!([n, n + 1])
            } else {
                json!(n)
            };
            let mut leaf =
                json!({"event": event, "window": window, "count": {"op": op, "value": value}});
            if let Some(f) = filter {
                leaf["where"] = json!([f]);
            }
            leaf
        });
    let days_active = (
        prop::sample::select(EVENTS.to_vec()),
        window.clone(),
        0u32..3,
        prop::option::of(filter()),
    )
        .prop_map(|(event, window, n, filter)| {
            let mut leaf = json!({"event": event, "window": window,
                   "aggregate": {"function": "days_active"}, "op": "gte", "value": n});
            if let Some(f) = filter {
                leaf["where"] = json!([f]);
            }
            leaf
        });
    let aggregate = (
        prop::sample::select(EVENTS.to_vec()),
        window.clone(),
        prop::sample::select(vec![
            ("sum", "properties.price", "gte", json!(100)),
            ("min", "properties.price", "lt", json!(50)),
            ("max", "properties.price", "gte", json!(150)),
            ("average", "properties.price", "gt", json!(60)),
            ("distinct_count", "properties.category", "gte", json!(2)),
            (
                "unique_list",
                "properties.products[].category",
                "contains",
                json!("socks"),
            ),
            ("most_frequent", "properties.category", "eq", json!("shoes")),
            ("sum", "properties.price", "is_not_set", Value::Null),
        ]),
        prop::option::of(filter().prop_filter("whole-event filters", |f| {
            !f["property"].as_str().unwrap_or_default().contains("[]")
        })),
    )
        .prop_map(|(event, window, (function, property, op, value), filter)| {
            let mut leaf = json!({"event": event, "window": window,
                   "aggregate": {"function": function, "property": property}, "op": op});
            if !value.is_null() {
                leaf["value"] = value;
            }
            if let Some(f) = filter {
                leaf["where"] = json!([f]);
            }
            leaf
        });
    prop_oneof![
        6 => field_leaf,
        2 => aggregate,
        1 => prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| json!({"segment": s})),
        1 => prop::sample::select(vec!["sms", "email", "push"]).prop_map(|c| json!({"consent": c})),
        2 => count,
        1 => days_active,
    ]
}

/// A `where` filter on the events' properties: equality, negation, sets, numbers, line items, presence.
fn filter() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        json!({"property": "properties.category", "op": "eq", "value": "shoes"}),
        json!({"property": "properties.category", "op": "neq", "value": "shoes"}),
        json!({"property": "properties.category", "op": "in", "value": ["tea", "Shoes"]}),
        json!({"property": "properties.category", "op": "is_set"}),
        json!({"property": "properties.price", "op": "gte", "value": 100}),
        json!({"property": "properties.price", "op": "lt", "value": 150}),
        json!({"property": "properties.products[].category", "op": "eq", "value": "shoes"}),
        json!({"property": "properties.products[].category", "op": "not_in", "value": ["socks"]}),
        json!({"property": "properties.brand", "op": "is_not_set"}),
    ])
}

fn condition() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|parts| json!({"all": parts})),
            prop::collection::vec(inner.clone(), 1..4).prop_map(|parts| json!({"any": parts})),
            inner.prop_map(|c| json!({"not": c})),
        ]
    })
}

/// One profile's facts as the engine's evaluation reads them (`evaluation::evaluate::ProfileFacts`):
/// a name is a computed trait, else a tag, else a trait; the preview's event conditions are hidden
/// traits folded from the events.
struct RowFacts<'a> {
    row: &'a ProfileRow,
    names: &'a Names,
    hidden: BTreeMap<String, Value>,
}

impl Facts for RowFacts<'_> {
    fn field(&self, key: FieldKey, name: &str) -> Vec<Value> {
        let computed = || {
            self.hidden
                .get(name)
                .or_else(|| {
                    self.row
                        .computed
                        .get(name)
                        .filter(|_| self.names.computed.contains(name))
                })
                .map(|v| values_of(v.clone()))
        };
        let tag = || {
            self.names.tags.contains(name).then(|| {
                self.row
                    .tags
                    .get(name)
                    .map(|v| values_of(v.clone()))
                    .unwrap_or_default()
            })
        };
        let found = match key {
            FieldKey::Computed => computed(),
            FieldKey::Tag => tag(),
            FieldKey::Trait => computed()
                .or_else(tag)
                .or_else(|| self.row.traits.get(name).map(|v| values_of(v.clone()))),
        };
        found.unwrap_or_default()
    }
}

impl SegmentFacts for RowFacts<'_> {
    fn in_segment(&self, id: &str) -> bool {
        self.row.segments.contains(id)
    }

    fn consents(&self, channel: &str, purpose: &str) -> bool {
        self.row
            .consents
            .contains(&(channel.to_owned(), purpose.to_owned()))
    }
}

/// The hidden traits of the definition's event conditions, folded from the profile's events.
fn hidden(def: &SegmentDef, events: &[Event]) -> BTreeMap<String, Value> {
    def.hidden_traits(ID)
        .into_iter()
        .map(|(name, trait_def)| {
            let mut state = TraitState::default();
            for (i, (event, at, payload)) in events.iter().enumerate() {
                let id = format!("m{i}");
                state.apply(
                    &trait_def,
                    MessageKind::Track,
                    Some(event),
                    payload,
                    *at,
                    &id,
                );
            }
            (name, state.value_at(&trait_def, now()))
        })
        .collect()
}

/// The profiles the definition holds for, one by one.
fn reference(def: &SegmentDef, profiles: &[Profile], names: &Names) -> BTreeSet<String> {
    profiles
        .iter()
        .filter(|p| {
            let facts = RowFacts {
                row: &p.row,
                names,
                hidden: hidden(def, &p.events),
            };
            def.holds(ID, &facts, now())
        })
        .map(|p| p.row.profile.clone())
        .collect()
}

/// The final profile of each id (later ones replace earlier ones, as upserts do).
fn last_of_each(profiles: &[Profile]) -> Vec<Profile> {
    let mut by_id: BTreeMap<String, Profile> = BTreeMap::new();
    for p in profiles {
        by_id.insert(p.row.profile.clone(), p.clone());
    }
    by_id.into_values().collect()
}

fn members(index: &AudienceIndex, def: &SegmentDef) -> BTreeSet<String> {
    let rows = index
        .matching(def, now())
        .expect("the test's conditions are answerable");
    rows.iter().map(|r| index.ids[r as usize].clone()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The index's members, count, sample, spend and breakdown equal the definition evaluated on
    /// each profile — also after rows were replaced and removed.
    #[test]
    fn the_index_answers_what_each_profile_says(
        profiles in profiles(),
        condition in condition(),
        removed in prop::collection::vec(0usize..24, 0..3),
    ) {
        let Ok(def) = SegmentDef::parse(&json!({"condition": condition})) else {
            return Ok(());
        };
        let names = names();
        let mut index = AudienceIndex::new(names.clone());
        for p in &profiles {
            index.upsert(p.row.clone());
        }
        let mut live = last_of_each(&profiles);
        for i in removed {
            if i < live.len() {
                let gone = live.remove(i);
                index.remove(&gone.row.profile);
            }
        }
        let expected = reference(&def, &live, &names);
        prop_assert_eq!(&members(&index, &def), &expected);

        let rows = index.matching(&def, now()).unwrap();
        let summary = index.summary(&rows, 3);
        prop_assert_eq!(summary.count, expected.len() as u64);
        prop_assert_eq!(summary.profiles, live.len() as u64);
        let sample: Vec<String> = expected.iter().take(3).cloned().collect();
        prop_assert_eq!(summary.sample, sample);
        let in_segment: Vec<&Profile> =
            live.iter().filter(|p| expected.contains(&p.row.profile)).collect();
        let spend: f64 = in_segment.iter().map(|p| p.row.spend).sum();
        prop_assert_eq!(summary.spend, spend);
        prop_assert_eq!(summary.orders, in_segment.iter().map(|p| p.row.orders).sum::<u64>());

        // By city × tier (a trait and a name the tag shadows), multi-valued lists in each group.
        let fields = parse_breakdown(&json!([{"trait": "city"}, {"trait": "tier"}])).unwrap();
        let breakdown = index.breakdown(&rows, &fields);
        let mut counted: BTreeMap<String, u64> = BTreeMap::new();
        for p in &in_segment {
            let facts = RowFacts { row: &p.row, names: &names, hidden: BTreeMap::new() };
            let spread = |name: &str| {
                let mut values: Vec<Value> = Vec::new();
                for v in facts.field(FieldKey::Trait, name) {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
                if values.is_empty() {
                    values.push(Value::Null);
                }
                values
            };
            for a in spread("city") {
                for b in spread("tier") {
                    *counted.entry(json!([a, b]).to_string()).or_default() += 1;
                }
            }
        }
        let answered: BTreeMap<String, u64> = breakdown
            .groups
            .iter()
            .map(|g| (Value::Array(g.values.clone()).to_string(), g.count))
            .collect();
        prop_assert_eq!(answered, counted);
    }
}

#[test]
fn where_filters_are_answered_from_the_facets_where_they_can_be() {
    let def = |filter: Value| {
        SegmentDef::parse(
            &json!({"condition": {"event": "Product Added", "window": "14d",
            "where": [filter], "count": {"op": "gte", "value": 2}}}),
        )
        .unwrap()
    };
    let shoes = json!({"property": "properties.category", "op": "eq", "value": "shoes"});
    let at = now() - Duration::hours(2);
    let hour = hour_of_micros(at.timestamp_micros());
    let row = |profile: &str, categories: &[Value]| {
        let faceted = categories
            .iter()
            .map(|c| {
                let payload = json!({"properties": {"category": c}});
                (
                    "Product Added".to_owned(),
                    hour,
                    facets::facets_of(&payload),
                )
            })
            .collect();
        ProfileRow {
            profile: profile.to_owned(),
            events: Some(vec![(
                "Product Added".to_owned(),
                hour,
                u32::try_from(categories.len()).unwrap(),
            )]),
            faceted,
            ..ProfileRow::default()
        }
    };
    let mut index = AudienceIndex::new(names());
    index.upsert(row("p_1", &[json!("shoes"), json!("shoes")]));
    index.upsert(row("p_2", &[json!("shoes"), json!("tea")]));
    let members = index.matching(&def(shoes.clone()), now()).unwrap();
    assert_eq!(members, index.rows_of(["p_1"]));
    for refused in [
        json!({"property": "context.channel", "op": "eq", "value": "pos"}),
        json!({"property": "properties.at", "op": "within_last", "value": "1d"}),
    ] {
        assert!(
            matches!(
                index.matching(&def(refused.clone()), now()),
                Err(Unsupported::EventCondition { index: 0, .. })
            ),
            "{refused}"
        );
    }
    // An object where the filter reads: the facets do not keep it.
    index.upsert(row("p_3", &[json!({"name": "shoes"}), json!("shoes")]));
    assert!(index.matching(&def(shoes.clone()), now()).is_err());
    // An event whose facets are not known: no filter on its name is answered.
    let mut index = AudienceIndex::new(names());
    let mut unknown = row("p_1", &[json!("shoes")]);
    unknown.faceted[0].2 = None;
    index.upsert(unknown);
    assert!(index.matching(&def(shoes), now()).is_err());
}

#[test]
fn profiles_whose_events_are_not_summarised_send_event_conditions_elsewhere() {
    let mut index = AudienceIndex::new(names());
    index.upsert(ProfileRow {
        profile: "p_1".into(),
        events: None,
        ..ProfileRow::default()
    });
    let events = SegmentDef::parse(&json!({"condition": {"event": "Product Added"}})).unwrap();
    assert_eq!(
        index.matching(&events, now()),
        Err(Unsupported::EventsUnknown(1))
    );
    let traits =
        SegmentDef::parse(&json!({"condition": {"trait": "city", "op": "is_not_set"}})).unwrap();
    assert_eq!(index.matching(&traits, now()).unwrap().len(), 1);
}

#[test]
fn a_row_due_again_is_reported_stale_once_its_time_came() {
    let mut index = AudienceIndex::new(names());
    index.upsert(ProfileRow {
        profile: "p_1".into(),
        valid_until: Some(now()),
        events: Some(Vec::new()),
        ..ProfileRow::default()
    });
    assert!(index.stale_at(now() - Duration::seconds(1)).is_empty());
    assert_eq!(index.stale_at(now()), vec!["p_1".to_owned()]);
}

#[test]
fn segment_and_tag_sizes_come_from_the_bitmaps() {
    let mut index = AudienceIndex::new(names());
    for (i, seg) in ["a", "a", "b"].iter().enumerate() {
        index.upsert(ProfileRow {
            profile: format!("p_{i}"),
            segments: [seg.to_string()].into(),
            tags: BTreeMap::from([("tier".to_owned(), json!("gold"))]),
            events: Some(Vec::new()),
            ..ProfileRow::default()
        });
    }
    index.remove("p_0");
    assert_eq!(
        index.segment_sizes(),
        BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 1)])
    );
    assert_eq!(index.tag_sizes(), BTreeMap::from([("tier".to_owned(), 2)]));
}

#[test]
fn a_tags_population_per_value_comes_from_the_bitmaps() {
    let mut index = AudienceIndex::new(names());
    for (i, (tier, spend)) in [
        ("gold", 10.5),
        ("gold", 20.25),
        ("silver", 7.0),
        ("gold", 99.0),
    ]
    .into_iter()
    .enumerate()
    {
        index.upsert(ProfileRow {
            profile: format!("p_{i}"),
            tags: BTreeMap::from([("tier".to_owned(), json!(tier))]),
            spend,
            events: Some(Vec::new()),
            ..ProfileRow::default()
        });
    }
    index.upsert(ProfileRow {
        profile: "p_untagged".into(),
        spend: 1000.0,
        events: Some(Vec::new()),
        ..ProfileRow::default()
    });
    // A profile that goes takes its value and spend with it.
    index.remove("p_3");
    let mut values = index.tag_values("tier").unwrap();
    values.sort_by_key(|v| v.0.to_string());
    assert_eq!(
        values,
        vec![(json!("gold"), 2, 30.75), (json!("silver"), 1, 7.0)]
    );
    // A defined tag nobody has: no values; an undefined one: not the index's to say.
    assert_eq!(index.tag_values("vip_tag"), Some(Vec::new()));
    assert_eq!(index.tag_values("nope"), None);
    // A list value is one value in the stored rows but its items here: left to the stored rows.
    index.upsert(ProfileRow {
        profile: "p_list".into(),
        tags: BTreeMap::from([("rfm".to_owned(), json!(["a", "b"]))]),
        events: Some(Vec::new()),
        ..ProfileRow::default()
    });
    assert_eq!(index.tag_values("rfm"), None);
}

#[test]
fn a_segments_new_members_enter_and_its_old_ones_leave() {
    let mut index = AudienceIndex::new(names());
    for (i, (city, member)) in [
        ("sh", true),
        ("sh", false),
        ("bj", true),
        ("bj", false),
        ("sh", true),
    ]
    .into_iter()
    .enumerate()
    {
        index.upsert(ProfileRow {
            profile: format!("p_{i}"),
            traits: BTreeMap::from([("city".to_owned(), json!(city))]),
            segments: if member {
                ["s".to_owned()].into()
            } else {
                BTreeSet::new()
            },
            events: Some(Vec::new()),
            ..ProfileRow::default()
        });
    }
    // p_4 is gone: neither enters nor leaves.
    index.remove("p_4");
    let def =
        SegmentDef::parse(&json!({"condition": {"trait": "city", "op": "eq", "value": "sh"}}))
            .unwrap();
    let members = index.matching(&def, now()).unwrap();
    let (enter, leave) = index.membership_change("s", &members);
    assert_eq!(
        (enter, leave),
        (vec!["p_1".to_owned()], vec!["p_2".to_owned()])
    );
    // A segment nobody is stored in yet: every member enters.
    let (enter, leave) = index.membership_change("new", &members);
    assert_eq!(enter, vec!["p_0".to_owned(), "p_1".to_owned()]);
    assert!(leave.is_empty());
}
