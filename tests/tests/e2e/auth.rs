//! Authentication and workspace isolation: write keys for ingestion, Bearer tokens for reading, and a
//! token of one workspace seeing nothing of another (workspaces provisioned from a `CDP_CONFIG` file).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    on_each_backend, spawn_app, spawn_app_with, track, Auth, Options, ADMIN_TOKEN, WRITE_KEY,
};

const CONFIG: &str = r#"
[[workspace]]
id = "shop_a"
write_keys = ["wk_shop_a"]
[[workspace.token]]
token = "tok_shop_a_read"
scopes = ["read"]

[[workspace]]
id = "shop_b"
write_keys = ["wk_shop_b", "wk_shop_b_second"]
[[workspace.token]]
token = "tok_shop_b_read"
scopes = ["read"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_without_a_valid_write_key_is_refused() {
    on_each_backend("ingestion_auth", |backend| async move {
        let app = spawn_app(backend).await;
        let message = track("u-auth", "Signed Up", "m-auth");
        for (what, auth, body) in [
            ("no key", Auth::None, message.clone()),
            ("a wrong key", Auth::Basic("wk_wrong"), message.clone()),
            ("an empty key", Auth::Basic(""), message.clone()),
            (
                "a read token as write key",
                Auth::Basic(ADMIN_TOKEN),
                message.clone(),
            ),
            (
                "a write key as Bearer",
                Auth::Bearer(WRITE_KEY),
                message.clone(),
            ),
            ("a wrong key in the body", Auth::None, {
                let mut m = message.clone();
                m["writeKey"] = json!("wk_wrong");
                m
            }),
        ] {
            let response = app
                .request(Method::POST, "/v1/track", auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
            assert!(
                response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")),
                "{what}: a Basic challenge"
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
        }
        let (status, _) = app
            .post_as("/v1/batch", Auth::None, &json!({"batch": [message]}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a batch without a key");
        assert_eq!(app.count_events().await, 0, "nothing refused was stored");
        assert!(
            app.quarantine().await.is_empty(),
            "unauthenticated bodies are not quarantined into the workspace"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_api_needs_a_bearer_token() {
    on_each_backend("read_auth", |backend| async move {
        let app = spawn_app(backend).await;
        for path in [
            "/v1/profiles/lookup?type=user_id&value=u1",
            "/v1/quarantine",
        ] {
            for (what, auth) in [
                ("no token", Auth::None),
                ("a write key as Bearer", Auth::Bearer(WRITE_KEY)),
                ("an unknown token", Auth::Bearer("tok_nope")),
                ("Basic instead of Bearer", Auth::Basic(ADMIN_TOKEN)),
            ] {
                let (status, body) = app.get_as(path, auth).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{path} with {what}: {body}"
                );
                assert_eq!(body["error"]["code"], "unauthorized", "{path} with {what}");
            }
            let (status, body) = app.get_as(path, Auth::Bearer(ADMIN_TOKEN)).await;
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{path} with the admin token: {body}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_only_its_own_workspace() {
    on_each_backend("workspace_isolation", |backend| async move {
        let options = Options {
            config_toml: Some(CONFIG.to_owned()),
            no_bootstrap: true,
            ..Options::default()
        };
        let app = spawn_app_with(backend, options).await;

        // The same user id in both workspaces, and a refused message in B.
        let (status, body) = app
            .post_as(
                "/v1/track",
                Auth::Basic("wk_shop_a"),
                &track("u-shared", "A Event", "m-1"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (key, event, id) in [
            ("wk_shop_b", "B Event", "m-1"),
            ("wk_shop_b_second", "B Event", "m-2"),
            ("wk_shop_b", "B Only", "m-3"),
        ] {
            let mut message = track("u-shared", event, id);
            if event == "B Only" {
                message["userId"] = json!("u-only-in-b");
            }
            let (status, body) = app.post_as("/v1/track", Auth::Basic(key), &message).await;
            assert_eq!(status, StatusCode::OK, "{key}: {body}");
        }
        let (status, _) = app
            .post_as(
                "/v1/track",
                Auth::Basic("wk_shop_b"),
                &json!({"userId": "u-only-in-b", "messageId": "m-refused"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // messageId idempotency is per workspace: m-1 is stored in both.
        assert_eq!(app.count_events_in("shop_a").await, 1);
        assert_eq!(app.count_events_in("shop_b").await, 3);

        let b = app
            .profile_as_when("tok_shop_b_read", "user_id", "u-only-in-b", |_| true)
            .await;
        assert_eq!(b["event_counts"]["by_event"]["B Only"], 1);
        let shared_b = app
            .profile_as_when("tok_shop_b_read", "user_id", "u-shared", |p| {
                p["event_counts"]["by_type"]["track"] == 2
            })
            .await;
        assert!(
            shared_b["event_counts"]["by_event"]
                .get("A Event")
                .is_none(),
            "{shared_b}"
        );
        let shared_a = app
            .profile_as_when("tok_shop_a_read", "user_id", "u-shared", |_| true)
            .await;
        assert_eq!(
            shared_a["event_counts"]["by_type"]["track"], 1,
            "{shared_a}"
        );
        assert_eq!(shared_a["event_counts"]["by_event"]["A Event"], 1);

        let (status, body) = app
            .lookup_as("tok_shop_a_read", "user_id", "u-only-in-b")
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "A cannot see B's profile: {body}"
        );

        assert_eq!(app.quarantine_as("tok_shop_b_read").await.len(), 1);
        assert!(
            app.quarantine_as("tok_shop_a_read").await.is_empty(),
            "A cannot see B's quarantine"
        );

        // Workspace A's write key cannot be used to read, nor B's token to write.
        let (status, _) = app.lookup_as("wk_shop_a", "user_id", "u-shared").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app
            .post_as(
                "/v1/track",
                Auth::Basic("tok_shop_b_read"),
                &track("u", "E", "m-x"),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // No bootstrap workspace was made.
        let (status, _) = app.post("/v1/track", &track("u", "E", "m-y")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    })
    .await;
}
