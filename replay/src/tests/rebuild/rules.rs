//! A rebuild after a change of the identity rules decides each event under the rules in force at its
//! place in the log, as the live resolver did.
use super::*;

/// A visit of `user` on `device`, `i` minutes after `start`.
fn visit(start: chrono::DateTime<chrono::Utc>, i: i64, user: &str, device: &str) -> NewEvent {
    validate(
        json!({"type": "track", "event": "Visit", "userId": user, "messageId": format!("v{i}"),
               "context": {"device": {"id": device}}}),
        &envelope_at(start + chrono::Duration::minutes(i)),
        || unreachable!(),
    )
    .unwrap()
}

/// Segment's defaults with two user ids allowed per profile: joins two people sharing a device.
fn two_users_per_profile() -> IdentityRules {
    let mut rules = IdentityRules::default();
    rules.types.get_mut("user_id").unwrap().limit = 2;
    rules
}

/// Two visits on a tablet that join only under looser rules, then a rules command loosening them,
/// then two visits on a kiosk after it: live (in batches of `batch_size`) the first two merge through
/// the command, the last two join at once, every decision naming the rules it was taken under — and a
/// rebuild, which starts from no rules and meets the command in its place in the log, gives the same
/// model row for row (the rules in force included).
async fn a_rules_change_then_rebuild(store: &Store, batch_size: u32) {
    let (now, clock) = fixed_clock();
    let start = now - chrono::Duration::hours(1);
    let looser = two_users_per_profile();
    let command = OperatorCommand::Rules {
        rules: looser.clone(),
        actor: "t".into(),
    };
    let events = vec![
        visit(start, 0, "bob", "tablet-7"),
        visit(start, 1, "cat", "tablet-7"),
        operator_event(2, &command, start + chrono::Duration::minutes(2)),
        visit(start, 3, "dan", "kiosk-1"),
        visit(start, 4, "eve", "kiosk-1"),
    ];
    live_then_rebuild(store, &events, batch_size, clock, Held::default()).await;

    // The model (live, and rebuilt: they are equal) holds the rules as the command put them in force.
    let mut expected = looser;
    expected.version = IdentityRules::default().version + 1;
    assert_eq!(rules_of(store, &ws("w")).await.unwrap(), expected);
    let graph = graph_of(store, &ws("w")).await.unwrap();
    let holder = |user: &str| graph.owner(&Identifier::new("user_id", user)).unwrap();
    assert_eq!(
        holder("bob"),
        holder("cat"),
        "the command merged the tablet's two"
    );
    assert_eq!(
        holder("dan"),
        holder("eve"),
        "the kiosk's two joined at once"
    );
    let decisions = cdp_projections::identity::caused_by(store, &ws("w"), "op2")
        .await
        .unwrap();
    assert!(
        matches!(
            decisions.as_slice(),
            [cdp_projections::identity::DecisionRow {
                event: IdentityEvent::ProfilesMerged {
                    rule_version: 2,
                    ..
                },
                ..
            }]
        ),
        "{decisions:?}"
    );
    for user in ["cat", "eve"] {
        let link = cdp_projections::identity::link_of(store, &ws("w"), "user_id", user)
            .await
            .unwrap()
            .unwrap();
        let IdentityEvent::IdentifierLinked { rule_version, .. } = link.event else {
            panic!("{link:?}")
        };
        let version = if user == "cat" { 1 } else { 2 };
        assert_eq!(
            rule_version, version,
            "{user} was linked under version {version}"
        );
    }
}

#[tokio::test]
async fn a_rebuild_decides_each_event_under_the_rules_in_force_at_its_place_in_the_log() {
    // One event per batch, and every event in one batch (the command changes the rules mid-batch).
    for batch_size in [1, 10] {
        let test = sqlite_store().await;
        a_rules_change_then_rebuild(&test.store, batch_size).await;
        match postgres_store("rules_change").await {
            Some(test) => a_rules_change_then_rebuild(&test.store, batch_size).await,
            None => eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL case is SKIPPED"),
        }
    }
}

/// A visit of `user` whose traits carry a member card.
fn carded_visit(start: chrono::DateTime<chrono::Utc>, i: i64, user: &str, card: &str) -> NewEvent {
    validate(
        json!({"type": "identify", "userId": user, "messageId": format!("c{i}"),
               "traits": {"member_card": card}}),
        &envelope_at(start + chrono::Duration::minutes(i)),
        || unreachable!(),
    )
    .unwrap()
}

/// A card carried before the rules declare `member_card` is no identifier; declared by a command,
/// the card carried after it is — also when the command and that event are in one batch (the
/// resolver finds the batch's identifiers ahead under the rules at the batch's start, and again
/// for the events after a command that changed them); a rebuild gives the same.
async fn a_type_declared_mid_batch(store: &Store, batch_size: u32) {
    let (now, clock) = fixed_clock();
    let start = now - chrono::Duration::hours(1);
    let command = OperatorCommand::Rules {
        rules: IdentityRules::default().declare("member_card"),
        actor: "t".into(),
    };
    let events = vec![
        carded_visit(start, 0, "ann", "C-1"),
        operator_event(1, &command, start + chrono::Duration::minutes(1)),
        carded_visit(start, 2, "ben", "C-2"),
    ];
    live_then_rebuild(store, &events, batch_size, clock, Held::default()).await;
    let linked = |card: &'static str| async move {
        cdp_projections::identity::link_of(store, &ws("w"), "member_card", card)
            .await
            .unwrap()
    };
    assert!(linked("C-1").await.is_none(), "undeclared when carried");
    assert!(linked("C-2").await.is_some(), "declared when carried");
}

#[tokio::test]
async fn an_identifier_type_declared_mid_batch_is_found_in_the_batchs_later_events() {
    for batch_size in [1, 10] {
        let test = sqlite_store().await;
        a_type_declared_mid_batch(&test.store, batch_size).await;
        match postgres_store("type_declared").await {
            Some(test) => a_type_declared_mid_batch(&test.store, batch_size).await,
            None => eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL case is SKIPPED"),
        }
    }
}
