//! Isolation, audit and rate limits: every endpoint of `openapi::ENDPOINTS` refuses a call without
//! credentials, with a forged credential and with a too-narrow scope, and answers another workspace's
//! token without a trace of the first workspace's data; operator actions land in the append-only audit
//! log, which only its own workspace reads; a flooding workspace gets 429 while another is served.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{eventually, on_each_backend, spawn_app_with, track, Auth, Options, TestApp};

const CONFIG: &str = r#"
[[workspace]]
id = "iso_a"
write_keys = ["wk_iso_a"]
[[workspace.token]]
token = "tok_iso_a_admin"
scopes = ["admin"]
[[workspace.token]]
token = "tok_iso_a_write"
scopes = ["write"]
[[workspace.token]]
token = "tok_iso_a_read"
scopes = ["read"]

[[workspace]]
id = "iso_b"
write_keys = ["wk_iso_b"]
[[workspace.token]]
token = "tok_iso_b_admin"
scopes = ["admin"]
"#;

const A_ADMIN: &str = "tok_iso_a_admin";
const A_WRITE: &str = "tok_iso_a_write";
const A_READ: &str = "tok_iso_a_read";
const A_KEY: &str = "wk_iso_a";
const B_ADMIN: &str = "tok_iso_b_admin";
const B_KEY: &str = "wk_iso_b";

const TRAIT: &str = "iso_orders";
const TAG: &str = "iso_pick";
const SEGMENT: &str = "iso_city";
/// Values only workspace A's data holds: none may appear in an answer to anyone else.
const A_SECRETS: &[&str] = &[
    "ann.iso@example.com",
    "amy.iso@example.com",
    "u-iso-ann",
    "u-iso-amy",
    "u-iso-cat",
    "Zhangjiakou",
    "+8613800138123",
];

fn options() -> Options {
    Options {
        config_toml: Some(CONFIG.to_owned()),
        no_bootstrap: true,
        ..Options::default()
    }
}

/// A's data: three people (ann, amy, cat), a computed trait, a manual tag on ann, a segment; one person
/// in B.
struct Fixture {
    ann: String,
    amy: String,
    cat: String,
    rules: Value,
}

async fn profile_id(app: &TestApp, token: &str, user: &str) -> String {
    let p = app.profile_as_when(token, "user_id", user, |_| true).await;
    p["profile_id"].as_str().unwrap().to_owned()
}

async fn ok(app: &TestApp, method: Method, path: &str, token: &str, body: Value) -> Value {
    let (status, body) = call(app, method.clone(), path, Auth::Bearer(token), Some(&body)).await;
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

async fn seed(app: &TestApp) -> Fixture {
    let people = [
        ("u-iso-ann", "ann.iso@example.com", "+86 138 0013 8123"),
        ("u-iso-amy", "amy.iso@example.com", "+86 139 0000 0001"),
        ("u-iso-cat", "cat.iso@example.com", "+86 139 0000 0002"),
    ];
    let mut batch = Vec::new();
    for (i, (user, email, phone)) in people.iter().enumerate() {
        batch.push(
            json!({"type": "identify", "userId": user, "messageId": format!("iso-id-{i}"),
            "traits": {"email": email, "phone": phone, "city": "Zhangjiakou"}}),
        );
        batch.push(track(user, "Order Completed", &format!("iso-order-{i}")));
    }
    let (status, body) = app
        .post_as("/v1/batch", Auth::Basic(A_KEY), &json!({"batch": batch}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post_as(
            "/v1/identify",
            Auth::Basic(B_KEY),
            &json!({"userId": "u-iso-bob", "messageId": "iso-b-1", "traits": {"city": "Harbin"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ann = profile_id(app, A_ADMIN, "u-iso-ann").await;
    let amy = profile_id(app, A_ADMIN, "u-iso-amy").await;
    let cat = profile_id(app, A_ADMIN, "u-iso-cat").await;
    profile_id(app, B_ADMIN, "u-iso-bob").await;
    ok(
        app,
        Method::PUT,
        &format!("/v1/traits/{TRAIT}"),
        A_ADMIN,
        json!({"event": "Order Completed", "function": "count"}),
    )
    .await;
    ok(
        app,
        Method::PUT,
        &format!("/v1/tags/{TAG}"),
        A_ADMIN,
        json!({"type": "manual"}),
    )
    .await;
    ok(
        app,
        Method::PUT,
        &format!("/v1/segments/{SEGMENT}"),
        A_ADMIN,
        json!({"name": "In a city", "condition": {"trait": "city", "op": "is_set"}}),
    )
    .await;
    ok(
        app,
        Method::POST,
        &format!("/v1/profiles/{ann}/tags/{TAG}"),
        A_ADMIN,
        json!({"value": "window display"}),
    )
    .await;
    let mut rules = ok(app, Method::GET, "/v1/identity/rules", A_ADMIN, Value::Null).await;
    rules.as_object_mut().unwrap().remove("version");
    Fixture {
        ann,
        amy,
        cat,
        rules,
    }
}

/// Sends a request; the body as text (the SSE stream is not read: it does not end).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> (StatusCode, String) {
    let mut request = app.request(method.clone(), path, auth);
    if let Some(body) = body.filter(|b| !b.is_null()) {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status();
    if path.starts_with("/v1/stream") && status.is_success() {
        return (status, String::new());
    }
    (status, response.text().await.unwrap_or_default())
}

/// The scheme and scope `/openapi.json` documents for an operation: `None` when it is public.
fn security(document: &Value, method: &str, path: &str) -> Option<(String, String)> {
    let security = document["paths"][path][method]["security"].as_array()?;
    let (scheme, scopes) = security.first()?.as_object()?.iter().next()?;
    let scope = scopes
        .as_array()
        .and_then(|s| s.first())
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some((scheme.clone(), scope))
}

/// The concrete path of a route over A's data, and a body that the route accepts.
fn concrete(route: &str, method: &str, f: &Fixture, n: usize) -> (String, Value) {
    let path = route
        .replace("/v1/traits/{name}", &format!("/v1/traits/{TRAIT}"))
        .replace("/v1/tags/{name}", &format!("/v1/tags/{TAG}"))
        .replace("/v1/segments/{id}", &format!("/v1/segments/{SEGMENT}"))
        .replace("/v1/profiles/{id}", &format!("/v1/profiles/{}", f.ann))
        .replace("{tag}", TAG)
        .replace("{id}", &f.ann)
        .replace("{name}", TRAIT);
    let path = match (method, route) {
        // Erasing by identifier takes amy (merged with cat by then); erasing by id takes ann, last.
        ("delete", "/v1/profiles/lookup") => {
            format!("{path}?type=email&value=amy.iso%40example.com")
        }
        (_, "/v1/profiles/lookup") => format!("{path}?type=email&value=ann.iso%40example.com"),
        _ => path,
    };
    let kind = route.strip_prefix("/v1/").unwrap_or_default();
    let body = match (method, route) {
        ("post", "/v1/batch") => {
            json!({"batch": [track("u-iso-new", "Viewed", &format!("iso-m-{n}"))]})
        }
        ("post", _)
            if ["track", "identify", "page", "screen", "group", "alias"].contains(&kind) =>
        {
            let mut m = json!({"type": kind, "userId": "u-iso-new", "messageId": format!("iso-m-{n}"),
                "event": "Viewed", "name": "Home", "groupId": "g1", "previousId": "u-iso-old"});
            if kind != "track" {
                m.as_object_mut().unwrap().remove("event");
            }
            m
        }
        ("put", "/v1/identity/rules") => f.rules.clone(),
        ("post", "/v1/identity/merge") => {
            json!({"profile_ids": [f.amy, f.cat], "reason": "same person"})
        }
        ("post", "/v1/identity/split") => json!({"profile_id": f.amy, "reason": "not the same",
            "identifiers": [{"type": "user_id", "value": "u-iso-cat"}]}),
        ("put", "/v1/traits/{name}") => json!({"event": "Order Completed", "function": "count"}),
        ("put", "/v1/tags/{name}") => json!({"type": "manual"}),
        ("post", "/v1/profiles/{id}/tags/{tag}") => json!({"value": "again"}),
        ("put", "/v1/segments/{id}") => {
            json!({"name": "In a city", "condition": {"trait": "city", "op": "is_set"}})
        }
        ("put", "/v1/profiles/{id}/consent") => {
            json!({"channel": "sms", "purpose": "marketing", "granted": false, "source": "isolation test"})
        }
        ("post", "/v1/segments/preview") => json!({"condition": {"trait": "city", "op": "is_set"}}),
        ("get" | "delete", _) => Value::Null,
        _ => json!({}),
    };
    (path, body)
}

/// Fails if an answer to someone other than A carries A's data the request did not itself name.
fn assert_no_leak(what: &str, request: &str, body: &str, f: &Fixture) {
    let mut secrets: Vec<&str> = A_SECRETS.to_vec();
    secrets.extend([f.ann.as_str(), f.amy.as_str(), f.cat.as_str()]);
    for secret in secrets {
        if request.contains(secret) {
            continue;
        }
        assert!(
            !body.contains(secret),
            "{what}: the answer carries A's {secret:?}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_other_workspaces_narrow_scopes_and_forged_credentials() {
    on_each_backend("isolation_matrix", |backend| async move {
        let app = spawn_app_with(backend, options()).await;
        let f = seed(&app).await;
        let document = cdp_api::openapi::document();
        let forged_token = format!("tok_{}", uuid::Uuid::new_v4().simple());
        // Well formed, one letter off a real one; and the stored hash of a real one used as the secret.
        let near_token = "tok_iso_a_admim".to_owned();
        let hash_token = cdp_domain::workspace::hash_secret(A_ADMIN);
        let a_events = app.count_events_in("iso_a").await;
        let mut n = 0;
        // Concrete paths B made for itself (a PUT under the same name is B's own definition).
        let mut b_owns: HashSet<String> = HashSet::new();
        let mut b_sent = String::new();
        let mut checked = 0;
        for (method, route) in cdp_api::openapi::ENDPOINTS {
            n += 1;
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (path, body) = concrete(route, method, &f, n);
            let what = format!("{method} {route}");
            let request_text = format!("{} {body}", path.replace("%40", "@"));
            let Some((scheme, scope)) = security(&document, method, route) else {
                // Public: health, metrics, the document. Nothing of A's data in them.
                let (status, text) = call(&app, verb, &path, Auth::None, None).await;
                assert!(status.is_success(), "{what}: {status}");
                assert_no_leak(&what, &request_text, &text, &f);
                continue;
            };
            checked += 1;
            let body = Some(&body);
            // (a) No credentials; (b) forged ones.
            let forged: Vec<(&str, Auth<'_>)> = if scheme == "writeKey" {
                vec![
                    ("none", Auth::None),
                    ("a random write key", Auth::Basic(&forged_token)),
                    ("a near write key", Auth::Basic("wk_iso_b_")),
                    ("a token as write key", Auth::Basic(A_ADMIN)),
                    ("a hash as write key", Auth::Basic(&hash_token)),
                ]
            } else {
                vec![
                    ("none", Auth::None),
                    ("a random token", Auth::Bearer(&forged_token)),
                    ("a near token", Auth::Bearer(&near_token)),
                    ("a hash as token", Auth::Bearer(&hash_token)),
                    ("Basic instead of Bearer", Auth::Basic(A_ADMIN)),
                ]
            };
            for (how, auth) in forged {
                let (status, text) = call(&app, verb.clone(), &path, auth, body).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{what} with {how}: {text}"
                );
                assert_no_leak(&format!("{what} with {how}"), &request_text, &text, &f);
            }
            // (d) A's credential of a too-narrow kind or scope.
            let narrow: Vec<(&str, Auth<'_>, StatusCode)> = match (scheme.as_str(), scope.as_str())
            {
                ("writeKey", _) => vec![(
                    "A's read token",
                    Auth::Basic(A_READ),
                    StatusCode::UNAUTHORIZED,
                )],
                (_, "admin") => vec![
                    (
                        "A's write token",
                        Auth::Bearer(A_WRITE),
                        StatusCode::FORBIDDEN,
                    ),
                    (
                        "A's read token",
                        Auth::Bearer(A_READ),
                        StatusCode::FORBIDDEN,
                    ),
                ],
                (_, "write") => vec![(
                    "A's read token",
                    Auth::Bearer(A_READ),
                    StatusCode::FORBIDDEN,
                )],
                _ => vec![(
                    "A's write key",
                    Auth::Bearer(A_KEY),
                    StatusCode::UNAUTHORIZED,
                )],
            };
            for (how, auth, expected) in narrow {
                let (status, text) = call(&app, verb.clone(), &path, auth, body).await;
                assert_eq!(status, expected, "{what} with {how}: {text}");
            }
            // (c) Workspace B's strongest credential.
            let b_auth = if scheme == "writeKey" {
                Auth::Basic(B_KEY)
            } else {
                Auth::Bearer(B_ADMIN)
            };
            let (status, text) = call(&app, verb.clone(), &path, b_auth, body).await;
            let b_what = format!("{what} with B's credential");
            assert!(!status.is_server_error(), "{b_what}: {status} {text}");
            // B may be told what B itself sent (its own audit log records the ids it tried), nothing else.
            b_sent.push_str(&request_text);
            assert_no_leak(&b_what, &b_sent, &text, &f);
            let names_a_profile = route.contains("/v1/profiles/{id}")
                || *route == "/v1/profiles/lookup"
                || route.starts_with("/v1/identity/merge")
                || route.starts_with("/v1/identity/split");
            let owned = b_owns.iter().any(|p| path.starts_with(p.as_str()));
            if names_a_profile || (route.contains('{') && *method == "get" && !owned) {
                assert_eq!(status, StatusCode::NOT_FOUND, "{b_what}: {text}");
            }
            if route.contains('{') && *method == "put" && status.is_success() {
                b_owns.insert(path.clone());
            }
            if *method == "delete" {
                b_owns.remove(&path);
            }
        }
        assert!(checked >= 30, "only {checked} endpoints were tried");
        // Nothing B did reached A: A's definitions, tag and events are as they were.
        assert_eq!(
            app.count_events_in("iso_a").await,
            a_events,
            "no call stored events in A"
        );
        for path in [
            format!("/v1/traits/{TRAIT}"),
            format!("/v1/tags/{TAG}"),
            format!("/v1/segments/{SEGMENT}"),
        ] {
            let (status, text) = call(&app, Method::GET, &path, Auth::Bearer(A_ADMIN), None).await;
            assert_eq!(status, StatusCode::OK, "A's {path} survived B: {text}");
        }
        let ann = app
            .profile_as_when(A_ADMIN, "user_id", "u-iso-ann", |_| true)
            .await;
        assert_eq!(
            ann["tags"][TAG]["manual"], true,
            "A's manual tag survived B: {ann}"
        );

        // The allowed case: A's own credential of the documented scope. Reads and writes in the listed
        // order, the merge and split of amy and cat, then the deletions in reverse (untag before the tag).
        let scope_token = |scope: &str| match scope {
            "admin" => A_ADMIN,
            "write" => A_WRITE,
            _ => A_READ,
        };
        let mut deletions = Vec::new();
        let mut commands = Vec::new();
        for (method, route) in cdp_api::openapi::ENDPOINTS {
            n += 1;
            let Some((scheme, scope)) = security(&document, method, route) else {
                continue;
            };
            if *method == "delete" {
                deletions.push((method, route, scheme, scope));
                continue;
            }
            if route.starts_with("/v1/identity/merge") || route.starts_with("/v1/identity/split") {
                commands.push((method, route, scheme, scope));
                continue;
            }
            allowed(
                &app,
                &f,
                method,
                route,
                &scheme,
                &scope,
                scope_token(&scope),
                n,
            )
            .await;
        }
        commands.sort_by_key(|(_, route, ..)| route.ends_with("split"));
        // Erasures last: they take the profiles the other deletions act on.
        deletions.reverse();
        deletions.sort_by_key(|(method, route, ..)| {
            **method == "delete" && route.starts_with("/v1/profiles/") && !route.contains("/tags/")
        });
        for (method, route, scheme, scope) in commands.into_iter().chain(deletions) {
            n += 1;
            allowed(
                &app,
                &f,
                method,
                route,
                &scheme,
                &scope,
                scope_token(&scope),
                n,
            )
            .await;
        }
    })
    .await;
}

/// A's own credential: the endpoint answers.
#[allow(clippy::too_many_arguments)]
async fn allowed(
    app: &TestApp,
    f: &Fixture,
    method: &str,
    route: &str,
    scheme: &str,
    _scope: &str,
    token: &str,
    n: usize,
) {
    let verb = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let (path, mut body) = concrete(route, method, f, n);
    if route == "/v1/identity/split" {
        // After the merge, amy and cat are one profile, whichever id survived.
        body["profile_id"] = json!(profile_id(app, A_ADMIN, "u-iso-cat").await);
    }
    let auth = if scheme == "writeKey" {
        Auth::Basic(A_KEY)
    } else {
        Auth::Bearer(token)
    };
    let (status, text) = call(app, verb, &path, auth, Some(&body)).await;
    assert!(
        status.is_success(),
        "{method} {route} with A's credential: {status} {text}"
    );
}

/// The audit entries of A, newest first, through the API.
async fn audit(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = app
        .get_as(&format!("/v1/audit{query}"), Auth::Bearer(token))
        .await;
    assert_eq!(status, StatusCode::OK, "GET /v1/audit{query}: {body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_are_audited_append_only_and_only_for_their_workspace() {
    on_each_backend("audit_trail", |backend| async move {
        let app = spawn_app_with(backend, options()).await;
        let f = seed(&app).await;
        let before = audit(&app, A_ADMIN, "?order=asc&limit=1000").await;
        let started = chrono::Utc::now();

        let merged = ok(&app, Method::POST, "/v1/identity/merge", A_ADMIN,
            json!({"profile_ids": [f.amy, f.cat], "reason": "same person"})).await;
        let survivor = merged["profile_id"].as_str().unwrap().to_owned();
        ok(&app, Method::POST, "/v1/identity/split", A_ADMIN,
            json!({"profile_id": survivor, "identifiers": [{"type": "user_id", "value": "u-iso-cat"}]})).await;
        let mut rules = f.rules.clone();
        rules["max_merges"] = json!(rules["max_merges"].as_u64().unwrap() + 1);
        let changed = ok(&app, Method::PUT, "/v1/identity/rules", A_ADMIN, rules).await;
        assert_eq!(changed["changed"], true, "{changed}");
        ok(&app, Method::PUT, "/v1/segments/iso_audited", A_ADMIN,
            json!({"condition": {"trait": "city", "op": "is_set"}})).await;
        let response = app
            .request(Method::GET, &format!("/v1/segments/{SEGMENT}/members"), Auth::Bearer(A_READ))
            .header("x-request-id", "req-export-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // A refused admin call by a write token is recorded too; a plain read is not.
        let (status, _) = call(&app, Method::DELETE, &format!("/v1/traits/{TRAIT}"), Auth::Bearer(A_WRITE), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(&app, Method::GET, "/v1/traits", Auth::Bearer(A_READ), None).await;
        assert_eq!(status, StatusCode::OK);

        let after = before.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        // The GET /v1/audit above was an admin call, recorded once answered: leave such reads out.
        let entries: Vec<Value> = audit(&app, A_ADMIN, &format!("?order=asc&after={after}"))
            .await
            .into_iter()
            .filter(|e| e["action"] != "admin.read")
            .collect();
        let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
        // The earlier GET /v1/audit was an admin call itself.
        assert_eq!(
            actions,
            ["identity.merge", "identity.split", "identity.rules", "segment.put", "segment.export", "trait.delete"],
            "{entries:#?}"
        );
        let admin_actor = entries[0]["actor"].as_str().unwrap().to_owned();
        for e in &entries {
            let text = e.to_string();
            for secret in [A_ADMIN, A_READ, A_WRITE, "tok_iso"] {
                assert!(!text.contains(secret), "no secret in the audit log: {text}");
            }
            assert!(e["actor"].as_str().is_some_and(|a| a.starts_with("token:")), "{e}");
            assert!(!e["path"].as_str().unwrap().contains('?'), "{e}");
        }
        assert_eq!(entries[0]["target"], json!(format!("{},{}", f.amy, f.cat)));
        assert_eq!(entries[0]["scope"], "admin");
        assert_eq!(entries[0]["status"], 200);
        assert_eq!(entries[1]["target"], json!(survivor));
        assert_eq!(entries[3]["target"], "iso_audited");
        assert_eq!(entries[4]["target"], SEGMENT);
        assert_eq!(entries[4]["scope"], "read");
        assert_eq!(entries[4]["request_id"], "req-export-1");
        assert_ne!(entries[4]["actor"], json!(admin_actor), "the read token exported");
        assert_eq!(entries[5]["status"], 403);
        assert_eq!(entries[5]["scope"], "admin");

        // Filters: action, actor, time, limit and the cursor.
        let merges = audit(&app, A_ADMIN, "?action=identity.merge").await;
        assert_eq!(merges.len(), 1, "{merges:?}");
        let by_reader = audit(&app, A_ADMIN, &format!("?actor={}", entries[4]["actor"].as_str().unwrap())).await;
        assert_eq!(by_reader.iter().map(|e| e["action"].clone()).collect::<Vec<_>>(), [json!("segment.export")]);
        let since = started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true).replace('+', "%2B");
        let recent = audit(&app, A_ADMIN, &format!("?since={since}&action=segment.put")).await;
        assert_eq!(recent.len(), 1, "only the segment defined after {since}: {recent:?}");
        let none = audit(&app, A_ADMIN, "?until=2000-01-01T00:00:00Z").await;
        assert!(none.is_empty(), "{none:?}");
        let (status, page) = app.get_as("/v1/audit?limit=2", Auth::Bearer(A_ADMIN)).await;
        assert_eq!(status, StatusCode::OK);
        let newest = page["items"].as_array().unwrap();
        assert_eq!(newest.len(), 2);
        assert!(newest[0]["seq"].as_i64() > newest[1]["seq"].as_i64(), "newest first");
        let cursor = page["next"]["before"].as_i64().expect("a next cursor");
        let older = audit(&app, A_ADMIN, &format!("?limit=2&before={cursor}")).await;
        assert!(older.iter().all(|e| e["seq"].as_i64().unwrap() < cursor));
        let (status, body) = app.get_as("/v1/audit?since=yesterday", Auth::Bearer(A_ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["field"], "since");
        let (status, _) = app.get_as("/v1/audit?limit=1001", Auth::Bearer(A_ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Reading the log needs admin, and was itself recorded.
        let (status, _) = app.get_as("/v1/audit", Auth::Bearer(A_READ)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!audit(&app, A_ADMIN, "?action=admin.read").await.is_empty());

        // B sees only its own log: none of A's actions, actors or targets.
        let b_entries = audit(&app, B_ADMIN, "?limit=1000").await;
        let b_text = serde_json::to_string(&b_entries).unwrap();
        assert!(b_entries.iter().all(|e| e["action"] == "admin.read"), "{b_text}");
        assert!(!b_text.contains(&admin_actor) && !b_text.contains(&f.amy), "{b_text}");

        // Append-only: the store refuses to change or remove an entry, on both backends.
        let store = &app.state.store;
        let (update, delete) = match store {
            cdp_domain::store::Store::Sqlite(s) => (
                sqlx::query("UPDATE audit_log SET actor = 'nobody'").execute(s.write_pool()).await.map(|_| ()),
                sqlx::query("DELETE FROM audit_log").execute(s.write_pool()).await.map(|_| ()),
            ),
            cdp_domain::store::Store::Postgres(s) => (
                sqlx::query("UPDATE audit_log SET actor = 'nobody'").execute(s.pool()).await.map(|_| ()),
                sqlx::query("DELETE FROM audit_log").execute(s.pool()).await.map(|_| ()),
            ),
        };
        assert!(update.unwrap_err().to_string().contains("append-only"));
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        let after = audit(&app, A_ADMIN, "?limit=1000").await;
        assert!(after.len() > entries.len() && after.iter().all(|e| e["actor"] != "nobody"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_workspace_is_limited_while_another_is_served() {
    on_each_backend("rate_limits", |backend| async move {
        let options = Options {
            rate_limits: Some((20, 10, 1.0)),
            ..options()
        };
        let app = spawn_app_with(backend, options).await;
        // A floods ingestion with batches of 5 and the API; B sends a few of each at the same moment.
        let flood_ingest = (0..60).map(|i| {
            let app = &app;
            async move {
                let batch: Vec<Value> = (0..5)
                    .map(|j| track("u-flood", "Flood", &format!("flood-{i}-{j}")))
                    .collect();
                let response = app
                    .request(Method::POST, "/v1/batch", Auth::Basic(A_KEY))
                    .json(&json!({"batch": batch}))
                    .send()
                    .await
                    .unwrap();
                let retry = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .cloned();
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, retry, body)
            }
        });
        let flood_api = (0..60).map(|_| {
            let app = &app;
            async move {
                call(app, Method::GET, "/v1/traits", Auth::Bearer(A_READ), None)
                    .await
                    .0
            }
        });
        let b_ingest = (0..10).map(|i| {
            let app = &app;
            async move {
                app.post_as(
                    "/v1/track",
                    Auth::Basic(B_KEY),
                    &track("u-calm", "Calm", &format!("calm-{i}")),
                )
                .await
                .0
            }
        });
        let b_api = (0..10).map(|_| {
            let app = &app;
            async move {
                call(app, Method::GET, "/v1/traits", Auth::Bearer(B_ADMIN), None)
                    .await
                    .0
            }
        });
        let (flood, flood_api, b_ingest, b_api) = tokio::join!(
            futures::future::join_all(flood_ingest),
            futures::future::join_all(flood_api),
            futures::future::join_all(b_ingest),
            futures::future::join_all(b_api),
        );
        assert!(
            b_ingest.iter().all(|s| *s == StatusCode::OK),
            "B's messages: {b_ingest:?}"
        );
        assert!(
            b_api.iter().all(|s| *s == StatusCode::OK),
            "B's reads: {b_api:?}"
        );
        let limited: Vec<_> = flood
            .iter()
            .filter(|(s, ..)| *s == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        let acknowledged = flood.iter().filter(|(s, ..)| *s == StatusCode::OK).count();
        assert!(
            !limited.is_empty(),
            "A's flood of 300 messages at 20/s was limited"
        );
        assert_eq!(
            limited.len() + acknowledged,
            flood.len(),
            "every answer is 200 or 429"
        );
        for (_, retry, body) in &limited {
            let seconds: u64 = retry
                .as_ref()
                .expect("Retry-After")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(seconds >= 1, "{seconds}");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert_eq!(body["error"]["field"], "ingest", "{body}");
        }
        assert!(
            flood_api.contains(&StatusCode::TOO_MANY_REQUESTS),
            "{flood_api:?}"
        );
        assert!(flood_api
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS));
        // Every acknowledged message of A is stored, and nothing of a refused request.
        assert_eq!(app.count_events_in("iso_a").await, 5 * acknowledged as i64);
        assert_eq!(app.count_events_in("iso_b").await, 10);
        // The client's retry passes once the budget refills.
        eventually("A's retry after Retry-After", || async {
            let (status, body) = app
                .post_as(
                    "/v1/track",
                    Auth::Basic(A_KEY),
                    &track("u-flood", "Flood", "flood-retry"),
                )
                .await;
            if status == StatusCode::OK {
                Ok(())
            } else {
                Err(format!("{status} {body}"))
            }
        })
        .await;
    })
    .await;
}
