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
    assert_eq!(payload["traits"]["phone"], "+8613800138000");
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
    /// `rfc3339` writes what chrono writes, for any instant it can hold (years −262,143 to 262,142,
    /// leap seconds included).
    #[test]
    fn rfc3339_is_chronos_millisecond_form(
        secs in -8_334_601_228_800i64..8_210_266_876_799,
        nanos in 0u32..2_000_000_000,
        near_now in any::<bool>(),
    ) {
        let secs = if near_now { secs.rem_euclid(4_102_444_800) } else { secs };
        if let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) {
            prop_assert_eq!(rfc3339(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
    }

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

fn check_in(value: Value) -> Validated {
    validate_in(value, &envelope(None), PhoneRegion::Cn, || {
        "generated".into()
    })
    .unwrap()
}

#[test]
fn a_junk_phone_keeps_the_message_and_is_reported_not_refused() {
    // Given a POS order whose till typed N/A as the phone, and a CRM row with a placeholder phone.
    let order = check_in(
        json!({"type": "track", "event": "Order Completed", "userId": "m-1",
        "context": {"traits": {"phone": "N/A"}}, "properties": {"total": 99}}),
    );
    // Then the order is an event; the value is kept where it was sent, marked invalid; a finding says why.
    let payload: Value = serde_json::from_str(&order.event.payload).unwrap();
    assert_eq!(
        payload["context"]["traits"]["phone"],
        json!({"value": "N/A", "invalid": "not_a_phone"})
    );
    assert_eq!(
        invalid_identifier(&payload["context"]["traits"]["phone"]),
        Some((&json!("N/A"), "not_a_phone"))
    );
    assert_eq!(order.findings.len(), 1);
    assert_eq!(order.findings[0].field, "context.traits.phone");
    assert_eq!(order.findings[0].code, "not_a_phone");
    assert!(!order.findings[0].reason.contains("N/A"));

    let crm = check_in(json!({"type": "identify", "userId": "m-2",
        "traits": {"phone": "0000000", "email": "none@shop.cn", "name": "Bo"}}));
    let codes: Vec<(&str, &str)> = crm
        .findings
        .iter()
        .map(|f| (f.field.as_str(), f.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("traits.email", "placeholder"),
            ("traits.phone", "placeholder")
        ]
    );
    let payload: Value = serde_json::from_str(&crm.event.payload).unwrap();
    assert_eq!(payload["traits"]["phone"]["value"], "0000000");
    assert_eq!(payload["traits"]["name"], "Bo");
}

#[test]
fn junk_identifiers_are_never_extracted_as_identifiers() {
    use crate::identity::{identifiers_of, IdentityRules};
    // Given values of every kind of junk in traits, context traits and external ids.
    let v = check_in(json!({"type": "identify", "userId": "u1",
        "traits": {"phone": "13800000000", "email": "ann@shop"},
        "context": {"traits": {"phone": {"n": 1}, "email": 7},
                    "externalIds": [{"id": "N/A", "type": "phone"}, {"id": "x", "type": ""},
                                    {"id": "Ann@Shop.CN", "type": "email"}]}}));
    // Then the only identifiers are the user id and the one valid external e-mail.
    let payload: Value = serde_json::from_str(&v.event.payload).unwrap();
    let ids = identifiers_of(
        &payload,
        v.event.user_id.as_deref(),
        None,
        &IdentityRules::default(),
    );
    let ids: Vec<(String, String)> = ids.into_iter().map(|i| (i.id_type, i.value)).collect();
    assert_eq!(
        ids,
        [
            ("user_id".to_owned(), "u1".to_owned()),
            ("email".to_owned(), "ann@shop.cn".to_owned())
        ]
    );
    let fields: Vec<&str> = v.findings.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "context.externalIds[0].id",
            "context.externalIds[1].type",
            "traits.email",
            "traits.phone",
            "context.traits.email",
            "context.traits.phone",
        ]
    );
}

#[test]
fn phones_are_read_in_the_workspace_region_and_stored_in_e164() {
    let message = json!({"type": "identify", "userId": "u", "traits": {"phone": "6552 9988"}});
    let hk = validate_in(message.clone(), &envelope(None), PhoneRegion::Hk, || {
        "g".into()
    })
    .unwrap();
    let payload: Value = serde_json::from_str(&hk.event.payload).unwrap();
    assert_eq!(payload["traits"]["phone"], "+85265529988");
    assert!(hk.findings.is_empty());
    // In mainland China the same digits are a landline without its area code.
    let cn = check_in(message);
    assert_eq!(cn.findings[0].code, "no_area_code");
}

#[test]
fn placeholder_user_ids_are_reported_and_the_message_kept() {
    let v = check_in(
        json!({"type": "track", "event": "Viewed", "userId": "undefined", "anonymousId": "a-1"}),
    );
    assert_eq!(v.event.user_id.as_deref(), Some("undefined"));
    assert_eq!(v.findings[0].field, "userId");
    assert_eq!(v.findings[0].code, "placeholder");
}
