//! The one error type of the HTTP edge: client mistakes become 4xx bodies naming the field and the reason;
//! infrastructure failures are logged and become opaque 500s.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cdp_domain::message::MessageError;
use serde_json::json;

#[derive(Debug)]
pub enum ApiError {
    /// A client error: status, stable code, field (may be empty) and a sentence.
    Client {
        status: StatusCode,
        code: &'static str,
        field: String,
        message: String,
    },
    /// Missing or wrong credentials.
    Unauthorized { message: String, basic: bool },
    /// The workspace spent its budget (`limit`: `ingest` or `api`); 429 with `Retry-After`.
    RateLimited {
        limit: &'static str,
        retry_after: std::time::Duration,
    },
    /// The database cannot be reached (`StoreError::is_unavailable`); 503 with `Retry-After`.
    Unavailable(String),
    /// A failure of ours; the cause is logged, never shown.
    Internal(String),
}

/// How long a client is told to wait while the database is out of reach.
pub const UNAVAILABLE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Marks a response answered 503 because the database could not be reached, for `outage::watch`.
#[derive(Debug, Clone, Copy)]
pub struct DatabaseUnreachable;

impl ApiError {
    pub fn bad_request(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError::Client {
            status: StatusCode::BAD_REQUEST,
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            field: String::new(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            field: String::new(),
            message: message.into(),
        }
    }

    /// A definition that reads what the catalog does not hold, or reads itself through it (409, the
    /// place in `field`): valid as written, refused as the catalog stands.
    pub fn definition_conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::CONFLICT,
            code: "invalid_definition",
            field: field.into(),
            message: message.into(),
        }
    }

    /// The request is valid but the state does not allow it (409).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::CONFLICT,
            code,
            field: String::new(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Client {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: String::new(),
            message: message.into(),
        }
    }

    pub fn rate_limited(limit: &'static str, retry_after: std::time::Duration) -> Self {
        ApiError::RateLimited { limit, retry_after }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    /// The database is out of reach: `cause` is logged, the client told to retry.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        ApiError::Unavailable(cause.to_string())
    }

    /// An sqlx error: 503 when the database is out of reach, else 500.
    pub fn from_sqlx(e: sqlx::Error) -> Self {
        if cdp_domain::store::is_connection_error(&e) {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }

    /// A refused message: 413 when it is too large, 400 otherwise.
    pub fn from_message(e: &MessageError) -> Self {
        let status = if e.code == "message_too_large" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::Client {
            status,
            code: e.code,
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

impl From<cdp_domain::store::StoreError> for ApiError {
    fn from(e: cdp_domain::store::StoreError) -> Self {
        if e.is_unavailable() {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

impl From<cdp_projections::ProjectionError> for ApiError {
    fn from(e: cdp_projections::ProjectionError) -> Self {
        use cdp_projections::ProjectionError;
        let unavailable = match &e {
            ProjectionError::Database(e) => cdp_domain::store::is_connection_error(e),
            ProjectionError::Store(e) => e.is_unavailable(),
            _ => false,
        };
        if unavailable {
            ApiError::unavailable(e)
        } else {
            ApiError::internal(e)
        }
    }
}

/// The JSON error body of the contract.
pub fn error_body(code: &str, field: &str, message: &str) -> serde_json::Value {
    json!({"error": {"code": code, "field": field, "message": message}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                code,
                field,
                message,
            } => (status, Json(error_body(code, &field, &message))).into_response(),
            ApiError::Unauthorized { message, basic } => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    Json(error_body("unauthorized", "authorization", &message)),
                )
                    .into_response();
                let challenge = if basic {
                    "Basic realm=\"cdp\""
                } else {
                    "Bearer realm=\"cdp\""
                };
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                response
            }
            ApiError::RateLimited { limit, retry_after } => {
                // Whole seconds, rounded up: a client waiting this long finds the budget refilled.
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let seconds = seconds.max(1);
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(error_body(
                        "rate_limited",
                        limit,
                        &format!(
                            "the workspace's {limit} rate limit is spent; retry after {seconds} s \
                             (nothing of this request was stored)"
                        ),
                    )),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response
            }
            ApiError::Unavailable(cause) => {
                tracing::warn!(%cause, "request refused: the database is out of reach");
                let seconds = UNAVAILABLE_RETRY_AFTER.as_secs().max(1);
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(error_body(
                        "unavailable",
                        "database",
                        &format!(
                            "the database cannot be reached; retry after {seconds} s (a retried \
                             message is stored once: messageId makes it idempotent)"
                        ),
                    )),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                response.extensions_mut().insert(DatabaseUnreachable);
                response
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(error_body(
                        "internal",
                        "",
                        "internal error; see the service log",
                    )),
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_a_503_with_retry_after_and_the_json_body() {
        let store = cdp_domain::store::StoreError::Database(sqlx::Error::PoolTimedOut);
        let response = ApiError::from(store).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert!(response.extensions().get::<DatabaseUnreachable>().is_some());
        let other = cdp_domain::store::StoreError::Database(sqlx::Error::RowNotFound);
        let response = ApiError::from(other).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
