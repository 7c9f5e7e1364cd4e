//! Computed traits and tags through the API: definitions backfilled over existing history, values live
//! within a second of an event, line items, merges, every tag kind with its population's counts and
//! spend, manual tags, and every tag change published (in-process bus, and NATS when configured).

use std::time::Duration;

use chrono::{Duration as Days, Utc};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn order(user: &str, id: &str, total: f64, days_ago: i64, products: Value) -> Value {
    json!({
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "messageId": id,
        "timestamp": (Utc::now() - Days::days(days_ago)).to_rfc3339(),
        "properties": {"total": total, "products": products},
    })
}

fn shoes(price: f64, quantity: i64) -> Value {
    json!({"category": "shoes", "price": price, "quantity": quantity})
}

fn hats(price: f64, quantity: i64) -> Value {
    json!({"category": "hats", "price": price, "quantity": quantity})
}

impl TestApp {
    async fn define(&self, kind: &str, name: &str, definition: Value) -> Value {
        let (status, body) = self
            .put_as(
                &format!("/v1/{kind}/{name}"),
                &definition,
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "PUT /v1/{kind}/{name}: {body}");
        body
    }

    /// Waits until the definition's backfill is done; returns `GET /v1/{kind}/{name}`.
    async fn ready(&self, kind: &str, name: &str) -> Value {
        eventually(&format!("{kind} {name} backfilled"), || async {
            let (status, body) = self
                .get_as(&format!("/v1/{kind}/{name}"), Auth::Bearer(ADMIN_TOKEN))
                .await;
            if status == StatusCode::OK && body["status"] == "ready" {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await
    }

    async fn by_user(&self, user: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.profile_when("user_id", user, ready).await
    }

    async fn send(&self, messages: Vec<Value>) {
        let (status, body) = self.post("/v1/batch", &json!({"batch": messages})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn computed<'a>(profile: &'a Value, name: &str) -> &'a Value {
    &profile["computed_traits"][name]["value"]
}

#[tokio::test]
async fn a_trait_defined_over_existing_history_is_backfilled_then_kept_live() {
    on_each_backend("traits_backfill_and_live", |backend| async move {
        let app = spawn_app(backend).await;
        app.send(vec![
            order("u1", "o1", 100.0, 1, json!([shoes(40.0, 2), hats(20.0, 1)])),
            order("u1", "o2", 250.5, 3, json!([hats(250.5, 1)])),
            order("u1", "o3", 40.0, 45, json!([shoes(40.0, 1)])),
            order("u2", "o4", 2000.0, 40, json!([shoes(1000.0, 2)])),
            track("u2", "Product Viewed", "v1"),
        ])
        .await;
        app.profile_with_count("user_id", "u2", "track", 2).await;
        app.profile_with_count("user_id", "u1", "track", 3).await;

        app.define(
            "traits",
            "spend_30d",
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "30d"}),
        )
        .await;
        app.define(
            "traits",
            "shoe_orders",
            json!({"event": "Order Completed", "function": "count",
                   "where": [{"property": "properties.products[].category", "op": "eq", "value": "shoes"}]}),
        )
        .await;
        app.define(
            "traits",
            "line_revenue",
            json!({"event": "Order Completed", "function": "sum",
                   "property": "properties.products[].price * properties.products[].quantity"}),
        )
        .await;
        app.define(
            "traits",
            "categories",
            json!({"event": "Order Completed", "function": "unique_list", "property": "properties.products[].category"}),
        )
        .await;
        app.define(
            "traits",
            "order_days_90d",
            json!({"event": "Order Completed", "function": "days_active", "window": "90d"}),
        )
        .await;
        let status = app.ready("traits", "spend_30d").await;
        assert_eq!(status["definition"]["function"], "sum", "{status}");
        assert!(
            status["profiles_done"].as_i64() >= Some(2),
            "progress counts the profiles: {status}"
        );
        for name in ["shoe_orders", "line_revenue", "categories", "order_days_90d"] {
            app.ready("traits", name).await;
        }

        let u1 = app
            .by_user("u1", |p| p["computed_traits"]["spend_30d"]["complete"] == true)
            .await;
        assert_eq!(computed(&u1, "spend_30d"), &json!(350.5), "{u1}");
        assert_eq!(computed(&u1, "shoe_orders"), &json!(2));
        assert_eq!(computed(&u1, "line_revenue"), &json!(390.5));
        assert_eq!(computed(&u1, "categories"), &json!(["hats", "shoes"]));
        assert_eq!(computed(&u1, "order_days_90d"), &json!(3));
        let u2 = app
            .by_user("u2", |p| p["computed_traits"]["spend_30d"]["complete"] == true)
            .await;
        assert_eq!(computed(&u2, "spend_30d"), &json!(0), "40 days ago is out: {u2}");
        assert_eq!(computed(&u2, "line_revenue"), &json!(2000));

        // Live: a new order shows within the deadline, without any backfill.
        app.send(vec![order("u1", "o5", 9.5, 0, json!([shoes(9.5, 1)]))])
            .await;
        let u1 = app
            .by_user("u1", |p| computed(p, "spend_30d") == &json!(360))
            .await;
        assert_eq!(computed(&u1, "shoe_orders"), &json!(3));
        assert!(u1["computed_traits"]["spend_30d"]["last_event_at"].is_string());

        // Changing a definition recomputes it for every profile.
        app.define(
            "traits",
            "spend_30d",
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "60d"}),
        )
        .await;
        app.ready("traits", "spend_30d").await;
        app.by_user("u1", |p| computed(p, "spend_30d") == &json!(400))
            .await;
        app.by_user("u2", |p| computed(p, "spend_30d") == &json!(2000))
            .await;

        let (status, list) = app.get_as("/v1/traits", Auth::Bearer(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"].as_array().map(Vec::len), Some(5), "{list}");
        let response = app
            .request(Method::DELETE, "/v1/traits/categories", Auth::Bearer(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let (status, _) = app
            .get_as("/v1/traits/categories", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        app.by_user("u1", |p| p["computed_traits"].get("categories").is_none())
            .await;
    })
    .await;
}

#[tokio::test]
async fn invalid_definitions_are_refused_naming_the_place() {
    on_each_backend("traits_invalid", |backend| async move {
        let app = spawn_app(backend).await;
        for (kind, name, definition, field) in [
            ("traits", "x", json!({"event": "A", "function": "median", "property": "properties.total"}), "function"),
            ("traits", "x", json!({"event": "A", "function": "sum"}), "property"),
            ("traits", "x", json!({"event": "A", "function": "count", "window": "30 days"}), "window"),
            (
                "traits",
                "x",
                json!({"event": "A", "function": "count", "where": [{"property": "properties.total", "op": "gt", "value": "big"}]}),
                "where[0].value",
            ),
            ("traits", "x", json!({"event": "A", "function": "count", "colour": "red"}), "colour"),
            ("traits", "9lives", json!({"event": "A", "function": "count"}), "name"),
            ("tags", "t", json!({"type": "rule", "condition": {"all": [{"trait": "a", "op": "between", "value": 3}]}}), "condition.all[0].value"),
            ("tags", "t", json!({"type": "sometimes"}), "type"),
        ] {
            let (status, body) = app
                .put_as(&format!("/v1/{kind}/{name}"), &definition, Auth::Bearer(ADMIN_TOKEN))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{definition}: {body}");
            assert_eq!(body["error"]["field"], field, "{definition}: {body}");
        }
        // A value tag of a trait the catalog does not hold, or a tag that reads itself through another:
        // valid as written, refused as the catalog stands (409).
        let (status, body) = app
            .put_as(
                "/v1/tags/t",
                &json!({"type": "value", "trait": "nothing_defined", "buckets": [{"value": "x"}]}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["field"], "trait", "{body}");
        app.define("tags", "a", json!({"type": "rule", "condition": {"tag": "b", "op": "is_set"}}))
            .await;
        let (status, body) = app
            .put_as(
                "/v1/tags/b",
                &json!({"type": "rule", "condition": {"tag": "a", "op": "is_set"}}),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("a -> b"), "{body}");
        // Only admins define; a write key cannot.
        let (status, _) = app
            .put_as("/v1/traits/x", &json!({"event": "A", "function": "count"}), Auth::Basic(WRITE_KEY))
            .await;
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED, "{status}");
    })
    .await;
}

#[tokio::test]
async fn merged_profiles_add_up_their_traits() {
    on_each_backend("traits_merge", |backend| async move {
        let app = spawn_app(backend).await;
        app.define(
            "traits",
            "orders",
            json!({"event": "Order Completed", "function": "count"}),
        )
        .await;
        app.define(
            "traits",
            "biggest",
            json!({"event": "Order Completed", "function": "max", "property": "properties.total"}),
        )
        .await;
        let mut anonymous = order("ignored", "a1", 70.0, 2, json!([]));
        anonymous.as_object_mut().unwrap().remove("userId");
        anonymous["anonymousId"] = json!("cookie-1");
        app.send(vec![anonymous, order("m1", "m1o", 30.0, 1, json!([]))])
            .await;
        app.by_user("m1", |p| computed(p, "orders") == &json!(1)).await;
        app.send(vec![json!({"type": "identify", "userId": "m1", "anonymousId": "cookie-1", "messageId": "join"})])
            .await;
        let joined = app.by_user("m1", |p| computed(p, "orders") == &json!(2)).await;
        assert_eq!(computed(&joined, "biggest"), &json!(70));
    })
    .await;
}

async fn next_change(
    bus: &mut tokio::sync::broadcast::Receiver<cdp_api::publish::Published>,
    subject: &str,
) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let m = bus.recv().await.expect("the bus is open");
            if m.subject == subject {
                return serde_json::from_str::<Value>(&m.payload).unwrap();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no message on {subject}"))
}

#[tokio::test]
async fn tags_of_every_kind_with_their_population_and_changes() {
    on_each_backend("tags_every_kind", |backend| async move {
        let nats = backend == Backend::Postgres && nats_available("tags_every_kind");
        let app = spawn_app_with(backend, Options { nats, ..Options::default() }).await;
        let mut bus = app.state.bus.subscribe();
        app.send(vec![
            order("rich", "r1", 800.0, 2, json!([])),
            order("rich", "r2", 150.0, 1, json!([])),
            order("mid", "d1", 300.0, 5, json!([])),
            order("old", "x1", 50.0, 200, json!([])),
            json!({"type": "identify", "userId": "rich", "messageId": "i1", "traits": {"gender": "female"}}),
        ])
        .await;
        app.profile_with_count("user_id", "old", "track", 1).await;
        app.profile_with_count("user_id", "rich", "identify", 1).await;

        app.define(
            "traits",
            "spend_30d",
            json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "30d"}),
        )
        .await;
        app.define(
            "tags",
            "big_spender",
            json!({"type": "rule", "condition": {"all": [{"computed": "spend_30d", "op": "gte", "value": 1000},
                                                       {"trait": "gender", "op": "neq", "value": "male"}]}}),
        )
        .await;
        app.define(
            "tags",
            "spend_level",
            json!({"type": "value", "trait": "spend_30d", "buckets": [
                {"value": "low", "lt": 100}, {"value": "mid", "gte": 100, "lt": 1000}, {"value": "high", "gte": 1000}]}),
        )
        .await;
        app.define("tags", "staff_pick", json!({"type": "manual"})).await;
        app.define(
            "tags",
            "rfm",
            json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total", "window": "365d",
                   "scoring": {"recency": [7, 30, 90, 180], "frequency": [1, 2, 4, 8], "monetary": [100, 500, 1000, 5000]}}),
        )
        .await;
        for tag in ["big_spender", "spend_level", "rfm"] {
            app.ready("tags", tag).await;
        }
        let levels = app.ready("tags", "spend_level").await;
        let by_value = |body: &Value, value: &str| {
            body["values"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["value"] == value)
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(by_value(&levels, "mid")["profiles"], 2, "{levels}");
        assert_eq!(by_value(&levels, "mid")["total_spend"], 1250.0, "{levels}");
        assert_eq!(by_value(&levels, "low")["profiles"], 1, "{levels}");

        let rich = app
            .by_user("rich", |p| p["tags"]["rfm"]["value"].is_string())
            .await;
        assert!(rich["tags"].get("big_spender").is_none(), "{rich}");
        assert_eq!(rich["tags"]["spend_level"]["value"], "mid");
        assert_eq!(rich["tags"]["rfm"]["detail"]["r"], 5, "{rich}");
        let old = app.by_user("old", |p| p["tags"]["rfm"]["value"].is_string()).await;
        assert_eq!(old["tags"]["rfm"]["detail"]["r"], 1, "{old}");

        // Crossing the threshold: the rule tag appears within the deadline and is published.
        let subscriber = match &app.nats {
            Some(n) => {
                let client = async_nats::connect(n.url.as_str()).await.unwrap();
                let subject = format!("{}.cdp.out.{WORKSPACE}.tag.big_spender.changed", n.namespace);
                Some((client.subscribe(subject).await.unwrap(), client))
            }
            None => None,
        };
        app.send(vec![order("rich", "r3", 100.0, 0, json!([]))]).await;
        let subject = format!("cdp.out.{WORKSPACE}.tag.big_spender.changed");
        let change = next_change(&mut bus, &subject).await;
        assert_eq!(change["value"], true, "{change}");
        assert_eq!(change["previous"], Value::Null);
        assert_eq!(change["caused_by"], "r3");
        let rich = app.by_user("rich", |p| p["tags"]["big_spender"]["value"] == true).await;
        assert_eq!(rich["tags"]["spend_level"]["value"], "high");
        assert!(rich["tags"]["big_spender"]["changed_at"].is_string());
        if let Some((mut sub, _client)) = subscriber {
            let m = tokio::time::timeout(DEADLINE, sub.next())
                .await
                .expect("the change reaches NATS")
                .expect("a message");
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(payload["profile_id"], rich["profile_id"], "{payload}");
            assert_eq!(payload["value"], true);
        }

        // Manual tags: staff tag a member, and take it off.
        let id = rich["profile_id"].as_str().unwrap().to_owned();
        let (status, body) = app
            .post_as(&format!("/v1/profiles/{id}/tags/staff_pick"), Auth::Bearer(ADMIN_TOKEN), &json!({"value": "window display"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["value"], "window display");
        let tagged = app.by_user("rich", |p| p["tags"]["staff_pick"]["manual"] == true).await;
        assert_eq!(tagged["tags"]["staff_pick"]["value"], "window display");
        let (status, body) = app
            .post_as(&format!("/v1/profiles/{id}/tags/spend_level"), Auth::Bearer(ADMIN_TOKEN), &json!({}))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "only manual tags are set by hand: {body}");
        let response = app
            .request(Method::DELETE, &format!("/v1/profiles/{id}/tags/staff_pick"), Auth::Bearer(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let change = next_change(&mut bus, &format!("cdp.out.{WORKSPACE}.tag.staff_pick.changed")).await;
        assert_eq!(change["value"], "window display", "the set first: {change}");
        let change = next_change(&mut bus, &format!("cdp.out.{WORKSPACE}.tag.staff_pick.changed")).await;
        assert_eq!(change["value"], Value::Null, "then the removal: {change}");
        app.by_user("rich", |p| p["tags"].get("staff_pick").is_none()).await;

        // Deleting a tag takes it off every profile.
        let response = app
            .request(Method::DELETE, "/v1/tags/spend_level", Auth::Bearer(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        app.by_user("mid", |p| p["tags"].get("spend_level").is_none()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    })
    .await;
}

const CATALOG_TOML: &str = r#"
[[workspace]]
id = "shop"

[workspace.traits.spend_30d]
event = "Order Completed"
function = "sum"
property = "properties.total"
window = "30d"

[workspace.traits.shoe_orders]
event = "Order Completed"
function = "count"
where = [{ property = "properties.products[].category", op = "eq", value = "shoes" }]

[workspace.tags.spend_level]
type = "value"
trait = "spend_30d"
buckets = [{ value = "low", lt = 100 }, { value = "high", gte = 100 }]
"#;

#[tokio::test]
async fn traits_and_tags_come_from_the_config_file_too() {
    on_each_backend("traits_config", |backend| async move {
        let options = Options {
            config_toml: Some(CATALOG_TOML.to_owned()),
            ..Options::default()
        };
        let app = spawn_app_with(backend, options).await;
        let first = app.ready("traits", "spend_30d").await;
        app.ready("tags", "spend_level").await;
        app.send(vec![order("c1", "c1o", 120.0, 1, json!([shoes(60.0, 2)]))])
            .await;
        let c1 = app
            .by_user("c1", |p| p["tags"]["spend_level"]["value"] == "high")
            .await;
        assert_eq!(computed(&c1, "spend_30d"), &json!(120));
        assert_eq!(computed(&c1, "shoe_orders"), &json!(1));
        // Provisioning the same file again defines nothing new.
        let before = app.count_events().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdp.toml");
        std::fs::write(&path, CATALOG_TOML).unwrap();
        let mut config = cdp_api::Config::local(dir.path().to_path_buf());
        config.config_file = Some(path);
        cdp_api::provision::provision(&app.state.store, &config)
            .await
            .unwrap();
        assert_eq!(app.count_events().await, before, "no command was appended");
        let again = app.ready("traits", "spend_30d").await;
        assert_eq!(again["version"], first["version"], "{again}");
    })
    .await;
}
