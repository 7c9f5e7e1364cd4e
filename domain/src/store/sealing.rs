//! The store's side of crypto-shredding (`crate::shred`): which key seals each event of an append, the
//! rows as stored (sealed customer events, plain operator commands), and opening them when read.

use std::collections::{BTreeSet, HashMap};

use chacha20poly1305::aead::{AeadCore, KeyInit, OsRng};
use chacha20poly1305::ChaCha20Poly1305;

use super::StoreError;
use crate::event::{NewEvent, EVENT_FORMAT_VERSION};
use crate::shred::{self, ERASED_PAYLOAD, KEY_LEN, NONCE_LEN, SEALED_BASE64_FORMAT, SEALED_FORMAT};

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
    /// The plain payload, empty when sealed.
    pub payload: &'a str,
    /// The sealed bytes (nonce, ciphertext, tag) of a customer event.
    pub sealed: Option<Vec<u8>>,
}

/// The rows of an append: customer events sealed with their subject's key (their identifier columns
/// left empty), operator commands plain.
pub(crate) fn rows<'a>(
    events: &'a [NewEvent],
    subjects: &[Option<String>],
    keys: &HashMap<String, SubjectKey>,
) -> Result<Vec<EventRow<'a>>, StoreError> {
    // One random nonce per append, counted up per event: unique within it, and a fresh random 96-bit
    // start for every append (one system call, not one per event).
    let base: [u8; NONCE_LEN] = ChaCha20Poly1305::generate_nonce(&mut OsRng).into();
    let counter = u64::from_le_bytes(base[4..].try_into().expect("8 bytes"));
    events
        .iter()
        .zip(subjects)
        .enumerate()
        .map(|(i, (e, subject))| match subject {
            None => Ok(EventRow {
                event: e,
                format: EVENT_FORMAT_VERSION,
                key_id: None,
                user_id: e.user_id.as_deref(),
                anonymous_id: e.anonymous_id.as_deref(),
                payload: &e.payload,
                sealed: None,
            }),
            Some(subject) => {
                let (id, key) = keys.get(subject).ok_or_else(|| {
                    StoreError::Corrupt("no key was found or made for a subject".into())
                })?;
                let key: &[u8; KEY_LEN] = key.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt(format!("subject key {id} has the wrong length"))
                })?;
                let mut nonce = base;
                nonce[4..].copy_from_slice(&counter.wrapping_add(i as u64).to_le_bytes());
                Ok(EventRow {
                    event: e,
                    format: SEALED_FORMAT,
                    key_id: Some(*id),
                    user_id: None,
                    anonymous_id: None,
                    payload: "",
                    sealed: Some(shred::seal(e, key, &nonce)),
                })
            }
        })
        .collect()
}

/// Opens a stored event in place: a sealed one with its key (its bytes in `sealed`, or base64 in the
/// payload for the older format), or as erased when the key is destroyed.
pub(crate) fn open(
    event: &mut NewEvent,
    format: i16,
    key: Option<Vec<u8>>,
    sealed: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    if format != SEALED_FORMAT && format != SEALED_BASE64_FORMAT {
        return Ok(());
    }
    match key {
        Some(key) => {
            let (workspace, message_id) = (&event.workspace, &event.message_id);
            let opened = match (format, &sealed) {
                (SEALED_FORMAT, Some(bytes)) => shred::open(workspace, message_id, bytes, &key),
                (SEALED_FORMAT, None) => {
                    return Err(StoreError::Corrupt(format!(
                        "event {message_id}: sealed, without its sealed bytes"
                    )))
                }
                _ => shred::open_base64(workspace, message_id, &event.payload, &key),
            };
            let (user_id, anonymous_id, payload) = opened
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

/// The subject keys this process used lately, so that an append asks the database only whether they
/// are all still alive (one row) instead of reading each back. Bounded: cleared when full, and when a key
/// it holds turns out destroyed (an erasure).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyCache(std::sync::Arc<std::sync::Mutex<HashMap<String, SubjectKey>>>);

/// Keys a cache holds at most before it starts over.
const CACHED_KEYS: usize = 200_000;

impl KeyCache {
    /// The cached keys among `wanted`, and the subjects it lacks.
    pub(crate) fn split(
        &self,
        wanted: &[(String, String)],
    ) -> (HashMap<String, SubjectKey>, Vec<(String, String)>) {
        let cache = self.0.lock().expect("key cache lock");
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for w in wanted {
            match cache.get(&w.1) {
                Some(k) => {
                    found.insert(w.1.clone(), k.clone());
                }
                None => missing.push(w.clone()),
            }
        }
        (found, missing)
    }

    pub(crate) fn remember(&self, keys: &HashMap<String, SubjectKey>) {
        let mut cache = self.0.lock().expect("key cache lock");
        if cache.len() + keys.len() > CACHED_KEYS {
            cache.clear();
        }
        cache.extend(keys.iter().map(|(s, k)| (s.clone(), k.clone())));
    }

    pub(crate) fn forget(&self) {
        self.0.lock().expect("key cache lock").clear();
    }
}
