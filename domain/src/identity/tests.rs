//! Given/when/then over identity events: the seeds' cases and every resolution rule, and property tests
//! that batching and replay do not change the graph.

use proptest::prelude::*;

use super::*;

/// Profile ids that sort the other way round from their creation, so that "earliest" cannot come from
/// the id.
fn nth_profile(n: u64) -> ProfileId {
    ProfileId::parse(&format!("p{}", 1000 - n)).unwrap()
}

fn pid(n: u64) -> ProfileId {
    nth_profile(n)
}

fn pairs(ids: &[(&str, &str)]) -> Vec<(String, String)> {
    ids.iter()
        .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
        .collect()
}

fn id(id_type: &str, value: &str) -> Identifier {
    Identifier::new(id_type, value)
}

/// A workspace's identity state: the rules, the graph and every decision so far.
struct World {
    rules: IdentityRules,
    graph: IdentityGraph,
    log: Vec<IdentityEvent>,
    created: u64,
}

impl World {
    fn new(rules: IdentityRules) -> Self {
        Self {
            rules,
            graph: IdentityGraph::new(),
            log: Vec::new(),
            created: 0,
        }
    }

    /// When an event with these identifiers arrives: the profile it resolves to and the decisions.
    fn ingest(
        &mut self,
        message: &str,
        ids: &[(&str, &str)],
    ) -> (Option<ProfileId>, Vec<IdentityEvent>) {
        let mut created = self.created;
        let resolution = resolve(&self.graph, &self.rules, &pairs(ids), message, || {
            created += 1;
            nth_profile(created)
        });
        self.created = created;
        for event in &resolution.events {
            self.graph.apply(event);
        }
        self.log.extend(resolution.events.iter().cloned());
        (resolution.profile, resolution.events)
    }

    fn owner(&self, id_type: &str, value: &str) -> Option<ProfileId> {
        self.graph.profile_of(id_type, value)
    }

    fn live(&self) -> usize {
        self.graph.profiles().count()
    }

    fn replayed(&self) -> IdentityGraph {
        let mut graph = IdentityGraph::new();
        for event in &self.log {
            graph.apply(event);
        }
        graph
    }
}

fn linked(profile: u64, id_type: &str, value: &str, message: &str) -> IdentityEvent {
    IdentityEvent::IdentifierLinked {
        profile: pid(profile),
        id_type: id_type.into(),
        value: value.into(),
        caused_by: message.into(),
        rule_version: 1,
    }
}

fn created(profile: u64, message: &str) -> IdentityEvent {
    IdentityEvent::ProfileCreated {
        profile: pid(profile),
        caused_by: message.into(),
    }
}

fn retail_rules() -> IdentityRules {
    IdentityRules::default()
        .declare("member_card")
        .declare("wechat_openid")
        .declare("wechat_unionid")
        .declare("tmall_ouid")
}

#[test]
fn an_event_matching_no_profile_creates_one_with_its_identifiers() {
    let mut world = World::new(IdentityRules::default());
    let (profile, events) = world.ingest("m1", &[("user_id", " u1 "), ("email", "Ann@X.com")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(
        events,
        vec![
            created(1, "m1"),
            linked(1, "user_id", "u1", "m1"),
            linked(1, "email", "ann@x.com", "m1"),
        ]
    );
}

#[test]
fn an_event_matching_one_profile_links_its_new_identifiers_to_it() {
    let mut world = World::new(IdentityRules::default());
    world.ingest("m1", &[("anonymous_id", "a1")]);
    let (profile, events) = world.ingest("m2", &[("anonymous_id", "a1"), ("user_id", "u1")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(events, vec![linked(1, "user_id", "u1", "m2")]);
    let (_, events) = world.ingest("m3", &[("user_id", "u1")]);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn pos_phone_crm_card_and_mini_program_ids_become_one_member() {
    let mut world = World::new(retail_rules());
    // Given a POS sale with a phone, and a mini-program visit with the WeChat ids.
    let (pos, _) = world.ingest("pos-1", &[("phone", "138 0013 8000")]);
    let (mini, _) = world.ingest(
        "mp-1",
        &[("wechat_openid", "oA1"), ("wechat_unionid", "uB1")],
    );
    assert_ne!(pos, mini);
    // When the CRM registers the member card with the phone and the unionid.
    let (member, events) = world.ingest(
        "crm-1",
        &[
            ("member_card", "C-001"),
            ("phone", "+86 138-0013-8000"),
            ("wechat_unionid", "uB1"),
        ],
    );
    // Then the two profiles are one, the earliest surviving, and the card is linked to it.
    assert_eq!(member, Some(pid(1)));
    assert_eq!(
        events,
        vec![
            IdentityEvent::ProfilesMerged {
                survivor: pid(1),
                absorbed: pid(2),
                via: Some(id("wechat_unionid", "uB1")),
                reason: None,
                by_operator: false,
                caused_by: "crm-1".into(),
                rule_version: 1,
            },
            linked(1, "member_card", "C-001", "crm-1"),
        ]
    );
    assert_eq!(world.live(), 1);
    for (t, v) in [
        ("phone", "8613800138000"),
        ("member_card", "C-001"),
        ("wechat_openid", "oA1"),
        ("wechat_unionid", "uB1"),
    ] {
        assert_eq!(world.owner(t, v), Some(pid(1)), "{t}={v}");
    }
    // And the merged-away profile keeps resolving to the survivor.
    assert_eq!(world.graph.resolve(&pid(2)), pid(1));
    assert_eq!(world.graph.profile(&pid(2)).unwrap().identifiers.len(), 4);
    // And a later mini-program event lands on the member.
    let (later, events) = world.ingest("mp-2", &[("wechat_openid", "oA1")]);
    assert_eq!((later, events), (Some(pid(1)), vec![]));
}

#[test]
fn a_child_and_a_parent_sharing_a_phone_are_linked_not_merged() {
    let mut phone = IdentifierRule::new(3, 5);
    phone.may_merge = false;
    let mut world = World::new(retail_rules().with("phone", phone));
    // Given the parent's card with the family phone, and the child patient's own card.
    let (parent, _) = world.ingest("m1", &[("member_card", "PARENT"), ("phone", "13800138000")]);
    let (child, _) = world.ingest("m2", &[("member_card", "CHILD")]);
    // When the child's visit carries the family phone.
    let (resolved, events) =
        world.ingest("m3", &[("member_card", "CHILD"), ("phone", "13800138000")]);
    // Then it resolves to the child, the phone stays with the parent, and the refused merge is recorded.
    assert_eq!(resolved, child);
    assert_eq!(
        events,
        vec![IdentityEvent::MergeRejected {
            profiles: vec![pid(1), pid(2)],
            reason: RejectReason::TypeMayNotMerge,
            evidence: vec![id("phone", "8613800138000")],
            caused_by: "m3".into(),
            rule_version: 1,
        }]
    );
    assert_eq!(world.live(), 2);
    assert_eq!(world.owner("phone", "8613800138000"), parent);
    // And a sibling's new card with the same phone gets a profile of its own.
    let (sibling, events) = world.ingest(
        "m4",
        &[("member_card", "SIBLING"), ("phone", "13800138000")],
    );
    assert_eq!(sibling, Some(pid(3)));
    assert!(matches!(
        events.last(),
        Some(IdentityEvent::MergeRejected {
            reason: RejectReason::TypeMayNotMerge,
            ..
        })
    ));
    assert_eq!(world.live(), 3);
    // And an event with only the phone resolves to the earliest profile holding it.
    let (by_phone, events) = world.ingest("m5", &[("phone", "138 0013 8000")]);
    assert_eq!((by_phone, events), (parent, vec![]));
}

#[test]
fn a_new_user_id_meeting_another_user_ids_email_is_rejected_and_recorded() {
    let mut world = World::new(IdentityRules::default());
    world.ingest("m1", &[("user_id", "u1"), ("email", "shared@x.com")]);
    let (profile, events) = world.ingest("m2", &[("user_id", "u2"), ("email", "shared@x.com")]);
    assert_eq!(profile, Some(pid(2)));
    assert_eq!(
        events,
        vec![
            created(2, "m2"),
            linked(2, "user_id", "u2", "m2"),
            IdentityEvent::MergeRejected {
                profiles: vec![pid(1), pid(2)],
                reason: RejectReason::LimitExceeded,
                evidence: vec![
                    id("email", "shared@x.com"),
                    id("user_id", "u1"),
                    id("user_id", "u2"),
                ],
                caused_by: "m2".into(),
                rule_version: 1,
            },
        ]
    );
    assert_eq!(world.owner("email", "shared@x.com"), Some(pid(1)));
}

#[test]
fn two_user_ids_meeting_on_one_email_are_not_merged() {
    let mut world = World::new(IdentityRules::default());
    world.ingest("m1", &[("user_id", "u1"), ("email", "shared@x.com")]);
    world.ingest("m2", &[("user_id", "u2")]);
    let (profile, events) = world.ingest("m3", &[("email", "shared@x.com"), ("user_id", "u2")]);
    // Segment's rule: the email (lower priority than user_id) is dropped and the event retried.
    assert_eq!(profile, Some(pid(2)));
    assert_eq!(
        events,
        vec![IdentityEvent::MergeRejected {
            profiles: vec![pid(1), pid(2)],
            reason: RejectReason::LimitExceeded,
            evidence: vec![
                id("email", "shared@x.com"),
                id("user_id", "u1"),
                id("user_id", "u2"),
            ],
            caused_by: "m3".into(),
            rule_version: 1,
        }]
    );
    assert_eq!(world.live(), 2);
}

#[test]
fn blocked_values_never_link() {
    let mut world = World::new(IdentityRules::default());
    let (profile, events) = world.ingest(
        "m1",
        &[
            ("user_id", "null"),
            ("email", "not-an-email"),
            ("anonymous_id", "0000"),
        ],
    );
    assert_eq!((profile, events), (None, vec![]));
    world.ingest("m2", &[("user_id", "-1"), ("anonymous_id", "a1")]);
    world.ingest("m3", &[("user_id", "-1"), ("anonymous_id", "a2")]);
    world.ingest("m4", &[("device_id", "undefined"), ("anonymous_id", "a3")]);
    assert_eq!(world.live(), 3);
    assert_eq!(world.owner("user_id", "-1"), None);
    assert!(world.log.iter().all(|e| !matches!(
        e,
        IdentityEvent::IdentifierLinked { value, .. } if value == "-1" || value == "undefined"
    )));
}

#[test]
fn the_survivor_is_the_earliest_profile_and_absorbed_ones_resolve_to_it() {
    let mut world = World::new(IdentityRules::default());
    world.ingest("m1", &[("anonymous_id", "a")]);
    world.ingest("m2", &[("anonymous_id", "b")]);
    world.ingest("m3", &[("anonymous_id", "c")]);
    // pid(3) sorts first by id; pid(1) is the earliest.
    let (profile, events) = world.ingest(
        "m4",
        &[
            ("anonymous_id", "c"),
            ("anonymous_id", "b"),
            ("anonymous_id", "a"),
        ],
    );
    assert_eq!(profile, Some(pid(1)));
    let absorbed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            IdentityEvent::ProfilesMerged {
                survivor, absorbed, ..
            } => {
                assert_eq!(*survivor, pid(1));
                Some(absorbed.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(absorbed, vec![pid(2), pid(3)]);
    assert_eq!(world.graph.resolve(&pid(3)), pid(1));
    // A later merge of the survivor keeps the chain resolving.
    world.ingest("m5", &[("anonymous_id", "d")]);
    world.ingest("m6", &[("anonymous_id", "d"), ("anonymous_id", "a")]);
    assert_eq!(world.graph.resolve(&pid(3)), pid(1));
    assert_eq!(world.graph.resolve(&pid(4)), pid(1));
    assert_eq!(world.graph.profile(&pid(1)).unwrap().merges, 3);
}

#[test]
fn past_a_type_limit_the_identifier_is_not_linked_and_the_refusal_is_recorded() {
    let mut world = World::new(IdentityRules::default());
    for n in 0..5 {
        world.ingest(
            &format!("m{n}"),
            &[("user_id", "u1"), ("device_id", &format!("d{n}"))],
        );
    }
    let (profile, events) = world.ingest("m5", &[("user_id", "u1"), ("device_id", "d5")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(
        events,
        vec![IdentityEvent::LinkRejected {
            profile: pid(1),
            id_type: "device_id".into(),
            value: "d5".into(),
            reason: RejectReason::LimitExceeded,
            caused_by: "m5".into(),
            rule_version: 1,
        }]
    );
    assert_eq!(world.owner("device_id", "d5"), None);
}

#[test]
fn past_the_merge_cap_no_merge_is_made_and_the_cap_is_recorded() {
    let mut world = World::new(IdentityRules {
        max_merges: 1,
        ..IdentityRules::default()
    });
    world.ingest("m1", &[("anonymous_id", "a")]);
    world.ingest("m2", &[("anonymous_id", "b")]);
    world.ingest("m3", &[("anonymous_id", "c")]);
    world.ingest("m4", &[("anonymous_id", "a"), ("anonymous_id", "b")]);
    let (profile, events) = world.ingest(
        "m5",
        &[
            ("anonymous_id", "c"),
            ("anonymous_id", "a"),
            ("email", "new@x.y"),
        ],
    );
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(
        events,
        vec![
            IdentityEvent::MergeRejected {
                profiles: vec![pid(1), pid(3)],
                reason: RejectReason::MergeCap,
                evidence: vec![id("anonymous_id", "c")],
                caused_by: "m5".into(),
                rule_version: 1,
            },
            linked(1, "email", "new@x.y", "m5"),
        ]
    );
    assert_eq!(world.live(), 2);
}

#[test]
fn past_the_identifier_cap_no_link_is_made_and_the_cap_is_recorded() {
    let mut world = World::new(IdentityRules {
        max_identifiers: 2,
        ..IdentityRules::default()
    });
    world.ingest("m1", &[("user_id", "u1"), ("email", "a@x.y")]);
    let (profile, events) = world.ingest("m2", &[("user_id", "u1"), ("phone", "13800138000")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(
        events,
        vec![IdentityEvent::LinkRejected {
            profile: pid(1),
            id_type: "phone".into(),
            value: "8613800138000".into(),
            reason: RejectReason::IdentifierCap,
            caused_by: "m2".into(),
            rule_version: 1,
        }]
    );
    // Two profiles whose identifiers together pass the cap do not merge either.
    world.ingest("m3", &[("anonymous_id", "x")]);
    let (profile, events) = world.ingest("m4", &[("anonymous_id", "x"), ("email", "a@x.y")]);
    assert_eq!(profile, Some(pid(1)));
    assert!(matches!(
        events.as_slice(),
        [IdentityEvent::MergeRejected {
            reason: RejectReason::IdentifierCap,
            ..
        }]
    ));
}

#[test]
fn decisions_record_the_rule_version_and_replay_into_the_same_graph() {
    let mut rules = retail_rules();
    rules.version = 7;
    let mut world = World::new(rules);
    world.ingest("m1", &[("user_id", "u1"), ("phone", "13800138000")]);
    world.ingest("m2", &[("member_card", "C1")]);
    world.ingest("m3", &[("member_card", "C1"), ("phone", "13800138000")]);
    assert!(world.log.iter().all(|e| match e {
        IdentityEvent::ProfileCreated { .. }
        | IdentityEvent::CommandRejected { .. }
        | IdentityEvent::ProfileErased { .. } => true,
        IdentityEvent::IdentifierLinked { rule_version, .. }
        | IdentityEvent::ProfileSplit { rule_version, .. }
        | IdentityEvent::ProfilesMerged { rule_version, .. }
        | IdentityEvent::MergeRejected { rule_version, .. }
        | IdentityEvent::LinkRejected { rule_version, .. } => *rule_version == 7,
    }));
    assert_eq!(world.replayed(), world.graph);
    let json = serde_json::to_string(&world.log).unwrap();
    let back: Vec<IdentityEvent> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, world.log);
}

#[test]
fn lowering_a_limit_keeps_existing_profiles_reachable_and_links_nothing_past_it() {
    let mut world = World::new(IdentityRules::default());
    world.ingest(
        "m1",
        &[("email", "a@x.y"), ("email", "b@x.y"), ("email", "c@x.y")],
    );
    world.rules = IdentityRules::default().with("email", IdentifierRule::new(2, 1));
    world.rules.version = 2;
    let (profile, events) = world.ingest("m2", &[("email", "b@x.y"), ("phone", "13800138000")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(events.len(), 1, "{events:?}");
    let (profile, events) = world.ingest("m3", &[("email", "c@x.y"), ("email", "d@x.y")]);
    assert_eq!(profile, Some(pid(1)));
    assert_eq!(
        events,
        vec![IdentityEvent::LinkRejected {
            profile: pid(1),
            id_type: "email".into(),
            value: "d@x.y".into(),
            reason: RejectReason::LimitExceeded,
            caused_by: "m3".into(),
            rule_version: 2,
        }]
    );
    // A type with limit 0 never links and never makes an empty profile.
    world.rules = world
        .rules
        .clone()
        .with("device_id", IdentifierRule::new(5, 0));
    let (profile, events) = world.ingest("m4", &[("device_id", "tablet-1")]);
    assert_eq!((profile, events), (None, vec![]));
}

#[test]
fn a_merge_names_a_mergeable_identifier_as_its_cause() {
    let mut phone = IdentifierRule::new(3, 5);
    phone.may_merge = false;
    let mut world = World::new(retail_rules().with("phone", phone));
    world.ingest("m1", &[("user_id", "u1")]);
    world.ingest("m2", &[("phone", "13800138000"), ("member_card", "C1")]);
    let (_, events) = world.ingest(
        "m3",
        &[
            ("phone", "13800138000"),
            ("member_card", "C1"),
            ("user_id", "u1"),
        ],
    );
    assert_eq!(
        events,
        vec![IdentityEvent::ProfilesMerged {
            survivor: pid(1),
            absorbed: pid(2),
            via: Some(id("member_card", "C1")),
            reason: None,
            by_operator: false,
            caused_by: "m3".into(),
            rule_version: 1,
        }]
    );
}

const TYPES: [&str; 5] = [
    "user_id",
    "email",
    "family_phone",
    "device_id",
    "member_card",
];

fn property_rules() -> IdentityRules {
    let mut family_phone = IdentifierRule::new(4, 2);
    family_phone.may_merge = false;
    let mut rules = IdentityRules::default()
        .declare("member_card")
        .with("family_phone", family_phone)
        .with("device_id", IdentifierRule::new(5, 2));
    rules.max_merges = 3;
    rules.max_identifiers = 6;
    rules
}

fn raw_value(id_type: &str, n: usize) -> String {
    match (id_type, n) {
        (_, 0) => "null".into(),
        ("email", n) => format!("e{n}@x.y"),
        (t, n) => format!("{t}-{n}"),
    }
}

fn identifier_sets() -> impl Strategy<Value = Vec<Vec<(String, String)>>> {
    prop::collection::vec(
        prop::collection::vec((0..TYPES.len(), 0..5usize), 1..4).prop_map(|ids| {
            ids.into_iter()
                .map(|(t, n)| (TYPES[t].to_owned(), raw_value(TYPES[t], n)))
                .collect()
        }),
        0..30,
    )
}

proptest! {
    #[test]
    fn batching_and_replay_do_not_change_the_graph(
        sets in identifier_sets(),
        cuts in prop::collection::vec(any::<bool>(), 30),
    ) {
        let rules = property_rules();
        let messages: Vec<(String, Vec<(String, String)>)> = sets
            .into_iter()
            .enumerate()
            .map(|(i, ids)| (format!("m{i}"), ids))
            .collect();

        // One pass: each event decided against the graph the previous ones left.
        let mut one_pass = IdentityGraph::new();
        let mut one_pass_log = Vec::new();
        let mut created = 0;
        for (message, ids) in &messages {
            let events = decide(&one_pass, &rules, ids, message, || {
                created += 1;
                nth_profile(created)
            });
            for event in &events {
                one_pass.apply(event);
            }
            one_pass_log.extend(events);
        }

        // Batches: cut wherever `cuts` says, each batch decided against the graph before it.
        let mut batched = IdentityGraph::new();
        let mut batched_log = Vec::new();
        let mut created = 0;
        let mut next_id = || {
            created += 1;
            nth_profile(created)
        };
        let mut start = 0;
        for end in 1..=messages.len() {
            if end == messages.len() || cuts[end] {
                let events = decide_batch(&batched, &rules, &messages[start..end], &mut next_id);
                for event in &events {
                    batched.apply(event);
                }
                batched_log.extend(events);
                start = end;
            }
        }
        prop_assert_eq!(&batched_log, &one_pass_log);
        prop_assert_eq!(&batched, &one_pass);

        // The resolver's path: identifiers normalised once, before deciding, give the same decisions.
        let mut normalised = IdentityGraph::new();
        let mut normalised_log = Vec::new();
        let mut created = 0;
        for (message, ids) in &messages {
            let once = super::resolve::normalise_all(&rules, ids);
            let events = resolve_normalised(&normalised, &rules, &once, message, || {
                created += 1;
                nth_profile(created)
            })
            .events;
            for event in &events {
                normalised.apply(event);
            }
            normalised_log.extend(events);
        }
        prop_assert_eq!(&normalised_log, &one_pass_log);

        // Replay: the decided events into a fresh graph give the same graph.
        let mut replayed = IdentityGraph::new();
        for event in &one_pass_log {
            replayed.apply(event);
        }
        prop_assert_eq!(&replayed, &one_pass);

        // Never two people in one profile, never past a limit or a cap.
        for (_, profile) in one_pass.profiles() {
            for t in TYPES {
                prop_assert!(profile.count_of(t) <= rules.limit(t) as usize);
            }
            prop_assert!(profile.identifiers.len() <= rules.max_identifiers as usize);
            prop_assert!(profile.merges <= rules.max_merges);
        }
    }
}

#[test]
fn an_erased_profile_and_the_profiles_merged_into_it_are_gone_and_their_identifiers_free() {
    let mut world = World::new(retail_rules());
    let (first, _) = world.ingest("pos-1", &[("phone", "13800138000")]);
    world.ingest("mp-1", &[("wechat_unionid", "uB1")]);
    let (member, _) = world.ingest(
        "crm-1",
        &[("phone", "13800138000"), ("wechat_unionid", "uB1")],
    );
    let (other, _) = world.ingest("pos-2", &[("phone", "13900139000")]);
    assert_eq!(member, first);
    // When the member is erased (by its merged-away id).
    let erased = IdentityEvent::ProfileErased {
        profile: pid(2),
        caused_by: "erasure_1".into(),
    };
    world.graph.apply(&erased);
    world.log.push(erased);
    // Then neither id is known, nothing holds its identifiers, the other customer is untouched.
    assert!(world.graph.profile(&pid(1)).is_none() && world.graph.profile(&pid(2)).is_none());
    assert_eq!(world.owner("phone", "8613800138000"), None);
    assert_eq!(world.owner("wechat_unionid", "uB1"), None);
    assert_eq!(world.owner("phone", "8613900139000"), other);
    assert_eq!(world.live(), 1);
    // And the same phone arriving again is a new customer, never the erased one.
    let (again, _) = world.ingest("pos-3", &[("phone", "13800138000")]);
    assert!(again.is_some() && again != first);
    assert_eq!(world.replayed(), world.graph);
}

proptest! {
    /// The resolver normalises an event's identifiers once (`identifiers_of`) and decides on them
    /// as they are (`resolve_normalised`): normalising a normalised value must change nothing.
    #[test]
    fn normalising_a_normalised_identifier_changes_nothing(
        raw in prop_oneof![
            "\\PC{0,24}",
            "[ A-Za-z0-9._%+-]{1,12}@[A-Za-z0-9.-]{1,12}",
            "[+ ()0-9-]{0,20}",
        ],
        t in prop::sample::select(vec!["email", "phone", "user_id", "member_card"]),
    ) {
        let rules = retail_rules();
        if let Some(once) = rules.normalise(t, &raw) {
            prop_assert_eq!(rules.normalise(t, &once), Some(once.clone()), "{} {:?}", t, raw);
        }
    }
}
