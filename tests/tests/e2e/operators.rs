//! The operators' identity tools over HTTP: a manual merge then a split gives both customers back exactly,
//! a split keeps them apart, refused commands say why, and a rules change is previewed by a dry run and
//! applied retroactively as merges and splits.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    on_each_backend, spawn_app, spawn_app_with, Auth, Options, TestApp, ADMIN_TOKEN, WRITE_KEY,
};

const ADMIN: Auth<'static> = Auth::Bearer(ADMIN_TOKEN);

async fn profile(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_as(&format!("/v1/profiles/{id}"), ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The parts of a profile a merge and a split must give back exactly.
fn content(p: &Value) -> Value {
    let mut ids: Vec<Value> = p["identifiers"].as_array().unwrap().clone();
    ids.sort_by_key(|i| i.to_string());
    json!({
        "identifiers": ids,
        "traits": p["traits"],
        "event_counts": p["event_counts"],
        "first_seen": p["first_seen"],
        "last_seen": p["last_seen"],
        "recent_events": p["recent_events"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_then_split_gives_both_customers_back_and_keeps_them_apart() {
    on_each_backend("merge_split", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            {"type": "identify", "userId": "ann", "traits": {"email": "ann@x.cn", "tier": "gold"},
             "timestamp": "2025-01-01T00:00:00Z", "context": {"channel": "crm"}},
            {"type": "track", "userId": "ann", "event": "Order Completed",
             "timestamp": "2025-01-02T00:00:00Z", "context": {"channel": "pos"}},
            {"type": "identify", "anonymousId": "dev-b", "traits": {"phone": "13800138000", "tier": "silver"},
             "timestamp": "2025-01-03T00:00:00Z", "context": {"channel": "mini_program"}},
            {"type": "page", "anonymousId": "dev-b", "name": "Home",
             "timestamp": "2025-01-04T00:00:00Z", "context": {"channel": "mini_program"}},
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let a = app.profile_with_count("user_id", "ann", "track", 1).await;
        let b = app.profile_with_count("anonymous_id", "dev-b", "page", 1).await;
        let (a_id, b_id) = (a["profile_id"].as_str().unwrap(), b["profile_id"].as_str().unwrap());
        assert_ne!(a_id, b_id);

        // An operator decides they are one customer.
        let (status, merged) = app
            .post_as("/v1/identity/merge", ADMIN, &json!({"profile_ids": [b_id, a_id], "reason": "same member"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{merged}");
        assert_eq!(merged["profile_id"], json!(a_id), "the earliest survives: {merged}");
        assert_eq!(merged["merged"], json!([b_id]));
        let one = profile(&app, b_id).await;
        assert_eq!(one["profile_id"], json!(a_id));
        assert_eq!(one["merged_away"], true);
        assert_eq!(one["event_counts"]["total"], 4, "{one}");
        assert_eq!(one["traits"]["tier"]["value"], "silver", "the later value wins after the merge");
        let (_, timeline) = app.get_as(&format!("/v1/profiles/{a_id}/events"), ADMIN).await;
        assert_eq!(timeline["items"].as_array().unwrap().len(), 4, "{timeline}");
        let (_, why) = app.get_as(&format!("/v1/profiles/{a_id}/identity"), ADMIN).await;
        let merge = &why["merges"][0];
        assert_eq!(merge["kind"], "profiles_merged", "{why}");
        assert_eq!(merge["reason"], "same member");
        assert_eq!(merge["via"], Value::Null);

        // It was wrong: the phone and the device go back to a profile of their own, with their events.
        let (status, split) = app
            .post_as(
                "/v1/identity/split",
                ADMIN,
                &json!({"profile_id": b_id, "reason": "two people",
                    "identifiers": [{"type": "phone", "value": "+86 138 0013 8000"},
                                    {"type": "anonymous_id", "value": "dev-b"}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{split}");
        let new_id = split["profile_id"].as_str().unwrap().to_owned();
        assert_eq!(split["from"], json!(a_id));
        assert_ne!(new_id, a_id);
        assert_eq!(content(&profile(&app, a_id).await), content(&a), "ann is as before the merge");
        assert_eq!(content(&profile(&app, &new_id).await), content(&b), "b is as before the merge");
        let (_, by_phone) = app.lookup("phone", "13800138000").await;
        assert_eq!(by_phone["profile_id"], json!(new_id));
        let (_, timeline) = app.get_as(&format!("/v1/profiles/{new_id}/events"), ADMIN).await;
        assert_eq!(timeline["items"].as_array().unwrap().len(), 2, "{timeline}");
        let (_, why) = app.get_as(&format!("/v1/profiles/{new_id}/identity"), ADMIN).await;
        let phone = why["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "phone")
            .unwrap_or_else(|| panic!("{why}"));
        assert_eq!(phone["moved_by"]["kind"], "profile_split", "{why}");
        assert_eq!(phone["moved_by"]["reason"], "two people");

        // An event carrying both again does not join them: an operator split them.
        let (status, _) = app
            .post(
                "/v1/identify",
                &json!({"userId": "ann", "messageId": "m-both",
                    "traits": {"phone": "13800138000", "email": "ann@x.cn"}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let conflict = crate::helpers::eventually("the kept-apart conflict", || async {
            let (_, conflicts) = app.get_as("/v1/identity/conflicts", ADMIN).await;
            conflicts["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["caused_by"] == "m-both")
                .cloned()
                .ok_or_else(|| format!("no conflict caused by m-both in {conflicts}"))
        })
        .await;
        assert_eq!(conflict["reason"], "kept_apart", "{conflict}");
        assert_ne!(
            app.lookup("phone", "13800138000").await.1["profile_id"],
            app.lookup("user_id", "ann").await.1["profile_id"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_say_why() {
    on_each_backend("operator_errors", |backend| async move {
        let config = format!(
            "[[workspace]]\nid = \"shop\"\nwrite_keys = [\"{WRITE_KEY}\"]\n\
             [[workspace.token]]\ntoken = \"{ADMIN_TOKEN}\"\nscopes = [\"admin\"]\n\
             [[workspace.token]]\ntoken = \"tok_shop_read\"\nscopes = [\"read\"]\n"
        );
        let options = Options {
            config_toml: Some(config),
            no_bootstrap: true,
            ..Options::default()
        };
        let app = spawn_app_with(backend, options).await;
        let (status, _) = app
            .post("/v1/identify", &json!({"userId": "solo", "traits": {"email": "solo@x.cn"}}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let solo = app.profile_with_count("user_id", "solo", "identify", 1).await;
        let id = solo["profile_id"].as_str().unwrap();

        let cases = [
            ("/v1/identity/merge", json!({"profile_ids": [id]}), StatusCode::BAD_REQUEST, "profile_ids"),
            ("/v1/identity/merge", json!({"profile_ids": [id, "p_nobody"]}), StatusCode::NOT_FOUND, "profile_ids[1]"),
            ("/v1/identity/merge", json!({"profile_ids": [id, "a b"]}), StatusCode::BAD_REQUEST, "profile_ids[1]"),
            ("/v1/identity/merge", json!({"profiles": [id]}), StatusCode::BAD_REQUEST, "profile_ids"),
            ("/v1/identity/split", json!({"profile_id": "p_nobody", "identifiers": [{"type": "user_id", "value": "solo"}]}),
                StatusCode::NOT_FOUND, "profile_id"),
            ("/v1/identity/split", json!({"profile_id": id, "identifiers": []}), StatusCode::BAD_REQUEST, "identifiers"),
        ];
        for (path, body, expected, field) in cases {
            let (status, answer) = app.post_as(path, ADMIN, &body).await;
            assert_eq!(status, expected, "{path} {body}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{path} {body}: {answer}");
        }
        // Valid requests the graph refuses: 409 with the reason.
        for body in [
            json!({"profile_id": id, "identifiers": [{"type": "email", "value": "other@x.cn"}]}),
            json!({"profile_id": id, "identifiers": [{"type": "email", "value": "solo@x.cn"},
                {"type": "user_id", "value": "solo"}]}),
        ] {
            let (status, answer) = app.post_as("/v1/identity/split", ADMIN, &body).await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], "command_rejected");
        }
        let (status, answer) = app
            .post_as("/v1/identity/merge", ADMIN, &json!({"profile_ids": [id, id]}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("already one profile"));

        // Operators only.
        let read_only = Auth::Bearer("tok_shop_read");
        let (status, _) = app
            .post_as("/v1/identity/merge", read_only, &json!({"profile_ids": [id, id]}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.put_as("/v1/identity/rules", &json!({"types": {}}), read_only).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Nothing refused changed the profile.
        assert_eq!(content(&profile(&app, id).await), content(&solo));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_change_is_previewed_then_applied_to_existing_profiles() {
    on_each_backend("rules_change", |backend| async move {
        let app = spawn_app(backend).await;
        // Two shop assistants' customers on one tablet: user_id's limit of 1 keeps them apart.
        for (user, n) in [("bob", 1), ("cat", 2)] {
            let (status, _) = app
                .post(
                    "/v1/track",
                    &json!({"userId": user, "event": "Visit", "messageId": format!("m{n}"),
                        "context": {"device": {"id": "tablet-7"}}}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
        let bob = app.profile_with_count("user_id", "bob", "track", 1).await;
        let cat = app.profile_with_count("user_id", "cat", "track", 1).await;
        assert_ne!(bob["profile_id"], cat["profile_id"]);
        let (_, original) = app.get_as("/v1/identity/rules", ADMIN).await;

        // Two user ids per profile would join them through the tablet. The dry run says so, changes nothing.
        let mut looser = original.clone();
        looser["types"]["user_id"]["limit"] = json!(2);
        let (status, preview) = app
            .put_as("/v1/identity/rules?dry_run=true", &looser, ADMIN)
            .await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        let merges = preview["changes"]["merges"].as_array().unwrap();
        assert_eq!(merges.len(), 1, "{preview}");
        assert_eq!(
            merges[0]["profiles"],
            json!([bob["profile_id"], cat["profile_id"]])
        );
        assert_eq!(preview["changes"]["splits"], json!([]));
        let (_, unchanged) = app.get_as("/v1/identity/rules", ADMIN).await;
        assert_eq!(unchanged["version"], original["version"]);
        assert_ne!(
            app.lookup("user_id", "cat").await.1["profile_id"],
            bob["profile_id"]
        );

        // Applied: the existing profiles merge now, as an identity event.
        let (status, applied) = app.put_as("/v1/identity/rules", &looser, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{applied}");
        assert_eq!(applied["merges"], 1, "{applied}");
        let version = applied["rules"]["version"].as_u64().unwrap();
        assert_eq!(version, original["version"].as_u64().unwrap() + 1);
        let joined = app.lookup("user_id", "cat").await.1;
        assert_eq!(joined["profile_id"], bob["profile_id"], "{joined}");
        assert_eq!(joined["event_counts"]["total"], 2);
        let (_, why) = app
            .get_as(
                &format!(
                    "/v1/profiles/{}/identity",
                    bob["profile_id"].as_str().unwrap()
                ),
                ADMIN,
            )
            .await;
        assert_eq!(
            why["merges"][0]["reason"],
            format!("identity rules version {version}"),
            "{why}"
        );

        // And back: the old rules split them again, each with its own event.
        let (status, back) = app.put_as("/v1/identity/rules", &original, ADMIN).await;
        assert_eq!(status, StatusCode::OK, "{back}");
        assert_eq!(back["splits"], 1, "{back}");
        let bob_again = app.lookup("user_id", "bob").await.1;
        let cat_again = app.lookup("user_id", "cat").await.1;
        assert_ne!(bob_again["profile_id"], cat_again["profile_id"]);
        assert_eq!(bob_again["event_counts"]["total"], 1, "{bob_again}");
        assert_eq!(cat_again["event_counts"]["total"], 1, "{cat_again}");

        // Unchanged rules change nothing; invalid ones are refused naming the field.
        let (status, same) = app.put_as("/v1/identity/rules", &original, ADMIN).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(same["changed"], false, "{same}");
        let mut bad = original.clone();
        bad["types"]["user_id"]["limit"] = json!(0);
        let (status, refused) = app.put_as("/v1/identity/rules", &bad, ADMIN).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            refused["error"]["field"], "types.user_id.limit",
            "{refused}"
        );
    })
    .await;
}
