//! The binary form of the engine's state: serde adapters that keep the JSON form of a field as it always
//! was (human-readable formats) and give binary formats (postcard) a compact one — times as seconds and
//! nanoseconds, JSON values as their text — plus the versioned envelope of a stored profile state.
//!
//! postcard was chosen over bincode 2 and rkyv: it is serde-based (the state types derive serde already,
//! so the JSON form of documents stored by earlier versions still reads), its wire format is documented
//! and stable since 1.0, it is small (no proc-macro of its own) and among the fastest serde formats
//! (rust_serialization_benchmark); rkyv's zero-copy access would need a second set of types.
//! A binary format is positional: a field is never skipped when serialising (no
//! `skip_serializing_if` on the state types) and every field change raises [`STATE_FORMAT`].

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first byte of a stored state: the layout of the types serialised after it. Raise it with any
/// change of a state type's fields, and keep reading the old one.
pub const STATE_FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty state")]
    Empty,
    #[error("state format {0} is unknown to this version")]
    UnknownFormat(u8),
    #[error("state does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// `value` in the versioned binary envelope.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![STATE_FORMAT];
    out = postcard::to_extend(value, out)?;
    Ok(out)
}

/// The value of an envelope written by [`encode`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&STATE_FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((other, _)) => Err(CodecError::UnknownFormat(*other)),
    }
}

fn split(t: &DateTime<Utc>) -> (i64, u32) {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

fn join<E: serde::de::Error>((secs, nanos): (i64, u32)) -> Result<DateTime<Utc>, E> {
    Utc.timestamp_opt(secs, nanos)
        .single()
        .ok_or_else(|| E::custom(format!("{secs}.{nanos} is not a time")))
}

/// A time: RFC 3339 text in JSON, `(seconds, nanoseconds)` in binary.
pub mod time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            t.serialize(s)
        } else {
            split(t).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        if d.is_human_readable() {
            DateTime::<Utc>::deserialize(d)
        } else {
            join(<(i64, u32)>::deserialize(d)?)
        }
    }
}

/// An optional time, as [`time`].
pub mod opt_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            t.serialize(s)
        } else {
            t.as_ref().map(split).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        if d.is_human_readable() {
            Option::<DateTime<Utc>>::deserialize(d)
        } else {
            Option::<(i64, u32)>::deserialize(d)?.map(join).transpose()
        }
    }
}

/// A JSON value: itself in JSON, its text in binary (binary formats cannot describe a value of any
/// shape; trait values are small).
pub mod json {
    use super::*;
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            s.serialize_str(&v.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        if d.is_human_readable() {
            Value::deserialize(d)
        } else {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            serde_json::from_str(&text).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "time")]
        at: DateTime<Utc>,
        #[serde(with = "opt_time")]
        maybe: Option<DateTime<Utc>>,
        #[serde(with = "json")]
        value: serde_json::Value,
    }

    fn sample() -> Sample {
        Sample {
            at: "2026-12-03T10:00:00.123456789Z".parse().unwrap(),
            maybe: None,
            value: json!({"a": [1, 2.5, "x"], "b": null}),
        }
    }

    #[test]
    fn binary_round_trips_exactly_and_json_keeps_its_form() {
        let s = sample();
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes[0], STATE_FORMAT);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains("\"2026-12-03T10:00:00.123456789Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"value\":{\"a\":[1,2.5,\"x\"],\"b\":null}"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Sample>(&text).unwrap(), s);
    }

    #[test]
    fn a_binary_time_is_smaller_than_its_text() {
        let bytes = encode(&sample()).unwrap();
        assert!(bytes.len() < serde_json::to_vec(&sample()).unwrap().len() / 2);
    }

    #[test]
    fn bad_envelopes_are_errors_not_panics() {
        assert!(matches!(decode::<Sample>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Sample>(&[9, 1]),
            Err(CodecError::UnknownFormat(9))
        ));
        assert!(matches!(
            decode::<Sample>(&[STATE_FORMAT, 0xff]),
            Err(CodecError::Decode(_))
        ));
    }
}
