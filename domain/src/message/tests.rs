//! Given a message and an envelope, validation yields this event or this error.

use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use serde_json::json;

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

fn envelope(implied: Option<MessageKind>) -> Envelope<'static> {
    Envelope {
        workspace: "shop",
        received_at: received(),
        batch_sent_at: None,
        implied_kind: implied,
    }
}

fn check(value: Value) -> Result<NewEvent, MessageError> {
    validate(value, &envelope(None), || "generated".into())
}

#[test]
fn a_track_becomes_an_event_with_its_name_and_ids() {
    let e = check(
        json!({"type": "track", "event": "Order Completed", "userId": 42,
        "messageId": "m1", "properties": {"revenue": 10}}),
    )
    .unwrap();
    assert_eq!(e.kind, MessageKind::Track);
    assert_eq!(e.name.as_deref(), Some("Order Completed"));
    assert_eq!(e.user_id.as_deref(), Some("42"));
    assert_eq!(e.message_id, "m1");
    assert_eq!(e.event_time, received());
    let payload: Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(payload["userId"], "42");
    assert_eq!(payload["receivedAt"], "2026-11-23T12:00:00.000Z");
}

#[test]
fn clock_skew_is_corrected_from_sent_at() {
    // The device clock is one hour behind: it sent at 11:00 what it says happened at 10:59.
    let e = check(json!({"type": "page", "anonymousId": "a",
        "timestamp": "2026-11-23T10:59:00Z", "sentAt": "2026-11-23T11:00:00Z"}))
    .unwrap();
    assert_eq!(
        e.event_time,
        Utc.with_ymd_and_hms(2026, 11, 23, 11, 59, 0).unwrap()
    );
    let payload: Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(payload["originalTimestamp"], "2026-11-23T10:59:00.000Z");
}

#[test]
fn batch_sent_at_applies_to_messages_without_their_own() {
    let sent = json!("2026-11-23T11:00:00Z");
    let env = Envelope {
        batch_sent_at: Some(&sent),
        ..envelope(None)
    };
    let e = validate(
        json!({"type": "identify", "userId": "u", "timestamp": "2026-11-23T10:00:00Z"}),
        &env,
        || "g".into(),
    )
    .unwrap();
    assert_eq!(
        e.event_time,
        Utc.with_ymd_and_hms(2026, 11, 23, 11, 0, 0).unwrap()
    );
}

#[test]
fn absurd_timestamps_are_refused_naming_the_field() {
    let err = check(
        json!({"type": "track", "event": "x", "userId": "u", "timestamp": "1970-01-01T00:00:00Z"}),
    )
    .unwrap_err();
    assert_eq!(
        (err.code, err.field.as_str()),
        ("invalid_timestamp", "timestamp")
    );
    let err = check(
        json!({"type": "track", "event": "x", "userId": "u", "timestamp": "2030-01-01T00:00:00Z"}),
    )
    .unwrap_err();
    assert_eq!(err.field, "timestamp");
    let err =
        check(json!({"type": "track", "event": "x", "userId": "u", "timestamp": "yesterday"}))
            .unwrap_err();
    assert_eq!(err.code, "invalid_timestamp");
}

#[test]
fn each_type_requires_its_fields() {
    let cases = [
        (json!({"type": "track", "userId": "u"}), "event"),
        (json!({"type": "track", "event": "x"}), "userId"),
        (json!({"type": "group", "userId": "u"}), "groupId"),
        (json!({"type": "alias", "userId": "u"}), "previousId"),
        (
            json!({"type": "alias", "anonymousId": "a", "previousId": "p"}),
            "userId",
        ),
        (json!({"type": "wat", "userId": "u"}), "type"),
        (json!({"userId": "u"}), "type"),
        (json!({"type": "identify", "userId": {"a": 1}}), "userId"),
        (
            json!({"type": "identify", "userId": "u", "traits": [1]}),
            "traits",
        ),
        (
            json!({"type": "identify", "userId": "u", "traits": {"email": "nope"}}),
            "traits.email",
        ),
        (
            json!({"type": "track", "event": "x", "userId": "u", "context": {"externalIds": [{"id": "1"}]}}),
            "context.externalIds[0].type",
        ),
        (json!([1, 2]), ""),
    ];
    for (message, field) in cases {
        let err = check(message.clone()).unwrap_err();
        assert_eq!(err.field, field, "{message} gave {err:?}");
    }
}

#[test]
fn every_valid_type_is_accepted() {
    for m in [
        json!({"type": "identify", "userId": "u", "traits": {"email": " A@B.com ", "phone": "13800138000"}}),
        json!({"type": "page", "anonymousId": "a", "name": "Home"}),
        json!({"type": "screen", "anonymousId": "a", "name": "Cart"}),
        json!({"type": "group", "userId": "u", "groupId": 7}),
        json!({"type": "alias", "userId": "u", "previousId": "a"}),
    ] {
        let e = check(m.clone()).unwrap_or_else(|err| panic!("{m} refused: {err}"));
        assert_eq!(e.message_id, "generated");
    }
    let e = check(json!({"type": "identify", "userId": "u", "traits": {"email": " A@B.com ", "phone": "13800138000"}}))
        .unwrap();
    let payload: Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(payload["traits"]["email"], "a@b.com");
    assert_eq!(payload["traits"]["phone"], "8613800138000");
}

#[test]
fn the_endpoint_implies_the_type_and_refuses_another() {
    let e = validate(
        json!({"event": "x", "userId": "u"}),
        &envelope(Some(MessageKind::Track)),
        || "g".into(),
    )
    .unwrap();
    assert_eq!(e.kind, MessageKind::Track);
    let err = validate(
        json!({"type": "page", "userId": "u"}),
        &envelope(Some(MessageKind::Track)),
        || "g".into(),
    )
    .unwrap_err();
    assert_eq!(err.field, "type");
}

#[test]
fn the_write_key_is_never_stored() {
    let e =
        check(json!({"type": "track", "event": "x", "userId": "u", "writeKey": "secret"})).unwrap();
    assert!(!e.payload.contains("secret"));
}

#[test]
fn oversized_messages_are_refused() {
    let big = "x".repeat(MAX_MESSAGE_BYTES);
    let err =
        check(json!({"type": "track", "event": "x", "userId": "u", "properties": {"blob": big}}))
            .unwrap_err();
    assert_eq!(err.code, "message_too_large");
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("track"),
            Just("identify"),
            Just("page"),
            Just("alias"),
            Just("2026-11-23T10:00:00Z"),
            Just("+99999-01-01T00:00:00Z"),
            Just("a@b.c"),
            Just("13800138000")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("userId".to_string()),
                    Just("anonymousId".to_string()),
                    Just("event".to_string()),
                    Just("timestamp".to_string()),
                    Just("sentAt".to_string()),
                    Just("traits".to_string()),
                    Just("context".to_string()),
                    Just("email".to_string()),
                    Just("phone".to_string()),
                    Just("externalIds".to_string()),
                    Just("previousId".to_string()),
                    Just("groupId".to_string()),
                    Just("messageId".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Fuzzing the validator: any JSON at all gives an event or an error, never a panic, and an accepted
    /// event's payload is valid JSON carrying its message id.
    #[test]
    fn validation_never_panics(value in arb_json(), implied in prop::option::of(0usize..6)) {
        let env = Envelope { implied_kind: implied.map(|i| MessageKind::ALL[i]), ..envelope(None) };
        if let Ok(e) = validate(value, &env, || "g".into()) {
            let payload: Value = serde_json::from_str(&e.payload).unwrap();
            prop_assert_eq!(payload["messageId"].as_str(), Some(e.message_id.as_str()));
        }
    }
}
