//! Given events, when folded in any order or grouping, then the same profile document.

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::identity::IdentityRules;

fn event(n: usize, hour: u32, channel: &str, traits: Value) -> (NewEvent, Value) {
    let time = Utc.with_ymd_and_hms(2026, 1, 1, hour, 0, 0).unwrap();
    let kind = if n.is_multiple_of(3) {
        "track"
    } else {
        "identify"
    };
    let payload = json!({"type": kind, "event": "Order Completed", "traits": traits,
        "context": {"channel": channel}});
    let event = NewEvent {
        workspace: "w".into(),
        message_id: format!("m{n:03}"),
        kind: MessageKind::parse(kind).unwrap(),
        name: (kind == "track").then(|| "Order Completed".to_owned()),
        user_id: Some("u".into()),
        anonymous_id: None,
        event_time: time,
        received_at: time,
        payload: payload.to_string(),
    };
    (event, payload)
}

fn fold(events: &[(NewEvent, Value)], fold: FoldRules<'_>) -> ProfileDoc {
    let mut doc = ProfileDoc::default();
    for (e, p) in events {
        let carried = [Identifier::new("user_id", "u")];
        doc.apply(e, p, &carried, fold);
    }
    doc
}

#[test]
fn the_later_value_wins_whatever_order_events_arrive_in() {
    let newer = event(1, 10, "crm", json!({"plan": "gold"}));
    let older = event(2, 9, "pos", json!({"plan": "silver", "city": "SH"}));
    let doc = fold(&[newer.clone(), older.clone()], FoldRules::NONE);
    assert_eq!(doc, fold(&[older, newer], FoldRules::NONE));
    assert_eq!(doc.traits["plan"].value, json!("gold"));
    assert_eq!(doc.traits["plan"].message_id, "m001");
    assert_eq!(doc.traits["plan"].channel, "crm");
    assert_eq!(doc.traits["city"].value, json!("SH"));
    assert_eq!(doc.counts_by_channel["pos"], 1);
    let seen = doc.seen["user_id"]["u"];
    assert_eq!(
        (
            seen.first.format("%H").to_string(),
            seen.last.format("%H").to_string()
        ),
        ("09".into(), "10".into())
    );
}

#[test]
fn a_stronger_channel_wins_over_a_later_event() {
    let priority = vec!["crm".to_owned()];
    let rules = FoldRules {
        source_priority: &priority,
        ..FoldRules::NONE
    };
    let crm = event(1, 9, "crm", json!({"name": "Wang Wei"}));
    let app = event(2, 10, "app", json!({"name": "ww"}));
    let doc = fold(&[app, crm], rules);
    assert_eq!(doc.traits["name"].value, json!("Wang Wei"));
}

#[test]
fn explicit_traits_win_over_context_traits_of_the_same_message() {
    let (mut e, _) = event(1, 9, "crm", json!({}));
    let payload = json!({"type": "identify", "traits": {"tier": "gold"},
        "context": {"traits": {"tier": "silver"}}});
    e.payload = payload.to_string();
    let mut doc = ProfileDoc::default();
    doc.apply(&e, &payload, &[], FoldRules::NONE);
    assert_eq!(doc.traits["tier"].value, json!("gold"));
}

#[test]
fn the_channel_comes_from_context_then_the_message_then_the_library() {
    assert_eq!(
        channel_of(&json!({"context": {"channel": "pos"}, "channel": "web"})),
        "pos"
    );
    assert_eq!(channel_of(&json!({"channel": "web"})), "web");
    assert_eq!(
        channel_of(&json!({"context": {"library": {"name": "analytics-python"}}})),
        "analytics-python"
    );
    assert_eq!(channel_of(&json!({"context": {"channel": " "}})), "unknown");
}

#[test]
fn an_event_follows_its_strongest_identifier_in_a_split() {
    let member = Identifier::new("user_id", "m1");
    let cookie = Identifier::new("anonymous_id", "shared-pc");
    let (browse, p1) = event(1, 9, "online_shop", json!({}));
    let (order, p2) = event(2, 10, "online_shop", json!({}));
    let (visit, p3) = event(3, 11, "pos", json!({}));
    let only_cookie = [cookie.clone()];
    let both = [member.clone(), cookie.clone()];
    let only_member = [member.clone()];
    let events = [
        OwnedEvent {
            event: &browse,
            payload: &p1,
            carried: &only_cookie,
        },
        OwnedEvent {
            event: &order,
            payload: &p2,
            carried: &both,
        },
        OwnedEvent {
            event: &visit,
            payload: &p3,
            carried: &only_member,
        },
    ];
    let linked = [member.clone(), cookie.clone()];
    let rules = IdentityRules::default();
    let (stays, leaves, went) = split_docs(
        &linked,
        std::slice::from_ref(&cookie),
        &events,
        &rules,
        FoldRules::NONE,
    );
    assert_eq!(
        went,
        [true, false, false],
        "the order stays with the member"
    );
    assert_eq!((stays.events, leaves.events), (2, 1));
    assert_eq!(stays.linked, std::slice::from_ref(&member));
    assert_eq!(leaves.linked, std::slice::from_ref(&cookie));

    // Splitting the member off instead: the order follows the member's user id.
    let (_, leaves, went) = split_docs(
        &linked,
        std::slice::from_ref(&member),
        &events,
        &rules,
        FoldRules::NONE,
    );
    assert_eq!(went, [false, true, true]);
    assert_eq!(leaves.linked, [member]);
}

proptest! {
    #[test]
    fn order_and_grouping_do_not_change_the_document(
        specs in prop::collection::vec((0u32..24, 0usize..3, 0usize..3, 0usize..4), 1..40),
        cut in 0usize..40,
        seed in any::<u64>(),
    ) {
        let channels = ["pos", "crm", "app"];
        let priority = vec!["crm".to_owned(), "pos".to_owned()];
        let rules = FoldRules { source_priority: &priority, ..FoldRules::NONE };
        let events: Vec<_> = specs.iter().enumerate().map(|(i, (hour, ch, key, val))| {
            event(i, *hour, channels[*ch], json!({ format!("k{key}"): val }))
        }).collect();
        let whole = fold(&events, rules);

        let mut shuffled = events.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&fold(&shuffled, rules), &whole);

        let cut = cut.min(events.len());
        let mut left = fold(&shuffled[..cut], rules);
        left.absorb(fold(&shuffled[cut..], rules), rules);
        prop_assert_eq!(&left, &whole);

        // Stored and read back, in the binary form and in the JSON form of earlier versions.
        let state = whole.to_state();
        prop_assert_eq!(&ProfileDoc::from_stored(Some(&state), None).unwrap(), &whole);
        let json = serde_json::to_string(&whole).unwrap();
        prop_assert_eq!(&ProfileDoc::from_stored(None, Some(&json)).unwrap(), &whole);
    }
}

#[test]
fn a_document_stored_as_json_by_an_earlier_version_still_reads() {
    // As version 0.1 wrote it: empty maps, absent names and times left out, the recent events in the
    // document (now read from `event_profiles`: ignored).
    let json = r#"{"linked":[{"type":"user_id","value":"u"}],
        "seen":{"user_id":{"u":{"first":"2026-01-01T09:00:00Z","last":"2026-01-01T10:00:00Z"}}},
        "traits":{"plan":{"value":{"tier":["gold"]},"set_at":"2026-01-01T10:00:00Z",
            "message_id":"m1","channel":"crm","kind":"identify"}},
        "events":2,"counts_by_type":{"identify":2},"counts_by_event":{},
        "counts_by_channel":{"crm":2},"first_seen":"2026-01-01T09:00:00Z",
        "last_seen":"2026-01-01T10:00:00Z",
        "recent_events":[{"message_id":"m1","type":"identify","channel":"crm",
            "timestamp":"2026-01-01T10:00:00Z","received_at":"2026-01-01T10:00:00Z"}],
        "computed":{"spend":{"v":1,"c":true,"s":{"b":{"19848":{"n":1,"s":5000000}}}}}}"#;
    let doc = ProfileDoc::from_stored(None, Some(json)).unwrap();
    assert_eq!(doc.traits["plan"].value, json!({"tier": ["gold"]}));
    assert_eq!(doc.events, 2);
    assert_eq!(doc.computed["spend"].last_event_at, None);
    assert!(doc.consent.is_empty());
    let again = ProfileDoc::from_stored(Some(&doc.to_state()), None).unwrap();
    assert_eq!(again, doc);
    assert!(doc.to_state().len() < json.len() / 2);
    assert!(matches!(
        ProfileDoc::from_stored(None, None),
        Err(StoredDocError::Missing)
    ));
    assert!(ProfileDoc::from_stored(Some(&[1, 0xff, 0xff]), Some(json)).is_err());
}
