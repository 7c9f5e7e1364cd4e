//! Checks every request's path and query at the edge, before any handler, as body fields are checked:
//! a value holding a NUL character (`%00`) is refused with a 400 naming it. PostgreSQL cannot store or
//! compare such text (it would fail the query: a 500), SQLite would answer differently: both refuse it
//! here the same way.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

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
