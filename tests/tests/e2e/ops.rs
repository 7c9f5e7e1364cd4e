//! Operations and discoverability: every endpoint the OpenAPI list names is routed and documented,
//! unknown paths answer a JSON 404, and `/healthz`, `/readyz` and `/metrics` report what they should.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{on_each_backend, spawn_app, track, Auth};

/// A concrete path for a templated one (`/v1/profiles/{id}` → `/v1/profiles/e2e-probe`).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "e2e-probe"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_endpoint_is_routed_and_documented() {
    on_each_backend("endpoints", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, document) = app.get_as("/openapi.json", Auth::None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")));
        for (method, path) in cdp_api::openapi::ENDPOINTS {
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Without credentials: routed endpoints answer 401 (or their own answer), never 404/405.
            let response = app
                .request(verb, &concrete(path), Auth::None)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answered {status}"
            );
            assert!(
                !status.is_server_error(),
                "{method} {path} answered {status}"
            );
            assert!(
                document["paths"][path][method].is_object(),
                "/openapi.json documents {method} {path}"
            );
        }
        let documented = document["paths"].as_object().unwrap();
        for (path, operations) in documented {
            for method in operations.as_object().unwrap().keys() {
                assert!(
                    cdp_api::openapi::ENDPOINTS.contains(&(method.as_str(), path.as_str())),
                    "{method} {path} is documented but not in ENDPOINTS"
                );
            }
        }

        let (status, body) = app.get_as("/v1/no-such-thing", Auth::None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        let response = app
            .request(Method::DELETE, "/v1/track", Auth::None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    })
    .await;
}

/// The value of a sample line (`name{labels} value`) of a Prometheus text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    on_each_backend("health_and_metrics", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app.get_as("/healthz", Auth::None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        let (status, body) = app.get_as("/readyz", Auth::None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["database"], true, "{body}");

        let (status, _) = app.post("/v1/track", &track("u-metrics", "E", "m-1")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app.post("/v1/track", &track("u-metrics", "E", "m-1")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = app
            .post(
                "/v1/track",
                &json!({"userId": "u-metrics", "messageId": "m-bad"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        app.profile_with_count("user_id", "u-metrics", "track", 1)
            .await;

        let response = app
            .request(Method::GET, "/metrics", Auth::None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = response.text().await.unwrap();
        for name in [
            "cdp_events_ingested_total",
            "cdp_messages_rejected_total",
            "cdp_append_seconds",
            "cdp_projection_lag_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "/metrics has {name}:\n{text}"
            );
        }
        assert_eq!(
            sample(&text, "cdp_events_ingested_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "cdp_messages_rejected_total{source=\"http\"}"),
            Some(1.0),
            "{text}"
        );
        assert!(
            sample(&text, "cdp_append_seconds_count").is_some_and(|n| n >= 1.0),
            "{text}"
        );
        let lag = sample(&text, "cdp_projection_lag_seconds{projection=\"identity\"}");
        assert!(lag.is_some_and(|s| s >= 0.0), "{text}");
    })
    .await;
}
