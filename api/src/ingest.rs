//! Ingestion, shared by HTTP and NATS: check every message, quarantine the refused ones with their reason,
//! append the rest through the group-commit appender, and answer only after both are committed.
//! The HTTP endpoints are Segment's Tracking API.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cdp_domain::event::NewEvent;
use cdp_domain::ident::{PhoneRegion, WorkspaceId};
use cdp_domain::message::{
    validate_in, Envelope, IdentifierFinding, MessageError, MessageKind, MAX_BATCH_BYTES,
};
use cdp_domain::store::{EventStore, QualityFinding, QuarantineEntry};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::auth::basic_write_key;
use crate::error::{error_body, ApiError};
use crate::metrics::SourceCounters;
use crate::AppState;

/// Where a message came from, for quarantine and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Http,
    Nats,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Http => "http",
            Source::Nats => "nats",
        }
    }
}

/// A refused message: its index in the request, why, and its text as received.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub index: usize,
    pub error: MessageError,
    pub raw: String,
}

/// A value an accepted message carried that is no identifier: the message's index in the request and
/// id, and the finding.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub index: usize,
    pub message_id: String,
    pub finding: IdentifierFinding,
}

/// The outcome of checking a request's messages.
#[derive(Debug, Default)]
pub struct Checked {
    pub events: Vec<NewEvent>,
    pub rejected: Vec<Rejection>,
    /// Values of accepted messages dropped as identifiers (kept in the message, marked invalid).
    pub dropped: Vec<Dropped>,
}

impl Checked {
    /// What the answer says about `dropped`: each field with its code and reason (and the message's
    /// index in a batch).
    pub fn dropped_json(&self, with_index: bool) -> Vec<Value> {
        self.dropped
            .iter()
            .map(|d| {
                let mut v = json!({"field": d.finding.field, "code": d.finding.code,
                                   "message": d.finding.reason});
                if with_index {
                    v["index"] = json!(d.index);
                }
                v
            })
            .collect()
    }
}

/// Checks each message text, phones read in `region`; messages without a `messageId` get a random UUID.
pub fn check<'a>(
    workspace: &WorkspaceId,
    region: PhoneRegion,
    messages: impl IntoIterator<Item = &'a str>,
    batch_sent_at: Option<&Value>,
    implied_kind: Option<MessageKind>,
    received_at: DateTime<Utc>,
) -> Checked {
    let envelope = Envelope {
        workspace,
        received_at,
        batch_sent_at,
        implied_kind,
    };
    let mut checked = Checked::default();
    for (index, raw) in messages.into_iter().enumerate() {
        let outcome = serde_json::from_str::<Value>(raw)
            .map_err(|e| MessageError::new("invalid_json", "", format!("message is not JSON: {e}")))
            .and_then(|value| {
                validate_in(value, &envelope, region, || {
                    uuid::Uuid::new_v4().to_string()
                })
            });
        match outcome {
            Ok(valid) => {
                for finding in valid.findings {
                    checked.dropped.push(Dropped {
                        index,
                        message_id: valid.event.message_id.clone(),
                        finding,
                    });
                }
                checked.events.push(valid.event);
            }
            Err(error) => checked.rejected.push(Rejection {
                index,
                error,
                raw: raw.to_owned(),
            }),
        }
    }
    checked
}

/// Quarantines the refused messages, appends the accepted events and records the data-quality findings
/// of their dropped identifiers; returns once all are committed.
pub async fn commit(
    state: &AppState,
    workspace: Option<&WorkspaceId>,
    checked: Checked,
    source: Source,
) -> Result<(), ApiError> {
    let received_at_ms = Utc::now().timestamp_millis();
    let counters: &SourceCounters = match source {
        Source::Http => &state.metrics.http,
        Source::Nats => &state.metrics.nats,
    };
    if !checked.rejected.is_empty() {
        let entries: Vec<QuarantineEntry> = checked
            .rejected
            .iter()
            .map(|r| quarantine_entry(workspace, source, received_at_ms, &r.error, &r.raw))
            .collect();
        state.store.quarantine(&entries).await?;
        counters
            .rejected
            .fetch_add(entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    if !checked.events.is_empty() {
        let n = checked.events.len() as u64;
        let started = Instant::now();
        state.appender.append(checked.events).await?;
        state.metrics.append_latency.observe(started.elapsed());
        counters
            .accepted
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        for waker in &state.wakers {
            waker.notify_one();
        }
    }
    if let (Some(workspace), false) = (workspace, checked.dropped.is_empty()) {
        let findings: Vec<QualityFinding> = checked
            .dropped
            .iter()
            .map(|d| QualityFinding {
                id: 0,
                workspace: workspace.as_str().to_owned(),
                message_id: d.message_id.clone(),
                field: d.finding.field.clone(),
                code: d.finding.code.to_owned(),
                reason: d.finding.reason.clone(),
                source: source.as_str().to_owned(),
                received_at_ms,
            })
            .collect();
        state.store.record_findings(&findings).await?;
        for d in &checked.dropped {
            state.metrics.findings.count(d.finding.code);
        }
    }
    Ok(())
}

pub fn quarantine_entry(
    workspace: Option<&WorkspaceId>,
    source: Source,
    received_at_ms: i64,
    error: &MessageError,
    raw: &str,
) -> QuarantineEntry {
    // PostgreSQL text cannot hold U+0000, which a body that is not JSON may carry.
    let mut payload = raw.replace('\0', "\u{FFFD}");
    if payload.len() > MAX_BATCH_BYTES {
        let mut cut = MAX_BATCH_BYTES;
        while !payload.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.truncate(cut);
    }
    QuarantineEntry {
        id: 0,
        workspace: workspace.map(|w| w.as_str().to_owned()),
        source: source.as_str().into(),
        received_at_ms,
        code: error.code.into(),
        field: error.field.clone(),
        reason: error.message.clone(),
        payload,
    }
}

#[cfg(test)]
mod tests;

pub fn router() -> Router<Arc<AppState>> {
    let mut router = Router::new().route("/v1/batch", post(batch));
    for kind in MessageKind::ALL {
        let endpoint = post(
            move |state: State<Arc<AppState>>, headers: HeaderMap, body: Body| {
                single(state, headers, body, kind)
            },
        );
        router = router.route(&format!("/v1/{}", kind.as_str()), endpoint);
    }
    router
}

/// Segment's answer, with the fields dropped as identifiers when there are any: still a 200, so that
/// Segment's and RudderStack's libraries, which log any other status as an error, stay quiet.
fn success(dropped: Vec<Value>) -> Response {
    let mut body = json!({"success": true});
    if !dropped.is_empty() {
        body["dropped_identifiers"] = Value::Array(dropped);
    }
    Json(body).into_response()
}

/// Reads the body, refusing more than the batch limit before or after gzip decompression.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "request body is larger than the limit of {MAX_BATCH_BYTES} bytes"
        ))
    };
    let raw = axum::body::to_bytes(body, MAX_BATCH_BYTES)
        .await
        .map_err(|_| too_large())?;
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(raw);
    }
    let mut decoded = Vec::with_capacity(raw.len() * 4);
    flate2::read::GzDecoder::new(&raw[..])
        .take(MAX_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_gzip",
                "body",
                format!("body is not valid gzip: {e}"),
            )
        })?;
    if decoded.len() > MAX_BATCH_BYTES {
        return Err(too_large());
    }
    Ok(Bytes::from(decoded))
}

/// Quarantines a body that could not be read as messages at all, then answers with `error`.
async fn refuse_body(
    state: &AppState,
    workspace: &WorkspaceId,
    error: MessageError,
    body: &[u8],
) -> Result<Response, ApiError> {
    let raw = String::from_utf8_lossy(body);
    let checked = Checked {
        events: Vec::new(),
        rejected: vec![Rejection {
            index: 0,
            error: error.clone(),
            raw: raw.into_owned(),
        }],
        dropped: Vec::new(),
    };
    commit(state, Some(workspace), checked, Source::Http).await?;
    Ok(ApiError::from_message(&error).into_response())
}

/// The span of an ingest request is at `debug`: the edge's request span already names it, and this is
/// the hottest path (a span costs a few per cent of a request there, BENCHMARKS.md).
#[tracing::instrument(name = "ingest.single", level = "debug", skip_all, fields(kind = kind.as_str()))]
async fn single(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
    kind: MessageKind,
) -> Response {
    single_inner(&state, &headers, body, kind)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn single_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    kind: MessageKind,
) -> Result<Response, ApiError> {
    let header_key = basic_write_key(headers);
    let bytes = read_body(headers, body).await?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        let workspace = state.workspace_for_write_key(header_key.as_deref()).await?;
        state.limits.ingest.take(&workspace, 1)?;
        let error = MessageError::new("invalid_json", "", "body is not UTF-8 JSON");
        return refuse_body(state, &workspace, error, &bytes).await;
    };
    let parsed: Result<Value, _> = serde_json::from_str(text);
    let body_key = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("writeKey"))
        .and_then(Value::as_str);
    let workspace = state
        .workspace_for_write_key(header_key.as_deref().or(body_key))
        .await?;
    // Counted before anything is stored (a refusal is quarantined): a 429 leaves no trace to retry over.
    state.limits.ingest.take(&workspace, 1)?;
    if let Err(e) = parsed {
        let error = MessageError::new("invalid_json", "", format!("body is not JSON: {e}"));
        return refuse_body(state, &workspace, error, &bytes).await;
    }
    let region = state.phone_region(&workspace);
    let checked = check(&workspace, region, [text], None, Some(kind), Utc::now());
    let refusal = checked.rejected.first().map(|r| r.error.clone());
    let dropped = checked.dropped_json(false);
    commit(state, Some(&workspace), checked, Source::Http).await?;
    match refusal {
        Some(error) => Err(ApiError::from_message(&error)),
        None => Ok(success(dropped)),
    }
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default, rename = "sentAt")]
    sent_at: Option<Value>,
    #[serde(default, rename = "writeKey")]
    write_key: Option<String>,
}

#[derive(Deserialize)]
struct KeyOnly {
    #[serde(default, rename = "writeKey")]
    write_key: Option<String>,
}

#[tracing::instrument(name = "ingest.batch", level = "debug", skip_all)]
async fn batch(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    batch_inner(&state, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn batch_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let header_key = basic_write_key(headers);
    let bytes = read_body(headers, body).await?;
    let parsed: Result<BatchBody<'_>, _> = serde_json::from_slice(&bytes);
    let body_key = match &parsed {
        Ok(b) => b.write_key.clone(),
        Err(_) => serde_json::from_slice::<KeyOnly>(&bytes)
            .ok()
            .and_then(|k| k.write_key),
    };
    let workspace = state
        .workspace_for_write_key(header_key.as_deref().or(body_key.as_deref()))
        .await?;
    // Every message of the batch counts, before anything is stored: a 429 refuses the batch whole.
    let messages = parsed.as_ref().map_or(1, |b| b.batch.len());
    state.limits.ingest.take(&workspace, messages)?;
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            let (code, message) = if serde_json::from_slice::<Value>(&bytes).is_ok() {
                (
                    "invalid_batch",
                    format!("batch must be an array of messages: {e}"),
                )
            } else {
                ("invalid_json", format!("body is not JSON: {e}"))
            };
            let error = MessageError::new(code, "batch", message);
            return refuse_body(state, &workspace, error, &bytes).await;
        }
    };
    let checked = check(
        &workspace,
        state.phone_region(&workspace),
        body.batch.iter().map(|m| m.get()),
        body.sent_at.as_ref(),
        None,
        Utc::now(),
    );
    let accepted = checked.events.len();
    let rejected: Vec<Value> = checked
        .rejected
        .iter()
        .map(|r| {
            json!({"index": r.index, "code": r.error.code, "field": r.error.field, "message": r.error.message})
        })
        .collect();
    let first = checked.rejected.first().map(|r| (r.index, r.error.clone()));
    let dropped = checked.dropped_json(true);
    commit(state, Some(&workspace), checked, Source::Http).await?;
    let Some((index, error)) = first else {
        return Ok(success(dropped));
    };
    let field = if error.field.is_empty() {
        format!("batch[{index}]")
    } else {
        format!("batch[{index}].{}", error.field)
    };
    let mut body = error_body(
        "invalid_messages",
        &field,
        &format!(
            "{} of {} messages were refused and quarantined (first: {}); the others were stored",
            rejected.len(),
            rejected.len() + accepted,
            error.message
        ),
    );
    body["success"] = json!(false);
    body["accepted"] = json!(accepted);
    body["rejected"] = Value::Array(rejected);
    if !dropped.is_empty() {
        body["dropped_identifiers"] = Value::Array(dropped);
    }
    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
}
