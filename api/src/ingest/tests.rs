//! Fuzzing the ingestion parsers: any text at all is accepted as an event or refused with a reason, never
//! a panic; every input lands in exactly one of the two.

use super::*;
use proptest::prelude::*;

fn message_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}",
        Just(r#"{"type":"track","event":"e","userId":"u"}"#.to_owned()),
        Just(r#"{"type":"identify","userId":1,"traits":{"email":"X@Y.z"}}"#.to_owned()),
        Just(r#"{"type":"track","event":"e","userId":"u","traits":{"phone":"N/A"}}"#.to_owned()),
        Just(
            r#"{"type":"page","anonymousId":"a","timestamp":"2026-01-01T00:00:00+08:00"}"#
                .to_owned()
        ),
    ]
}

proptest! {
    #[test]
    fn check_sorts_every_message_into_accepted_or_refused(
        texts in prop::collection::vec(message_text(), 0..20),
        implied in prop::option::of(0usize..6),
    ) {
        let implied = implied.map(|i| MessageKind::ALL[i]);
        let checked = check(&WorkspaceId::parse("w").unwrap(), PhoneRegion::Cn, texts.iter().map(String::as_str), None, implied, Utc::now());
        prop_assert_eq!(checked.events.len() + checked.rejected.len(), texts.len());
        for d in &checked.dropped {
            prop_assert!(checked.events.iter().any(|e| e.message_id == d.message_id));
        }
        for r in &checked.rejected {
            prop_assert_eq!(&r.raw, &texts[r.index]);
            prop_assert!(!r.error.message.is_empty());
        }
    }

    #[test]
    fn batch_bodies_never_panic(body in any::<Vec<u8>>()) {
        let _ = serde_json::from_slice::<BatchBody<'_>>(&body);
        let _ = serde_json::from_slice::<KeyOnly>(&body);
    }
}

#[test]
fn valid_and_invalid_messages_of_one_batch_are_separated_by_index() {
    let texts = [
        r#"{"type":"track","event":"e","userId":"u","messageId":"a"}"#,
        r#"{"type":"track","userId":"u"}"#,
        "not json",
        r#"{"type":"page","anonymousId":"x"}"#,
    ];
    let checked = check(
        &WorkspaceId::parse("w").unwrap(),
        PhoneRegion::Cn,
        texts,
        None,
        None,
        Utc::now(),
    );
    assert_eq!(checked.events.len(), 2);
    let refused: Vec<(usize, &str)> = checked
        .rejected
        .iter()
        .map(|r| (r.index, r.error.field.as_str()))
        .collect();
    assert_eq!(refused, [(1, "event"), (2, "")]);
    assert_eq!(checked.rejected[1].error.code, "invalid_json");
}

#[test]
fn basic_auth_yields_the_user_name_as_write_key() {
    use base64::Engine;
    let mut headers = HeaderMap::new();
    let encoded = base64::engine::general_purpose::STANDARD.encode("wk_123:");
    headers.insert(
        header::AUTHORIZATION,
        format!("Basic {encoded}").parse().unwrap(),
    );
    assert_eq!(
        crate::auth::basic_write_key(&headers).as_deref(),
        Some("wk_123")
    );
    headers.insert(header::AUTHORIZATION, "Basic %%%".parse().unwrap());
    assert_eq!(crate::auth::basic_write_key(&headers), None);
}

#[test]
fn a_junk_phone_is_dropped_as_an_identifier_and_the_message_kept() {
    let texts = [
        r#"{"type":"track","event":"Order Completed","userId":"u","messageId":"o1","context":{"traits":{"phone":"N/A"}}}"#,
        r#"{"type":"identify","userId":"v","messageId":"o2","traits":{"phone":"138 0013 8000"}}"#,
    ];
    let checked = check(
        &WorkspaceId::parse("w").unwrap(),
        PhoneRegion::Cn,
        texts,
        None,
        None,
        Utc::now(),
    );
    assert_eq!(checked.events.len(), 2);
    assert!(checked.rejected.is_empty());
    assert_eq!(checked.dropped.len(), 1);
    assert_eq!(checked.dropped[0].message_id, "o1");
    assert_eq!(
        checked.dropped_json(true),
        [
            json!({"index": 0, "field": "context.traits.phone", "code": "not_a_phone",
                "message": checked.dropped[0].finding.reason})
        ]
    );
}
