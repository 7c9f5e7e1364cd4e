//! The marketer's web console: `GET /` and its static assets (embedded in the binary, served under a
//! content-hashed prefix so they can be cached for good), and the two small read endpoints only the
//! console needs — who the signed-in token is (`/v1/console/session`) and each segment's size per day
//! from the membership history (`/v1/console/segment-sizes`).
//!
//! The page needs no credentials to load: it is static. Every call it makes to the API carries the
//! Bearer token the user typed, kept in the browser's session storage only. The Content-Security-Policy
//! allows scripts, styles and connections from this origin only, and the one inline script (the import
//! map that names the vendored Preact and htm modules) by its SHA-256.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use cdp_domain::store::Store;
use cdp_domain::workspace::Scope;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::AppState;

/// The page, with `__ASSETS__` standing for the assets' prefix.
const INDEX: &str = include_str!("../console/index.html");

/// Every asset: its path under the prefix, its content type and its bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("../console/app.js")),
    ("api.js", JS, include_bytes!("../console/api.js")),
    ("i18n.js", JS, include_bytes!("../console/i18n.js")),
    ("ui.js", JS, include_bytes!("../console/ui.js")),
    ("customer.js", JS, include_bytes!("../console/customer.js")),
    ("segments.js", JS, include_bytes!("../console/segments.js")),
    ("catalog.js", JS, include_bytes!("../console/catalog.js")),
    ("quality.js", JS, include_bytes!("../console/quality.js")),
    ("live.js", JS, include_bytes!("../console/live.js")),
    ("app.css", CSS, include_bytes!("../console/app.css")),
    ("icon.svg", SVG, include_bytes!("../console/icon.svg")),
    (
        "vendor/preact.module.js",
        JS,
        include_bytes!("../console/vendor/preact.module.js"),
    ),
    (
        "vendor/hooks.module.js",
        JS,
        include_bytes!("../console/vendor/hooks.module.js"),
    ),
    (
        "vendor/htm.module.js",
        JS,
        include_bytes!("../console/vendor/htm.module.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The page as served, the assets' prefix and the policy, computed once.
struct Built {
    prefix: String,
    html: String,
    csp: String,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let mut all = Sha256::new();
    for (path, _, bytes) in ASSETS {
        all.update(path.as_bytes());
        all.update(bytes);
    }
    let digest = all.finalize();
    let version: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let prefix = format!("/console/{version}");
    let html = INDEX.replace("__ASSETS__", &prefix);
    let csp = policy(&html);
    Built { prefix, html, csp }
});

/// The Content-Security-Policy for `html`: this origin only, plus the inline import map by its hash.
fn policy(html: &str) -> String {
    let open = "<script type=\"importmap\">";
    let inline = html
        .split_once(open)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map(|(map, _)| map);
    let hash = inline.map(|map| {
        let digest = Sha256::digest(map.as_bytes());
        format!(
            " 'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    });
    format!(
        "default-src 'none'; script-src 'self'{}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash.unwrap_or_default()
    )
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/console/{version}/{*path}", get(asset))
        .route("/v1/console/session", get(session))
        .route("/v1/console/segment-sizes", get(segment_sizes))
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The page: always revalidated (it names the current assets' prefix).
async fn index() -> Response {
    let built = &*BUILT;
    let mut response = built.html.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(csp) = HeaderValue::from_str(&built.csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    security_headers(headers);
    response
}

/// An asset. Under the current prefix it never changes, so it is cached for a year; under an older one
/// (a page loaded before an upgrade) it is served as it is now, not cached.
async fn asset(Path((version, path)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .ok_or_else(|| ApiError::not_found(format!("no console asset {path:?}")))?;
    let current = BUILT.prefix.ends_with(&format!("/{version}"));
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if current {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    security_headers(headers);
    Ok(response)
}

/// The signed-in token: its workspace and scopes, so the console shows editing controls only to a token
/// that may use them (the API refuses the others anyway).
async fn session(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    // The extractor has checked the token; its scopes come from the same (cached) lookup.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    let credential = state
        .credential(token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized {
            message: "unknown token".into(),
            basic: false,
        })?;
    let scopes: Vec<&str> = [Scope::Read, Scope::Write, Scope::Admin]
        .into_iter()
        .filter(|s| credential.allows(*s))
        .map(Scope::as_str)
        .collect();
    Ok(Json(json!({
        "workspace": principal.workspace,
        "scopes": scopes,
    })))
}

#[derive(Deserialize)]
struct SizesQuery {
    days: Option<i64>,
}

const DAY_MS: i64 = 86_400_000;

/// Each segment's members at the end of each of the last `days` UTC days (default 30, at most 366),
/// summed from every enter and exit of the membership history.
async fn segment_sizes(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Query(q): Query<SizesQuery>,
) -> Result<Json<Value>, ApiError> {
    principal.require(Scope::Read)?;
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request(
            "invalid_value",
            "days",
            "days must be between 1 and 366",
        ));
    }
    let rows = daily_changes(&state.store, &principal.workspace)
        .await
        .map_err(ApiError::internal)?;
    let today = chrono::Utc::now().timestamp_millis().div_euclid(DAY_MS);
    Ok(Json(sizes_json(&rows, today, days)))
}

/// `(segment, day since the epoch, entered minus exited that day)`, in segment and day order.
async fn daily_changes(
    store: &Store,
    workspace: &str,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    match store {
        Store::Sqlite(s) => {
            sqlx::query_as(
                "SELECT segment, at / 86400000 AS day, SUM(CASE WHEN entered THEN 1 ELSE -1 END) \
                 FROM segment_history WHERE workspace = ? GROUP BY segment, day ORDER BY segment, day",
            )
            .bind(workspace)
            .fetch_all(s.read_pool())
            .await
        }
        Store::Postgres(s) => {
            sqlx::query_as(
                "SELECT segment, at / 86400000 AS day, SUM(CASE WHEN entered THEN 1 ELSE -1 END)::BIGINT \
                 FROM segment_history WHERE workspace = $1 GROUP BY segment, day ORDER BY segment, day",
            )
            .bind(workspace)
            .fetch_all(s.pool())
            .await
        }
    }
}

/// The running sums of `rows` as one series per segment over the `days` days up to `today`.
fn sizes_json(rows: &[(String, i64, i64)], today: i64, days: i64) -> Value {
    let first = today - days + 1;
    let mut series: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut before: BTreeMap<&str, i64> = BTreeMap::new();
    for (segment, day, delta) in rows {
        let points = series
            .entry(segment.as_str())
            .or_insert_with(|| vec![0; days as usize]);
        if *day < first {
            *before.entry(segment.as_str()).or_default() += delta;
        } else if *day <= today {
            points[(day - first) as usize] += delta;
        }
    }
    let dates: Vec<String> = (first..=today)
        .map(|d| {
            chrono::DateTime::from_timestamp_millis(d * DAY_MS)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        })
        .collect();
    let items: Vec<Value> = series
        .into_iter()
        .map(|(segment, deltas)| {
            let mut size = before.get(segment).copied().unwrap_or(0);
            let sizes: Vec<i64> = deltas
                .iter()
                .map(|d| {
                    size += d;
                    size
                })
                .collect();
            json!({"segment": segment, "sizes": sizes})
        })
        .collect();
    json!({"dates": dates, "items": items})
}

/// The console's endpoints for `/openapi.json`.
pub(crate) fn openapi_paths(paths: &mut serde_json::Map<String, Value>) {
    paths.insert(
        "/".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "The marketer's web console (static; every call it makes carries the Bearer token typed into it)",
            "responses": {"200": {"description": "`text/html`."}},
        }}),
    );
    paths.insert(
        "/v1/console/session".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "The calling token's workspace and scopes (`read`, `write`, `admin`: every scope it allows)",
            "security": [{"bearer": ["read"]}],
            "responses": crate::openapi::read_responses("`workspace` and `scopes`."),
        }}),
    );
    paths.insert(
        "/v1/console/segment-sizes".into(),
        json!({"get": {
            "tags": ["console"],
            "summary": "Each segment's members at the end of each of the last `days` UTC days, from the membership history",
            "security": [{"bearer": ["read"]}],
            "parameters": [{"name": "days", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 366}}],
            "responses": crate::openapi::read_responses("`dates` and `items` (`segment`, `sizes`, one per date)."),
        }}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_import_map_inline() {
        let built = &*BUILT;
        assert!(built.html.contains(&format!("{}/app.js", built.prefix)));
        assert!(!built.html.contains("__ASSETS__"));
        let map = built
            .html
            .split_once("<script type=\"importmap\">")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(map, _)| map)
            .expect("the page has an import map");
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map));
        assert!(built.csp.contains(&format!("'sha256-{hash}'")));
        assert!(built
            .csp
            .starts_with("default-src 'none'; script-src 'self' 'sha256-"));
        assert!(!built.csp.contains("unsafe"));
    }

    #[test]
    fn segment_sizes_are_running_sums_per_day() {
        let rows = vec![
            ("a".to_owned(), 7, 5),
            ("a".to_owned(), 9, 2),
            ("a".to_owned(), 10, -1),
            ("b".to_owned(), 10, 3),
        ];
        let body = sizes_json(&rows, 10, 3);
        assert_eq!(body["dates"].as_array().unwrap().len(), 3);
        assert_eq!(body["items"][0]["segment"], "a");
        assert_eq!(body["items"][0]["sizes"], json!([5, 7, 6]));
        assert_eq!(body["items"][1]["sizes"], json!([0, 0, 3]));
    }
}
