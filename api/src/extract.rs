//! The edge's own extractors for query strings and path segments: axum's answer a malformed value with
//! `text/plain` ("Failed to deserialize query string: …"); these answer the contract's JSON error body
//! naming the parameter, like every other refusal.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A query string deserialised into `T`; a 400 `invalid_query` naming the parameter otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    let text = rejection.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    // serde_path_to_error writes `field: reason` when it knows the field.
    let (field, reason) = match detail.split_once(": ") {
        Some((field, reason))
            if !field.is_empty()
                && field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c)) =>
        {
            (field.to_owned(), reason.to_owned())
        }
        _ => ("query".to_owned(), detail.to_owned()),
    };
    ApiError::bad_request(
        "invalid_query",
        field.clone(),
        format!("query parameter {field}: {reason}"),
    )
}

/// Path parameters deserialised into `T`; a 400 `invalid_path` otherwise (a segment that is not
/// UTF-8 once percent-decoded, say).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}

/// A page size: `default` when absent, else between 1 and `max` — a 400 naming `limit` otherwise (the
/// OpenAPI document says so; a value out of range is the caller's mistake, not something to guess).
pub fn page_limit(limit: Option<impl Into<i64>>, default: u32, max: u32) -> Result<u32, ApiError> {
    let Some(limit) = limit.map(Into::into) else {
        return Ok(default);
    };
    match u32::try_from(limit) {
        Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "limit",
            format!("limit must be between 1 and {max}"),
        )),
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request("invalid_path", "path", rejection.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use axum::response::IntoResponse;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Page {
        limit: Option<u32>,
        before: Option<i64>,
    }

    async fn query(uri: &str) -> Result<Query<Page>, ApiError> {
        let (mut parts, ()) = Request::builder().uri(uri).body(()).unwrap().into_parts();
        Query::<Page>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn a_bad_query_value_is_the_json_error_naming_the_parameter() {
        assert!(query("/x?limit=5&before=-1").await.is_ok());
        let response = query("/x?limit=ten").await.unwrap_err().into_response();
        assert_eq!(response.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "application/json"
        );
        let body = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_query");
        assert_eq!(body["error"]["field"], "limit", "{body}");
    }
}
