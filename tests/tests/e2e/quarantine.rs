//! Refused messages: a partial batch stores its good messages and lists the refused ones by index with
//! the field (and the values it kept but dropped as identifiers); every refused message, and every body
//! that is not JSON at all, is in the quarantine.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{on_each_backend, spawn_app, track, Auth, WRITE_KEY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_stores_the_good_messages_and_lists_the_refused_by_index() {
    on_each_backend("partial_batch", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            track("u-partial", "Product Viewed", "m-good-0"),
            {"type": "track", "userId": "u-partial", "messageId": "m-no-event"},
            track("u-partial", "Product Added", "m-good-2"),
            {"type": "track", "event": "Anonymous", "messageId": "m-no-ids"},
            {"type": "purchase", "userId": "u-partial", "messageId": "m-bad-type"},
            {"type": "identify", "userId": "u-partial", "traits": {"email": "not-an-email"},
             "messageId": "m-bad-email"},
            {"type": "track", "userId": "u-partial", "event": "Late", "timestamp": "yesterday",
             "messageId": "m-bad-time"},
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["accepted"], 3, "{body}");
        assert_eq!(body["error"]["code"], "invalid_messages", "{body}");
        assert_eq!(body["error"]["field"], "batch[1].event", "{body}");
        let rejected: Vec<(u64, String)> = body["rejected"]
            .as_array()
            .expect("rejected is a list")
            .iter()
            .map(|r| {
                assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
                (
                    r["index"].as_u64().unwrap(),
                    r["field"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            rejected,
            [
                (1, "event".to_owned()),
                (3, "userId".to_owned()),
                (4, "type".to_owned()),
                (6, "timestamp".to_owned()),
            ]
        );
        // A junk e-mail does not refuse its message: it is stored, the value is no identifier.
        let dropped = body["dropped_identifiers"]
            .as_array()
            .expect("dropped_identifiers");
        assert_eq!(dropped.len(), 1, "{body}");
        assert_eq!(dropped[0]["index"], 5, "{body}");
        assert_eq!(dropped[0]["field"], "traits.email", "{body}");
        assert_eq!(dropped[0]["code"], "not_an_email", "{body}");

        assert_eq!(app.count_events().await, 3, "the good messages are stored");
        app.profile_with_count("user_id", "u-partial", "track", 2)
            .await;

        let quarantined = app.quarantine().await;
        assert_eq!(quarantined.len(), 4, "{quarantined:#?}");
        for id in ["m-no-event", "m-no-ids", "m-bad-type", "m-bad-time"] {
            let entry = quarantined
                .iter()
                .find(|q| q["payload"].as_str().is_some_and(|p| p.contains(id)))
                .unwrap_or_else(|| panic!("{id} is quarantined: {quarantined:#?}"));
            assert_eq!(entry["source"], "http");
            assert!(
                entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{entry}"
            );
            assert!(
                entry["code"].is_string() && entry["received_at"].is_string(),
                "{entry}"
            );
        }
        let no_event = quarantined
            .iter()
            .find(|q| q["payload"].as_str().unwrap().contains("m-no-event"))
            .unwrap();
        assert_eq!(no_event["field"], "event");
        assert_eq!(no_event["code"], "missing_field");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_json_are_quarantined_with_a_reason() {
    on_each_backend("non_json_bodies", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app
            .post_bytes(
                "/v1/track",
                Auth::Basic(WRITE_KEY),
                b"this is { not json".to_vec(),
                false,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_json", "{body}");

        let (status, body) = app
            .post_bytes(
                "/v1/batch",
                Auth::Basic(WRITE_KEY),
                b"[1, 2,".to_vec(),
                false,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_json", "{body}");

        // JSON, but not a batch.
        let (status, body) = app.post("/v1/batch", &json!({"batch": "nope"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_batch", "{body}");
        assert_eq!(body["error"]["field"], "batch", "{body}");

        // Not UTF-8 at all.
        let (status, body) = app
            .post_bytes(
                "/v1/identify",
                Auth::Basic(WRITE_KEY),
                vec![0xff, 0xfe, 0x00, 0x41],
                false,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        let quarantined = app.quarantine().await;
        assert_eq!(quarantined.len(), 4, "{quarantined:#?}");
        // Newest first.
        let codes: Vec<&str> = quarantined
            .iter()
            .map(|q| q["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                "invalid_json",
                "invalid_batch",
                "invalid_json",
                "invalid_json"
            ]
        );
        assert_eq!(quarantined[3]["payload"], "this is { not json");
        assert_eq!(quarantined[2]["payload"], "[1, 2,");
        for entry in &quarantined {
            assert!(
                entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{entry}"
            );
        }
        assert_eq!(app.count_events().await, 0);

        // Paging: `limit` and `next_before`.
        let (status, page) = app
            .get_as(
                "/v1/quarantine?limit=3",
                Auth::Bearer(crate::helpers::ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"].as_array().unwrap().len(), 3);
        let before = page["next_before"].as_i64().expect("a next page");
        let (_, rest) = app
            .get_as(
                &format!("/v1/quarantine?limit=3&before={before}"),
                Auth::Bearer(crate::helpers::ADMIN_TOKEN),
            )
            .await;
        let rest: &Vec<Value> = rest["items"].as_array().unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["payload"], "this is { not json");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_refused_or_quarantined_alike_on_every_backend() {
    on_each_backend("nul_characters", |backend| async move {
        let app = spawn_app(backend).await;
        // PostgreSQL text cannot hold U+0000: such ids must be refused by validation, not fail the
        // commit (and with it the other requests of the same group commit).
        for (field, message) in [
            (
                "userId",
                json!({"userId": "u\u{0}1", "event": "E", "messageId": "m-nul-1"}),
            ),
            (
                "anonymousId",
                json!({"anonymousId": "a\u{0}", "event": "E", "messageId": "m-nul-2"}),
            ),
            (
                "messageId",
                json!({"userId": "u-nul", "event": "E", "messageId": "m\u{0}3"}),
            ),
            (
                "event",
                json!({"userId": "u-nul", "event": "E\u{0}", "messageId": "m-nul-4"}),
            ),
        ] {
            let (status, body) = app.post("/v1/track", &message).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "NUL in {field}: {body}");
            assert_eq!(body["error"]["field"], field, "{body}");
        }
        // An email holding a NUL is no identifier (identifiers have columns of their own): the message
        // is kept, the value too, but only inside the sealed message, never in a text column.
        let (status, body) = app
            .post(
                "/v1/identify",
                &json!({"userId": "u-nul", "traits": {"email": "ann\u{0}@example.com"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "NUL in an email: {body}");
        assert_eq!(
            body["dropped_identifiers"][0]["field"], "traits.email",
            "{body}"
        );
        assert_eq!(
            body["dropped_identifiers"][0]["code"], "not_an_email",
            "{body}"
        );

        let batch = json!({"batch": [
            track("u-nul", "Fine", "m-nul-fine"),
            {"type": "page", "userId": "u-nul", "name": "N\u{0}", "messageId": "m-nul-page"},
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["field"], "batch[1].name", "{body}");

        // A raw NUL byte in a body that is not JSON is kept in the quarantine too.
        let (status, body) = app
            .post_bytes(
                "/v1/track",
                Auth::Basic(WRITE_KEY),
                b"nul \0 inside".to_vec(),
                false,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        assert_eq!(app.count_events().await, 2);
        let quarantined = app.quarantine().await;
        assert_eq!(quarantined.len(), 6, "{quarantined:#?}");
        assert!(quarantined[0]["payload"]
            .as_str()
            .is_some_and(|p| p.starts_with("nul ") && p.ends_with(" inside")));
    })
    .await;
}
