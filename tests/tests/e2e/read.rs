//! The 360° profile: the same profile by user id, anonymous id and (normalised) email and by its id —
//! identifiers with first/last seen, traits with provenance and a deterministic precedence, counts by
//! type, event and channel, first/last seen, recent events — its paged timeline, and the errors.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, on_each_backend, spawn_app, workspace_id, Auth, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_answers_by_every_identifier_and_by_id() {
    on_each_backend("profile_view", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            {"type": "identify", "userId": "u-ann", "anonymousId": "anon-ann",
             "timestamp": "2025-03-01T10:00:00Z", "messageId": "m-id-1",
             "context": {"channel": "crm"},
             "traits": {"email": "  Ann@Example.COM ", "plan": "silver", "city": "Shanghai"}},
            {"type": "identify", "userId": "u-ann", "timestamp": "2025-03-02T10:00:00Z",
             "messageId": "m-id-2", "traits": {"plan": "gold"}, "context": {"channel": "pos"}},
            // Older, arriving late: it must not overwrite the newer plan, but it adds a trait.
            {"type": "identify", "userId": "u-ann", "timestamp": "2025-02-01T10:00:00Z",
             "messageId": "m-id-0", "traits": {"plan": "bronze", "gender": "f"}},
            {"type": "track", "userId": "u-ann", "anonymousId": "anon-ann", "event": "Order Completed",
             "timestamp": "2025-03-03T09:00:00Z", "messageId": "m-order-1",
             "properties": {"total": 120}, "context": {"channel": "pos"}},
            {"type": "track", "userId": "u-ann", "event": "Order Completed",
             "timestamp": "2025-03-04T09:00:00Z", "messageId": "m-order-2"},
            {"type": "page", "anonymousId": "anon-ann", "name": "Home",
             "timestamp": "2025-01-15T08:00:00Z", "messageId": "m-page-1",
             "context": {"channel": "online_shop"}},
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let by_user = app
            .profile_with_count("user_id", "u-ann", "page", 1)
            .await;
        let profile_id = by_user["profile_id"].as_str().unwrap().to_owned();
        assert_eq!(by_user["matched"], json!({"type": "user_id", "value": "u-ann"}));
        let counts = &by_user["event_counts"];
        assert_eq!(counts["total"], 6, "{by_user}");
        assert_eq!(counts["by_type"], json!({"identify": 3, "track": 2, "page": 1}), "{by_user}");
        assert_eq!(counts["by_event"], json!({"Order Completed": 2}));
        assert_eq!(
            counts["by_channel"],
            json!({"crm": 1, "pos": 2, "online_shop": 1, "unknown": 2}),
            "{by_user}"
        );

        let traits = &by_user["traits"];
        assert_eq!(traits["plan"]["value"], "gold", "latest event time wins: {traits}");
        assert_eq!(traits["plan"]["message_id"], "m-id-2");
        assert_eq!(traits["plan"]["set_at"], "2025-03-02T10:00:00.000Z");
        assert_eq!(traits["plan"]["channel"], "pos");
        assert_eq!(traits["plan"]["type"], "identify");
        assert_eq!(traits["gender"]["value"], "f");
        assert_eq!(traits["gender"]["message_id"], "m-id-0");
        assert_eq!(traits["email"]["value"], "ann@example.com", "emails are normalised");
        assert_eq!(traits["city"]["set_at"], "2025-03-01T10:00:00.000Z");

        assert_eq!(by_user["first_seen"], "2025-01-15T08:00:00.000Z");
        assert_eq!(by_user["last_seen"], "2025-03-04T09:00:00.000Z");
        let recent: Vec<&str> = by_user["recent_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            recent,
            ["m-order-2", "m-order-1", "m-id-2", "m-id-1", "m-id-0", "m-page-1"],
            "newest first by event time"
        );
        let first = &by_user["recent_events"][0];
        assert_eq!(first["type"], "track");
        assert_eq!(first["name"], "Order Completed");

        let identifiers = by_user["identifiers"].as_array().unwrap();
        let anon = identifiers
            .iter()
            .find(|i| i["type"] == "anonymous_id")
            .unwrap_or_else(|| panic!("{identifiers:?}"));
        assert_eq!(anon["value"], "anon-ann");
        assert_eq!(anon["first_seen"], "2025-01-15T08:00:00.000Z");
        assert_eq!(anon["last_seen"], "2025-03-03T09:00:00.000Z");
        assert!(identifiers
            .iter()
            .any(|i| i["type"] == "email" && i["value"] == "ann@example.com"));

        // The same profile by the anonymous id, by the (normalised) email, and by its id.
        let (status, by_anon) = app.lookup("anonymous_id", "anon-ann").await;
        assert_eq!(status, StatusCode::OK, "{by_anon}");
        assert_eq!(by_anon["profile_id"], json!(profile_id));
        for raw in ["ANN@EXAMPLE.COM", "ann@example.com", " Ann@Example.com "] {
            let (status, by_email) = app.lookup("email", raw).await;
            assert_eq!(status, StatusCode::OK, "email {raw:?}: {by_email}");
            assert_eq!(by_email["profile_id"], json!(profile_id));
            assert_eq!(by_email["matched"]["value"], "ann@example.com");
        }
        let (status, by_id) = app
            .get_as(&format!("/v1/profiles/{profile_id}"), Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{by_id}");
        assert_eq!(by_id["merged_away"], false);
        assert_eq!(by_id["traits"], by_user["traits"]);

        // The timeline, newest first by arrival, in pages.
        let (status, page) = app
            .get_as(
                &format!("/v1/profiles/{profile_id}/events?limit=4"),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0]["message_id"], "m-page-1", "{page}");
        assert_eq!(items[0]["channel"], "online_shop");
        assert_eq!(items[0]["message"]["name"], "Home");
        let before = page["next_before"].as_i64().unwrap();
        let (_, rest) = app
            .get_as(
                &format!("/v1/profiles/{profile_id}/events?limit=4&before={before}"),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        let rest: Vec<&str> = rest["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap())
            .collect();
        assert_eq!(rest, ["m-id-2", "m-id-1"]);

        // A later event shows up.
        let (status, _) = app
            .post(
                "/v1/identify",
                &json!({"userId": "u-ann", "traits": {"plan": "platinum"}, "messageId": "m-id-3"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let updated = app
            .profile_when("user_id", "u-ann", |p| p["traits"]["plan"]["value"] == "platinum")
            .await;
        assert_eq!(updated["traits"]["plan"]["message_id"], "m-id-3");
        assert_eq!(updated["event_counts"]["by_type"]["identify"], 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stronger_source_wins_whatever_order_events_arrive_in() {
    on_each_backend("source_priority", |backend| async move {
        let app = spawn_app(backend).await;
        let admin = Auth::Bearer(ADMIN_TOKEN);
        let (status, mut rules) = app.get_as("/v1/identity/rules", admin).await;
        assert_eq!(status, StatusCode::OK);
        rules["source_priority"] = json!(["crm"]);
        let (status, body) = app.put_as("/v1/identity/rules", &rules, admin).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The app's later name loses to the CRM's, in either order of arrival.
        for (user, order) in [("u-a", ["crm", "app"]), ("u-b", ["app", "crm"])] {
            for channel in order {
                let (time, name) = if channel == "crm" {
                    ("2025-01-01T00:00:00Z", "Wang Wei")
                } else {
                    ("2025-06-01T00:00:00Z", "ww")
                };
                let (status, _) = app
                    .post(
                        "/v1/identify",
                        &json!({"userId": user, "timestamp": time, "traits": {"name": name},
                            "context": {"channel": channel}}),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
            let profile = app.profile_with_count("user_id", user, "identify", 2).await;
            assert_eq!(profile["traits"]["name"]["value"], "Wang Wei", "{profile}");
            assert_eq!(profile["traits"]["name"]["channel"], "crm");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_identifiers_answer_404_and_bad_queries_400() {
    on_each_backend("lookup_errors", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, body) = app.lookup("user_id", "nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
        let (status, _) = app.lookup("email", "nobody@example.com").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = app.lookup("member_card", "C-1").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let admin = Auth::Bearer(ADMIN_TOKEN);
        for path in ["/v1/profiles/p_nobody", "/v1/profiles/p_nobody/events"] {
            let (status, body): (StatusCode, Value) = app.get_as(path, admin).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        }
        for (query, field) in [
            ("?value=u1", "type"),
            ("?type=user_id", "value"),
            ("?type=Shoe%20Size&value=42", "type"),
        ] {
            let (status, body): (StatusCode, Value) = app
                .get_as(&format!("/v1/profiles/lookup{query}"), admin)
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }
        // A value that can never be an identifier is held by nobody.
        for query in ["?type=email&value=not-an-email", "?type=user_id&value=null"] {
            let (status, body): (StatusCode, Value) = app
                .get_as(&format!("/v1/profiles/lookup{query}"), admin)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{query}: {body}");
        }
    })
    .await;
}

/// A NUL character (`%00`) in a path or query value is refused at the edge with a 400 naming it, the
/// same on both backends (PostgreSQL cannot compare such text: it was a 500); a body value holding one
/// is refused by its endpoint, and the refused call is still in the audit log, the NUL written out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_path_query_or_body_value_is_a_400_and_still_audited() {
    on_each_backend("nul_values", |backend| async move {
        let app = spawn_app(backend).await;
        let admin = Auth::Bearer(ADMIN_TOKEN);
        for (path, field) in [
            ("/v1/profiles/%00", "path"),
            ("/v1/profiles/%00/events", "path"),
            ("/v1/profiles/%00/identity", "path"),
            ("/v1/profiles/%00/memberships", "path"),
            ("/v1/profiles/%00/consent", "path"),
            ("/v1/profiles/lookup?type=user_id&value=a%00b", "value"),
            ("/v1/audit?actor=%00", "actor"),
        ] {
            let (status, body) = app.get_as(path, Auth::Bearer(ADMIN_TOKEN)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {body}");
            assert_eq!(body["error"]["field"], json!(field), "GET {path}: {body}");
        }
        let (status, body) = app
            .post_as(
                "/v1/identity/merge",
                admin,
                &json!({"profile_ids": ["p_\u{0}x", "p_y"], "reason": "nul"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, audit) = app
            .get_as("/v1/audit?action=identity.merge", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{audit}");
        let items = audit["items"].as_array().cloned().unwrap_or_default();
        assert!(
            items.iter().any(|e| e["status"] == json!(400)
                && e["target"]
                    .as_str()
                    .is_some_and(|t| t.contains("p_\\u0000x"))),
            "the refused merge is recorded, the NUL written out: {audit}"
        );
    })
    .await;
}

/// The 360° view shows the 50 newest events by event time, newest first; among events of the same time
/// the larger message id first — also where those at the 50th's time are more than fit (the answer
/// is the same on both backends, however each reads it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_events_are_the_fifty_newest_with_ties_cut_by_message_id() {
    on_each_backend("recent_events_ties", |backend| async move {
        let app = spawn_app(backend).await;
        let track = |id: String, at: String| {
            json!({"type": "track", "userId": "u-many", "event": "Viewed", "messageId": id,
                   "timestamp": at})
        };
        let mut batch = Vec::new();
        // 45 newest, one a minute; 10 at the same earlier time; 5 older still.
        for minute in 15..60 {
            batch.push(track(
                format!("m-new-{minute:02}"),
                format!("2025-05-01T00:{minute:02}:00Z"),
            ));
        }
        for tie in 0..10 {
            batch.push(track(
                format!("m-tie-{tie:02}"),
                "2025-05-01T00:10:00Z".to_owned(),
            ));
        }
        for old in 0..5 {
            batch.push(track(
                format!("m-old-{old:02}"),
                format!("2025-04-0{}T00:00:00Z", old + 1),
            ));
        }
        let (status, body) = app.post("/v1/batch", &json!({"batch": batch})).await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let profile = app
            .profile_with_count("user_id", "u-many", "track", 60)
            .await;
        let recent: Vec<String> = profile["recent_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message_id"].as_str().unwrap().to_owned())
            .collect();
        let mut expected: Vec<String> = (15..60).rev().map(|m| format!("m-new-{m:02}")).collect();
        expected.extend((5..10).rev().map(|t| format!("m-tie-{t:02}")));
        assert_eq!(recent, expected);
    })
    .await;
}

/// The view answered from memory (`ViewCache`) is the committed model's: a read again is a hit, an event
/// of the profile is seen by the next read once resolved, a tag set by an operator too, and a write of the
/// model by another writer than this process's resolver (here an erasure run straight on the store,
/// as `cdp` on another machine would) empties it, so the profile is no longer answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_answered_from_memory_follows_every_write_of_the_model() {
    on_each_backend("profile_view_cache", |backend| async move {
        let app = spawn_app(backend).await;
        let identify = |plan: &str, message_id: &str| {
            json!({"type": "identify", "userId": "u-cached", "messageId": message_id,
                   "timestamp": "2025-03-01T10:00:00Z", "traits": {"plan": plan}})
        };
        let (status, body) = app
            .post(
                "/v1/batch",
                &json!({"batch": [identify("silver", "m-c-1")]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let profile = app
            .profile_when("user_id", "u-cached", |p| {
                p["traits"]["plan"]["value"] == "silver"
            })
            .await;
        let id = profile["profile_id"].as_str().unwrap().to_owned();
        let path = format!("/v1/profiles/{id}");

        let (before, _) = app.state.views.hits_and_misses();
        for _ in 0..3 {
            let (status, body) = app.get_as(&path, Auth::Bearer(ADMIN_TOKEN)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["traits"]["plan"]["value"], "silver", "{body}");
        }
        let (after, _) = app.state.views.hits_and_misses();
        assert!(
            after >= before + 2,
            "read again from memory: {before} → {after} hits"
        );

        // A newer event of the profile, resolved: the next reads show it (the resolver dropped the view).
        let (status, body) = app
            .post(
                "/v1/batch",
                &json!({"batch": [{"type": "identify", "userId": "u-cached", "messageId": "m-c-2",
                        "timestamp": "2025-03-02T10:00:00Z", "traits": {"plan": "gold"}}]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        eventually("the cached profile shows the newer plan", || async {
            let (status, body) = app.get_as(&path, Auth::Bearer(ADMIN_TOKEN)).await;
            match (status, body["traits"]["plan"]["value"].as_str()) {
                (StatusCode::OK, Some("gold")) => Ok(body),
                _ => Err(format!("{status} {body}")),
            }
        })
        .await;
        // Twice the same answer: the view put back after the change is the new one.
        for _ in 0..2 {
            let (_, body) = app.get_as(&path, Auth::Bearer(ADMIN_TOKEN)).await;
            assert_eq!(body["traits"]["plan"]["value"], "gold", "{body}");
            assert_eq!(body["event_counts"]["total"], 2, "{body}");
        }

        // A manual tag (an operator command the resolver applies): the answer after the command's has it.
        let (status, body) = app
            .put_as(
                "/v1/tags/vip",
                &json!({"type": "manual"}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app
            .post_as(
                &format!("/v1/profiles/{id}/tags/vip"),
                Auth::Bearer(ADMIN_TOKEN),
                &json!({"value": true}),
            )
            .await;
        assert!(status.is_success(), "{status} {body}");
        let (_, body) = app.get_as(&path, Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(body["tags"]["vip"]["value"], true, "{body}");

        // Another writer of the model: the watcher (or the resolver, finding its token moved) empties the
        // cache, and the erased profile is answered no more.
        let profile_id = cdp_domain::identity::ProfileId::parse(&id).unwrap();
        cdp_projections::erasure::erase(
            &app.state.store,
            &workspace_id(),
            &profile_id,
            "test",
            chrono::Utc::now(),
        )
        .await
        .expect("the erasure runs")
        .expect("the profile is there to erase");
        eventually("the erased profile is no longer answered", || async {
            let (status, body) = app.get_as(&path, Auth::Bearer(ADMIN_TOKEN)).await;
            if status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    })
    .await;
}
