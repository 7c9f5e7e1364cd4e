//! The identifiers a stored message carries, extracted from its normalised JSON payload under a
//! workspace's identity rules, normalised, de-duplicated and in one deterministic order.
//!
//! Sources, per type:
//! - `user_id`: the `user_id` column, else the payload's `userId`;
//! - `anonymous_id`: the `anonymous_id` column, else the payload's `anonymousId`; and for an `alias`, its
//!   `previousId` (see [`identifiers_of`] for why);
//! - `email` and `phone`: `traits.email` / `context.traits.email`, `traits.phone` / `context.traits.phone`;
//! - `device_id`: `context.device.id`;
//! - every `context.externalIds[]` entry `{id, type, collection?, encoding?}`: its `type`, trimmed and
//!   lower-cased (`WeChat_OpenID` → `wechat_openid`); `collection` and `encoding` are not part of the
//!   identifier;
//! - every key of `traits` or `context.traits` the rules declare as a type, other than the five built-in
//!   types (see [`BUILT_IN_TYPES`]).
//!
//! Values are strings or numbers (a number as its JSON text); anything else is ignored, never refused:
//! the message has already been validated, and extraction must not fail on what validation let through.

use std::borrow::Cow;

use super::events::Identifier;
use super::rules::IdentityRules;
use crate::json::{JsonRead, Kind};

/// The types with a source of their own. A trait with one of these names is not an identifier: a CRM
/// export's `traits.user_id` is some other system's id, and taking it would give most events two
/// `user_id`s and a limit-1 conflict. `email` and `phone` are read from traits as their own sources.
pub const BUILT_IN_TYPES: [&str; 5] = ["user_id", "anonymous_id", "email", "phone", "device_id"];

/// The identifiers of one stored message: each value normalised by [`IdentityRules::normalise`] (invalid
/// and blocked values dropped), duplicates removed, ordered by the type's priority, then type, then value,
/// so that resolution never depends on the order of keys or of `externalIds` in the JSON.
///
/// `user_id` and `anonymous_id` are the event's columns (the same values validation left in the payload);
/// when one is `None` the payload's field is read instead, so a payload alone is enough.
///
/// An `alias` message's `previousId` is emitted as an `anonymous_id`. In Segment it is the old identity,
/// an anonymous id or an earlier user id, and only the graph could tell which; this function is pure and
/// has none. As a `user_id` it would put two user ids (limit 1) in one event and the alias would be
/// resolved as a conflict; as an `anonymous_id` (limit 5) it links the old identity to the new user. The
/// price: a `previousId` that is an earlier *user id* is linked as an anonymous id and does not by itself
/// find the profile holding it as a `user_id`. A caller that wants that must look the value up in the
/// graph as a `user_id` first.
pub fn identifiers_of<J: JsonRead>(
    payload: &J,
    user_id: Option<&str>,
    anonymous_id: Option<&str>,
    rules: &IdentityRules,
) -> Vec<Identifier> {
    // Types and values borrowed from the payload until normalised (a number's text is made).
    let mut raw: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(8);
    let mut push = |id_type, value: Option<_>| {
        if let Some(value) = value {
            raw.push((id_type, value));
        }
    };

    push(
        "user_id".into(),
        user_id
            .map(Cow::Borrowed)
            .or_else(|| text(payload.get("userId"))),
    );
    push(
        "anonymous_id".into(),
        anonymous_id
            .map(Cow::Borrowed)
            .or_else(|| text(payload.get("anonymousId"))),
    );
    if payload.get("type").and_then(JsonRead::as_str) == Some("alias") {
        push("anonymous_id".into(), text(payload.get("previousId")));
    }

    let context = payload.get("context");
    let trait_sections = [payload.get("traits"), context.and_then(|c| c.get("traits"))];
    for traits in trait_sections.into_iter().flatten() {
        push("email".into(), text(traits.get("email")));
        push("phone".into(), text(traits.get("phone")));
        if let Some(traits) = traits.members() {
            for (key, value) in traits {
                if rules.types.contains_key(key) && !BUILT_IN_TYPES.contains(&key) {
                    push(key.into(), text(Some(value)));
                }
            }
        }
    }

    push(
        "device_id".into(),
        text(
            context
                .and_then(|c| c.get("device"))
                .and_then(|d| d.get("id")),
        ),
    );

    let external = context
        .and_then(|c| c.get("externalIds"))
        .and_then(JsonRead::items);
    for entry in external.into_iter().flatten() {
        let id_type = entry
            .get("type")
            .and_then(JsonRead::as_str)
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty());
        if let Some(id_type) = id_type {
            push(id_type.into(), text(entry.get("id")));
        }
    }

    let mut out: Vec<Identifier> = raw
        .into_iter()
        .filter_map(|(id_type, value)| {
            rules.normalise(&id_type, &value).map(|value| Identifier {
                id_type: id_type.into_owned(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (rules.priority(&a.id_type), &a.id_type, &a.value).cmp(&(
            rules.priority(&b.id_type),
            &b.id_type,
            &b.value,
        ))
    });
    out.dedup();
    out
}

/// A string as it is, a number as its JSON text; anything else is no value.
fn text<J: JsonRead>(value: Option<&J>) -> Option<Cow<'_, str>> {
    let value = value?;
    match value.kind() {
        Kind::String => value.as_str().map(Cow::Borrowed),
        Kind::Number => value.as_number().map(|n| Cow::Owned(n.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::rules::IdentifierRule;
    use super::*;
    use serde_json::Value;

    fn id(id_type: &str, value: &str) -> Identifier {
        Identifier::new(id_type, value)
    }

    fn retail_rules() -> IdentityRules {
        IdentityRules::default()
            .declare("member_card")
            .declare("wechat_openid")
            .declare("wechat_unionid")
            .declare("tmall_ouid")
    }

    fn of(payload: &Value) -> Vec<Identifier> {
        identifiers_of(payload, None, None, &retail_rules())
    }

    #[test]
    fn user_and_anonymous_ids_come_from_the_columns_else_the_payload() {
        // Given a track with both ids in its payload.
        let payload = json!({"type": "track", "userId": "u1", "anonymousId": "a1"});
        // When the columns are given, they are used; when not, the payload is read.
        let rules = IdentityRules::default();
        assert_eq!(
            identifiers_of(&payload, Some("u1"), Some("a1"), &rules),
            vec![id("user_id", "u1"), id("anonymous_id", "a1")]
        );
        assert_eq!(
            identifiers_of(&payload, None, None, &rules),
            vec![id("user_id", "u1"), id("anonymous_id", "a1")]
        );
        // Then a column overrides the payload, and numeric ids count as their text.
        assert_eq!(
            identifiers_of(&json!({"userId": 42}), None, Some("a2"), &rules),
            vec![id("user_id", "42"), id("anonymous_id", "a2")]
        );
    }

    #[test]
    fn emails_and_phones_come_from_traits_and_context_traits_normalised() {
        // Given an identify with an upper-case email and a spaced phone, and another pair in context.
        let payload = json!({
            "type": "identify",
            "userId": "u1",
            "traits": {"email": " Ann@Example.COM ", "phone": "138 0013 8000"},
            "context": {"traits": {"email": "ann@work.example", "phone": 13900139000u64}},
        });
        // When the identifiers are extracted.
        let ids = of(&payload);
        // Then both sources count, normalised as the rules normalise them.
        assert_eq!(
            ids,
            vec![
                id("user_id", "u1"),
                id("email", "ann@example.com"),
                id("email", "ann@work.example"),
                id("phone", "8613800138000"),
                id("phone", "8613900139000"),
            ]
        );
    }

    #[test]
    fn the_same_value_in_two_places_is_one_identifier() {
        // Given the same email in traits and context.traits, in two spellings.
        let payload = json!({
            "anonymousId": "a1",
            "traits": {"email": "ann@example.com"},
            "context": {"traits": {"email": "ANN@example.com"}, "externalIds": [
                {"id": "ann@example.com", "type": "email", "collection": "users", "encoding": "none"}
            ]},
        });
        // Then it is extracted once.
        assert_eq!(
            of(&payload),
            vec![id("email", "ann@example.com"), id("anonymous_id", "a1")]
        );
    }

    #[test]
    fn the_device_id_comes_from_context_device() {
        let payload =
            json!({"anonymousId": "a1", "context": {"device": {"id": " D-1 ", "type": "ios"}}});
        assert_eq!(
            of(&payload),
            vec![id("anonymous_id", "a1"), id("device_id", "D-1")]
        );
    }

    #[test]
    fn external_ids_are_identifiers_of_their_lower_cased_type() {
        // Given external ids of declared and undeclared types, one numeric, one without a usable type.
        let payload = json!({
            "userId": "u1",
            "context": {"externalIds": [
                {"id": "oA1", "type": "WeChat_OpenID", "collection": "users", "encoding": "none"},
                {"id": 778899, "type": "tmall_ouid"},
                {"id": "X9", "type": "loyalty_no"},
                {"id": "lost", "type": "  "},
                {"id": "lost", "type": 7},
                {"type": "member_card"},
                "not an object",
            ]},
        });
        // Then each usable entry is one identifier, undeclared types last.
        assert_eq!(
            of(&payload),
            vec![
                id("user_id", "u1"),
                id("wechat_openid", "oA1"),
                id("tmall_ouid", "778899"),
                id("loyalty_no", "X9"),
            ]
        );
    }

    #[test]
    fn declared_traits_are_identifiers_and_undeclared_ones_are_not() {
        // Given traits declared as identifiers (one numeric), undeclared traits, and non-scalar values.
        let payload = json!({
            "userId": "u1",
            "traits": {"member_card": 10086, "name": "Ann", "wechat_openid": ["oA1"]},
            "context": {"traits": {"wechat_unionid": "uB1", "tmall_ouid": null, "plan": "gold"}},
        });
        // Then only the declared scalar traits count, numbers as their text.
        assert_eq!(
            of(&payload),
            vec![
                id("user_id", "u1"),
                id("member_card", "10086"),
                id("wechat_unionid", "uB1"),
            ]
        );
        // And under rules that declare nothing, the same traits are no identifiers.
        assert_eq!(
            identifiers_of(&payload, None, None, &IdentityRules::default()),
            vec![id("user_id", "u1")]
        );
    }

    #[test]
    fn traits_named_after_built_in_types_are_not_identifiers() {
        // Given traits named like the built-in types that have sources of their own.
        let payload = json!({
            "userId": "u1",
            "traits": {"user_id": "crm-7", "anonymous_id": "x", "device_id": "d"},
        });
        // Then they are ignored: only the message's userId is a user id.
        assert_eq!(of(&payload), vec![id("user_id", "u1")]);
    }

    #[test]
    fn an_alias_previous_id_is_an_anonymous_id() {
        // Given an alias from an anonymous visitor to a user.
        let payload = json!({"type": "alias", "userId": "u1", "previousId": "a-old"});
        // Then previousId is extracted as an anonymous id.
        assert_eq!(
            of(&payload),
            vec![id("user_id", "u1"), id("anonymous_id", "a-old")]
        );
        // And outside an alias, a previousId is no identifier.
        let track = json!({"type": "track", "userId": "u1", "previousId": "a-old"});
        assert_eq!(of(&track), vec![id("user_id", "u1")]);
    }

    #[test]
    fn blocked_and_invalid_values_are_dropped() {
        // Given a message whose values are blocked by default, blocked by a rule, or invalid.
        let mut card = IdentifierRule::new(6, 5);
        card.blocked = vec!["TEST-CARD".into()];
        let rules = retail_rules().with("member_card", card);
        let payload = json!({
            "userId": "undefined",
            "anonymousId": "0000",
            "traits": {"email": "null", "phone": "call me", "member_card": "TEST-CARD"},
            "context": {
                "device": {"id": "-1"},
                "traits": {"wechat_unionid": "NaN", "email": ""},
                "externalIds": [{"id": "anonymous", "type": "tmall_ouid"}, {"id": "ok", "type": "tmall_ouid"}],
            },
        });
        // Then only the usable value is left.
        assert_eq!(
            identifiers_of(&payload, None, None, &rules),
            vec![id("tmall_ouid", "ok")]
        );
    }

    #[test]
    fn the_order_is_priority_then_type_then_value() {
        // Given rules where a declared type outranks the defaults.
        let rules = retail_rules().with("member_card", IdentifierRule::new(0, 1));
        let payload = json!({
            "anonymousId": "a1",
            "traits": {"member_card": "C1", "email": "b@x.com"},
            "context": {"traits": {"email": "a@x.com"}, "externalIds": [
                {"id": "z", "type": "zeta"}, {"id": "y", "type": "alpha"}, {"id": "x", "type": "alpha"}
            ]},
        });
        // Then the order follows the rules, not the JSON.
        assert_eq!(
            identifiers_of(&payload, None, None, &rules),
            vec![
                id("member_card", "C1"),
                id("email", "a@x.com"),
                id("email", "b@x.com"),
                id("anonymous_id", "a1"),
                id("alpha", "x"),
                id("alpha", "y"),
                id("zeta", "z"),
            ]
        );
    }

    #[test]
    fn reordering_keys_and_external_ids_does_not_change_the_result() {
        // Given the same message written with its keys and external ids in two orders.
        let one = r#"{"userId":"u1","traits":{"phone":"13800138000","member_card":"C1","email":"a@x.com"},
            "context":{"device":{"id":"d1"},"externalIds":[{"id":"o1","type":"wechat_openid"},
            {"id":"t1","type":"tmall_ouid"}],"traits":{"wechat_unionid":"u9"}}}"#;
        let two = r#"{"context":{"traits":{"wechat_unionid":"u9"},"externalIds":[{"type":"tmall_ouid",
            "id":"t1"},{"type":"wechat_openid","id":"o1"}],"device":{"id":"d1"}},
            "traits":{"email":"a@x.com","member_card":"C1","phone":"13800138000"},"userId":"u1"}"#;
        let one: Value = serde_json::from_str(one).unwrap();
        let two: Value = serde_json::from_str(two).unwrap();
        // Then the identifiers are the same, in the same order.
        assert_eq!(of(&one), of(&two));
        assert_eq!(
            of(&one),
            vec![
                id("user_id", "u1"),
                id("email", "a@x.com"),
                id("phone", "8613800138000"),
                id("device_id", "d1"),
                id("member_card", "C1"),
                id("wechat_openid", "o1"),
                id("wechat_unionid", "u9"),
                id("tmall_ouid", "t1"),
            ]
        );
    }

    #[test]
    fn a_payload_that_is_not_an_object_has_no_identifiers_but_the_columns() {
        let rules = IdentityRules::default();
        assert!(identifiers_of(&json!([1, 2]), None, None, &rules).is_empty());
        assert_eq!(
            identifiers_of(&json!("x"), Some("u1"), None, &rules),
            vec![id("user_id", "u1")]
        );
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let key = prop::sample::select(vec![
            "type",
            "userId",
            "anonymousId",
            "previousId",
            "traits",
            "context",
            "email",
            "phone",
            "device",
            "id",
            "externalIds",
            "member_card",
            "wechat_openid",
            "tmall_ouid",
            "user_id",
            "alias",
            "other",
        ])
        .prop_map(str::to_owned);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec!["alias", "a@x.com", "13800138000", "null", "", " x "])
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics_and_gives_sorted_normalised_identifiers(
            payload in arbitrary_json(),
            user_id in prop::option::of(".{0,8}"),
        ) {
            let rules = retail_rules();
            let ids = identifiers_of(&payload, user_id.as_deref(), None, &rules);
            let key = |i: &Identifier| (rules.priority(&i.id_type), i.id_type.clone(), i.value.clone());
            for pair in ids.windows(2) {
                prop_assert!(key(&pair[0]) < key(&pair[1]), "{:?}", pair);
            }
            for i in &ids {
                let again = rules.normalise(&i.id_type, &i.value);
                prop_assert_eq!(again.as_ref(), Some(&i.value));
            }
        }
    }
}
