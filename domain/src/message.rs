//! Segment Tracking API messages: parsing and validation into events, with clock-skew correction.
//!
//! `validate` is pure: the arrival time and the id generator for messages without a `messageId` come in
//! through [`Envelope`]. Every refusal names the field and the reason.
//!
//! A message is refused only when it means nothing (not an object, no `userId` or `anonymousId`, no event
//! name on a track, an absurd timestamp, over the size limit). An e-mail or phone that is no usable
//! identifier (`"N/A"`, `"0000000"`, `"ann@shop"`) does not refuse it: the value is kept in its place as
//! `{"value": <as sent>, "invalid": <code>}` — which identity extraction, reading only strings and
//! numbers, never takes as an identifier — and reported as an [`IdentifierFinding`].

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

/// The type of a message, whose home is the stored form (`event`): validation produces it.
pub use crate::event::MessageKind;
use crate::event::NewEvent;
use crate::ident::{Email, InvalidIdentifier, Phone, PhoneRegion};
use crate::identity::rules::is_blocked_by_default;

/// Segment's limit for one message, measured on its normalised JSON.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Segment's limit for one request body (after decompression).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// How far in the future a (corrected) timestamp may lie.
pub const MAX_FUTURE: Duration = Duration::hours(24);
const MAX_ID_CHARS: usize = 256;
const MAX_NAME_CHARS: usize = 256;

/// Why a message was refused: the field (a dotted path, empty for the whole message), a stable code and
/// a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MessageError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl MessageError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A value of a message that was kept but is no identifier: where (`traits.phone`), why (a stable code:
/// `not_a_phone`, `placeholder`, `no_area_code`, `invalid_number`, `not_an_email`, `invalid_type`,
/// `invalid_value`), and a sentence that never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierFinding {
    pub field: String,
    pub code: &'static str,
    pub reason: String,
}

impl IdentifierFinding {
    fn new(field: impl Into<String>, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            reason: reason.into(),
        }
    }

    fn from_invalid(field: String, invalid: InvalidIdentifier) -> Self {
        Self::new(field, invalid.code, invalid.reason)
    }
}

/// A message accepted as an event, with what it carried that is no identifier.
#[derive(Debug, Clone)]
pub struct Validated {
    pub event: NewEvent,
    pub findings: Vec<IdentifierFinding>,
}

/// The key of the object an invalid identifier value is kept in, beside `value`.
pub const INVALID_KEY: &str = "invalid";

/// The value as sent and the finding's code, when `value` is what validation keeps in place of an
/// invalid identifier.
pub fn invalid_identifier(value: &Value) -> Option<(&Value, &str)> {
    let object = value.as_object()?;
    if object.len() != 2 {
        return None;
    }
    Some((object.get("value")?, object.get(INVALID_KEY)?.as_str()?))
}

fn kept_invalid(value: Value, code: &str) -> Value {
    let mut object = Map::new();
    object.insert("value".into(), value);
    object.insert(INVALID_KEY.into(), Value::String(code.into()));
    Value::Object(object)
}

/// What the edge knows about a message besides its JSON.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub workspace: &'a str,
    pub received_at: DateTime<Utc>,
    /// The `sentAt` of the enclosing batch, used when the message has none of its own.
    pub batch_sent_at: Option<&'a Value>,
    /// The type implied by the endpoint (`/v1/track` → track); `None` for `/v1/batch` and NATS.
    pub implied_kind: Option<MessageKind>,
}

/// [`validate_in`] for a workspace of the default phone region, for callers that keep no findings (the
/// engine's tests and tools building logs); the edge and `cdp backfill` call [`validate_in`].
pub fn validate(
    value: Value,
    envelope: &Envelope<'_>,
    new_message_id: impl FnOnce() -> String,
) -> Result<NewEvent, MessageError> {
    validate_in(value, envelope, PhoneRegion::default(), new_message_id).map(|v| v.event)
}

/// Validates one message and turns it into an event, phones read in `region`. `new_message_id` is
/// called only when the message carries no `messageId`.
pub fn validate_in(
    value: Value,
    envelope: &Envelope<'_>,
    region: PhoneRegion,
    new_message_id: impl FnOnce() -> String,
) -> Result<Validated, MessageError> {
    let mut findings = Vec::new();
    let Value::Object(mut msg) = value else {
        return Err(MessageError::new(
            "not_an_object",
            "",
            "a message must be a JSON object",
        ));
    };
    // The write key is a secret: it authenticates the request and is never stored.
    msg.remove("writeKey");

    let kind = match (msg.get("type"), envelope.implied_kind) {
        (None | Some(Value::Null), Some(kind)) => kind,
        (None | Some(Value::Null), None) => {
            return Err(MessageError::new(
                "missing_field",
                "type",
                "type is required",
            ))
        }
        (Some(Value::String(raw)), implied) => {
            let kind = MessageKind::parse(raw).ok_or_else(|| {
                MessageError::new(
                    "invalid_value",
                    "type",
                    format!(
                        "type {raw:?} is not one of track, identify, page, screen, group, alias"
                    ),
                )
            })?;
            if implied.is_some_and(|implied| implied != kind) {
                return Err(MessageError::new(
                    "invalid_value",
                    "type",
                    format!("type {raw:?} was sent to the endpoint of another type"),
                ));
            }
            kind
        }
        (Some(_), _) => return Err(wrong_type("type", "a string")),
    };
    msg.insert("type".into(), Value::String(kind.as_str().into()));

    let user_id = take_id(&mut msg, "userId")?;
    let anonymous_id = take_id(&mut msg, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MessageError::new(
            "missing_field",
            "userId",
            "userId or anonymousId is required",
        ));
    }
    for (field, id) in [("userId", &user_id), ("anonymousId", &anonymous_id)] {
        if id.as_deref().is_some_and(is_blocked_by_default) {
            findings.push(IdentifierFinding::new(
                field,
                "placeholder",
                "a placeholder (null, undefined, 0, -1, anonymous, NaN), never an identifier",
            ));
        }
    }

    for field in ["context", "properties", "traits", "integrations"] {
        match msg.get(field) {
            None | Some(Value::Object(_)) => {}
            Some(Value::Null) => {
                msg.remove(field);
            }
            Some(_) => return Err(wrong_type(field, "an object")),
        }
    }
    check_external_ids(&mut msg, region, &mut findings);
    normalise_identifier_traits(&mut msg, region, &mut findings);

    let name = match kind {
        MessageKind::Track => Some(required_text(&msg, "event")?),
        MessageKind::Page | MessageKind::Screen => optional_text(&msg, "name")?,
        MessageKind::Group => {
            take_id(&mut msg, "groupId")?.ok_or_else(|| {
                MessageError::new("missing_field", "groupId", "groupId is required for group")
            })?;
            None
        }
        MessageKind::Alias => {
            take_id(&mut msg, "previousId")?.ok_or_else(|| {
                MessageError::new(
                    "missing_field",
                    "previousId",
                    "previousId is required for alias",
                )
            })?;
            if user_id.is_none() {
                return Err(MessageError::new(
                    "missing_field",
                    "userId",
                    "userId is required for alias",
                ));
            }
            None
        }
        MessageKind::Identify | MessageKind::Operator => None,
    };

    let message_id = match take_id(&mut msg, "messageId")? {
        Some(id) => id,
        None => {
            let id = new_message_id();
            msg.insert("messageId".into(), Value::String(id.clone()));
            id
        }
    };

    let event_time = correct_timestamp(&mut msg, envelope)?;

    // serde_json's writer, not `Display`: the formatting machinery costs a fifth of ingestion's CPU.
    let payload = serde_json::to_string(&Value::Object(msg))
        .map_err(|e| MessageError::new("invalid_json", "", e.to_string()))?;
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::new(
            "message_too_large",
            "",
            format!(
                "message is {} bytes, more than the limit of {MAX_MESSAGE_BYTES} bytes",
                payload.len()
            ),
        ));
    }

    let event = NewEvent {
        workspace: envelope.workspace.to_owned(),
        message_id,
        kind,
        name,
        user_id,
        anonymous_id,
        event_time,
        received_at: envelope.received_at,
        payload,
    };
    Ok(Validated { event, findings })
}

fn wrong_type(field: &str, expected: &str) -> MessageError {
    MessageError::new("invalid_type", field, format!("{field} must be {expected}"))
}

/// Reads an id field that Segment allows as a string or a number, normalises it to a string in place,
/// and returns it; empty strings count as absent.
fn take_id(msg: &mut Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    let id = match msg.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(wrong_type(field, "a string or a number")),
    };
    if let Some(id) = &id {
        refuse_nul(field, id)?;
        if id.chars().count() > MAX_ID_CHARS {
            return Err(MessageError::new(
                "invalid_value",
                field,
                format!("{field} is longer than {MAX_ID_CHARS} characters"),
            ));
        }
        msg.insert(field.to_owned(), Value::String(id.clone()));
    } else {
        msg.remove(field);
    }
    Ok(id)
}

/// Ids and names are stored in columns of their own, and PostgreSQL text cannot hold U+0000.
fn refuse_nul(field: &str, value: &str) -> Result<(), MessageError> {
    if value.contains('\0') {
        return Err(MessageError::new(
            "invalid_value",
            field,
            format!("{field} must not contain NUL characters"),
        ));
    }
    Ok(())
}

fn optional_text(msg: &Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    match msg.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_NAME_CHARS => {
            refuse_nul(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(MessageError::new(
            "invalid_value",
            field,
            format!("{field} is longer than {MAX_NAME_CHARS} characters"),
        )),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

fn required_text(msg: &Map<String, Value>, field: &str) -> Result<String, MessageError> {
    match optional_text(msg, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(MessageError::new(
            "missing_field",
            field,
            format!("{field} is required"),
        )),
    }
}

/// `context.externalIds[]` entries are `{id, type}`: an entry that is not one is reported and left as it
/// is (extraction skips it); an `email` or `phone` id is normalised as in traits, or kept as invalid.
fn check_external_ids(
    msg: &mut Map<String, Value>,
    region: PhoneRegion,
    findings: &mut Vec<IdentifierFinding>,
) {
    let Some(ids) = msg
        .get_mut("context")
        .and_then(|c| c.get_mut("externalIds"))
    else {
        return;
    };
    let Value::Array(ids) = ids else {
        findings.push(IdentifierFinding::new(
            "context.externalIds",
            "invalid_type",
            "context.externalIds must be an array of {id, type}",
        ));
        return;
    };
    for (i, entry) in ids.iter_mut().enumerate() {
        let mut usable = true;
        for key in ["id", "type"] {
            let ok = match entry.get(key) {
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(Value::Number(_)) => key == "id",
                _ => false,
            };
            if !ok {
                usable = false;
                findings.push(IdentifierFinding::new(
                    format!("context.externalIds[{i}].{key}"),
                    "invalid_value",
                    format!("context.externalIds[{i}].{key} must be a non-empty string"),
                ));
            }
        }
        if !usable {
            continue;
        }
        let id_type = entry["type"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_lowercase();
        if id_type == "email" || id_type == "phone" {
            if let Some(id) = entry.get_mut("id") {
                let field = format!("context.externalIds[{i}].id");
                normalise_identifier(id, &id_type, field, region, findings);
            }
        }
    }
}

/// Emails and phones in traits are identifiers: each is normalised in place (a phone to E.164, `+` and
/// digits) or, when it is no usable identifier, kept as `{"value", "invalid"}` and reported, so that a
/// typo never joins the wrong customer and the message is still the customer's.
fn normalise_identifier_traits(
    msg: &mut Map<String, Value>,
    region: PhoneRegion,
    findings: &mut Vec<IdentifierFinding>,
) {
    for section in ["traits", "context"] {
        let traits = match section {
            "traits" => msg.get_mut("traits"),
            _ => msg.get_mut("context").and_then(|c| c.get_mut("traits")),
        };
        let Some(Value::Object(traits)) = traits else {
            continue;
        };
        let prefix = if section == "traits" {
            "traits"
        } else {
            "context.traits"
        };
        for id_type in ["email", "phone"] {
            if let Some(value) = traits.get_mut(id_type) {
                let field = format!("{prefix}.{id_type}");
                normalise_identifier(value, id_type, field, region, findings);
            }
        }
    }
}

/// One email or phone value, in place: normalised, left alone when null or empty (no value), or kept as
/// invalid with a finding.
fn normalise_identifier(
    value: &mut Value,
    id_type: &str,
    field: String,
    region: PhoneRegion,
    findings: &mut Vec<IdentifierFinding>,
) {
    let text = match &*value {
        Value::Null => return,
        Value::String(s) if s.trim().is_empty() => return,
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            findings.push(IdentifierFinding::new(
                field,
                "invalid_type",
                format!("{id_type} must be a string"),
            ));
            *value = kept_invalid(value.take(), "invalid_type");
            return;
        }
    };
    let normalised = if id_type == "email" {
        Email::parse_strict(&text).map(|e| e.as_str().to_owned())
    } else {
        Phone::parse_in(&text, region).map(|p| p.e164())
    };
    match normalised {
        Ok(normalised) => *value = Value::String(normalised),
        Err(invalid) => {
            let code = invalid.code;
            findings.push(IdentifierFinding::from_invalid(field, invalid));
            *value = kept_invalid(value.take(), code);
        }
    }
}

fn parse_time(value: &Value, field: &str) -> Result<Option<DateTime<Utc>>, MessageError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                MessageError::new(
                    "invalid_timestamp",
                    field,
                    format!("{field} {s:?} is not an ISO-8601 date-time with a time zone"),
                )
            }),
        _ => Err(wrong_type(field, "an ISO-8601 string")),
    }
}

/// Segment's skew correction: `timestamp + (receivedAt - sentAt)`. Without a timestamp the event happened
/// when it arrived. The client's own timestamp is kept as `originalTimestamp`.
fn correct_timestamp(
    msg: &mut Map<String, Value>,
    envelope: &Envelope<'_>,
) -> Result<DateTime<Utc>, MessageError> {
    let received = envelope.received_at;
    let timestamp = match msg.get("timestamp") {
        Some(v) => parse_time(v, "timestamp")?,
        None => None,
    };
    let original = match msg.get("originalTimestamp") {
        Some(v) => parse_time(v, "originalTimestamp")?,
        None => None,
    };
    let sent_at = match msg.get("sentAt").or(envelope.batch_sent_at) {
        Some(v) => parse_time(v, "sentAt")?,
        None => None,
    };
    let client_time = timestamp.or(original);
    let corrected = match (client_time, sent_at) {
        (Some(t), Some(sent)) => t + (received - sent),
        (Some(t), None) => t,
        (None, _) => received,
    };
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
    let field = if timestamp.is_some() {
        "timestamp"
    } else {
        "originalTimestamp"
    };
    if earliest.is_some_and(|earliest| corrected < earliest) {
        return Err(MessageError::new(
            "invalid_timestamp",
            field,
            format!("{field} (corrected for clock skew) is before 2000-01-01"),
        ));
    }
    if corrected > received + MAX_FUTURE {
        return Err(MessageError::new(
            "invalid_timestamp",
            field,
            format!("{field} (corrected for clock skew) is more than 24 hours in the future"),
        ));
    }
    if let Some(t) = client_time {
        msg.insert("originalTimestamp".into(), Value::String(rfc3339(t)));
    }
    msg.insert("timestamp".into(), Value::String(rfc3339(corrected)));
    msg.insert("receivedAt".into(), Value::String(rfc3339(received)));
    if let Some(sent) = sent_at {
        msg.insert("sentAt".into(), Value::String(rfc3339(sent)));
    }
    Ok(corrected)
}

/// The one textual form of timestamps cdp writes: `YYYY-MM-DDTHH:MM:SS.mmmZ`, as chrono's
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes it (which it stays for years outside
/// 0–9999 and leap seconds), made here from the Unix time with the digits written directly: every
/// event's ingestion writes three (BENCHMARKS.md).
pub fn rfc3339(t: DateTime<Utc>) -> String {
    let (secs, nanos) = (t.timestamp(), t.timestamp_subsec_nanos());
    let days = secs.div_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    // A leap second's nanoseconds run past 1,000,000,000; chrono writes its millisecond as 1000+.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let of_day = secs.rem_euclid(86_400) as u32;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    for (at, value, digits) in [
        (0, year as u32, 4),
        (5, month, 2),
        (8, day, 2),
        (11, of_day / 3600, 2),
        (14, of_day / 60 % 60, 2),
        (17, of_day % 60, 2),
        (20, nanos / 1_000_000, 3),
    ] {
        let mut v = value;
        for i in (at..at + digits).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    // ASCII digits and separators: always UTF-8.
    std::str::from_utf8(&out).map_or_else(
        |_| t.to_rfc3339_opts(SecondsFormat::Millis, true),
        str::to_owned,
    )
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
