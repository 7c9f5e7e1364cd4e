//! The store's side of crypto-shredding (`crate::shred`): which key seals each event of an append, the
//! rows as stored (sealed customer events, plain operator commands), and opening them when read.

use std::collections::{BTreeSet, HashMap};

use ring::rand::{SecureRandom, SystemRandom};

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
    random::<KEY_LEN>().to_vec()
}

/// `N` bytes from the operating system's generator.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random generator answers");
    bytes
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
    let base: [u8; NONCE_LEN] = random();
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

/// The subject keys this process used lately, with the count of key destructions
/// (`shred_generation`) read before they were: while the count is the same, none of them was destroyed,
/// so an append checks one number instead of reading each key back. Bounded: cleared when full, and
/// when the count moved (an erasure).
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyCache(std::sync::Arc<std::sync::Mutex<CachedKeys>>);

#[derive(Debug, Default)]
pub(crate) struct CachedKeys {
    keys: HashMap<String, SubjectKey>,
    /// The count of key destructions read before any of `keys` was (`None`: nothing cached).
    generation: Option<i64>,
}

/// What a [`KeyCache`] holds of the subjects an append wants: the keys it has, the (workspace, subject)
/// pairs it lacks, and the count of key destructions its keys were alive at (`None`: it holds none).
pub(crate) type Split = (
    HashMap<String, SubjectKey>,
    Vec<(String, String)>,
    Option<i64>,
);

/// Keys a cache holds at most before it starts over.
const CACHED_KEYS: usize = 200_000;

/// The statement reading the count of key destructions.
pub(crate) const GENERATION: &str = "SELECT n FROM shred_generation";

impl KeyCache {
    /// The cached keys among `wanted`, the subjects it lacks, and the count of key destructions the
    /// cached keys were alive at (`None`: it holds none).
    pub(crate) fn split(&self, wanted: &[(String, String)]) -> Split {
        let cache = self.0.lock().expect("key cache lock");
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for w in wanted {
            match cache.keys.get(&w.1) {
                Some(k) => {
                    found.insert(w.1.clone(), k.clone());
                }
                None => missing.push(w.clone()),
            }
        }
        (found, missing, cache.generation)
    }

    /// Keeps `keys`, read or made after the count of key destructions read `generation`; what it held
    /// at another count is dropped.
    pub(crate) fn remember(&self, keys: &HashMap<String, SubjectKey>, generation: i64) {
        let mut cache = self.0.lock().expect("key cache lock");
        if cache.generation != Some(generation) || cache.keys.len() + keys.len() > CACHED_KEYS {
            cache.keys.clear();
            cache.generation = Some(generation);
        }
        cache
            .keys
            .extend(keys.iter().map(|(s, k)| (s.clone(), k.clone())));
    }

    pub(crate) fn forget(&self) {
        let mut cache = self.0.lock().expect("key cache lock");
        cache.keys.clear();
        cache.generation = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(subjects: &[&str]) -> HashMap<String, SubjectKey> {
        subjects
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), (i as i64, vec![i as u8; KEY_LEN])))
            .collect()
    }

    fn wanted(subjects: &[&str]) -> Vec<(String, String)> {
        subjects
            .iter()
            .map(|s| ("w".to_owned(), s.to_string()))
            .collect()
    }

    #[test]
    fn cached_keys_hold_only_at_the_count_of_destructions_they_were_read_at() {
        let cache = KeyCache::default();
        let (found, missing, at) = cache.split(&wanted(&["a"]));
        assert!(found.is_empty() && at.is_none(), "nothing cached yet");
        assert_eq!(missing.len(), 1);

        cache.remember(&keys(&["a", "b"]), 7);
        let (found, missing, at) = cache.split(&wanted(&["a", "b", "c"]));
        assert_eq!((found.len(), missing.len(), at), (2, 1, Some(7)));

        // Keys read after another destruction replace all of those read before it.
        cache.remember(&keys(&["c"]), 8);
        let (found, _, at) = cache.split(&wanted(&["a", "b", "c"]));
        assert_eq!(found.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(at, Some(8));

        cache.forget();
        let (found, _, at) = cache.split(&wanted(&["c"]));
        assert!(found.is_empty() && at.is_none(), "forgotten");
    }
}
