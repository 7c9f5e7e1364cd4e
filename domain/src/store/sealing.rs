//! The store's side of crypto-shredding (`crate::shred`): which key seals each event of an append, the
//! rows as stored (sealed customer events, plain operator commands), and opening them when read.

use std::collections::{BTreeSet, HashMap};

use chacha20poly1305::aead::{AeadCore, KeyInit, OsRng};
use chacha20poly1305::ChaCha20Poly1305;

use super::StoreError;
use crate::event::{NewEvent, EVENT_FORMAT_VERSION};
use crate::shred::{self, ERASED_PAYLOAD, KEY_LEN, NONCE_LEN, SEALED_FORMAT};

/// A subject key as the store holds it: its row id and the key.
pub(crate) type SubjectKey = (i64, Vec<u8>);

/// Each event's subject (`None`: stored plain), in the order of `events`.
pub(crate) fn subjects(events: &[NewEvent]) -> Vec<Option<String>> {
    events
        .iter()
        .map(|e| shred::is_sealed(e.kind).then(|| shred::subject_of(e)))
        .collect()
}

/// The distinct (workspace, subject) pairs an append needs keys for.
pub(crate) fn wanted(events: &[NewEvent], subjects: &[Option<String>]) -> Vec<(String, String)> {
    let set: BTreeSet<(String, String)> = events
        .iter()
        .zip(subjects)
        .filter_map(|(e, s)| s.as_ref().map(|s| (e.workspace.clone(), s.clone())))
        .collect();
    set.into_iter().collect()
}

/// A new random key for a subject.
pub(crate) fn fresh_key() -> Vec<u8> {
    ChaCha20Poly1305::generate_key(&mut OsRng).to_vec()
}

/// An event as it is written.
pub(crate) struct EventRow<'a> {
    pub event: &'a NewEvent,
    pub format: i16,
    pub key_id: Option<i64>,
    pub user_id: Option<&'a str>,
    pub anonymous_id: Option<&'a str>,
    pub payload: String,
}

/// The rows of an append: customer events sealed with their subject's key (their identifier columns
/// left empty), operator commands plain.
pub(crate) fn rows<'a>(
    events: &'a [NewEvent],
    subjects: &[Option<String>],
    keys: &HashMap<String, SubjectKey>,
) -> Result<Vec<EventRow<'a>>, StoreError> {
    events
        .iter()
        .zip(subjects)
        .map(|(e, subject)| match subject {
            None => Ok(EventRow {
                event: e,
                format: EVENT_FORMAT_VERSION,
                key_id: None,
                user_id: e.user_id.as_deref(),
                anonymous_id: e.anonymous_id.as_deref(),
                payload: e.payload.clone(),
            }),
            Some(subject) => {
                let (id, key) = keys.get(subject).ok_or_else(|| {
                    StoreError::Corrupt("no key was found or made for a subject".into())
                })?;
                let key: &[u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("subject key {id} has the wrong length"))
                })?;
                let nonce: [u8; NONCE_LEN] = ChaCha20Poly1305::generate_nonce(&mut OsRng).into();
                Ok(EventRow {
                    event: e,
                    format: SEALED_FORMAT,
                    key_id: Some(*id),
                    user_id: None,
                    anonymous_id: None,
                    payload: shred::seal(e, key, &nonce),
                })
            }
        })
        .collect()
}

/// Opens a stored event in place: a sealed one with its key, or as erased when the key is destroyed.
pub(crate) fn open(
    event: &mut NewEvent,
    format: i16,
    key: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    if format != SEALED_FORMAT {
        return Ok(());
    }
    match key {
        Some(key) => {
            let (user_id, anonymous_id, payload) =
                shred::open(&event.workspace, &event.message_id, &event.payload, &key)
                    .map_err(|e| StoreError::Corrupt(format!("event {}: {e}", event.message_id)))?;
            event.user_id = user_id;
            event.anonymous_id = anonymous_id;
            event.payload = payload;
        }
        None => {
            event.user_id = None;
            event.anonymous_id = None;
            event.payload = ERASED_PAYLOAD.to_owned();
        }
    }
    Ok(())
}
