//! Segment's size limits: 32 KB per message and 500 KB per request body (after gzip inflation), answered
//! with 413 and a JSON error.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{gzip, on_each_backend, spawn_app, track, Auth, WRITE_KEY};

const KB: usize = 1024;

fn track_of_size(message_id: &str, padding: usize) -> Value {
    let mut message = track("u-limits", "Big Event", message_id);
    message["properties"]["padding"] = json!("x".repeat(padding));
    message
}

fn assert_too_large(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {body}");
    let error = &body["error"];
    assert!(
        error["code"].is_string() && error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: a JSON error with a code and a message: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_32_kb_is_refused_with_413() {
    on_each_backend("message_over_32kb", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app
            .post("/v1/track", &track_of_size("m-big", 33 * KB))
            .await;
        assert_too_large(status, &body, "a 33 KB message");
        assert_eq!(body["error"]["code"], "message_too_large");

        // Just under the limit is fine.
        let (status, body) = app
            .post("/v1/track", &track_of_size("m-fits", 30 * KB))
            .await;
        assert_eq!(status, StatusCode::OK, "a 30 KB message: {body}");

        // In a batch, the oversized message is refused by index and the others are stored.
        let batch = json!({"batch": [
            track_of_size("m-batch-ok", 10),
            track_of_size("m-batch-big", 40 * KB),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["rejected"][0]["index"], 1, "{body}");
        assert_eq!(body["rejected"][0]["code"], "message_too_large", "{body}");

        assert_eq!(app.count_events().await, 2);
        let quarantined = app.quarantine().await;
        assert_eq!(
            quarantined.len(),
            2,
            "both oversized messages are quarantined"
        );
        assert!(quarantined.iter().all(|q| q["code"] == "message_too_large"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_500_kb_is_refused_with_413() {
    on_each_backend("body_over_500kb", |backend| async move {
        let app = spawn_app(backend).await;
        // Twenty 30 KB messages: each is within its limit, the body is not.
        let batch: Vec<Value> = (0..20)
            .map(|i| track_of_size(&format!("m-{i}"), 30 * KB))
            .collect();
        let body = json!({"batch": batch}).to_string();
        assert!(body.len() > 500 * KB);
        let (status, answer) = app
            .post_bytes(
                "/v1/batch",
                Auth::Basic(WRITE_KEY),
                body.clone().into_bytes(),
                false,
            )
            .await;
        assert_too_large(status, &answer, "a 600 KB batch");

        // Small on the wire, too large once inflated.
        let compressed = gzip(body.as_bytes());
        assert!(compressed.len() < 100 * KB);
        let (status, answer) = app
            .post_bytes("/v1/batch", Auth::Basic(WRITE_KEY), compressed, true)
            .await;
        assert_too_large(status, &answer, "a gzip bomb");

        let inflating = gzip(
            track_of_size("m-inflating", 600 * KB)
                .to_string()
                .as_bytes(),
        );
        let (status, answer) = app
            .post_bytes("/v1/track", Auth::Basic(WRITE_KEY), inflating, true)
            .await;
        assert_too_large(status, &answer, "a single message inflating past 500 KB");

        assert_eq!(
            app.count_events().await,
            0,
            "nothing of a refused body is stored"
        );

        // The service is still fine afterwards.
        let (status, answer) = app.post("/v1/track", &track_of_size("m-after", 10)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    })
    .await;
}
