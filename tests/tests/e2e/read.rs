//! The first read side: the profile view by user id, anonymous id and (normalised) email — traits with
//! latest-wins provenance, counts by type and event, first/last seen, recent events — and its errors.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{on_each_backend, spawn_app, Auth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_view_answers_by_every_identifier() {
    on_each_backend("profile_view", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            {"type": "identify", "userId": "u-ann", "anonymousId": "anon-ann",
             "timestamp": "2025-03-01T10:00:00Z", "messageId": "m-id-1",
             "traits": {"email": "  Ann@Example.COM ", "plan": "silver", "city": "Shanghai"}},
            {"type": "identify", "userId": "u-ann", "timestamp": "2025-03-02T10:00:00Z",
             "messageId": "m-id-2", "traits": {"plan": "gold"}},
            // Older, arriving late: it must not overwrite the newer plan, but it adds a trait.
            {"type": "identify", "userId": "u-ann", "timestamp": "2025-02-01T10:00:00Z",
             "messageId": "m-id-0", "traits": {"plan": "bronze", "gender": "f"}},
            {"type": "track", "userId": "u-ann", "anonymousId": "anon-ann", "event": "Order Completed",
             "timestamp": "2025-03-03T09:00:00Z", "messageId": "m-order-1",
             "properties": {"total": 120}},
            {"type": "track", "userId": "u-ann", "event": "Order Completed",
             "timestamp": "2025-03-04T09:00:00Z", "messageId": "m-order-2"},
            {"type": "page", "anonymousId": "anon-ann", "name": "Home",
             "timestamp": "2025-01-15T08:00:00Z", "messageId": "m-page-1"},
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let by_user = app
            .profile_with_count("user_id", "u-ann", "track", 2)
            .await;
        assert_eq!(by_user["key"], json!({"type": "user_id", "value": "u-ann"}));
        let counts = &by_user["event_counts"];
        assert_eq!(counts["by_type"], json!({"identify": 3, "track": 2}), "{by_user}");
        assert_eq!(counts["by_event"], json!({"Order Completed": 2}));

        let traits = &by_user["traits"];
        assert_eq!(traits["plan"]["value"], "gold", "latest event time wins: {traits}");
        assert_eq!(traits["plan"]["message_id"], "m-id-2");
        assert_eq!(traits["plan"]["set_at"], "2025-03-02T10:00:00.000Z");
        assert_eq!(traits["plan"]["source"], "identify");
        assert_eq!(traits["gender"]["value"], "f");
        assert_eq!(traits["gender"]["message_id"], "m-id-0");
        assert_eq!(traits["email"]["value"], "ann@example.com", "emails are normalised");
        assert_eq!(traits["city"]["set_at"], "2025-03-01T10:00:00.000Z");

        assert_eq!(by_user["first_seen"], "2025-02-01T10:00:00.000Z");
        assert_eq!(by_user["last_seen"], "2025-03-04T09:00:00.000Z");
        let recent: Vec<&str> = by_user["recent_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            recent,
            ["m-order-2", "m-order-1", "m-id-2", "m-id-1", "m-id-0"],
            "newest first by event time"
        );
        let first = &by_user["recent_events"][0];
        assert_eq!(first["type"], "track");
        assert_eq!(first["name"], "Order Completed");
        assert_eq!(by_user["identifiers"]["anonymous_id"], json!(["anon-ann"]));

        // The anonymous id's view has what carried it: the first identify, the first order, the page.
        let by_anon = app
            .profile_with_count("anonymous_id", "anon-ann", "page", 1)
            .await;
        assert_eq!(
            by_anon["event_counts"]["by_type"],
            json!({"identify": 1, "track": 1, "page": 1}),
            "{by_anon}"
        );
        assert_eq!(by_anon["first_seen"], "2025-01-15T08:00:00.000Z");

        // Lookup by email is normalised too.
        for raw in ["ANN@EXAMPLE.COM", "ann@example.com", " Ann@Example.com "] {
            let (status, by_email) = app.lookup("email", raw).await;
            assert_eq!(status, StatusCode::OK, "email {raw:?}: {by_email}");
            assert_eq!(by_email["key"]["value"], "ann@example.com");
            assert_eq!(by_email["traits"]["city"]["value"], "Shanghai");
        }

        // A later event shows up.
        let (status, _) = app
            .post(
                "/v1/identify",
                &json!({"userId": "u-ann", "traits": {"plan": "platinum"}, "messageId": "m-id-3"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let updated = app
            .profile_when("user_id", "u-ann", |p| p["traits"]["plan"]["value"] == "platinum")
            .await;
        assert_eq!(updated["traits"]["plan"]["message_id"], "m-id-3");
        assert_eq!(updated["event_counts"]["by_type"]["identify"], 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identifiers_answer_404_and_bad_queries_400() {
    on_each_backend("lookup_errors", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app.lookup("user_id", "nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = app.lookup("email", "nobody@example.com").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let admin = Auth::Bearer(crate::helpers::ADMIN_TOKEN);
        for (query, field) in [
            ("?value=u1", "type"),
            ("?type=user_id", "value"),
            ("?type=shoe_size&value=42", "type"),
            ("?type=email&value=not-an-email", "value"),
        ] {
            let (status, body): (StatusCode, Value) = app
                .get_as(&format!("/v1/profiles/lookup{query}"), admin)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }
    })
    .await;
}
