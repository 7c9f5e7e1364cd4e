//! Dirty identifiers: a message whose phone or e-mail is junk is stored (its order reaches the
//! profile, the spend and the segments), the junk value is kept in the 360 view marked invalid and is
//! never an identifier (it joins nobody), and a data-quality finding is at `GET /v1/quality` and in
//! `/metrics`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    define_buyers, eventually, on_each_backend, read_json, spawn_app, spawn_app_with, Auth,
    Options, TestApp, ADMIN_TOKEN,
};

fn order(user: &str, message_id: &str, phone: &str, total: f64) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": message_id,
           "context": {"channel": "pos", "traits": {"phone": phone}},
           "properties": {"order_id": message_id, "total": total}})
}

async fn segments_of(app: &TestApp, profile: &str) -> Value {
    let request = app.request(
        Method::GET,
        &format!("/v1/profiles/{profile}/memberships"),
        Auth::Bearer(ADMIN_TOKEN),
    );
    let (status, body) = read_json(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["segments"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pos_order_with_a_junk_phone_reaches_the_profile_and_leaves_a_finding() {
    on_each_backend("junk_phone_order", |backend| async move {
        let app = spawn_app(backend).await;
        define_buyers(&app).await;
        let (status, body) = app
            .put_as(
                "/v1/traits/spend",
                &json!({"event": "Order Completed", "function": "sum", "property": "properties.total"}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // Ann is known by her phone from the CRM; the till typed "N/A" on her order.
        let (status, body) = app
            .post(
                "/v1/identify",
                &json!({"userId": "m-ann", "messageId": "crm-ann",
                        "traits": {"phone": "138 0013 8000", "name": "Ann"}}),
            )
            .await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({"success": true})));
        let (status, body) = app
            .post("/v1/track", &order("m-ann", "pos-ann-1", "N/A", 250.0))
            .await;
        assert_eq!(status, StatusCode::OK, "a junk phone refuses nothing: {body}");
        assert_eq!(body["success"], true, "{body}");
        assert_eq!(
            body["dropped_identifiers"],
            json!([{"field": "context.traits.phone", "code": "not_a_phone",
                    "message": body["dropped_identifiers"][0]["message"]}]),
            "{body}"
        );
        // Two other customers' orders with the same junk, and a placeholder, in one batch.
        let (status, body) = app
            .post(
                "/v1/batch",
                &json!({"batch": [order("m-bo", "pos-bo-1", "N/A", 30.0),
                                  order("m-cy", "pos-cy-1", "0000000", 40.0)]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let dropped: Vec<(u64, String)> = body["dropped_identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["index"].as_u64().unwrap(), d["code"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(dropped, [(0, "not_a_phone".to_owned()), (1, "placeholder".to_owned())]);
        assert!(app.quarantine().await.is_empty(), "nothing was refused");

        // The order is in Ann's profile, her spend and her segments.
        let ann = app
            .profile_when("phone", "+86 138 0013 8000", |p| {
                p["event_counts"]["by_event"]["Order Completed"] == 1
                    && p["computed_traits"]["spend"]["value"].as_f64() == Some(250.0)
            })
            .await;
        let ann_id = ann["profile_id"].as_str().unwrap().to_owned();
        // The junk value is kept as a raw trait, marked invalid; her identifiers keep her real phone.
        assert_eq!(ann["traits"]["phone"]["value"], "N/A", "{ann}");
        assert_eq!(ann["traits"]["phone"]["invalid"], "not_a_phone", "{ann}");
        assert_eq!(ann["traits"]["phone"]["message_id"], "pos-ann-1", "{ann}");
        let phones: Vec<&str> = ann["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "phone")
            .map(|i| i["value"].as_str().unwrap())
            .collect();
        assert_eq!(phones, ["8613800138000"], "{ann}");
        eventually("Ann is among the buyers", || async {
            let segments = segments_of(&app, &ann_id).await;
            let names: Vec<&str> = segments
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["segment"].as_str().or(s.as_str()))
                .collect();
            if names.contains(&"buyers") {
                Ok(())
            } else {
                Err(segments.to_string())
            }
        })
        .await;

        // The junk joined nobody: three customers, three profiles, and no phone to look up.
        let bo = app
            .profile_when("user_id", "m-bo", |p| p["event_counts"]["total"] == 1)
            .await;
        let cy = app
            .profile_when("user_id", "m-cy", |p| p["event_counts"]["total"] == 1)
            .await;
        assert_ne!(bo["profile_id"], ann["profile_id"]);
        assert_ne!(bo["profile_id"], cy["profile_id"]);
        assert_eq!(cy["traits"]["phone"]["invalid"], "placeholder", "{cy}");
        for p in [&bo, &cy] {
            assert!(
                p["identifiers"].as_array().unwrap().iter().all(|i| i["type"] != "phone"),
                "{p}"
            );
        }
        let (status, body) = app.lookup("phone", "N/A").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // The message in the log keeps the value as sent.
        let (status, timeline) = app
            .get_as(&format!("/v1/profiles/{ann_id}/events"), Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{timeline}");
        let stored = timeline["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["message_id"] == "pos-ann-1")
            .cloned()
            .unwrap_or_else(|| panic!("the order is in the timeline: {timeline}"));
        assert_eq!(
            stored["message"]["context"]["traits"]["phone"],
            json!({"value": "N/A", "invalid": "not_a_phone"})
        );

        // The findings: by field and reason, and each with its message; a resend counts once.
        let (status, body) = app
            .post("/v1/track", &order("m-ann", "pos-ann-1", "N/A", 250.0))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, quality) = app.get_as("/v1/quality", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{quality}");
        assert_eq!(quality["total"], 3, "{quality}");
        assert_eq!(
            quality["by_reason"],
            json!([{"field": "context.traits.phone", "code": "not_a_phone", "count": 2},
                   {"field": "context.traits.phone", "code": "placeholder", "count": 1}]),
            "{quality}"
        );
        let messages: Vec<&str> = quality["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["pos-cy-1", "pos-bo-1", "pos-ann-1"], "{quality}");
        let first = &quality["items"][2];
        assert_eq!(first["source"], "http");
        assert!(first["reason"].as_str().is_some_and(|r| !r.contains("N/A")), "{first}");
        let (status, page) = app
            .get_as("/v1/quality?limit=2", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK);
        let before = page["next_before"].as_i64().expect("a next page");
        let (_, rest) = app
            .get_as(&format!("/v1/quality?limit=2&before={before}"), Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(rest["items"][0]["message_id"], "pos-ann-1", "{rest}");
        // A bad query string is the JSON error naming the parameter, never text/plain.
        for query in ["limit=ten", "limit=0", "limit=1001", "before=x"] {
            let response = app
                .request(Method::GET, &format!("/v1/quality?{query}"), Auth::Bearer(ADMIN_TOKEN))
                .send()
                .await
                .unwrap();
            let json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|v| v == "application/json");
            let (status, body) = read_json(response).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(json, "{query}: {body}");
            let field = query.split('=').next().unwrap();
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }

        let metrics = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("cdp_identifiers_dropped_total{code=\"not_a_phone\"} 3"),
            "every dropped value is counted as it arrives: {metrics}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_are_read_in_the_workspace_region() {
    on_each_backend("phone_region", |backend| async move {
        // A Hong Kong workspace: 8-digit numbers are its own.
        let config = r#"
            [[workspace]]
            id = "hk_shop"
            write_keys = ["wk_hk"]
            [[workspace.token]]
            token = "tok_hk"
            scopes = ["admin"]
            [workspace.identity]
            phone_region = "HK"
        "#;
        let app = spawn_app_with(
            backend,
            Options {
                config_toml: Some(config.to_owned()),
                no_bootstrap: true,
                ..Options::default()
            },
        )
        .await;
        let (status, body) = app
            .post_as(
                "/v1/identify",
                Auth::Basic("wk_hk"),
                &json!({"userId": "hk-1", "traits": {"phone": "6552 9988"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("dropped_identifiers").is_none(), "{body}");
        let profile = app
            .profile_as_when("tok_hk", "phone", "6552 9988", |_| true)
            .await;
        assert_eq!(
            profile["traits"]["phone"]["value"], "+85265529988",
            "{profile}"
        );
        assert_eq!(profile["matched"]["value"], "85265529988", "{profile}");
    })
    .await;
}
