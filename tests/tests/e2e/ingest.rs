//! Segment-compatible ingestion: every message type on its own endpoint and in a batch, the Segment
//! response, both ways of passing the write key, gzip bodies, and idempotency by messageId.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{gzip, on_each_backend, spawn_app, track, Auth, WORKSPACE, WRITE_KEY};

/// One valid message of each type for `user`, with message ids prefixed by `prefix`.
fn one_of_each(user: &str, prefix: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "track",
            json!({"type": "track", "userId": user, "event": "Product Viewed",
                   "properties": {"sku": "SKU-1"}, "messageId": format!("{prefix}-track")}),
        ),
        (
            "identify",
            json!({"type": "identify", "userId": user, "traits": {"name": "Ann", "city": "Shanghai"},
                   "messageId": format!("{prefix}-identify")}),
        ),
        (
            "page",
            json!({"type": "page", "userId": user, "name": "Home",
                   "properties": {"url": "https://shop.example/"}, "messageId": format!("{prefix}-page")}),
        ),
        (
            "screen",
            json!({"type": "screen", "userId": user, "name": "Cart", "messageId": format!("{prefix}-screen")}),
        ),
        (
            "group",
            json!({"type": "group", "userId": user, "groupId": "company-7",
                   "traits": {"plan": "enterprise"}, "messageId": format!("{prefix}-group")}),
        ),
        (
            "alias",
            json!({"type": "alias", "userId": user, "previousId": "anon-before-login",
                   "messageId": format!("{prefix}-alias")}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_type_is_stored_from_its_endpoint_and_from_a_batch() {
    on_each_backend("every_message_type", |backend| async move {
        let app = spawn_app(backend).await;
        for (kind, mut message) in one_of_each("u-types", "single") {
            // Segment's libraries leave `type` out on the typed endpoints.
            message.as_object_mut().unwrap().remove("type");
            let (status, body) = app.post(&format!("/v1/{kind}"), &message).await;
            assert_eq!(status, StatusCode::OK, "/v1/{kind}: {body}");
            assert_eq!(body, json!({"success": true}), "/v1/{kind}");
        }
        let batch: Vec<Value> = one_of_each("u-types", "batched")
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        let (status, body) = app
            .post(
                "/v1/batch",
                &json!({"batch": batch, "sentAt": chrono::Utc::now()}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "/v1/batch: {body}");
        assert_eq!(body, json!({"success": true}));
        assert_eq!(app.count_events().await, 12);

        let events = app.read_log(12).await;
        for (kind, _) in one_of_each("u-types", "") {
            for prefix in ["single", "batched"] {
                let id = format!("{prefix}-{kind}");
                let stored = events
                    .iter()
                    .find(|e| e.event.message_id == id)
                    .unwrap_or_else(|| panic!("{id} is in the log"));
                assert_eq!(stored.event.kind.as_str(), kind, "{id}");
                assert_eq!(stored.event.workspace, WORKSPACE);
                assert_eq!(stored.event.user_id.as_deref(), Some("u-types"));
                let payload: Value = serde_json::from_str(&stored.event.payload).unwrap();
                assert_eq!(payload["type"], kind, "{id}: the payload is normalised");
                assert!(payload["receivedAt"].is_string(), "{id}: receivedAt is set");
            }
        }

        let profile = app
            .profile_when("user_id", "u-types", |p| {
                ["track", "identify", "page", "screen", "group", "alias"]
                    .iter()
                    .all(|k| p["event_counts"]["by_type"][k] == 2)
            })
            .await;
        assert_eq!(profile["event_counts"]["by_event"]["Product Viewed"], 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_another_type_is_refused_on_a_typed_endpoint() {
    on_each_backend("typed_endpoint_mismatch", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app
            .post(
                "/v1/track",
                &json!({"type": "identify", "userId": "u1", "messageId": "m-mismatch"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["field"], "type", "{body}");
        assert_eq!(body["error"]["code"], "invalid_value", "{body}");
        assert_eq!(app.count_events().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_key_may_come_in_the_body_and_is_never_stored() {
    on_each_backend("write_key_in_body", |backend| async move {
        let app = spawn_app(backend).await;
        let mut message = track("u-body-key", "Signed Up", "m-body-key");
        message["writeKey"] = json!(WRITE_KEY);
        let (status, body) = app.post_as("/v1/track", Auth::None, &message).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"success": true}));

        let batch = json!({
            "writeKey": WRITE_KEY,
            "batch": [track("u-body-key", "Order Completed", "m-body-key-batch")],
        });
        let (status, body) = app.post_as("/v1/batch", Auth::None, &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let events = app.read_log(2).await;
        assert_eq!(events.len(), 2);
        for e in &events {
            assert!(
                !e.event.payload.contains(WRITE_KEY),
                "the write key is not stored: {}",
                e.event.payload
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted() {
    on_each_backend("gzip_bodies", |backend| async move {
        let app = spawn_app(backend).await;
        let single = track("u-gzip", "Product Viewed", "m-gzip-single").to_string();
        let (status, body) = app
            .post_bytes(
                "/v1/track",
                Auth::Basic(WRITE_KEY),
                gzip(single.as_bytes()),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"success": true}));

        let batch = json!({"batch": [
            track("u-gzip", "Product Viewed", "m-gzip-b1"),
            track("u-gzip", "Product Added", "m-gzip-b2"),
        ]})
        .to_string();
        let (status, body) = app
            .post_bytes(
                "/v1/batch",
                Auth::Basic(WRITE_KEY),
                gzip(batch.as_bytes()),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(app.count_events().await, 3);

        // A body that claims to be gzip and is not is refused, not stored.
        let (status, body) = app
            .post_bytes(
                "/v1/track",
                Auth::Basic(WRITE_KEY),
                single.into_bytes(),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_gzip", "{body}");
        assert_eq!(app.count_events().await, 3);

        app.profile_with_count("user_id", "u-gzip", "track", 3)
            .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_twice_is_stored_once_and_answered_the_same() {
    on_each_backend("dedup", |backend| async move {
        let app = spawn_app(backend).await;
        let message = track("u-dedup", "Order Completed", "m-dedup-1");
        let first = app.post("/v1/track", &message).await;
        let second = app.post("/v1/track", &message).await;
        assert_eq!(first.0, StatusCode::OK, "{}", first.1);
        assert_eq!(first, second, "a repeated message is answered the same");

        // Again inside a batch, and twice within one batch.
        let batch = json!({"batch": [
            message,
            track("u-dedup", "Order Completed", "m-dedup-2"),
            track("u-dedup", "Order Completed", "m-dedup-2"),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"success": true}));

        // And concurrently, so that the copies may land in one group commit.
        let copies = (0..8).map(|_| app.post("/v1/track", &batch["batch"][1]));
        for (status, body) in futures::future::join_all(copies).await {
            assert_eq!(status, StatusCode::OK, "{body}");
        }

        assert_eq!(app.count_events().await, 2, "two distinct messageIds");
        let profile = app
            .profile_with_count("user_id", "u-dedup", "track", 2)
            .await;
        assert_eq!(profile["event_counts"]["by_event"]["Order Completed"], 2);
        assert_eq!(profile["recent_events"].as_array().unwrap().len(), 2);
    })
    .await;
}
