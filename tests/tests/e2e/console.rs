//! The web console: `GET /` serves the page with its Content-Security-Policy, the assets it names load
//! with their content types and a long cache, and the console's own endpoints answer the token's scopes
//! and the segments' sizes per day (and refuse a call without a token).

use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{on_each_backend, spawn_app, Auth, ADMIN_TOKEN, DEADLINE, WORKSPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_and_its_assets_are_served_with_a_strict_policy() {
    on_each_backend("console_page", |backend| async move {
        let app = spawn_app(backend).await;
        let page = app
            .request(Method::GET, "/", Auth::None)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let header = |r: &reqwest::Response, name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "cache-control"), "no-cache");
        assert_eq!(header(&page, "x-content-type-options"), "nosniff");
        let csp = header(&page, "content-security-policy");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'self' 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        let html = page.text().await.unwrap();
        // The page names its script under the assets' hashed prefix.
        let script = html
            .split("<script type=\"module\" src=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page loads its module")
            .to_owned();
        assert!(
            script.starts_with("/console/") && script.ends_with("/app.js"),
            "{script}"
        );
        for (asset, kind) in [
            (script.clone(), "text/javascript; charset=utf-8"),
            (
                script.replace("app.js", "vendor/preact.module.js"),
                "text/javascript; charset=utf-8",
            ),
            (
                script.replace("app.js", "app.css"),
                "text/css; charset=utf-8",
            ),
        ] {
            let r = app
                .request(Method::GET, &asset, Auth::None)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{asset}");
            assert_eq!(header(&r, "content-type"), kind, "{asset}");
            assert_eq!(
                header(&r, "cache-control"),
                "public, max-age=31536000, immutable"
            );
        }
        let old = app
            .request(Method::GET, "/console/0000/app.js", Auth::None)
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), StatusCode::OK);
        assert_eq!(header(&old, "cache-control"), "no-cache");
        let missing = app
            .request(
                Method::GET,
                &script.replace("app.js", "nope.js"),
                Auth::None,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_learns_the_tokens_scopes_and_the_segment_sizes() {
    on_each_backend("console_session", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, _) = app.get_as("/v1/console/session", Auth::None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = app
            .get_as("/v1/console/session", Auth::Bearer("tok_nobody"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, session) = app
            .get_as("/v1/console/session", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(session["workspace"], WORKSPACE);
        assert_eq!(session["scopes"], json!(["read", "write", "admin"]));

        let (status, sizes) = app
            .get_as(
                "/v1/console/segment-sizes?days=7",
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sizes}");
        assert_eq!(sizes["dates"].as_array().map(Vec::len), Some(7));
        assert_eq!(sizes["items"], json!([]));

        // Two customers with a city enter a segment: today's size is 2, the days before 0.
        for (user, city) in [("u-con-1", "Hangzhou"), ("u-con-2", "Shanghai")] {
            let (status, body) = app
                .post(
                    "/v1/identify",
                    &json!({"userId": user, "traits": {"city": city}}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        app.profile_with_count("user_id", "u-con-2", "identify", 1)
            .await;
        let (status, body) = app
            .put_as(
                "/v1/segments/in_a_city",
                &json!({"name": "In a city", "condition": {"trait": "city", "op": "is_set"}}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (_, sizes) = app
                .get_as(
                    "/v1/console/segment-sizes?days=3",
                    Auth::Bearer(ADMIN_TOKEN),
                )
                .await;
            if sizes["items"] == json!([{"segment": "in_a_city", "sizes": [0, 0, 2]}]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the sizes never showed the segment: {sizes}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (status, _) = app
            .get_as(
                "/v1/console/segment-sizes?days=0",
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    })
    .await;
}
