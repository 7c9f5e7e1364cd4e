//! The edge's first two steps for every request, before any handler: a tracing span for it (every log
//! line the request causes carries its method, path and `x-request-id`), and the check of its path and
//! query, as body fields are checked: a value holding a NUL character (`%00`) is refused with a 400
//! naming it. PostgreSQL cannot store or compare such text (it would fail the query: a 500), SQLite
//! would answer differently: both refuse it here the same way.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;

/// The longest `x-request-id` carried into the logs, in characters.
const MAX_REQUEST_ID: usize = 64;

/// The middleware outermost of all: the request runs in its span ([`request_span`]); when it is
/// answered, the span records the status and a debug line says how long it took.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let span = request_span(&request);
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        tracing::Span::current().record("status", response.status().as_u16());
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "answered");
        response
    }
    .instrument(span)
    .await
}

/// The span of a request: method, path and the caller's request id (empty without one), and the
/// status once answered.
fn request_span(request: &Request) -> tracing::Span {
    let request_id: String = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_REQUEST_ID).collect())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        status = tracing::field::Empty,
    )
}

/// The middleware: the request goes on unless its path or a query value holds a NUL.
pub async fn refuse_nul(request: Request, next: Next) -> Response {
    match nul_field(request.uri().path(), request.uri().query()) {
        Some(field) => ApiError::bad_request(
            "invalid_value",
            field.clone(),
            format!("{field} holds a NUL character (%00)"),
        )
        .into_response(),
        None => next.run(request).await,
    }
}

/// The field a NUL was found in: `path`, a query parameter's name, or `query` when the name itself holds
/// one.
fn nul_field(path: &str, query: Option<&str>) -> Option<String> {
    if has_nul(path) {
        return Some("path".to_owned());
    }
    for pair in query.unwrap_or_default().split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if has_nul(name) {
            return Some("query".to_owned());
        }
        if has_nul(value) {
            return Some(name.to_owned());
        }
    }
    None
}

/// Whether percent-decoding `raw` gives a NUL (a raw NUL cannot be in a URI).
fn has_nul(raw: &str) -> bool {
    raw.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
        || raw.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::nul_field;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A log writer into memory, for reading back what was logged.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn what_a_request_logs_carries_its_method_path_and_request_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = axum::http::Request::post("/v1/batch?x=1")
                .header("x-request-id", format!("req-{}", "7".repeat(100)))
                .body(axum::body::Body::empty())
                .unwrap();
            let span = super::request_span(&request);
            let _inside = span.enter();
            tracing::info!("handled");
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let id = format!("req-{}", "7".repeat(60));
        assert!(
            logged.contains(&format!(
                "request{{method=POST path=/v1/batch request_id={id}}}: "
            )),
            "{logged}"
        );
        assert!(logged.contains("handled"), "{logged}");
        assert!(
            !logged.contains(&format!("{id}7")),
            "the id is cut at 64: {logged}"
        );
    }

    #[test]
    fn a_nul_is_named_by_where_it_is() {
        assert_eq!(nul_field("/v1/profiles/%00", None).as_deref(), Some("path"));
        assert_eq!(
            nul_field("/v1/profiles/lookup", Some("type=user_id&value=a%00b")).as_deref(),
            Some("value")
        );
        assert_eq!(
            nul_field("/v1/audit", Some("a%00=1")).as_deref(),
            Some("query")
        );
        assert_eq!(nul_field("/v1/audit", Some("actor=%2500&x")), None);
        assert_eq!(nul_field("/v1/profiles/p_1", Some("limit=100")), None);
        assert_eq!(nul_field("/", None), None);
    }
}
