//! Exports a channel can send to: `GET /v1/segments/{id}/members` with `fields` (identifiers of any
//! type, traits, computed traits, tags as CSV columns and NDJSON keys) and `channel` (members who
//! consented and have the address, which is included), streamed page after page.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    define_buyers, eventually, on_each_backend, spawn_app, spawn_app_with, Auth, Options, TestApp,
    ADMIN_TOKEN,
};

fn order(user: &str, prefs: Value, traits: Value, total: f64) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed",
           "messageId": format!("o-{user}"), "properties": {"total": total},
           "context": {"consent": {"categoryPreferences": prefs}, "traits": traits}})
}

async fn text(app: &TestApp, query: &str) -> (StatusCode, String, String) {
    text_as(app, ADMIN_TOKEN, query).await
}

async fn text_as(app: &TestApp, token: &str, query: &str) -> (StatusCode, String, String) {
    let response = app
        .request(
            Method::GET,
            &format!("/v1/segments/buyers/members?{query}"),
            Auth::Bearer(token),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_export_has_the_address_of_members_who_consented_and_the_chosen_columns() {
    on_each_backend("channel_export", |backend| async move {
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
        // Ann: SMS and e-mail, a phone, an e-mail and a WeChat openid. Bo: a phone, no consent.
        // Cy: SMS and e-mail allowed but no phone. Dee: SMS allowed, a junk phone.
        let mut ann = order(
            "ann",
            json!({"sms": true, "email": true}),
            json!({"phone": "138 0013 8000", "email": "Ann@Shop.cn", "name": "Ann, Li"}),
            100.0,
        );
        ann["context"]["externalIds"] = json!([{"id": "oAnn", "type": "wechat_openid"}]);
        for m in [
            ann,
            order("bo", json!({}), json!({"phone": "13900139000", "name": "Bo"}), 30.0),
            order("cy", json!({"sms": true, "email": true}), json!({"email": "cy@shop.cn"}), 40.0),
            order("dee", json!({"sms": true}), json!({"phone": "N/A"}), 50.0),
        ] {
            let (status, body) = app.post("/v1/track", &m).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let ann = app
            .profile_when("user_id", "ann", |p| p["computed_traits"]["spend"]["value"].as_f64() == Some(100.0))
            .await;
        let ann_id = ann["profile_id"].as_str().unwrap().to_owned();
        let (status, body) = app
            .put_as("/v1/tags/vip", &json!({"type": "manual"}), Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app
            .post_as(&format!("/v1/profiles/{ann_id}/tags/vip"), Auth::Bearer(ADMIN_TOKEN), &json!({"value": "gold"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cy_id = app.profile_when("user_id", "cy", |_| true).await["profile_id"]
            .as_str()
            .unwrap()
            .to_owned();
        eventually("four buyers, Ann tagged", || async {
            let (_, _, csv) = text(&app, "format=csv&fields=tags.vip").await;
            if csv.lines().count() == 5 && csv.contains("gold") { Ok(()) } else { Err(csv) }
        })
        .await;

        // CSV with the chosen columns: identifiers (phones in E.164), a trait, a computed trait, a tag.
        let (status, content_type, csv) = text(
            &app,
            "format=csv&fields=profile_id,phone,email,identifiers.wechat_openid,traits.name,spend,tags.vip",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{csv}");
        assert_eq!(content_type, "text/csv");
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("profile_id,phone,email,wechat_openid,traits.name,spend,tags.vip")
        );
        let ann_line = csv.lines().find(|l| l.starts_with(&ann_id)).unwrap();
        assert_eq!(
            ann_line,
            format!("{ann_id},+8613800138000,ann@shop.cn,oAnn,\"Ann, Li\",100,gold")
        );
        assert_eq!(csv.lines().count(), 5, "{csv}");

        // channel=sms: who consented and has a phone — Ann only (Bo did not consent, Cy has no phone,
        // Dee's phone is junk); the phone is included.
        let (status, content_type, ndjson) =
            text(&app, "format=ndjson&channel=sms&fields=profile_id").await;
        assert_eq!(status, StatusCode::OK, "{ndjson}");
        assert_eq!(content_type, "application/x-ndjson");
        let rows: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            rows,
            [json!({"profile_id": ann_id, "phone": "+8613800138000", "consent": "granted"})]
        );
        // channel=email: Ann and Cy, with their addresses; JSON pages too.
        let (status, body) = app
            .get_as("/v1/segments/buyers/members?channel=email", Auth::Bearer(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut emails: Vec<(String, String)> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["profile_id"].as_str().unwrap().into(), m["email"].as_str().unwrap().into()))
            .collect();
        emails.sort();
        let mut want = vec![(ann_id.clone(), "ann@shop.cn".to_owned()), (cy_id, "cy@shop.cn".to_owned())];
        want.sort();
        assert_eq!(emails, want);
        // A wechat export needs an openid: Ann's is included.
        let (_, _, wechat) = text(&app, "format=csv&channel=wechat&fields=profile_id").await;
        assert_eq!(wechat, "profile_id,wechat_openid,consent\n");
        // Nobody granted WeChat: an opt-in channel is used only after a grant.

        // Columns that name nothing usable are refused, naming the parameter.
        for bad in ["fields=", "fields=a,,b", "fields=traits.", "fields=a%20b"] {
            let (status, body) = app
                .get_as(&format!("/v1/segments/buyers/members?{bad}"), Auth::Bearer(ADMIN_TOKEN))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert_eq!(body["error"]["field"], "fields", "{bad}: {body}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_segment_streams_page_after_page() {
    on_each_backend("streamed_export", |backend| async move {
        let app = spawn_app(backend).await;
        define_buyers(&app).await;
        // More members than one page of the stream (1,000).
        const MEMBERS: usize = 1_203;
        for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(401) {
            let batch: Vec<Value> = chunk
                .iter()
                .map(|i| order(&format!("m{i:05}"), json!({}), json!({}), 1.0))
                .collect();
            let (status, body) = app.post("/v1/batch", &json!({"batch": batch})).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let csv = eventually("every customer is a buyer", || async {
            let (status, _, csv) = text(&app, "format=csv&fields=profile_id,user_id").await;
            assert_eq!(status, StatusCode::OK, "{csv}");
            if csv.lines().count() == MEMBERS + 1 {
                Ok(csv)
            } else {
                Err(format!("{} lines", csv.lines().count()))
            }
        })
        .await;
        let mut users: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap())
            .collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(users.len(), MEMBERS, "each member once");
        let (_, _, ndjson) = text(&app, "format=ndjson").await;
        assert_eq!(ndjson.lines().count(), MEMBERS);
        // With `limit`, a page and the cursor of the next one, as before.
        let response = app
            .request(
                Method::GET,
                "/v1/segments/buyers/members?format=csv&limit=1000",
                Auth::Bearer(ADMIN_TOKEN),
            )
            .send()
            .await
            .unwrap();
        assert!(response.headers().contains_key("x-next-after"));
        assert_eq!(response.text().await.unwrap().lines().count(), 1_001);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_policy_reaches_the_silent_and_says_so_on_every_output() {
    on_each_backend("opt_out_policy", |backend| async move {
        // E-mail marketing is opt-out in this workspace (existing customers, GDPR's soft opt-in);
        // everything else stays opt-in.
        let config = r#"
            [[workspace]]
            id = "eu_shop"
            write_keys = ["wk_eu"]
            [[workspace.token]]
            token = "tok_eu"
            scopes = ["admin"]
            [workspace.consent]
            default = "opt_in"
            [workspace.consent.policy]
            "email:marketing" = "opt_out"
        "#;
        let app = spawn_app_with(
            backend,
            Options { config_toml: Some(config.to_owned()), no_bootstrap: true, ..Options::default() },
        )
        .await;
        let (status, body) = app
            .put_as(
                "/v1/segments/buyers",
                &json!({"name": "Buyers", "condition": {"event": "Order Completed", "count": {"op": "gte", "value": 1}}}),
                Auth::Bearer("tok_eu"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut bus = app.state.bus.subscribe();
        // Ann said nothing; Bob said no to e-mail. Both have a phone and an e-mail.
        for m in [
            order("ann", json!({}), json!({"phone": "13800138000", "email": "ann@shop.eu"}), 10.0),
            order("bob", json!({"email": false}), json!({"phone": "13900139000", "email": "bob@shop.eu"}), 20.0),
        ] {
            let (status, body) = app.post_as("/v1/track", Auth::Basic("wk_eu"), &m).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        // The profile says Ann is reachable by e-mail, and on which basis.
        let ann = app
            .profile_as_when("tok_eu", "user_id", "ann", |p| p["reachable"] == json!(["email"]))
            .await;
        assert_eq!(ann["reachable_by"], json!({"email": "opt_out_policy"}), "{ann}");
        let bob = app.profile_as_when("tok_eu", "user_id", "bob", |_| true).await;
        assert_eq!(bob["reachable"], json!([]), "a revoke decides: {bob}");
        // The activation message records the decision the same way.
        let entered = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                let m = bus.recv().await.unwrap();
                let p: Value = serde_json::from_str(&m.payload).unwrap();
                if m.subject.ends_with(".segment.buyers.entered") && p["profile_id"] == ann["profile_id"] {
                    return p;
                }
            }
        })
        .await
        .expect("Ann enters the buyers");
        assert_eq!(entered["reachable"], json!(["email"]), "{entered}");
        assert_eq!(entered["reachable_by"], json!({"email": "opt_out_policy"}), "{entered}");
        // The e-mail export holds Ann, with the basis; SMS stays opt-in: nobody.
        let rows = eventually("the e-mail export", || async {
            let (status, _, ndjson) = text_as(&app, "tok_eu", "format=ndjson&channel=email&fields=profile_id").await;
            assert_eq!(status, StatusCode::OK, "{ndjson}");
            let rows: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if rows.is_empty() { Err("no rows yet".to_owned()) } else { Ok(rows) }
        })
        .await;
        assert_eq!(
            rows,
            [json!({"profile_id": ann["profile_id"], "email": "ann@shop.eu", "consent": "opt_out_policy"})]
        );
        let (_, _, sms) = text_as(&app, "tok_eu", "format=csv&channel=sms&fields=profile_id").await;
        assert_eq!(sms, "profile_id,phone,consent\n");
    })
    .await;
}
