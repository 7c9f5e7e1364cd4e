//! The marketer's web console: `GET /` and its static assets (embedded in the binary, served under a
//! content-hashed prefix so they can be cached for good), and the two small read endpoints only the
//! console needs — who the signed-in token is (`/v1/console/session`) and each segment's size per day
//! from the membership history (`/v1/console/segment-sizes`).
//!
//! The page needs no credentials to load: it is static. Every call it makes to the API carries the
//! Bearer token the user typed, kept in the browser's session storage only. The Content-Security-Policy
//! allows scripts, styles and connections from this origin only, and the one inline script (the import
//! map that names the vendored Preact and htm modules) by its SHA-256.

use std::sync::{Arc, LazyLock};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use cdp_domain::workspace::Scope;
use cdp_projections::catalog::{self, DAY_MS, SEGMENT};
use chrono::Utc;
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
#[tracing::instrument(name = "console.index", skip_all)]
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
#[tracing::instrument(name = "console.asset", skip_all)]
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
#[tracing::instrument(name = "console.session", skip_all, fields(workspace = %principal.workspace))]
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
        "workspace": principal.workspace.as_str(),
        "scopes": scopes,
    })))
}

#[derive(Deserialize)]
struct SizesQuery {
    days: Option<i64>,
}

/// Each segment's members at the end of each of the last `days` UTC days (default 30, at most 366):
/// its members now (as `GET /v1/segments` counts them), less the enters and more the exits recorded
/// after each day. Only those days' history is read, one range of `segment_history_by_segment` per
/// segment, so the answer costs what changed in the window, not the whole history (which only grows).
#[tracing::instrument(name = "console.segment_sizes", skip_all, fields(workspace = %principal.workspace))]
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
    let ws = &principal.workspace;
    let today = Utc::now().timestamp_millis().div_euclid(DAY_MS);
    let first = today - days + 1;
    let now = crate::segments::member_counts(&state, ws).await?;
    let mut series = Vec::new();
    for d in catalog::definitions(&state.store, ws, SEGMENT).await? {
        let changes =
            catalog::segment_changes_since(&state.store, ws, &d.name, first * DAY_MS).await?;
        let members = now.get(&d.name).copied().unwrap_or(0);
        series.push(Series {
            segment: d.name,
            members,
            changes,
        });
    }
    Ok(Json(sizes_json(&series, today, days)))
}

/// What one segment's sizes over time are computed from.
struct Series {
    segment: String,
    /// Its members now.
    members: i64,
    /// `(day since the epoch, enters less exits that day)` from the window's first day on.
    changes: Vec<(i64, i64)>,
}

/// One series of sizes per segment over the `days` days up to `today`: the last day's size is the
/// members now, each earlier day's the next day's less that day's change. A change dated after
/// `today` (another instance's clock) counts as today's.
fn sizes_json(series: &[Series], today: i64, days: i64) -> Value {
    let first = today - days + 1;
    let dates: Vec<String> = (first..=today)
        .map(|d| {
            chrono::DateTime::from_timestamp_millis(d * DAY_MS)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default()
        })
        .collect();
    let items: Vec<Value> = series
        .iter()
        .map(
            |Series {
                 segment,
                 members,
                 changes,
             }| {
                let mut deltas = vec![0i64; days as usize];
                for (day, delta) in changes {
                    if *day >= first {
                        deltas[(day.min(&today) - first) as usize] += delta;
                    }
                }
                let mut sizes = vec![0i64; days as usize];
                let mut size = *members;
                for i in (0..days as usize).rev() {
                    // Erased profiles leave the members but not the history: never below none.
                    sizes[i] = size.max(0);
                    size -= deltas[i];
                }
                json!({"segment": segment, "sizes": sizes})
            },
        )
        .collect();
    json!({"dates": dates, "items": items})
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
    fn segment_sizes_are_the_members_now_less_each_later_change() {
        let series = |segment: &str, members, changes| Series {
            segment: segment.to_owned(),
            members,
            changes,
        };
        let series = vec![
            // 6 members now: +2 on day 9, -1 on day 10 (the changes before the window are not read).
            series("a", 6, vec![(9, 2), (10, -1)]),
            // 3 members now, all entered on day 10; one change dated tomorrow counts as today's.
            series("b", 3, vec![(10, 2), (11, 1)]),
            // Members now that no change in the window explains: the same every day.
            series("c", 4, vec![]),
        ];
        let body = sizes_json(&series, 10, 3);
        assert_eq!(
            body["dates"],
            json!(["1970-01-09", "1970-01-10", "1970-01-11"])
        );
        assert_eq!(body["items"][0]["segment"], "a");
        assert_eq!(body["items"][0]["sizes"], json!([5, 7, 6]));
        assert_eq!(body["items"][1]["sizes"], json!([0, 0, 3]));
        assert_eq!(body["items"][2]["sizes"], json!([4, 4, 4]));
    }
}
