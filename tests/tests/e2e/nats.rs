//! NATS ingestion (when `CDP_TEST_NATS_URL` is set): JSON published to `<ns>.cdp.ingest.<workspace>` with
//! `Nats-Msg-Id` is ingested like HTTP; invalid messages are quarantined and acknowledged; a messageId
//! published twice is stored once; the durable consumer ends with nothing pending.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    eventually, nats_available, on_each_backend, spawn_app_with, track, Options, WORKSPACE,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_to_nats_are_ingested_quarantined_or_deduplicated() {
    if !nats_available("nats_ingestion") {
        return;
    }
    on_each_backend("nats_ingestion", |backend| async move {
        let app = spawn_app_with(
            backend,
            Options {
                nats: true,
                ..Options::default()
            },
        )
        .await;
        let nats = app.nats.as_ref().expect("a NATS setup");
        assert!(nats.subject(WORKSPACE).starts_with(&nats.namespace));

        for i in 0..5 {
            let id = format!("m-nats-{i}");
            let message = track("u-nats", "Order Completed", &id).to_string();
            assert!(
                !nats.publish(WORKSPACE, &id, &message).await,
                "{id} is new to the stream"
            );
        }
        // The same messageId under another Nats-Msg-Id passes JetStream's de-duplication; cdp's
        // idempotency must catch it.
        let copy = track("u-nats", "Order Completed", "m-nats-0").to_string();
        assert!(!nats.publish(WORKSPACE, "m-nats-0-redelivered", &copy).await);
        // Without a messageId in the JSON, the Nats-Msg-Id becomes it.
        let without_id =
            json!({"type": "identify", "userId": "u-nats", "traits": {"plan": "gold"}});
        nats.publish(WORKSPACE, "nats-header-id", &without_id.to_string())
            .await;
        // Invalid: no event name; and not JSON at all.
        nats.publish(
            WORKSPACE,
            "m-nats-invalid",
            &json!({"type": "track", "userId": "u-nats", "messageId": "m-nats-invalid"})
                .to_string(),
        )
        .await;
        nats.publish(WORKSPACE, "m-nats-garbage", "{{ not json")
            .await;
        // A workspace that does not exist: quarantined without a workspace, and acknowledged.
        nats.publish(
            "no_such_shop",
            "m-nats-stray",
            &track("u-nats", "Stray", "m-nats-stray").to_string(),
        )
        .await;

        let profile = app
            .profile_when("user_id", "u-nats", |p| {
                p["event_counts"]["by_type"]["track"] == 5
                    && p["event_counts"]["by_type"]["identify"] == 1
            })
            .await;
        assert_eq!(profile["traits"]["plan"]["message_id"], "nats-header-id");

        let quarantined = eventually("two quarantined NATS messages", || async {
            let items = app.quarantine().await;
            if items.len() >= 2 {
                Ok(items)
            } else {
                Err(format!("{items:?}"))
            }
        })
        .await;
        assert_eq!(quarantined.len(), 2, "{quarantined:#?}");
        assert!(quarantined.iter().all(|q| q["source"] == "nats"));
        let missing_event = quarantined
            .iter()
            .find(|q| q["payload"].as_str().unwrap().contains("m-nats-invalid"))
            .expect("the invalid message is quarantined");
        assert_eq!(missing_event["field"], "event");
        let garbage = quarantined
            .iter()
            .find(|q| q["payload"] == "{{ not json")
            .expect("the non-JSON message is quarantined");
        assert_eq!(garbage["code"], "invalid_json");

        // Everything was acknowledged: nothing pending, nothing awaiting an ack.
        eventually("the ingest consumer to drain", || async {
            match nats.consumer_backlog().await {
                (0, 0) => Ok(()),
                backlog => Err(format!("(pending, ack pending) = {backlog:?}")),
            }
        })
        .await;
        assert_eq!(
            app.count_events().await,
            6,
            "5 tracks and 1 identify, once each"
        );
        assert_eq!(app.count_events_in("no_such_shop").await, 0);

        // HTTP and NATS share the idempotency: the same messageId over HTTP is not stored again.
        let (status, _) = app
            .post("/v1/track", &track("u-nats", "Order Completed", "m-nats-1"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.count_events().await, 6);

        let (status, ready) = app.get_as("/readyz", crate::helpers::Auth::None).await;
        assert_eq!(status, StatusCode::OK, "{ready}");
        assert_eq!(ready["nats"], true, "{ready}");
    })
    .await;
}

/// The ingestion budget holds over NATS too: a flood of one workspace's messages past its budget waits
/// in the stream (redelivered as the budget refills) — none lost, none stored twice — and the count the
/// service acknowledged matches what was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_flood_past_the_budget_is_delayed_not_lost() {
    if !nats_available("nats_rate_limit") {
        return;
    }
    on_each_backend("nats_rate_limit", |backend| async move {
        let app = spawn_app_with(
            backend,
            Options {
                nats: true,
                rate_limits: Some((20, 0, 1.0)),
                ..Options::default()
            },
        )
        .await;
        let nats = app.nats.as_ref().expect("a NATS setup");
        let started = std::time::Instant::now();
        for i in 0..60 {
            let id = format!("m-flood-{i}");
            nats.publish(WORKSPACE, &id, &track("u-flood", "Flood", &id).to_string())
                .await;
        }
        eventually("every flooded message stored once", || async {
            let n = app.count_events().await;
            if n == 60 {
                Ok(())
            } else {
                Err(format!("{n} of 60"))
            }
        })
        .await;
        // 20 messages/s with a 1 s burst: 60 messages cannot all pass in under ~2 s.
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(1_500),
            "the budget did not hold: {:?}",
            started.elapsed()
        );
        let (pending, _) = nats.consumer_backlog().await;
        assert_eq!(pending, 0, "nothing left behind in the stream");
    })
    .await;
}
