//! Erasure end to end: a customer's events are sealed in the log from the start; after
//! `DELETE /v1/profiles/lookup` no API answer, export, quarantine entry or message (bus, NATS) carries
//! their identifiers, traits or event properties — before and after `cdp replay rebuild` —, the other
//! customers are untouched, the erasure is audited, and the same person coming back is a new customer.

use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const DEADLINE: Duration = Duration::from_secs(20);

/// Strings only the erased customer's data contains.
const PERSONAL: &[&str] = &[
    "ann@erase.cn",
    "8613800138123",
    "u-ann-erase",
    "dev-ann",
    "Ann Secret",
    "ann's note",
];

fn assert_clean(what: &str, text: &str) {
    for p in PERSONAL {
        assert!(!text.contains(p), "{what} still carries {p:?}: {text}");
    }
}

async fn members(app: &TestApp) -> String {
    let response = app
        .request(
            Method::GET,
            "/v1/segments/buyers/members?format=ndjson",
            Auth::Bearer(ADMIN_TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app
        .request(Method::DELETE, path, Auth::Bearer(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    read_json(response).await
}

/// Every answer the API gives about the workspace that could name a person.
async fn api_answers(app: &TestApp, ids: &[String]) -> String {
    let mut out = String::new();
    for path in [
        "/v1/quarantine",
        "/v1/schema",
        "/v1/identity/conflicts",
        "/v1/segments/buyers/members",
    ] {
        let (status, body) = app.get_as(path, Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.push_str(&body.to_string());
    }
    for id in ids {
        for path in ["", "/events", "/identity", "/memberships", "/consent"] {
            let (status, body) = app
                .get_as(
                    &format!("/v1/profiles/{id}{path}"),
                    Auth::Bearer(ADMIN_TOKEN),
                )
                .await;
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::OK,
                "{id}{path}: {status} {body}"
            );
            if path.is_empty() || path == "/events" || path == "/identity" || path == "/consent" {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{id}{path} after erasure: {body}"
                );
            }
            out.push_str(&body.to_string());
        }
    }
    for (t, v) in [
        ("email", "ann@erase.cn"),
        ("user_id", "u-ann-erase"),
        ("anonymous_id", "dev-ann"),
    ] {
        let (status, body) = app.lookup(t, v).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{t} after erasure: {body}");
    }
    out.push_str(&members(app).await);
    let metrics = app
        .request(Method::GET, "/metrics", Auth::None)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    out.push_str(&metrics.text().await.unwrap());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_leaves_no_trace_before_and_after_a_rebuild() {
    on_each_backend("erasure", |backend| async move {
        let nats = backend == Backend::Postgres && nats_available("erasure");
        let app = spawn_app_with(backend, Options { nats, ..Options::default() }).await;
        define_buyers(&app).await;

        // Ann browses anonymously, then logs in (two profiles merged), buys with a note; Bob buys too.
        for m in [
            json!({"type": "page", "anonymousId": "dev-ann", "name": "Home", "messageId": "e-1"}),
            json!({"type": "identify", "userId": "u-ann-erase", "messageId": "e-2",
                "traits": {"email": "ann@erase.cn", "phone": "+86 138 0013 8123", "name": "Ann Secret"},
                "context": {"consent": {"categoryPreferences": {"sms": true}}}}),
            json!({"type": "identify", "anonymousId": "dev-ann", "messageId": "e-2b",
                "traits": {"email": "ann@erase.cn"}}),
            json!({"type": "track", "userId": "u-ann-erase", "event": "Order Completed", "messageId": "e-3",
                "properties": {"total": 88, "note": "ann's note"}}),
            json!({"type": "track", "userId": "u-bob-stays", "event": "Order Completed", "messageId": "e-4",
                "properties": {"total": 12, "note": "bob's note"}}),
        ] {
            let (status, body) = app.post("/v1/batch", &json!({"batch": [m]})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // A refused message of Ann's is kept in the quarantine, with her email.
        let (status, _) = app
            .post("/v1/track", &json!({"userId": "u-ann-erase", "event": "Order Completed", "messageId": "e-5",
                "timestamp": "not a time", "traits": {"email": "ann@erase.cn"}}))
            .await;
        assert!(status.is_client_error());
        assert!(app.quarantine().await.iter().any(|q| q.to_string().contains("ann@erase.cn")));
        let ann = app.profile_when("user_id", "u-ann-erase", |p| p["event_counts"]["total"] == 4).await;
        let ann_id = ann["profile_id"].as_str().unwrap().to_owned();
        let bob = app.profile_when("user_id", "u-bob-stays", |_| true).await;
        let bob_id = bob["profile_id"].as_str().unwrap().to_owned();
        eventually("both buyers", || async {
            let m = members(&app).await;
            if m.contains(&ann_id) && m.contains(&bob_id) { Ok(()) } else { Err(m) }
        })
        .await;
        // Staff tag her.
        let (status, body) = app.put_as("/v1/tags/staff_pick", &json!({"type": "manual"}), Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app
            .post_as(&format!("/v1/profiles/{ann_id}/tags/staff_pick"), Auth::Bearer(ADMIN_TOKEN), &json!({"value": "window display"}))
            .await;
        assert!(status.is_success(), "{body}");
        app.profile_when("user_id", "u-ann-erase", |p| p["tags"]["staff_pick"]["value"] == "window display").await;
        let (_, why) = app.get_as(&format!("/v1/profiles/{ann_id}/identity"), Auth::Bearer(ADMIN_TOKEN)).await;
        let merged: Vec<String> = why["merged_profiles"].as_array().unwrap().iter()
            .map(|p| p.as_str().unwrap_or_else(|| p["profile_id"].as_str().unwrap()).to_owned()).collect();
        assert_eq!(merged.len(), 1, "the anonymous profile was merged in: {why}");
        // Sealed from the start: the log's payloads never held a personal value in the clear.
        assert_clean("the raw log", &crate::helpers::raw_log_text(&app.state.store).await);

        let mut bus = app.state.bus.subscribe();
        let subscriber = subscribe_out(&app, ">").await;

        // Erased by identifier (write scope is not enough).
        let response = app
            .request(Method::DELETE, "/v1/profiles/lookup?type=email&value=ann%40erase.cn", Auth::Bearer("tok_shop_read"))
            .send()
            .await
            .unwrap();
        assert!(response.status() == StatusCode::FORBIDDEN || response.status() == StatusCode::UNAUTHORIZED);
        let (status, report) = delete(&app, "/v1/profiles/lookup?type=email&value=ANN%40erase.cn").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["profile_id"], ann_id.as_str(), "{report}");
        assert_eq!(report["profiles"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["events"], 4, "{report}");
        assert!(report["keys_destroyed"].as_u64().unwrap() >= 1, "{report}");
        assert_eq!(report["segments_left"], 1, "{report}");
        assert_clean("the erasure's answer", &report.to_string());
        let (status, _) = delete(&app, &format!("/v1/profiles/{ann_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "erased once");

        // Subscribers are told she left the segment and lost her tag, and nothing about her.
        let (exited, untagged) = tokio::time::timeout(DEADLINE, async {
            let (mut exited, mut untagged) = (None, None);
            while exited.is_none() || untagged.is_none() {
                let m = bus.recv().await.unwrap();
                assert_clean("a bus message", &m.payload);
                assert!(!m.payload.contains("window display"), "{}", m.payload);
                let p = serde_json::from_str::<Value>(&m.payload).unwrap();
                if m.subject.ends_with(".segment.buyers.exited") {
                    exited = Some(p);
                } else if m.subject.ends_with(".tag.staff_pick.changed") && p["caused_by"] == "erasure" {
                    untagged = Some(p);
                }
            }
            (exited.unwrap(), untagged.unwrap())
        })
        .await
        .expect("the exit and the tag's removal on the bus");
        assert_eq!(untagged["profile_id"], ann_id.as_str());
        assert_eq!((&untagged["value"], &untagged["previous"]), (&Value::Null, &Value::Null), "{untagged}");
        assert_eq!(exited["profile_id"], ann_id.as_str());
        assert_eq!(exited["caused_by"], "erasure");
        assert_eq!(exited["reachable"], json!([]));
        if let Some((mut sub, _client)) = subscriber {
            for _ in 0..2 {
                let m = tokio::time::timeout(DEADLINE, sub.next()).await.expect("on NATS").unwrap();
                let text = String::from_utf8_lossy(&m.payload).into_owned();
                assert_clean("a NATS message", &text);
                assert!(
                    m.subject.ends_with(".segment.buyers.exited") || m.subject.ends_with(".tag.staff_pick.changed"),
                    "{}",
                    m.subject
                );
            }
        }

        let mut ids = vec![ann_id.clone()];
        ids.extend(merged.clone());
        let answers = api_answers(&app, &ids).await;
        assert_clean("the API", &answers);
        assert!(answers.contains(&bob_id) && answers.contains("bob's note"), "Bob is untouched: {answers}");
        assert_clean("the raw log", &crate::helpers::raw_log_text(&app.state.store).await);
        let log = read_all(&app.state.store).await;
        assert_eq!(log.iter().filter(|e| cdp_domain::shred::is_erased(&e.event)).count(), 4);
        assert_clean("the log as read", &format!("{log:?}"));

        // The erasure is audited, with no personal data.
        let (status, audit) = app.get_as("/v1/audit?action=profile.erase", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let entries = audit["items"].as_array().or_else(|| audit["entries"].as_array()).expect("audit entries");
        assert_eq!(entries.iter().filter(|e| e["status"] == 200).count(), 1, "{audit}");
        assert_clean("the audit log", &audit.to_string());

        // A rebuild from the log does not bring her back.
        let report = cdp_replay::rebuild::rebuild(&app.state.store, &|_| {}).await.expect("rebuild");
        assert!(report.through.seq > 0);
        let answers = api_answers(&app, &ids).await;
        assert_clean("the API after a rebuild", &answers);
        let bob_again = app.profile_when("user_id", "u-bob-stays", |_| true).await;
        assert_eq!(bob_again["profile_id"], bob_id.as_str());
        assert_eq!(bob_again["event_counts"]["total"], 1);
        let m = members(&app).await;
        assert!(m.contains(&bob_id) && !m.contains(&ann_id), "{m}");

        // She comes back: a new customer, with nothing of before.
        let (status, _) = app
            .post("/v1/track", &json!({"userId": "u-ann-erase", "event": "Order Completed", "messageId": "e-6",
                "properties": {"total": 5}}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let back = app.profile_when("user_id", "u-ann-erase", |_| true).await;
        assert_ne!(back["profile_id"], ann_id.as_str());
        assert_eq!(back["event_counts"]["total"], 1, "{back}");
        assert!(!back.to_string().contains("ann@erase.cn"), "{back}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_another_profile_holds_under_an_erased_subject_are_erased_and_it_is_refolded() {
    on_each_backend("erasure_shared", |backend| async move {
        let app = spawn_app(backend).await;
        // A tablet's anonymous id: a page by it alone, then Ann's sign-up on it (email), then her login.
        for m in [
            json!({"type": "page", "anonymousId": "tab-1", "name": "Kiosk", "messageId": "s-1",
                "properties": {"shelf": "kiosk shelf"}}),
            json!({"type": "identify", "anonymousId": "tab-1", "messageId": "s-2",
                "traits": {"email": "ann@erase.cn", "name": "Ann Secret"}}),
            json!({"type": "identify", "userId": "u-ann-erase", "anonymousId": "tab-1", "messageId": "s-3"}),
        ] {
            let (status, body) = app.post("/v1/batch", &json!({"batch": [m]})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let ann = app.profile_when("user_id", "u-ann-erase", |p| p["event_counts"]["total"] == 3).await;
        let ann_id = ann["profile_id"].as_str().unwrap().to_owned();
        // The tablet was the shop's, not Ann's: an operator splits it off with the page it alone sent.
        let (status, split) = app
            .post_as("/v1/identity/split", Auth::Bearer(ADMIN_TOKEN), &json!({"profile_id": ann_id,
                "identifiers": [{"type": "anonymous_id", "value": "tab-1"}], "reason": "shop tablet"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{split}");
        let tablet_id = split["profile_id"].as_str().unwrap().to_owned();
        let tablet = app.profile_when("anonymous_id", "tab-1", |p| p["profile_id"] == tablet_id.as_str()).await;
        assert_eq!(tablet["event_counts"]["total"], 1, "{tablet}");

        // Ann is erased. Her sign-up was filed under the tablet's id (its only id then), so the tablet's
        // key goes with it, and the tablet's own page with it: re-folded, the tablet holds nothing of it.
        let (status, report) = delete(&app, &format!("/v1/profiles/{ann_id}")).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["profiles_refolded"], json!([tablet_id]), "{report}");
        let tablet = app.profile_when("anonymous_id", "tab-1", |p| p["event_counts"]["total"] == 0).await;
        assert_eq!(tablet["profile_id"], tablet_id.as_str());
        assert!(!tablet.to_string().contains("kiosk shelf"), "{tablet}");
        assert_clean("the tablet's profile", &tablet.to_string().replace("tab-1", ""));
        let (status, timeline) = app.get_as(&format!("/v1/profiles/{tablet_id}/events"), Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{timeline}");
        assert!(!timeline.to_string().contains("kiosk shelf"), "{timeline}");
        let (status, _) = app.lookup("email", "ann@erase.cn").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

/// The service's own log (the default filter, as an operator runs it): a customer's identifiers,
/// traits and event properties never appear in it — not when the events arrive, are refused, looked up
/// or erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_a_customers_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut server = crate::durability::start_logging(dir.path(), None, Some(&log)).await;
    let client = http_client();
    let url = |path: &str| format!("{}{path}", server.address);
    for m in [
        json!({"type": "identify", "userId": "u-ann-erase", "anonymousId": "dev-ann", "messageId": "l-1",
            "traits": {"email": "ann@erase.cn", "phone": "+86 138 0013 8123", "name": "Ann Secret"}}),
        json!({"type": "track", "userId": "u-ann-erase", "event": "Order Completed", "messageId": "l-2",
            "properties": {"total": 88, "note": "ann's note"}}),
        json!({"type": "track", "userId": "u-ann-erase", "event": "Order Completed", "messageId": "l-3",
            "timestamp": "not a time", "traits": {"email": "ann@erase.cn"}}),
    ] {
        let response = client
            .post(url("/v1/batch"))
            .basic_auth(WRITE_KEY, Some(""))
            .json(&json!({"batch": [m]}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status().is_client_error());
    }
    let lookup = || {
        client
            .get(url("/v1/profiles/lookup"))
            .bearer_auth(ADMIN_TOKEN)
            .query(&[("type", "email"), ("value", "ann@erase.cn")])
            .send()
    };
    eventually("Ann's profile", || async {
        let r = lookup().await.unwrap();
        if r.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(r.status().to_string())
        }
    })
    .await;
    let erased = client
        .delete(url("/v1/profiles/lookup"))
        .bearer_auth(ADMIN_TOKEN)
        .query(&[("type", "email"), ("value", "ann@erase.cn")])
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert_eq!(lookup().await.unwrap().status(), StatusCode::NOT_FOUND);
    server.child.kill().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("profile erased"),
        "the service logged its work: {text}"
    );
    assert_clean("the service's log", &text);
}
