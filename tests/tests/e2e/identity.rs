//! OneID through the service: the resolver follows the log, merges the profiles an event joins into the
//! earliest, records a rejected merge with its evidence, and explains a profile from the decisions.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{on_each_backend, spawn_app, Auth, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_joining_two_profiles_merges_them_and_explains_why() {
    on_each_backend("identity_merge", |backend| async move {
        let app = spawn_app(backend).await;
        // Browsing anonymously, then logging in elsewhere, then one event carrying both ids.
        let steps = [
            json!({"type": "page", "anonymousId": "anon-1", "messageId": "m1"}),
            json!({"type": "identify", "userId": "u1", "messageId": "m2",
                   "traits": {"email": "ann@example.com"}}),
            json!({"type": "track", "event": "Logged In", "userId": "u1", "anonymousId": "anon-1",
                   "messageId": "m3"}),
            // A second user id meeting u1's email: never merged, recorded as a conflict.
            json!({"type": "identify", "userId": "u2", "messageId": "m4",
                   "traits": {"email": "ann@example.com"}}),
        ];
        for step in &steps {
            let (status, body) = app.post("/v1/batch", &json!({"batch": [step]})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // The resolver works in log order: once m4's conflict is recorded, m1–m3 are resolved too.
        let conflicts = crate::helpers::eventually("a recorded conflict", || async {
            let (status, body) = app
                .get_as("/v1/identity/conflicts", Auth::Bearer(ADMIN_TOKEN))
                .await;
            match body["items"].as_array() {
                Some(items) if status == StatusCode::OK && !items.is_empty() => Ok(body),
                _ => Err(format!("{status} {body}")),
            }
        })
        .await;
        let anon = app
            .profile_when("anonymous_id", "anon-1", |v| v["profile_id"].is_string())
            .await;
        let survivor = anon["profile_id"].as_str().unwrap().to_owned();
        let user = app
            .profile_when("user_id", "u1", |v| v["profile_id"].is_string())
            .await;
        assert_eq!(
            user["profile_id"],
            json!(survivor),
            "u1 resolves to the earliest profile"
        );

        let conflict = &conflicts["items"][0];
        assert!(
            ["merge_rejected", "link_rejected"].contains(&conflict["kind"].as_str().unwrap()),
            "{conflict}"
        );
        assert_eq!(conflict["caused_by"], "m4", "{conflict}");

        let (status, why) = app
            .get_as(
                &format!("/v1/profiles/{survivor}/identity"),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{why}");
        assert_eq!(why["merged_away"], false);
        let merges = why["merges"].as_array().unwrap();
        assert_eq!(merges.len(), 1, "{why}");
        assert_eq!(merges[0]["caused_by"], "m3");
        assert_eq!(merges[0]["survivor"], json!(survivor));
        let absorbed = merges[0]["absorbed"].as_str().unwrap().to_owned();
        let linked: Vec<(String, String)> = why["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["type"].as_str().unwrap().to_owned(),
                    d["linked_by"]["caused_by"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for expected in [("anonymous_id", "m1"), ("user_id", "m2"), ("email", "m2")] {
            assert!(
                linked.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} in {linked:?}"
            );
        }

        // The merged-away id answers with its survivor and says so.
        let (status, via_absorbed) = app
            .get_as(
                &format!("/v1/profiles/{absorbed}/identity"),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(via_absorbed["profile_id"], json!(survivor));
        assert_eq!(via_absorbed["merged_away"], true);

        let (status, _) = app
            .get_as("/v1/profiles/p_nobody/identity", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let u2: Value = app
            .profile_when("user_id", "u2", |v| v["profile_id"].is_string())
            .await;
        assert_ne!(
            u2["profile_id"],
            json!(survivor),
            "two user ids are never one profile"
        );
    })
    .await;
}

/// Two service instances on one PostgreSQL database, each given half of every pair of events that share
/// an identifier at the same moment: every pair must end as one profile, never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_make_two_profiles_for_one_person() {
    if crate::helpers::postgres_url().is_none() {
        eprintln!(
            "two_instances: skipped (needs CDP_TEST_DATABASE_URL; SQLite serves one process)"
        );
        return;
    }
    let database = crate::helpers::PgDatabase::create().await;
    let shared = || crate::helpers::Options {
        database_url: Some(database.url.clone()),
        ..Default::default()
    };
    let a = crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, shared()).await;
    let b = crate::helpers::spawn_app_with(crate::helpers::Backend::Postgres, shared()).await;
    const PEOPLE: usize = 40;
    let sends = (0..PEOPLE).map(|i| {
        let (a, b) = (&a, &b);
        async move {
            let on_a = json!({"batch": [{"type": "identify", "userId": format!("u{i}"),
                "anonymousId": format!("anon{i}"), "messageId": format!("a{i}")}]});
            let on_b = json!({"batch": [{"type": "identify", "anonymousId": format!("anon{i}"),
                "traits": {"email": format!("p{i}@example.com")}, "messageId": format!("b{i}")}]});
            let ((sa, ba), (sb, bb)) =
                tokio::join!(a.post("/v1/batch", &on_a), b.post("/v1/batch", &on_b));
            assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{ba} {bb}");
        }
    });
    futures::future::join_all(sends).await;
    for i in 0..PEOPLE {
        let user = a
            .profile_when("user_id", &format!("u{i}"), |v| v["profile_id"].is_string())
            .await;
        let email = b
            .profile_when("email", &format!("p{i}@example.com"), |v| {
                v["profile_id"].is_string()
            })
            .await;
        assert_eq!(
            user["profile_id"], email["profile_id"],
            "person {i} became two profiles"
        );
    }
    let (_, conflicts) = a
        .get_as("/v1/identity/conflicts", Auth::Bearer(ADMIN_TOKEN))
        .await;
    assert_eq!(conflicts["items"], json!([]), "{conflicts}");
}

const RULES_TOML: &str = r#"
[[workspace]]
id = "clinic"
write_keys = ["wk_clinic"]
[[workspace.token]]
token = "tok_clinic"
scopes = ["read"]
[workspace.identity]
declare = ["member_card", "wechat_unionid"]
[workspace.identity.types.phone]
priority = 3
limit = 5
may_merge = false
"#;

/// Rules from `CDP_CONFIG`: a declared trait (a CRM member card) joins channels into one member; a phone
/// that may not merge (a family's) links the parent, and the child stays a profile of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_identifiers_join_and_a_shared_phone_never_merges() {
    on_each_backend("identity_rules", |backend| async move {
        let options = crate::helpers::Options {
            config_toml: Some(RULES_TOML.to_owned()),
            no_bootstrap: true,
            ..Default::default()
        };
        let app = crate::helpers::spawn_app_with(backend, options).await;
        // The configured rules are a command of the log: in force once the resolver has decided it.
        let rules = crate::helpers::eventually("the configured rules in force", || async {
            let (status, rules) = app
                .get_as("/v1/identity/rules", Auth::Bearer("tok_clinic"))
                .await;
            match rules["version"].as_u64() {
                Some(v) if status == StatusCode::OK && v > 1 => Ok(rules),
                _ => Err(format!("{status} {rules}")),
            }
        })
        .await;
        assert_eq!(rules["version"], 2, "{rules}");
        assert_eq!(rules["types"]["phone"]["may_merge"], false, "{rules}");
        assert!(rules["types"]["member_card"].is_object(), "{rules}");

        let steps = [
            // The mini-program knows the member by unionid and card; the POS by card and a device.
            json!({"type": "identify", "anonymousId": "mini-1", "messageId": "c1",
                   "traits": {"wechat_unionid": "UNION-9", "member_card": "C42"}}),
            json!({"type": "identify", "userId": "member-42", "messageId": "c2",
                   "traits": {"member_card": "C42"}}),
            // Parent and child share the family phone.
            json!({"type": "identify", "userId": "parent", "messageId": "c3",
                   "traits": {"phone": "13800138000"}}),
            json!({"type": "identify", "userId": "child", "messageId": "c4",
                   "traits": {"phone": "138 0013 8000"}}),
        ];
        for step in &steps {
            let (status, body) = app
                .post_as(
                    "/v1/batch",
                    Auth::Basic("wk_clinic"),
                    &json!({"batch": [step]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let conflicts = crate::helpers::eventually("the shared phone's refusal", || async {
            let (status, body) = app
                .get_as("/v1/identity/conflicts", Auth::Bearer("tok_clinic"))
                .await;
            match body["items"].as_array() {
                Some(items) if status == StatusCode::OK && !items.is_empty() => Ok(body),
                _ => Err(format!("{status} {body}")),
            }
        })
        .await;
        assert_eq!(conflicts["items"][0]["caused_by"], "c4", "{conflicts}");
        assert_eq!(
            conflicts["items"][0]["reason"], "type_may_not_merge",
            "{conflicts}"
        );

        let profile = |id_type: &'static str, value: &'static str| {
            let app = &app;
            async move {
                app.profile_as_when("tok_clinic", id_type, value, |v| {
                    v["profile_id"].is_string()
                })
                .await["profile_id"]
                    .clone()
            }
        };
        assert_eq!(
            profile("anonymous_id", "mini-1").await,
            profile("user_id", "member-42").await,
            "the member card joins the mini-program and the CRM member"
        );
        assert_ne!(
            profile("user_id", "parent").await,
            profile("user_id", "child").await,
            "a shared phone that may not merge never joins parent and child"
        );
    })
    .await;
}
