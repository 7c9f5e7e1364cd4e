//! Segments through the API: the seed-002 case (history + today's order crossing a cumulative threshold
//! enters the segment within seconds, published on NATS and the stream), membership history with `?at=`,
//! references between segments, and definitions refused naming the place.

use std::time::Duration;

use chrono::{Duration as Days, Utc};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn order(user: &str, id: &str, total: f64, days_ago: i64) -> Value {
    json!({
        "type": "track", "userId": user, "event": "Order Completed", "messageId": id,
        "timestamp": (Utc::now() - Days::days(days_ago)).to_rfc3339(),
        "properties": {"total": total},
    })
}

async fn put(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    app.put_as(path, &body, Auth::Bearer(ADMIN_TOKEN)).await
}

async fn memberships(app: &TestApp, id: &str, at: Option<&str>) -> Value {
    let mut request = app.request(
        Method::GET,
        &format!("/v1/profiles/{id}/memberships"),
        Auth::Bearer(ADMIN_TOKEN),
    );
    if let Some(at) = at {
        request = request.query(&[("at", at)]);
    }
    let (status, body) = read_json(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn history_plus_todays_order_enters_the_segment_within_seconds() {
    on_each_backend("segments_seed002", |backend| async move {
        let nats = backend == Backend::Postgres && nats_available("segments_seed002");
        let app = spawn_app_with(backend, Options { nats, ..Options::default() }).await;
        // 40,000 of history, long before the segment exists.
        let (status, body) = app
            .post("/v1/batch", &json!({"batch": [order("big", "h1", 25_000.0, 90), order("big", "h2", 15_000.0, 40),
                                                 order("small", "s1", 100.0, 3)]}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let big = app.profile_with_count("user_id", "big", "track", 2).await;
        app.profile_with_count("user_id", "small", "track", 1).await;
        let id = big["profile_id"].as_str().unwrap().to_owned();

        let (status, body) = put(&app, "/v1/segments/high_value", json!({"name": "Spent 50,000 or more",
            "condition": {"event": "Order Completed", "aggregate": {"function": "sum", "property": "properties.total"},
                          "op": "gte", "value": 50000}})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = put(&app, "/v1/segments/high_value_not_male", json!({
            "condition": {"all": [{"segment": "high_value"}, {"trait": "gender", "op": "neq", "value": "male"}]}})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        eventually("segments evaluated over history", || async {
            let (_, b) = app.get_as("/v1/segments/high_value", Auth::Bearer(ADMIN_TOKEN)).await;
            if b["status"] == "ready" { Ok(b) } else { Err(b.to_string()) }
        })
        .await;
        assert_eq!(memberships(&app, &id, None).await["segments"], json!([]));
        // The nightly batch over the history (the lambda's batch side), then the live order.
        let run = cdp_replay::batch(&app.state.store).await.expect("the batch runs");
        assert!(run.folded >= 3, "{run:?}");

        let mut bus = app.state.bus.subscribe();
        let subscriber = match &app.nats {
            Some(n) => {
                let client = async_nats::connect(n.url.as_str()).await.unwrap();
                let subject = format!("{}.cdp.out.{WORKSPACE}.segment.high_value.entered", n.namespace);
                Some((client.subscribe(subject).await.unwrap(), client))
            }
            None => None,
        };
        let stream = app
            .request(Method::GET, "/v1/stream", Auth::Bearer(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        let before = Utc::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Today: 10,000 more.
        let (status, _) = app.post("/v1/track", &order("big", "today", 10_000.0, 0)).await;
        assert_eq!(status, StatusCode::OK);

        let entered = tokio::time::timeout(DEADLINE, async {
            loop {
                let m = bus.recv().await.unwrap();
                if m.subject == format!("cdp.out.{WORKSPACE}.segment.high_value.entered") {
                    return serde_json::from_str::<Value>(&m.payload).unwrap();
                }
            }
        })
        .await
        .expect("the entered message is published");
        assert_eq!(entered["profile_id"], id.as_str());
        assert_eq!(entered["caused_by"], "today");
        if let Some((mut sub, _client)) = subscriber {
            let m = tokio::time::timeout(DEADLINE, sub.next()).await.expect("on NATS").unwrap();
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(payload["profile_id"], id.as_str());
        }
        // The stream carries it too.
        let mut stream = stream;
        let text = tokio::time::timeout(DEADLINE, async {
            let mut text = String::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("event: segment.entered") {
                    return text;
                }
            }
            text
        })
        .await
        .expect("the stream delivers the change");
        assert!(text.contains("high_value"), "{text}");

        let now = memberships(&app, &id, None).await;
        let segments: Vec<&str> = now["segments"].as_array().unwrap().iter()
            .map(|s| s["segment"].as_str().unwrap()).collect();
        assert_eq!(segments, ["high_value", "high_value_not_male"], "{now}");
        assert_eq!(now["segments"][0]["because"]["caused_by"], "today");
        // Was the customer in the segment before the order? No.
        let then = memberships(&app, &id, Some(&before.to_rfc3339())).await;
        assert_eq!(then["segments_at"], json!([]), "{then}");
        let (_, size) = app.get_as("/v1/segments/high_value", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(size["members"], 1, "{size}");

        let (status, page) = app
            .get_as("/v1/segments/high_value/members", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["items"][0]["profile_id"], id.as_str(), "{page}");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
        for (format, expected) in [("csv", format!("profile_id,since,caused_by\n{id},")), ("ndjson", format!("{{\"caused_by\":\"today\",\"profile_id\":\"{id}\""))] {
            let response = app
                .request(Method::GET, "/v1/segments/high_value/members", Auth::Bearer(ADMIN_TOKEN))
                .query(&[("format", format)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let text = response.text().await.unwrap();
            assert!(text.starts_with(&expected), "{format}: {text}");
        }
        // Preview before saving: who has ordered at least twice, and what they are worth.
        let (status, preview) = app
            .post_as("/v1/segments/preview", Auth::Bearer(ADMIN_TOKEN),
                &json!({"condition": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert_eq!(preview["count"], 1, "{preview}");
        assert_eq!(preview["profiles"], 2, "{preview}");
        assert_eq!(preview["sample"], json!([id.as_str()]));
        assert_eq!(preview["totals"]["spend"], 50_000.0);
        assert_eq!(preview["totals"]["orders"], 3);
        // The schema offers what the data has.
        let (status, schema) = app.get_as("/v1/schema", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{schema}");
        assert!(schema["operators"]["number"].as_array().unwrap().contains(&json!("gte")));
        assert_eq!(schema["consent"]["channels"], json!(["sms", "email", "push", "wechat", "phone"]), "{schema}");
        let order_event = schema["events"].as_array().unwrap().iter().find(|e| e["name"] == "Order Completed").cloned();
        let total = order_event.as_ref().and_then(|e| e["properties"].as_array().unwrap().iter()
            .find(|p| p["name"] == "properties.total").cloned());
        assert_eq!(total.map(|t| t["type"].clone()), Some(json!("number")), "{schema}");
        assert_eq!(schema["segments"].as_array().map(Vec::len), Some(2), "{schema}");
        // A male customer leaves the difference segment, not the other.
        app.post("/v1/identify", &json!({"type": "identify", "userId": "big", "messageId": "g", "traits": {"gender": "male"}}))
            .await;
        eventually("the difference segment is left", || async {
            let m = memberships(&app, &id, None).await;
            if m["segments"].as_array().map(Vec::len) == Some(1) { Ok(m) } else { Err(m.to_string()) }
        })
        .await;
        let history = memberships(&app, &id, None).await["history"].clone();
        let changes: Vec<(String, String)> = history.as_array().unwrap().iter()
            .map(|c| (c["segment"].as_str().unwrap().into(), c["change"].as_str().unwrap().into())).collect();
        assert!(changes.contains(&("high_value_not_male".into(), "exited".into())), "{history}");
    })
    .await;
}

/// The lottery case: "1,000 this month (history + today)" lights the button well within 30 seconds of
/// the order that completes it — the `entered` message on NATS (or the bus without NATS).
#[tokio::test]
async fn the_order_that_completes_a_monthly_total_enters_within_seconds() {
    on_each_backend("segments_lottery", |backend| async move {
        let nats = backend == Backend::Postgres && nats_available("segments_lottery");
        let app = spawn_app_with(backend, Options { nats, ..Options::default() }).await;
        let (status, _) = app
            .post("/v1/batch", &json!({"batch": [order("m", "l1", 350.0, 12), order("m", "l2", 250.0, 3),
                                                 order("m", "old", 5_000.0, 60)]}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let profile = app.profile_with_count("user_id", "m", "track", 3).await;
        let (status, body) = put(&app, "/v1/segments/lottery", json!({"name": "1,000 in 30 days",
            "condition": {"event": "Order Completed", "aggregate": {"function": "sum", "property": "properties.total"},
                          "window": "30d", "op": "gte", "value": 1000}})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        eventually("the segment is evaluated", || async {
            let (_, b) = app.get_as("/v1/segments/lottery", Auth::Bearer(ADMIN_TOKEN)).await;
            if b["status"] == "ready" { Ok(b) } else { Err(b.to_string()) }
        })
        .await;
        cdp_replay::batch(&app.state.store).await.expect("the batch runs");
        let mut bus = app.state.bus.subscribe();
        let mut events = app.state.bus.subscribe();
        let subscriber = match &app.nats {
            Some(n) => {
                let client = async_nats::connect(n.url.as_str()).await.unwrap();
                let subject = format!("{}.cdp.out.{WORKSPACE}.segment.lottery.entered", n.namespace);
                Some((client.subscribe(subject).await.unwrap(), client))
            }
            None => None,
        };
        let sent = std::time::Instant::now();
        let (status, _) = app.post("/v1/track", &order("m", "l3", 400.0, 0)).await;
        assert_eq!(status, StatusCode::OK);
        let payload: Value = match subscriber {
            Some((mut sub, _client)) => {
                let m = tokio::time::timeout(Duration::from_secs(30), sub.next()).await.expect("on NATS within 30 s").unwrap();
                serde_json::from_slice(&m.payload).unwrap()
            }
            None => tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let m = bus.recv().await.unwrap();
                    if m.subject.ends_with("segment.lottery.entered") {
                        return serde_json::from_str(&m.payload).unwrap();
                    }
                }
            })
            .await
            .expect("on the bus within 30 s"),
        };
        assert!(sent.elapsed() < Duration::from_secs(30));
        assert_eq!(payload["profile_id"], profile["profile_id"]);
        assert_eq!(payload["caused_by"], "l3");
        // The event itself, with the resolved profile, for marketing automation.
        let event: Value = tokio::time::timeout(DEADLINE, async {
            loop {
                let m = events.recv().await.unwrap();
                if m.subject == format!("cdp.out.{WORKSPACE}.event.order_completed") {
                    return serde_json::from_str(&m.payload).unwrap();
                }
            }
        })
        .await
        .expect("the event subscription");
        assert_eq!(event["message_id"], "l3");
        assert_eq!(event["profile_id"], profile["profile_id"]);
        assert_eq!(event["properties"]["total"], 400.0);
    })
    .await;
}

#[tokio::test]
async fn segment_definitions_are_checked() {
    on_each_backend("segments_invalid", |backend| async move {
        let app = spawn_app(backend).await;
        for (definition, field) in [
            (json!({"condition": {"sequence": [{"event": "Product Added"}], "within": "2h"}}), "condition.sequence"),
            (json!({"condition": {"sequence": [{"event": "Product Added"}, {"not_event": "Order Completed"}], "within": "soon"}}), "condition.within"),
            (json!({"condition": {"all": [{"trait": "a", "op": "sometimes", "value": 1}]}}), "condition.all[0].op"),
            (json!({"condition": {"event": "A", "count": {"op": "contains", "value": 3}}}), "condition.count.op"),
            (json!({"condition": {"all": []}}), "condition.all"),
        ] {
            let (status, body) = put(&app, "/v1/segments/s", definition.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{definition}: {body}");
            assert_eq!(body["error"]["field"], field, "{definition}: {body}");
        }
        // A reference to a segment that does not exist, or a cycle: refused as the catalog stands (409).
        let (status, body) = put(&app, "/v1/segments/s", json!({"condition": {"segment": "nope"}})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (status, _) = put(&app, "/v1/segments/a", json!({"condition": {"trait": "x", "op": "is_set"}})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = put(&app, "/v1/segments/b", json!({"condition": {"segment": "a"}})).await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = put(&app, "/v1/segments/a", json!({"condition": {"segment": "b"}})).await;
        assert_eq!(status, StatusCode::CONFLICT, "a cycle: {body}");
        let response = app.request(Method::DELETE, "/v1/segments/a", Auth::Bearer(ADMIN_TOKEN)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT, "b reads a");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_time_by_event_time_a_customers_history_answers_for_segments_defined_later() {
    on_each_backend("segments_at_event_time", |backend| async move {
        let app = spawn_app(backend).await;
        // History from the POS, stamped when it happened: 600 in January 2024, 600 in March.
        for (id, ts) in [("h-1", "2024-01-10T10:00:00Z"), ("h-2", "2024-03-10T10:00:00Z")] {
            let (status, body) = app
                .post("/v1/batch", &json!({"batch": [{"type": "track", "userId": "hist", "event": "Order Completed",
                    "messageId": id, "timestamp": ts, "properties": {"total": 600}}]}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let p = app.profile_with_count("user_id", "hist", "track", 2).await;
        let id = p["profile_id"].as_str().unwrap().to_owned();
        // Defined today, long after.
        for (name, condition) in [
            ("spent_1000", json!({"event": "Order Completed", "aggregate": {"function": "sum", "property": "properties.total"}, "op": "gte", "value": 1000})),
            ("ordered_30d", json!({"event": "Order Completed", "count": {"op": "gte", "value": 1}, "window": "30d"})),
        ] {
            let (status, body) = app
                .put_as(&format!("/v1/segments/{name}"), &json!({"condition": condition}), Auth::Bearer(ADMIN_TOKEN))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let at = |t: &'static str| {
            let app = &app;
            let id = id.clone();
            async move {
                let (status, body) = app
                    .get_as(&format!("/v1/profiles/{id}/memberships?at={t}"), Auth::Bearer(ADMIN_TOKEN))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
                body
            }
        };
        // February: 600 spent, an order in the last 30 days.
        let feb = at("2024-02-01T00:00:00Z").await;
        assert_eq!(feb["by_event_time"]["segments"], json!(["ordered_30d"]), "{feb}");
        assert_eq!(feb["by_event_time"]["events"], 1, "{feb}");
        assert_eq!(feb["by_event_time"]["latest_event"]["message_id"], "h-1", "{feb}");
        // The recorded history knows nothing then: the segments did not exist.
        assert_eq!(feb["segments_at"], json!([]), "{feb}");
        // Mid-March: 1,200, and the March order within 30 days.
        let mar = at("2024-03-15T00:00:00Z").await;
        assert_eq!(mar["by_event_time"]["segments"], json!(["ordered_30d", "spent_1000"]), "{mar}");
        assert_eq!(mar["by_event_time"]["latest_event"]["message_id"], "h-2", "{mar}");
        // May: still 1,200, but no order in 30 days.
        let may = at("2024-05-01T00:00:00Z").await;
        assert_eq!(may["by_event_time"]["segments"], json!(["spent_1000"]), "{may}");
        // Before anything happened: nothing.
        let before = at("2023-12-31T00:00:00Z").await;
        assert_eq!(before["by_event_time"]["segments"], json!([]), "{before}");
        assert_eq!(before["by_event_time"]["events"], 0, "{before}");
        assert_eq!(before["by_event_time"]["latest_event"], Value::Null, "{before}");
    })
    .await;
}
