//! Given/when/then over operator commands: manual merges, splits that keep profiles apart, rules changes
//! applied retroactively; and the property that a merge then a split gives both sides back exactly.

use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::event::NewEvent;
use crate::message::MessageKind;
use crate::profile::{split_docs, FoldRules, OwnedEvent, ProfileDoc};

fn p(id: &str) -> ProfileId {
    ProfileId::parse(id).unwrap()
}

fn id(t: &str, v: &str) -> Identifier {
    Identifier::new(t, v)
}

/// Resolves events one by one into a graph, numbering new profiles p1, p2, …
#[derive(Default)]
struct Graph {
    graph: IdentityGraph,
    created: u64,
}

impl Graph {
    fn ingest(&mut self, rules: &IdentityRules, message: &str, ids: &[(&str, &str)]) -> Resolution {
        let pairs: Vec<(String, String)> = ids
            .iter()
            .map(|(t, v)| ((*t).into(), (*v).into()))
            .collect();
        let mut n = self.created;
        let r = resolve(&self.graph, rules, &pairs, message, || {
            n += 1;
            p(&format!("p{n}"))
        });
        self.created = n;
        self.apply(&r.events);
        r
    }

    fn apply(&mut self, events: &[IdentityEvent]) {
        for e in events {
            self.graph.apply(e);
        }
    }
}

#[test]
fn an_operator_merge_joins_what_a_shared_phone_keeps_apart_into_the_earliest() {
    let mut phone = IdentifierRule::new(3, 5);
    phone.may_merge = false;
    let rules = IdentityRules::default().with("phone", phone);
    let mut w = Graph::default();
    w.ingest(
        &rules,
        "m1",
        &[("user_id", "child"), ("phone", "13800138000")],
    );
    w.ingest(
        &rules,
        "m2",
        &[("email", "mum@x.cn"), ("phone", "13800138000")],
    );
    assert_eq!(w.graph.profiles().count(), 2);

    let events = manual_merge(&w.graph, &rules, &[p("p2"), p("p1")], "same person", "op1").unwrap();
    assert_eq!(events.len(), 1);
    let IdentityEvent::ProfilesMerged {
        survivor,
        absorbed,
        via,
        reason,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (survivor, absorbed, via, reason.as_deref()),
        (&p("p1"), &p("p2"), &None, Some("same person"))
    );
    w.apply(&events);
    assert_eq!(w.graph.profile_of("email", "mum@x.cn"), Some(p("p1")));

    let again = manual_merge(&w.graph, &rules, &[p("p1"), p("p2")], "", "op2").unwrap_err();
    assert!(again.0.contains("already one profile"), "{again}");
    assert!(manual_merge(&w.graph, &rules, &[p("p1"), p("nope")], "", "op3").is_err());
}

#[test]
fn an_operator_merge_never_passes_the_caps() {
    let rules = IdentityRules {
        max_identifiers: 2,
        ..IdentityRules::default()
    };
    let mut w = Graph::default();
    w.ingest(&rules, "m1", &[("user_id", "a"), ("email", "a@x.cn")]);
    w.ingest(&rules, "m2", &[("user_id", "b")]);
    let refused = manual_merge(&w.graph, &rules, &[p("p1"), p("p2")], "", "op").unwrap_err();
    assert!(refused.0.contains("cap"), "{refused}");
}

#[test]
fn a_split_moves_identifiers_to_a_new_profile_that_no_event_joins_again() {
    let rules = IdentityRules::default();
    let mut w = Graph::default();
    w.ingest(
        &rules,
        "m1",
        &[("user_id", "ann"), ("email", "shared@x.cn")],
    );
    w.ingest(
        &rules,
        "m2",
        &[("email", "shared@x.cn"), ("phone", "13800138000")],
    );
    let event = split(
        &w.graph,
        &rules,
        &p("p1"),
        &[id("phone", "+86 138 0013 8000")],
        p("p9"),
        "wrong join",
        "op1",
    )
    .unwrap();
    let IdentityEvent::ProfileSplit {
        from,
        into,
        identifiers,
        keep_apart,
        ..
    } = &event
    else {
        panic!("{event:?}")
    };
    assert_eq!((from, into, *keep_apart), (&p("p1"), &p("p9"), true));
    assert_eq!(identifiers, &vec![id("phone", "8613800138000")]);
    w.apply(&[event]);
    assert_eq!(w.graph.profile_of("phone", "8613800138000"), Some(p("p9")));
    assert_eq!(w.graph.profile_of("user_id", "ann"), Some(p("p1")));

    // An event joining the two again is refused and recorded.
    let r = w.ingest(
        &rules,
        "m3",
        &[("email", "shared@x.cn"), ("phone", "13800138000")],
    );
    assert!(
        r.events.iter().any(|e| matches!(
            e,
            IdentityEvent::MergeRejected {
                reason: RejectReason::KeptApart,
                ..
            }
        )),
        "{:?}",
        r.events
    );
    assert_eq!(w.graph.profiles().count(), 2);
    // Only an operator merge does.
    let events =
        manual_merge(&w.graph, &rules, &[p("p9"), p("p1")], "it was right", "op2").unwrap();
    w.apply(&events);
    assert_eq!(w.graph.profiles().count(), 1);
}

#[test]
fn a_split_must_name_identifiers_the_profile_holds_and_leave_it_one() {
    let rules = IdentityRules::default();
    let mut w = Graph::default();
    w.ingest(&rules, "m1", &[("user_id", "ann"), ("email", "a@x.cn")]);
    let not_held = split(
        &w.graph,
        &rules,
        &p("p1"),
        &[id("email", "b@x.cn")],
        p("p9"),
        "",
        "op",
    )
    .unwrap_err();
    assert!(not_held.0.contains("does not hold"), "{not_held}");
    let all = split(
        &w.graph,
        &rules,
        &p("p1"),
        &[id("email", "a@x.cn"), id("user_id", "ann")],
        p("p9"),
        "",
        "op",
    )
    .unwrap_err();
    assert!(all.0.contains("at least one"), "{all}");
    assert!(split(&w.graph, &rules, &p("p1"), &[], p("p9"), "", "op").is_err());
    assert!(split(
        &w.graph,
        &rules,
        &p("p7"),
        &[id("email", "a@x.cn")],
        p("p9"),
        "",
        "op"
    )
    .is_err());
}

fn log_of(messages: &[(&str, &[(&str, &str)])]) -> Vec<(String, Vec<(String, String)>)> {
    messages
        .iter()
        .map(|(m, ids)| {
            (
                (*m).into(),
                ids.iter()
                    .map(|(t, v)| ((*t).into(), (*v).into()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn a_rules_change_says_which_profiles_would_merge_and_split_and_applies_as_events() {
    let old = IdentityRules::default().declare("member_card");
    let messages: Vec<(&str, &[(&str, &str)])> = vec![
        ("m1", &[("user_id", "ann"), ("phone", "13800138000")]),
        ("m2", &[("member_card", "C1"), ("email", "ann@x.cn")]),
        ("m3", &[("user_id", "bob"), ("device_id", "tablet")]),
        ("m4", &[("user_id", "cat"), ("device_id", "tablet")]),
    ];
    let mut w = Graph::default();
    for (m, ids) in &messages {
        w.ingest(&old, m, ids);
    }
    // Under the old rules cat may not join bob through the shop tablet (user_id's limit is 1): ann, the
    // card, bob with the tablet, and cat.
    assert_eq!(w.graph.profiles().count(), 4);

    // Blocking the tablet changes no cluster: an identifier the shadow does not link stays where it is.
    let mut device = IdentifierRule::new(5, 5);
    device.blocked = vec!["tablet".into()];
    let mut new = old.clone().with("device_id", device);
    new.version = 2;
    let diff = rules_diff(&w.graph, &new, &log_of(&messages));
    assert!(diff.is_empty(), "{diff:?}");

    // Two user ids per profile: bob and cat, sharing the tablet, would become one.
    let user_id = IdentifierRule::new(1, 2);
    let mut looser = old.clone().with("user_id", user_id);
    looser.version = 3;
    let diff = rules_diff(&w.graph, &looser, &log_of(&messages));
    assert_eq!(diff.merges.len(), 1, "{diff:?}");
    assert_eq!(diff.merges[0].profiles, vec![p("p3"), p("p4")]);
    assert!(diff.splits.is_empty());
    let mut n = 0;
    let events = apply_rules_diff(&w.graph, &looser, &diff, "rules3", || {
        n += 1;
        p(&format!("r{n}"))
    });
    w.apply(&events);
    assert_eq!(w.graph.profile_of("user_id", "cat"), Some(p("p3")));

    // And back: the old rules split them again, the tablet's and bob's side staying with the survivor.
    let mut back = old.clone();
    back.version = 4;
    let diff = rules_diff(&w.graph, &back, &log_of(&messages));
    assert_eq!(diff.splits.len(), 1, "{diff:?}");
    assert_eq!(diff.splits[0].profile, p("p3"));
    assert_eq!(diff.splits[0].leave, vec![vec![id("user_id", "cat")]]);
    let events = apply_rules_diff(&w.graph, &back, &diff, "rules4", || p("r9"));
    w.apply(&events);
    assert_eq!(w.graph.profile_of("user_id", "cat"), Some(p("r9")));
    assert_eq!(w.graph.profile_of("device_id", "tablet"), Some(p("p3")));
    assert!(!w.graph.kept_apart(&p("p3"), &p("r9")));
}

/// A customer event with `ids`, at hour `n % 24`, setting trait `k{n % 3}`.
fn customer_event(n: usize, channel: &str) -> (NewEvent, serde_json::Value) {
    let time = chrono::Utc
        .with_ymd_and_hms(2026, 3, 1, (n % 24) as u32, 0, 0)
        .unwrap();
    let payload = json!({"type": "track", "event": format!("E{}", n % 2),
        "properties": {}, "traits": {format!("k{}", n % 3): n}, "context": {"channel": channel}});
    (
        NewEvent {
            workspace: "w".into(),
            message_id: format!("m{n:03}"),
            kind: MessageKind::Track,
            name: Some(format!("E{}", n % 2)),
            user_id: None,
            anonymous_id: None,
            event_time: time,
            received_at: time,
            payload: payload.to_string(),
        },
        payload,
    )
}

proptest! {
    /// Two customers, each with their own identifiers and events; an operator merges them, more events
    /// may arrive for neither, then splits the second's identifiers off: both documents are exactly the
    /// pre-merge ones, whatever the events.
    #[test]
    fn merge_then_split_returns_both_sides_to_their_pre_merge_state(
        a_events in prop::collection::vec(0usize..3, 1..12),
        b_events in prop::collection::vec(0usize..3, 1..12),
    ) {
        let rules = IdentityRules::default();
        let channels = ["pos", "crm", "app"];
        let mut w = Graph::default();
        let mut docs: std::collections::BTreeMap<ProfileId, ProfileDoc> = Default::default();
        let mut owned: Vec<(ProfileId, NewEvent, serde_json::Value, Vec<Identifier>)> = Vec::new();
        let a_ids = [("user_id", "ann"), ("email", "ann@x.cn")];
        let b_ids = [("phone", "13800138000"), ("anonymous_id", "dev-b")];
        let mut n = 0;
        for (ids, picks) in [(&a_ids, &a_events), (&b_ids, &b_events)] {
            for pick in picks {
                n += 1;
                let (event, payload) = customer_event(n, channels[*pick]);
                let r = w.ingest(&rules, &event.message_id, ids);
                let target = r.profile.unwrap();
                let doc = docs.entry(target.clone()).or_default();
                for e in &r.events {
                    if let IdentityEvent::IdentifierLinked { id_type, value, .. } = e {
                        doc.linked.push(Identifier::new(id_type, value));
                    }
                }
                let carried: Vec<Identifier> = ids.iter().map(|(t, v)| {
                    Identifier::new(t, &rules.normalise(t, v).unwrap())
                }).collect();
                doc.apply(&event, &payload, &carried, FoldRules::NONE);
                owned.push((target, event, payload, carried));
            }
        }
        let before = docs.clone();
        prop_assert_eq!(before.len(), 2);

        // Merge: the survivor's document absorbs the other's; its events follow.
        let merge = manual_merge(&w.graph, &rules, &[p("p1"), p("p2")], "", "op1").unwrap();
        w.apply(&merge);
        let absorbed = docs.remove(&p("p2")).unwrap();
        docs.get_mut(&p("p1")).unwrap().absorb(absorbed, FoldRules::NONE);
        for o in &mut owned {
            o.0 = p("p1");
        }

        // Split b's identifiers off.
        let b_identifiers: Vec<Identifier> = b_ids.iter().map(|(t, v)| Identifier::new(t, v)).collect();
        let event = split(&w.graph, &rules, &p("p1"), &b_identifiers, p("p9"), "", "op2").unwrap();
        let IdentityEvent::ProfileSplit { identifiers: moved, .. } = &event else { unreachable!() };
        let events: Vec<OwnedEvent<'_>> = owned.iter().map(|(_, e, pl, c)| OwnedEvent {
            event: e, payload: pl, carried: c,
        }).collect();
        let (stays, leaves, _) = split_docs(&docs[&p("p1")].linked, moved, &events, &rules, FoldRules::NONE);
        w.apply(&[event]);

        prop_assert_eq!(&stays, &before[&p("p1")]);
        let mut b_before = before[&p("p2")].clone();
        // The identifiers keep their link order; the normalised phone is what both hold.
        b_before.linked.sort();
        let mut b_after = leaves.clone();
        b_after.linked.sort();
        prop_assert_eq!(&b_after, &b_before);
        prop_assert_eq!(w.graph.profile(&p("p9")).unwrap().identifiers.len(), 2);
    }
}

#[test]
fn a_rules_change_never_undoes_what_an_operator_decided() {
    let rules = IdentityRules::default();
    let messages: Vec<(&str, &[(&str, &str)])> = vec![
        ("m1", &[("user_id", "bob"), ("device_id", "tablet")]),
        ("m2", &[("user_id", "cat"), ("device_id", "tablet")]),
        ("m3", &[("user_id", "dan"), ("email", "dan@x.cn")]),
        ("m4", &[("email", "dan@x.cn"), ("phone", "13800138000")]),
    ];
    let mut w = Graph::default();
    for (m, ids) in &messages {
        w.ingest(&rules, m, ids);
    }
    // The operator knows bob and cat are one household account, and that the phone is not dan's.
    let merge = manual_merge(&w.graph, &rules, &[p("p1"), p("p2")], "household", "op1").unwrap();
    assert!(matches!(
        &merge[0],
        IdentityEvent::ProfilesMerged {
            by_operator: true,
            ..
        }
    ));
    w.apply(&merge);
    let dan = w.graph.profile_of("user_id", "dan").unwrap();
    let event = split(
        &w.graph,
        &rules,
        &dan,
        &[id("phone", "13800138000")],
        p("p9"),
        "not dan's",
        "op2",
    )
    .unwrap();
    w.apply(&[event]);

    // Re-resolving the log under the same rules would separate bob and cat and join the phone to dan.
    let mut again = rules.clone();
    again.version = 2;
    let diff = rules_diff(&w.graph, &again, &log_of(&messages));
    assert!(diff.is_empty(), "{diff:?}");
}
