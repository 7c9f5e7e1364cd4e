//! Crypto-shredding of customer events: the personal part of every customer event (its identifiers and
//! its payload) is sealed in the log with a key of its *subject* — the identifier it is filed under —
//! and erasing a person destroys the keys of their subjects, so the append-only log keeps the rows but
//! nobody, no replay and no rebuild, can read them again.
//!
//! Pure: the keys and nonces are passed in (the store draws them from the operating system).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};

use crate::event::NewEvent;
use crate::message::MessageKind;

/// The payload format of a sealed customer event: the nonce, ciphertext and tag as bytes in the `sealed`
/// column, the `payload` column empty (format 1: the plain JSON of `event`).
pub const SEALED_FORMAT: i16 = 3;

/// The format sealed events were stored in before [`SEALED_FORMAT`]: the same bytes as base64 text in
/// the `payload` column. Still read; never written.
pub const SEALED_BASE64_FORMAT: i16 = 2;

/// Bytes of a subject key (ChaCha20-Poly1305).
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;

/// The payload an event reads back as once its subject's key is destroyed: nothing of the person.
pub const ERASED_PAYLOAD: &str = r#"{"erased":true}"#;

/// Whether this event was erased (its key destroyed): readers skip it, as if it never carried anyone.
pub fn is_erased(event: &NewEvent) -> bool {
    event.payload == ERASED_PAYLOAD
}

/// Whether events of this kind are sealed: every customer message. Operator commands (merges, rules,
/// definitions) are the operators' records, not a customer's data, and stay readable.
pub fn is_sealed(kind: MessageKind) -> bool {
    kind != MessageKind::Operator
}

/// The subject an event is filed under: its user id, else its anonymous id, else the message itself. The
/// store keeps one key per (workspace, subject) as the SHA-256 of both, never the identifier itself.
pub fn subject_of(event: &NewEvent) -> String {
    let (tag, value) = match (&event.user_id, &event.anonymous_id) {
        (Some(user), _) => ("u", user),
        (None, Some(anonymous)) => ("a", anonymous),
        (None, None) => ("m", &event.message_id),
    };
    let digest = Sha256::new()
        .chain_update(event.workspace.as_bytes())
        .chain_update(b"\n")
        .chain_update(tag.as_bytes())
        .chain_update(b"\n")
        .chain_update(value.as_bytes())
        .finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Something that could not be unsealed although its key exists: the log or the key was tampered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed event could not be opened: {0}")]
pub struct ShredError(&'static str);

/// The personal part of a customer event sealed under `key`: user id, anonymous id and payload, bound to
/// the event's workspace and message id (a sealed payload moved to another row does not open). The
/// result is the nonce, the ciphertext and its tag, as bytes.
pub fn seal(event: &NewEvent, key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let ids = serde_json::to_string(&(&event.user_id, &event.anonymous_id))
        .expect("two optional strings serialise");
    // JSON never holds a raw newline, so the first one ends the identifiers.
    let mut sealed = Vec::with_capacity(NONCE_LEN + ids.len() + 1 + event.payload.len() + 16);
    sealed.extend_from_slice(nonce);
    sealed.extend_from_slice(ids.as_bytes());
    sealed.push(b'\n');
    sealed.extend_from_slice(event.payload.as_bytes());
    let tag = cipher(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(associated(&event.workspace, &event.message_id)),
            &mut sealed[NONCE_LEN..],
        )
        .expect("ChaCha20-Poly1305 seals any message of a sane size");
    sealed.extend_from_slice(tag.as_ref());
    sealed
}

/// The AEAD (ChaCha20-Poly1305, RFC 8439) under a key of [`KEY_LEN`] bytes.
fn cipher(key: &[u8]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, key).expect("a key of KEY_LEN bytes is a ChaCha20 key"),
    )
}

/// What a sealed event opens to: (user id, anonymous id, payload).
pub type Opened = (Option<String>, Option<String>, String);

/// [`open`] for a payload of [`SEALED_BASE64_FORMAT`]: the sealed bytes as base64 text.
pub fn open_base64(
    workspace: &str,
    message_id: &str,
    sealed: &str,
    key: &[u8],
) -> Result<Opened, ShredError> {
    let bytes = BASE64
        .decode(sealed)
        .map_err(|_| ShredError("not base64"))?;
    open(workspace, message_id, &bytes, key)
}

/// The inverse of [`seal`].
pub fn open(
    workspace: &str,
    message_id: &str,
    bytes: &[u8],
    key: &[u8],
) -> Result<Opened, ShredError> {
    if key.len() != KEY_LEN {
        return Err(ShredError("the key has the wrong length"));
    }
    if bytes.len() < NONCE_LEN {
        return Err(ShredError("too short"));
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
    let mut plain = body.to_vec();
    let opened = cipher(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated(workspace, message_id)),
            &mut plain,
        )
        .map_err(|_| ShredError("authentication failed"))?
        .len();
    plain.truncate(opened);
    let newline = plain
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(ShredError("no identifiers"))?;
    let (user_id, anonymous_id): (Option<String>, Option<String>) =
        serde_json::from_slice(&plain[..newline]).map_err(|_| ShredError("bad identifiers"))?;
    // The payload moved to the front of the same buffer: no second copy.
    plain.drain(..=newline);
    let payload = String::from_utf8(plain).map_err(|_| ShredError("not UTF-8"))?;
    Ok((user_id, anonymous_id, payload))
}

fn associated(workspace: &str, message_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(workspace.len() + 1 + message_id.len());
    aad.extend_from_slice(workspace.as_bytes());
    aad.push(b'\n');
    aad.extend_from_slice(message_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(user: Option<&str>, anonymous: Option<&str>) -> NewEvent {
        NewEvent {
            workspace: "w".into(),
            message_id: "m1".into(),
            kind: MessageKind::Track,
            name: Some("Order Completed".into()),
            user_id: user.map(Into::into),
            anonymous_id: anonymous.map(Into::into),
            event_time: Utc::now(),
            received_at: Utc::now(),
            payload: r#"{"properties":{"total":10},"traits":{"email":"ann@example.com"}}"#.into(),
        }
    }

    #[test]
    fn a_sealed_event_opens_with_its_key_only() {
        let e = event(Some("u1"), Some("a1"));
        let key = [7u8; KEY_LEN];
        let sealed = seal(&e, &key, &[1u8; NONCE_LEN]);
        let seen = String::from_utf8_lossy(&sealed);
        assert!(!seen.contains("ann@example.com") && !seen.contains("u1"));
        let (user, anonymous, payload) = open("w", "m1", &sealed, &key).unwrap();
        assert_eq!(user.as_deref(), Some("u1"));
        assert_eq!(anonymous.as_deref(), Some("a1"));
        assert_eq!(payload, e.payload);
        assert!(open("w", "m1", &sealed, &[8u8; KEY_LEN]).is_err());
        // Bound to its row: another message id or workspace does not open it.
        assert!(open("w", "m2", &sealed, &key).is_err());
        assert!(open("x", "m1", &sealed, &key).is_err());
        assert!(open("w", "m1", b"", &key).is_err());
        assert!(open("w", "m1", &sealed[..sealed.len() - 1], &key).is_err());
    }

    /// An event sealed by the versions before 2026-12-07 (RustCrypto's `chacha20poly1305`): the bytes
    /// stored in logs then open to the same event, and the same event seals to the same bytes now.
    #[test]
    fn an_event_sealed_by_earlier_versions_opens_and_seals_alike() {
        const EARLIER: &str = "a0a1a2a3a4a5a6a7a8a9aaab57890d722c88ac8f8c2d92399d9493d9c054a89d33180fd3d1aaafd81411e13617a262e5daa893a8fcf8c793282c54643eb62b517d7f49bb5c766e2d2d43c9ea8bd9062056a9f788439da2e5689eca116dbb729e3480b6fdd15ea9cfe640fd8f11ad305d";
        let earlier: Vec<u8> = (0..EARLIER.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&EARLIER[i..i + 2], 16).unwrap())
            .collect();
        let e = NewEvent {
            workspace: "shop".into(),
            message_id: "m-fixture".into(),
            user_id: Some("u-ann".into()),
            anonymous_id: Some("a-ann".into()),
            payload: r#"{"properties":{"total":42.5},"traits":{"email":"ann@example.com"}}"#.into(),
            ..event(None, None)
        };
        let key: [u8; KEY_LEN] = core::array::from_fn(|i| i as u8);
        let nonce: [u8; NONCE_LEN] = core::array::from_fn(|i| 0xa0 + i as u8);
        let (user, anonymous, payload) = open("shop", "m-fixture", &earlier, &key).unwrap();
        assert_eq!(user.as_deref(), Some("u-ann"));
        assert_eq!(anonymous.as_deref(), Some("a-ann"));
        assert_eq!(payload, e.payload);
        assert_eq!(seal(&e, &key, &nonce), earlier);
    }

    #[test]
    fn a_payload_of_the_base64_format_still_opens() {
        let e = event(None, Some("a1"));
        let key = [3u8; KEY_LEN];
        let text = BASE64.encode(seal(&e, &key, &[2u8; NONCE_LEN]));
        let (user, anonymous, payload) = open_base64("w", "m1", &text, &key).unwrap();
        assert_eq!((user, anonymous.as_deref()), (None, Some("a1")));
        assert_eq!(payload, e.payload);
        assert!(open_base64("w", "m1", "not base64!", &key).is_err());
        assert!(open_base64("w", "m1", "", &key).is_err());
    }

    #[test]
    fn the_subject_is_the_strongest_message_identifier_hashed() {
        let by_user = subject_of(&event(Some("u1"), Some("a1")));
        assert_eq!(by_user, subject_of(&event(Some("u1"), None)));
        assert_ne!(by_user, subject_of(&event(None, Some("a1"))));
        assert_ne!(by_user, subject_of(&event(None, Some("u1"))));
        assert_eq!(by_user.len(), 64);
        assert!(!by_user.contains("u1"));
    }
}
