//! `cdp replay rebuild` against the store of a running server: while customers keep sending events over
//! HTTP and the API keeps being read, the model is rebuilt from the log and switched in; every request is
//! answered throughout, and at the end every acknowledged event is in its profile and the segment holds
//! exactly who it should.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{eventually, on_each_backend, spawn_app, Auth, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_live_ingestion_serves_throughout_and_loses_nothing() {
    on_each_backend("replay_rebuild", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app
            .put_as(
                "/v1/segments/big",
                &json!({"name": "Big spenders", "condition": {"event": "Order Completed",
                    "aggregate": {"function": "sum", "property": "properties.total"},
                    "op": "gte", "value": 1000}}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        // History: 20 customers, 300 each; customers 0..5 have 1,200.
        let mut history = Vec::new();
        for i in 0..20 {
            let orders = if i < 5 { 4 } else { 1 };
            for n in 0..orders {
                history.push(json!({"type": "track", "userId": format!("c{i}"),
                    "event": "Order Completed", "messageId": format!("h{i}-{n}"),
                    "properties": {"total": 300}}));
            }
        }
        let (status, body) = app.post("/v1/batch", &json!({"batch": history})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        members_are(&app, 5).await;

        let store = app.state.store.clone();
        let rebuilding =
            tokio::spawn(async move { cdp_replay::rebuild::rebuild(&store, &|_| {}).await });
        // Meanwhile: customers 5..10 cross the threshold, and the API keeps answering.
        let mut sent = 0;
        let mut reads = 0;
        while !rebuilding.is_finished() || sent < 5 {
            if sent < 5 {
                let i = 5 + sent;
                let (status, body) = app
                    .post(
                        "/v1/track",
                        &json!({"userId": format!("c{i}"), "event": "Order Completed",
                        "messageId": format!("live{i}"), "properties": {"total": 900}}),
                    )
                    .await;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "ingestion during the rebuild: {body}"
                );
                sent += 1;
            }
            let (status, body) = app.lookup("user_id", "c0").await;
            assert_eq!(status, StatusCode::OK, "a read during the rebuild: {body}");
            assert_eq!(body["event_counts"]["by_type"]["track"], 4, "{body}");
            reads += 1;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let report = rebuilding
            .await
            .expect("the rebuild task")
            .expect("the rebuild");
        assert!(report.applied >= 35, "{report:?}");
        assert!(reads > 0);
        members_are(&app, 10).await;
        for i in 0..20 {
            let orders = match i {
                0..5 => 4,
                5..10 => 2,
                _ => 1,
            };
            app.profile_with_count("user_id", &format!("c{i}"), "track", orders)
                .await;
        }
    })
    .await;
}

async fn members_are(app: &crate::helpers::TestApp, n: usize) {
    eventually(&format!("{n} members of big"), || async move {
        let (status, body) = app
            .get_as("/v1/segments/big/members", Auth::Bearer(ADMIN_TOKEN))
            .await;
        let members = body["items"].as_array().map_or(0, Vec::len);
        if status == StatusCode::OK && members == n {
            Ok(())
        } else {
            Err(format!("{status} {members}: {body}"))
        }
    })
    .await;
}
