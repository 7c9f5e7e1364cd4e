//! `POST /v1/segments/preview` over the audience index: the same members as the exact path (every
//! profile's events folded) for traits, negations of unknown and multi-valued fields, tags, saved
//! segments and event counts in a window; the exact path behind a `where` filter; a breakdown by two
//! fields and the overlap with saved segments; the index following new events without being read
//! whole; breakdown fields refused naming the place; the index built in the background at start
//! (before any preview) and again after another writer moved the model, the exact path answering
//! meanwhile; a saved segment's members filled from the index at once.

use chrono::{Duration as Days, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

fn added(user: &str, id: &str, days_ago: i64, category: &str) -> Value {
    json!({"type": "track", "userId": user, "event": "Product Added", "messageId": id,
           "timestamp": (Utc::now() - Days::days(days_ago) - Days::minutes(5)).to_rfc3339(),
           "properties": {"category": category}})
}

fn identify(user: &str, id: &str, traits: Value) -> Value {
    json!({"type": "identify", "userId": user, "messageId": id, "traits": traits})
}

fn order(user: &str, id: &str, total: f64) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed", "messageId": id,
           "properties": {"total": total}})
}

/// Waits until the background builder says every workspace's index is built (`/readyz`), and returns
/// that detail.
async fn index_ready(app: &TestApp) -> Value {
    eventually("the audience index built in the background", || async {
        let (_, r) = app.get_as("/readyz", Auth::None).await;
        let index = &r["audience_index"];
        if index["ready"] == true && index["workspaces"][WORKSPACE].is_object() {
            Ok(index.clone())
        } else {
            Err(r.to_string())
        }
    })
    .await
}

async fn preview(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    app.post_as("/v1/segments/preview", Auth::Bearer(ADMIN_TOKEN), body)
        .await
}

/// The exact path's members of a condition, straight from the tables.
async fn exact(app: &TestApp, condition: &Value) -> (i64, Vec<String>, f64) {
    let def = cdp_domain::segments::SegmentDef::parse(&json!({ "condition": condition })).unwrap();
    let p =
        cdp_projections::exact::preview(&app.state.store, &workspace_id(), &def, 10, Utc::now())
            .await
            .unwrap();
    (p.count, p.sample, p.spend)
}

#[tokio::test]
async fn the_index_answers_what_the_exact_path_does() {
    on_each_backend("audience_exact", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai", "gender": "female"})),
            added("u1", "a1", 0, "tea"), added("u1", "a2", 1, "tea"), order("u1", "o1", 120.0),
            identify("u2", "i2", json!({"city": "Beijing"})),
            added("u2", "a3", 10, "tea"), order("u2", "o2", 50.0),
            identify("u3", "i3", json!({"city": ["Shanghai", "Beijing"], "gender": "male"})),
            identify("u4", "i4", json!({"vip": true})),
            added("u4", "a4", 20, "shoes"), added("u4", "a5", 21, "shoes"), added("u4", "a6", 2, "shoes"),
            identify("u5", "i5", json!({"city": "Shanghai", "vip": true})),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        define_buyers(&app).await;
        let (status, body) = app
            .put_as("/v1/tags/shanghai", &json!({"type": "rule", "value": "sh",
                "condition": {"trait": "city", "op": "eq", "value": "Shanghai"}}), Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        eventually("every profile, the segment and the tag in place", || async {
            let (_, b) = app.get_as("/v1/segments/buyers", Auth::Bearer(ADMIN_TOKEN)).await;
            let (_, t) = app.get_as("/v1/tags/shanghai", Auth::Bearer(ADMIN_TOKEN)).await;
            let (_, p) = preview(&app, &json!({"condition": {"trait": "city", "op": "is_set"}})).await;
            let ready = b["members"] == 2 && t["status"] == "ready" && p["profiles"] == 5
                && p["index"]["ready"] == true;
            if ready { Ok(()) } else { Err(format!("{b} {t} {p}")) }
        })
        .await;

        let conditions = [
            json!({"all": [{"trait": "city", "op": "eq", "value": "Shanghai"},
                           {"not": {"trait": "gender", "op": "eq", "value": "male"}}]}),
            json!({"trait": "gender", "op": "neq", "value": "male"}),
            json!({"trait": "city", "op": "contains_all", "value": ["Shanghai", "Beijing"]}),
            json!({"event": "Product Added", "count": {"op": "gte", "value": 2}, "window": "14d"}),
            json!({"not": {"event": "Product Added", "window": "7d"}}),
            json!({"any": [{"segment": "buyers"}, {"tag": "shanghai", "op": "is_set"}]}),
            json!({"all": [{"trait": "vip", "op": "is_true"},
                           {"event": "Product Added", "aggregate": {"function": "days_active"},
                            "op": "gte", "value": 2, "window": "30d"}]}),
            // `where` filters on event properties, from the events' facets.
            json!({"event": "Product Added", "window": "30d", "count": {"op": "gte", "value": 2},
                   "where": [{"property": "properties.category", "op": "eq", "value": "shoes"}]}),
            json!({"event": "Product Added", "window": "14d",
                   "where": [{"property": "properties.category", "op": "neq", "value": "shoes"}]}),
            json!({"event": "Order Completed",
                   "where": [{"property": "properties.total", "op": "gte", "value": 100}]}),
            // Aggregates of a property, from the facets too.
            json!({"event": "Order Completed", "aggregate": {"function": "sum", "property": "properties.total"},
                   "op": "gte", "value": 100}),
            json!({"event": "Product Added", "window": "30d",
                   "aggregate": {"function": "distinct_count", "property": "properties.category"},
                   "op": "eq", "value": 1}),
        ];
        for condition in &conditions {
            let (status, answer) = preview(&app, &json!({"condition": condition})).await;
            assert_eq!(status, StatusCode::OK, "{condition}: {answer}");
            assert_eq!(answer["evaluated_by"], "index", "{condition}: {answer}");
            let (count, sample, spend) = exact(&app, condition).await;
            assert_eq!(answer["count"], count, "{condition}: {answer}");
            assert_eq!(answer["sample"], json!(sample), "{condition}: {answer}");
            assert_eq!(answer["totals"]["spend"], spend, "{condition}: {answer}");
        }
        // Negation includes the unknown: everyone but the male customer, those without gender too.
        let (_, answer) = preview(&app, &json!({"condition": &conditions[1]})).await;
        assert_eq!(answer["count"], 4, "{answer}");

        // A where filter outside the properties (here the message's event name) is not in the
        // facets: the exact path finds the members, the index the rest.
        let shoes = json!({"event": "Product Added", "window": "30d", "count": {"op": "gte", "value": 2},
                           "where": [{"property": "properties.category", "op": "eq", "value": "shoes"},
                                     {"property": "event", "op": "eq", "value": "Product Added"}]});
        let (status, answer) = preview(&app, &json!({"condition": shoes, "breakdown": [{"trait": "vip"}]})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["evaluated_by"], "events", "{answer}");
        assert!(answer["fallback"].as_str().unwrap().contains("where"), "{answer}");
        assert_eq!(answer["count"], 1, "{answer}");
        assert_eq!(answer["breakdown"]["groups"], json!([{"values": [true], "count": 1, "spend": 0.0}]));

        // Everyone by city × the tag: the customer in two cities is in both groups (and tagged, as
        // one of the cities is Shanghai).
        let (status, answer) = preview(&app, &json!({"condition": {"trait": "city", "op": "is_set"},
            "breakdown": [{"trait": "city"}, {"tag": "shanghai"}]})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let groups: Vec<(Value, u64)> = answer["breakdown"]["groups"].as_array().unwrap().iter()
            .map(|g| (g["values"].clone(), g["count"].as_u64().unwrap())).collect();
        assert_eq!(groups, vec![
            (json!(["Shanghai", "sh"]), 3),
            (json!(["Beijing", "sh"]), 1),
            (json!(["Beijing", null]), 1),
        ], "{answer}");
        assert_eq!(answer["breakdown"]["total_groups"], 3, "{answer}");
        assert_eq!(answer["breakdown"]["groups"][0]["spend"], 120.0, "{answer}");
        assert_eq!(answer["overlap"], json!([{"segment": "buyers", "count": 2}]), "{answer}");

        // A new fact: the index reads only the profile the batch touched.
        let (status, _) = app.post("/v1/identify", &identify("u2", "i2b", json!({"gender": "male"}))).await;
        assert_eq!(status, StatusCode::OK);
        let answer = eventually("the preview sees the new gender", || async {
            let (_, a) = preview(&app, &json!({"condition": &conditions[1]})).await;
            if a["count"] == 3 { Ok(a) } else { Err(a.to_string()) }
        })
        .await;
        assert_eq!(answer["index"]["read_whole"], false, "{answer}");
        // A saved segment's size, from the index's bitmaps now that this process holds one.
        let (status, _) = app.post("/v1/track", &order("u5", "o5", 10.0)).await;
        assert_eq!(status, StatusCode::OK);
        eventually("the segment's new member counted", || async {
            let (_, b) = app.get_as("/v1/segments/buyers", Auth::Bearer(ADMIN_TOKEN)).await;
            if b["members"] == 3 { Ok(()) } else { Err(b.to_string()) }
        })
        .await;
        // A tag's population per value from the bitmaps too: what the stored rows count, with the
        // spend of the order just made.
        let stored = cdp_projections::catalog::tag_stats(&app.state.store, &workspace_id(), "shanghai")
            .await
            .unwrap();
        let stored: Vec<(Value, i64, f64)> =
            stored.into_iter().map(|s| (s.value, s.profiles, s.spend)).collect();
        assert_eq!(stored, vec![(json!("sh"), 3, 130.0)]);
        let (_, tag) = app.get_as("/v1/tags/shanghai", Auth::Bearer(ADMIN_TOKEN)).await;
        let answered: Vec<(Value, i64, f64)> = tag["values"].as_array().unwrap().iter()
            .map(|v| (v["value"].clone(), v["profiles"].as_i64().unwrap(), v["total_spend"].as_f64().unwrap()))
            .collect();
        assert_eq!(answered, stored, "{tag}");
        assert_eq!(tag["profiles"], 3, "{tag}");
    })
    .await;
}

#[tokio::test]
async fn a_breakdown_field_that_is_wrong_is_refused_naming_it() {
    on_each_backend("audience_refusals", |backend| async move {
        let app = spawn_app(backend).await;
        let (status, _) = app
            .post(
                "/v1/identify",
                &identify("u1", "i1", json!({"city": "Shanghai"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        app.profile_with_count("user_id", "u1", "identify", 1).await;
        let condition = json!({"trait": "city", "op": "is_set"});
        for (breakdown, field) in [
            (json!([{"colour": "red"}]), "breakdown[0].colour"),
            (
                json!([{"trait": "city"}, {"trait": 3}]),
                "breakdown[1].trait",
            ),
            (json!([]), "breakdown"),
            (
                json!([{"trait": "city"}, {"trait": "city"}, {"trait": "city"}]),
                "breakdown",
            ),
            (json!("city"), "breakdown"),
        ] {
            let (status, answer) = preview(
                &app,
                &json!({"condition": condition, "breakdown": breakdown}),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{breakdown}: {answer}");
            assert_eq!(answer["error"]["field"], field, "{breakdown}: {answer}");
        }
        // A well-formed field the workspace has nothing of: a conflict with its state.
        let (status, answer) = preview(
            &app,
            &json!({"condition": condition, "breakdown": [{"trait": "city"}, {"trait": "nowhere"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        assert_eq!(answer["error"]["field"], "breakdown[1]", "{answer}");
        let (status, answer) =
            preview(&app, &json!({"condition": {"trait": "city", "op": "eq"}})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], "condition.value", "{answer}");
    })
    .await;
}

/// Another writer of the model (here two erasures in a row, with no resolver batch needed between
/// them) moves the resolver's token: the index cannot follow it batch by batch; until the background
/// builder has read the workspace whole again the exact path answers, so an erased profile is never
/// counted either way.
#[tokio::test]
async fn the_index_is_read_whole_after_another_writer_changed_the_model() {
    on_each_backend("audience_other_writer", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai"})),
            identify("u2", "i2", json!({"city": "Shanghai"})),
            identify("u3", "i3", json!({"city": "Beijing"})),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut ids = Vec::new();
        for user in ["u1", "u2"] {
            let p = app.profile_with_count("user_id", user, "identify", 1).await;
            ids.push(p["profile_id"].as_str().unwrap().to_owned());
        }
        app.profile_with_count("user_id", "u3", "identify", 1).await;
        index_ready(&app).await;
        let shanghai = json!({"condition": {"trait": "city", "op": "eq", "value": "Shanghai"}});
        let (_, answer) = preview(&app, &shanghai).await;
        assert_eq!(
            (answer["count"].clone(), answer["evaluated_by"].clone()),
            (json!(2), json!("index")),
            "{answer}"
        );
        for (i, id) in ids.iter().enumerate() {
            let builds = app.state.audiences.status().builds;
            let response = app
                .request(
                    reqwest::Method::DELETE,
                    &format!("/v1/profiles/{id}"),
                    Auth::Bearer(ADMIN_TOKEN),
                )
                .send()
                .await
                .unwrap();
            let (status, body) = read_json(response).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            // Right at once, from whichever path answers.
            let (_, answer) = preview(&app, &shanghai).await;
            assert_eq!(answer["count"], 1 - i, "{answer}");
            assert_eq!(answer["profiles"], 2 - i, "{answer}");
            // Then from an index read whole again.
            let answer = eventually("the index read whole after the erasure", || async {
                let (_, a) = preview(&app, &shanghai).await;
                let rebuilt = app.state.audiences.status().builds > builds;
                if a["evaluated_by"] == "index" && rebuilt {
                    Ok(a)
                } else {
                    Err(a.to_string())
                }
            })
            .await;
            assert_eq!(answer["count"], 1 - i, "{answer}");
            assert_eq!(answer["profiles"], 2 - i, "{answer}");
        }
    })
    .await;
}

/// A server builds each workspace's index in the background once its resolver has caught up: the
/// first preview of a server started over a stored model is answered from the index, and
/// `/readyz` and `/metrics` say it is built. Until then the exact path answers (`index.ready: false`).
#[tokio::test]
async fn a_started_server_answers_the_first_preview_from_the_index() {
    on_each_backend("audience_at_start", |backend| async move {
        let database = match backend {
            Backend::Postgres => Some(PgDatabase::create().await),
            Backend::Sqlite => None,
        };
        let options = || Options {
            database_url: database.as_ref().map(|d| d.url.clone()),
            ..Default::default()
        };
        let first = spawn_app_with(backend, options()).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai"})),
            identify("u2", "i2", json!({"city": "Shanghai", "vip": true})),
            identify("u3", "i3", json!({"city": "Beijing"})),
        ]});
        let (status, body) = first.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        first.profile_with_count("user_id", "u3", "identify", 1).await;
        // On SQLite the same server (one process holds the file): its index is built in the
        // background too, no preview asked.
        let app = match database {
            Some(_) => {
                drop(first);
                spawn_app_with(backend, options()).await
            }
            None => first,
        };
        let index = index_ready(&app).await;
        if database.is_some() {
            assert_eq!(index["workspaces"][WORKSPACE]["profiles"], 3, "{index}");
        }
        assert!(index["workspaces"][WORKSPACE]["build_seconds"].is_number(), "{index}");
        let (status, answer) = preview(&app, &json!({"condition": {"all": [
            {"trait": "city", "op": "eq", "value": "Shanghai"}, {"not": {"trait": "vip", "op": "is_true"}}]},
            "breakdown": [{"trait": "city"}]})).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["evaluated_by"], "index", "{answer}");
        assert_eq!(answer["index"]["ready"], true, "{answer}");
        assert!(answer["index"]["built_at"].is_string(), "{answer}");
        assert_eq!(answer["count"], 1, "{answer}");
        assert_eq!(answer["profiles"], 3, "{answer}");
        let metrics = app
            .request(reqwest::Method::GET, "/metrics", Auth::None)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("cdp_audience_index_ready 1"), "{metrics}");
        assert!(
            metrics.contains(&format!("cdp_audience_index_profiles{{workspace=\"{WORKSPACE}\"}}")),
            "{metrics}"
        );
        assert!(metrics.contains("# TYPE cdp_audience_index_build_seconds gauge"), "{metrics}");
    })
    .await;
}

/// While a workspace's index is not built, a preview is answered by the exact path alone: the same
/// count, sample and totals, its breakdown and overlap from the members' rows, `index.ready: false`.
#[tokio::test]
async fn without_an_index_the_exact_path_answers() {
    on_each_backend("audience_not_ready", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai"})), order("u1", "o1", 30.0),
            identify("u2", "i2", json!({"city": "Beijing"})),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.profile_with_count("user_id", "u2", "identify", 1).await;
        let def = cdp_domain::segments::SegmentDef::parse(
            &json!({"condition": {"trait": "city", "op": "is_set"}}),
        )
        .unwrap();
        // A process's own Audiences, never built: what `serve` answers before its first build.
        let unbuilt = cdp_projections::audience::Audiences::default();
        let fields = [cdp_domain::audience::BreakdownField {
            key: cdp_domain::tags::FieldKey::Trait,
            name: "city".into(),
        }];
        let answer = cdp_projections::audience::preview::preview(
            &unbuilt,
            &app.state.store,
            &workspace_id(),
            &def,
            Some(&fields),
            10,
            Utc::now(),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!answer.ready);
        assert_eq!(answer.evaluated_by.as_str(), "events");
        assert_eq!(answer.summary.count, 2);
        assert_eq!(answer.summary.spend, 30.0);
        let groups: Vec<(Vec<Value>, u64)> = answer
            .breakdown
            .unwrap()
            .groups
            .into_iter()
            .map(|g| (g.values, g.count))
            .collect();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert!(groups.iter().all(|(_, n)| *n == 1), "{groups:?}");
    })
    .await;
}

/// Saving a segment the index can evaluate fills its members at once from the bitmaps (its job done
/// in one step, `~index`), with the same enters in the history as a job's; changing it moves
/// members in and out the same way; the engine then keeps it live. A rebuild from the log (whose
/// resolver has no index and runs the job profile by profile) agrees with every membership.
#[tokio::test]
async fn a_saved_segment_is_filled_from_the_index() {
    on_each_backend("audience_fill", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai"})),
            identify("u2", "i2", json!({"city": "Shanghai", "vip": true})),
            identify("u3", "i3", json!({"city": "Beijing"})),
            identify("u4", "i4", json!({"city": "Hangzhou"})),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.profile_with_count("user_id", "u4", "identify", 1).await;
        index_ready(&app).await;
        let define = |condition: Value| {
            let app = &app;
            async move {
                let (status, body) = app
                    .put_as("/v1/segments/sh", &json!({"condition": condition}), Auth::Bearer(ADMIN_TOKEN))
                    .await;
                assert_eq!(status, StatusCode::OK, "{body}");
            }
        };
        let members = || async {
            let (_, m) = app.get_as("/v1/segments/sh/members", Auth::Bearer(ADMIN_TOKEN)).await;
            let mut ids: Vec<String> = m["items"].as_array().unwrap().iter()
                .map(|x| x["profile_id"].as_str().unwrap().to_owned()).collect();
            ids.sort();
            ids
        };
        let id_of = |user: &'static str| {
            let app = &app;
            async move {
                app.profile_with_count("user_id", user, "identify", 1).await["profile_id"]
                    .as_str().unwrap().to_owned()
            }
        };
        let (u1, u2, u3) = (id_of("u1").await, id_of("u2").await, id_of("u3").await);
        define(json!({"trait": "city", "op": "eq", "value": "Shanghai"})).await;
        let job = eventually("the segment's job done", || async {
            let job = cdp_projections::catalog::latest_job(&app.state.store, &workspace_id(), "segment", "sh")
                .await.unwrap();
            match job { Some(j) if j.status == "done" => Ok(j), j => Err(format!("{j:?}")) }
        })
        .await;
        assert_eq!(job.cursor, cdp_projections::jobs::FILLED_FROM_INDEX, "{job:?}");
        assert_eq!((job.done, job.total), (4, 4), "{job:?}");
        let mut expected = vec![u1.clone(), u2.clone()];
        expected.sort();
        assert_eq!(members().await, expected);
        // Changed: Shanghai but not vip, or Beijing — u2 leaves, u3 enters.
        define(json!({"any": [
            {"all": [{"trait": "city", "op": "eq", "value": "Shanghai"}, {"not": {"trait": "vip", "op": "is_true"}}]},
            {"trait": "city", "op": "eq", "value": "Beijing"}]})).await;
        let mut expected = vec![u1.clone(), u3.clone()];
        expected.sort();
        eventually("the changed segment's members", || async {
            let m = members().await;
            if m == expected { Ok(()) } else { Err(format!("{m:?}")) }
        })
        .await;
        let job = cdp_projections::catalog::latest_job(&app.state.store, &workspace_id(), "segment", "sh")
            .await.unwrap().unwrap();
        assert_eq!(job.cursor, cdp_projections::jobs::FILLED_FROM_INDEX, "{job:?}");
        // The history says what a job would have: u1 and u2 entered, u2 left, u3 entered.
        let history = |p: String| {
            let app = &app;
            async move {
                let (_, h) = app.get_as(&format!("/v1/profiles/{p}/memberships"), Auth::Bearer(ADMIN_TOKEN)).await;
                h
            }
        };
        let h2 = history(u2.clone()).await;
        let changes: Vec<(Value, Value)> = h2["history"].as_array().unwrap_or(&Vec::new()).iter()
            .map(|c| (c["segment"].clone(), c["change"].clone())).collect();
        assert_eq!(changes, vec![(json!("sh"), json!("entered")), (json!("sh"), json!("exited"))], "{h2}");
        assert_eq!(h2["history"][0]["caused_by"], "segment:sh", "{h2}");
        // Kept live by the engine: u4 moves to Beijing.
        let (status, _) = app.post("/v1/identify", &identify("u4", "i4b", json!({"city": "Beijing"}))).await;
        assert_eq!(status, StatusCode::OK);
        let u4 = app.profile_with_count("user_id", "u4", "identify", 2).await["profile_id"]
            .as_str().unwrap().to_owned();
        let mut expected = vec![u1.clone(), u3.clone(), u4.clone()];
        expected.sort();
        eventually("u4 entered live", || async {
            let m = members().await;
            if m == expected { Ok(()) } else { Err(format!("{m:?}")) }
        })
        .await;
        // A rebuild, whose resolver runs the job, agrees with every membership.
        let before = members().await;
        cdp_replay::rebuild::rebuild(&app.state.store, &|_| {}).await.unwrap();
        assert_eq!(members().await, before);
        let after = history(u2).await;
        assert_eq!(after["history"], h2["history"], "the rebuild changed no membership");
    })
    .await;
}

fn order_at(user: &str, id: &str, days_ago: i64) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed", "messageId": id,
           "timestamp": (Utc::now() - Days::days(days_ago) - Days::minutes(5)).to_rfc3339(),
           "properties": {"total": 10.0}})
}

/// Saving a segment with an event condition ("≥ 2 orders in 30 days") fills its members from the
/// index at the job's first step (enters in the history and the outbox, cause `segment:<id>`), and
/// the job goes on to backfill every profile's hidden trait (`~index:` cursor) without changing a
/// membership; an order arriving while it runs moves its profile in; a rebuild agrees.
#[tokio::test]
async fn a_saved_segment_with_an_event_condition_is_filled_then_backfilled() {
    on_each_backend("audience_fill_events", |backend| async move {
        let app = spawn_app(backend).await;
        let batch = json!({"batch": [
            identify("u1", "i1", json!({"city": "Shanghai"})),
            order_at("u1", "o1", 1), order_at("u1", "o2", 3),
            identify("u2", "i2", json!({"city": "Beijing"})), order_at("u2", "o3", 2),
            identify("u3", "i3", json!({"city": "Beijing"})), order_at("u3", "o4", 40), order_at("u3", "o5", 41),
            identify("u4", "i4", json!({"city": "Hangzhou"})),
            identify("u5", "i5", json!({"city": "Shanghai"})),
            order_at("u5", "o6", 0), order_at("u5", "o7", 5), order_at("u5", "o8", 10),
        ]});
        let (status, body) = app.post("/v1/batch", &batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut ids = Vec::new();
        for (user, kind, n) in [("u1", "track", 2), ("u2", "track", 1), ("u3", "track", 2),
                                ("u4", "identify", 1), ("u5", "track", 3)] {
            let p = app.profile_with_count("user_id", user, kind, n).await;
            ids.push(p["profile_id"].as_str().unwrap().to_owned());
        }
        index_ready(&app).await;
        let (status, body) = app
            .put_as("/v1/segments/repeat", &json!({"condition":
                {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "window": "30d"}}),
                Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // An order while the job runs (or just after): u2's second in 30 days.
        let (status, _) = app.post("/v1/track", &order_at("u2", "o9", 0)).await;
        assert_eq!(status, StatusCode::OK);
        let job = eventually("the segment's job done", || async {
            let job = cdp_projections::catalog::latest_job(&app.state.store, &workspace_id(), "segment", "repeat")
                .await.unwrap();
            match job { Some(j) if j.status == "done" => Ok(j), j => Err(format!("{j:?}")) }
        })
        .await;
        assert!(
            job.cursor.starts_with(cdp_projections::jobs::FILLED_THEN_BACKFILL),
            "filled from the index, then backfilled: {job:?}"
        );
        assert_eq!((job.done, job.total), (5, 5), "{job:?}");
        let (_, segment) = app.get_as("/v1/segments/repeat", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(segment["members_filled"], true, "{segment}");
        let members = || async {
            let (_, m) = app.get_as("/v1/segments/repeat/members", Auth::Bearer(ADMIN_TOKEN)).await;
            let mut ids: Vec<String> = m["items"].as_array().unwrap().iter()
                .map(|x| x["profile_id"].as_str().unwrap().to_owned()).collect();
            ids.sort();
            ids
        };
        let mut expected = vec![ids[0].clone(), ids[1].clone(), ids[4].clone()];
        expected.sort();
        eventually("u1 and u5 filled, u2 entered live", || async {
            let m = members().await;
            if m == expected { Ok(()) } else { Err(format!("{m:?}")) }
        })
        .await;
        // One enter each, no exit: the job's pages changed no membership.
        let history = |p: String| {
            let app = &app;
            async move {
                let (_, h) = app.get_as(&format!("/v1/profiles/{p}/memberships"), Auth::Bearer(ADMIN_TOKEN)).await;
                h["history"].as_array().cloned().unwrap_or_default()
            }
        };
        for (i, id) in ids.iter().enumerate() {
            let h = history(id.clone()).await;
            let changes: Vec<(Value, Value)> =
                h.iter().map(|c| (c["segment"].clone(), c["change"].clone())).collect();
            let want = if expected.contains(id) { vec![(json!("repeat"), json!("entered"))] } else { vec![] };
            assert_eq!(changes, want, "u{}: {h:?}", i + 1);
        }
        let mut filled = history(ids[0].clone()).await;
        filled.extend(history(ids[4].clone()).await);
        assert!(filled.iter().all(|c| c["caused_by"] == "segment:repeat"), "{filled:?}");
        // Published as any enter.
        let outbox = cdp_projections::outbox::outbox_after(&app.state.store, 0, 10_000)
            .await
            .unwrap();
        let entered: Vec<String> = outbox.iter()
            .filter(|m| m.topic == cdp_projections::outbox::Topic::Segment { segment: "repeat".into(), entered: true })
            .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap()["profile_id"].as_str().unwrap().to_owned())
            .collect();
        let mut sorted = entered.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "{entered:?}");
        // Every profile's state holds the hidden trait, folded from all of its events.
        for id in &ids {
            let doc = cdp_projections::profiles::load(&app.state.store, &cdp_domain::ident::WorkspaceId::parse(WORKSPACE).unwrap(), id)
                .await.unwrap().unwrap();
            let hidden = doc.computed.get("seg:repeat:0");
            assert!(hidden.is_some_and(|e| e.complete), "{id}: {hidden:?}");
        }
        // A rebuild, whose resolver runs the job alone, agrees with every membership.
        cdp_replay::rebuild::rebuild(&app.state.store, &|_| {}).await.unwrap();
        assert_eq!(members().await, expected);
        for id in &ids {
            let h = history(id.clone()).await;
            assert!(h.len() <= 1, "the rebuild changed no membership: {h:?}");
        }
    })
    .await;
}
