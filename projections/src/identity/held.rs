//! What the resolver holds between batches, per profile, in one map: the profile's state as the last
//! batch left it and what derive last wrote for it (tags, segments, spend, due time), both in the
//! engine's compact binary form. A batch takes out what it touches and puts back what it made; when a
//! batch may not have committed, the whole resolver state is dropped (the token), so what is here is
//! never ahead of the database.

use cdp_domain::codec;
use cdp_domain::fastmap::{FastMap, FastSet};
use cdp_domain::profile::ProfileDoc;
use cdp_domain::tags::TagValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Membership, ProfileTag};
use crate::evaluation::derive::{Derived, DerivedMemory};
use crate::profiles::ProfileKey;

/// The profiles the resolver holds (bounded: [`super::HELD_PROFILES`]; a profile not held is read
/// from the tables when touched), each with:
/// - its state in its binary form (the bytes the batch wrote: ~600 bytes for a retail profile, a
///   quarter of the decoded document), out while a batch works on it;
/// - what derive last wrote for it, encoded ([`codec::encode`] of a [`Held`]): ~100 bytes for a tag
///   and a segment, against ~500 in maps of strings and JSON values. One key for both: a second map
///   cost another ~100 bytes a profile (`cdp bench --scenario memory`, BENCHMARKS.md).
///
/// While a rebuild defers (`super::deferred`), the profiles its plain batches touch are held decoded
/// instead ("warm": no state is written before the flush, so none is encoded per batch), up to
/// [`WARM_AT_MOST`]; the flush encodes them back.
#[derive(Debug, Default)]
pub struct Docs {
    docs: FastMap<ProfileKey, Entry>,
    warm: FastMap<ProfileKey, ProfileDoc>,
}

/// Profiles held decoded at most (a decoded retail profile takes ~2 KB more than its binary form: a
/// 500k-event rebuild of 50k profiles peaked ~95 MB higher; ~400 MB at this bound); past it a deferring
/// batch encodes those it did not touch.
pub const WARM_AT_MOST: usize = 200_000;

/// A live resolver's documents held decoded as well as encoded, at most: those of its latest batches,
/// so that a profile touched again within seconds is not decoded again. A decoded retail document
/// takes ~5 KB beside its binary form (8,192 of them grew the `memory` scenario's process by 44 MB:
/// 1,979 → 2,007 bytes a profile at a million), so the bound stays at a few thousand.
pub const LIVE_WARM: usize = 4_096;

#[derive(Debug, Default)]
struct Entry {
    state: Option<Box<[u8]>>,
    derived: Option<Box<[u8]>>,
}

impl Docs {
    /// Takes a profile's state out, if it is held.
    pub fn take(&mut self, key: &ProfileKey) -> Option<Box<[u8]>> {
        let entry = self.docs.get_mut(key)?;
        let state = entry.state.take();
        if entry.derived.is_none() {
            self.docs.remove(key);
        }
        state
    }

    /// A profile's state, if it is held in its binary form (left in place).
    pub(super) fn state(&self, key: &ProfileKey) -> Option<&[u8]> {
        self.docs.get(key)?.state.as_deref()
    }

    /// Whether a profile's state is held, binary or decoded.
    pub(super) fn holds(&self, key: &ProfileKey) -> bool {
        self.warm.contains_key(key) || self.state(key).is_some()
    }

    /// Takes a profile's decoded state out, if it is held so (with its binary form, when it is held
    /// both ways: what is out is out).
    pub(super) fn take_warm(&mut self, key: &ProfileKey) -> Option<ProfileDoc> {
        let doc = self.warm.remove(key)?;
        self.take(key);
        Some(doc)
    }

    /// Keeps a live batch's documents decoded beside the binary states just put back for them
    /// (`put_back`, the same documents encoded), so that the next batch touching them does not decode
    /// them again: at most `bound` held decoded, those of earlier batches dropped first (their binary
    /// form stays; one held decoded only — a deferring batch's — is encoded first).
    pub(super) fn keep_warm(
        &mut self,
        docs: FastMap<ProfileKey, ProfileDoc>,
        bound: usize,
        parts: usize,
    ) {
        let room = bound.saturating_sub(docs.len().min(bound));
        if let Some(excess) = self.warm.len().checked_sub(room).filter(|n| *n > 0) {
            let leaving: Vec<ProfileKey> = self.warm.keys().take(excess).cloned().collect();
            let (encoded, only_decoded): (Vec<ProfileKey>, Vec<ProfileKey>) =
                leaving.into_iter().partition(|k| self.state(k).is_some());
            for key in &encoded {
                self.warm.remove(key);
            }
            let only_decoded: FastSet<ProfileKey> = only_decoded.into_iter().collect();
            self.cool(parts, |k| !only_decoded.contains(k));
        }
        self.warm.extend(docs.into_iter().take(bound));
    }

    /// Puts decoded states back (a deferring batch's).
    pub(super) fn put_back_warm(
        &mut self,
        docs: impl IntoIterator<Item = (ProfileKey, ProfileDoc)>,
    ) {
        self.warm.extend(docs);
    }

    /// How many profiles are held decoded.
    pub(super) fn warm_len(&self) -> usize {
        self.warm.len()
    }

    /// Encodes decoded states into their binary form, over `parts` cores: those `keep` does not keep,
    /// or all of them.
    pub(super) fn cool(&mut self, parts: usize, keep: impl Fn(&ProfileKey) -> bool) {
        let keys: Vec<ProfileKey> = self.warm.keys().filter(|k| !keep(k)).cloned().collect();
        let cooling: Vec<(ProfileKey, ProfileDoc)> = keys
            .into_iter()
            .filter_map(|k| self.warm.remove_entry(&k))
            .collect();
        let states = crate::parallel::map(&cooling, parts, |(_, doc)| doc.to_state());
        self.put_back(cooling.into_iter().map(|(k, _)| k).zip(states));
    }

    /// Forgets a profile (merged away): its state and what derive wrote for it.
    pub fn forget(&mut self, key: &ProfileKey) {
        self.docs.remove(key);
        self.warm.remove(key);
    }

    /// Puts states back.
    pub fn put_back(&mut self, states: impl IntoIterator<Item = (ProfileKey, Vec<u8>)>) {
        for (key, state) in states {
            self.docs.entry(key).or_default().state = Some(state.into_boxed_slice());
        }
    }

    /// How many profiles are held (one held both ways counts twice).
    pub fn len(&self) -> usize {
        self.docs.len() + self.warm.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty() && self.warm.is_empty()
    }

    /// Whether more than `bound` profiles are held (one held both ways counts once: the bound is of
    /// profiles, as a rebuild's slices are cut by profiles; what a decoded one takes beside its binary
    /// form is bounded apart, `LIVE_WARM` and `WARM_AT_MOST`).
    pub fn over(&self, bound: usize) -> bool {
        if self.len() <= bound {
            return false;
        }
        let decoded_only = self
            .warm
            .keys()
            .filter(|k| !self.docs.contains_key(*k))
            .count();
        self.docs.len() + decoded_only > bound
    }

    /// Drops profiles past `bound` (they are read from the database when next touched): only when
    /// every batch prepared is committed, so that what is dropped is what is stored.
    /// A profile dropped is dropped both ways: its decoded document goes with its binary form.
    pub fn trim(&mut self, bound: usize) {
        if bound == 0 {
            // Everything goes, and the tables' memory with it (`retain` would keep their capacity).
            *self = Docs::default();
            return;
        }
        if let Some(mut excess) = self.docs.len().checked_sub(bound) {
            let warm = &mut self.warm;
            self.docs.retain(|key, _| {
                let keep = excess == 0;
                if !keep {
                    warm.remove(key);
                }
                excess = excess.saturating_sub(1);
                keep
            });
        }
    }

    /// Forgets what derive wrote for every profile (a batch changed definitions, which may rewrite
    /// many profiles' rows); the states stay.
    pub fn forget_derived(&mut self) {
        self.docs.retain(|_, entry| {
            entry.derived = None;
            entry.state.is_some()
        });
    }
}

impl DerivedMemory for Docs {
    /// Takes out what derive last wrote for a profile, if it is held. An entry that does not decode
    /// (it never fails: this encoded it) is as good as not held: the tables are read instead.
    fn take_derived(&mut self, key: &ProfileKey) -> Option<Derived> {
        let entry = self.docs.get_mut(key)?;
        let bytes = entry.derived.take();
        if entry.state.is_none() {
            self.docs.remove(key);
        }
        codec::decode::<Held>(&bytes?).ok().map(Derived::from)
    }

    /// Puts back what derive wrote.
    fn put_back_derived(&mut self, entries: impl Iterator<Item = (ProfileKey, Derived)>) {
        for (key, derived) in entries {
            if let Ok(bytes) = codec::encode(&Held::from(derived)) {
                self.docs.entry(key).or_default().derived = Some(bytes.into_boxed_slice());
            }
        }
    }
}

/// [`Derived`] as it is held: lists instead of maps (a tag's and a segment's name once, not as key and
/// field), JSON values as their text.
#[derive(Serialize, Deserialize)]
struct Held {
    tags: Vec<HeldTag>,
    members: Vec<(String, i64, Option<String>)>,
    spend: Option<f64>,
    due: Option<Option<f64>>,
}

#[derive(Serialize, Deserialize)]
struct HeldTag {
    tag: String,
    #[serde(with = "codec::json")]
    value: Value,
    #[serde(with = "codec::json")]
    detail: Value,
    manual: bool,
    changed_at: i64,
    caused_by: Option<String>,
}

impl From<Derived> for Held {
    fn from(d: Derived) -> Self {
        Held {
            tags: d
                .tags
                .into_iter()
                .map(|(_, t)| HeldTag {
                    tag: t.tag,
                    value: t.value.value,
                    detail: t.value.detail,
                    manual: t.manual,
                    changed_at: t.changed_at,
                    caused_by: t.caused_by,
                })
                .collect(),
            members: d
                .members
                .into_iter()
                .map(|(_, m)| (m.segment, m.since, m.caused_by))
                .collect(),
            spend: d.spend,
            due: d.due,
        }
    }
}

impl From<Held> for Derived {
    fn from(h: Held) -> Self {
        Derived {
            tags: h
                .tags
                .into_iter()
                .map(|t| {
                    let tag = ProfileTag {
                        tag: t.tag,
                        value: TagValue {
                            value: t.value,
                            detail: t.detail,
                        },
                        manual: t.manual,
                        changed_at: t.changed_at,
                        caused_by: t.caused_by,
                    };
                    (tag.tag.clone(), tag)
                })
                .collect(),
            members: h
                .members
                .into_iter()
                .map(|(segment, since, caused_by)| {
                    let m = Membership {
                        segment,
                        since,
                        caused_by,
                    };
                    (m.segment.clone(), m)
                })
                .collect(),
            spend: h.spend,
            due: h.due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::identity::ProfileId;
    use cdp_domain::profile::ProfileDoc;
    use serde_json::json;

    fn key(n: usize) -> ProfileKey {
        let id = ProfileId::parse(&format!("p_{n:020x}")).unwrap();
        ("w".to_owned(), id)
    }

    #[test]
    fn a_profile_held_both_ways_counts_once_against_the_bound() {
        let mut docs = Docs::default();
        docs.put_back((0..10).map(|n| (key(n), ProfileDoc::default().to_state())));
        docs.put_back_warm((0..10).map(|n| (key(n), ProfileDoc::default())));
        assert_eq!(docs.len(), 20);
        assert!(!docs.over(10), "ten profiles, each held both ways");
        docs.put_back_warm([(key(10), ProfileDoc::default())]);
        assert!(docs.over(10), "an eleventh, decoded only");
    }

    #[test]
    fn documents_are_taken_out_and_put_back_and_trimmed_to_the_bound() {
        let state = || ProfileDoc::default().to_state();
        let mut docs = Docs::default();
        docs.put_back((0..3).map(|n| (key(n), state())));
        let taken = docs.take(&key(1)).unwrap();
        assert!(docs.take(&key(1)).is_none(), "a taken document is out");
        let mut doc = ProfileDoc::from_stored(Some(&taken), None).unwrap();
        doc.events = 7;
        docs.put_back([(key(1), doc.to_state())]);
        let back = docs.take(&key(1)).unwrap();
        assert_eq!(
            ProfileDoc::from_stored(Some(&back), None).unwrap().events,
            7
        );
        docs.forget(&key(2));
        assert!(docs.take(&key(2)).is_none());

        let mut docs = Docs::default();
        let bound = 1_000;
        docs.put_back((0..bound).map(|n| (key(n), state())));
        assert_eq!(docs.docs.len(), bound);
        assert!(!docs.over(bound));
        let incoming = bound..bound + 10;
        docs.put_back(incoming.clone().map(|n| (key(n), state())));
        assert!(docs.over(bound), "nothing is dropped while putting back");
        assert_eq!(docs.docs.len(), bound + 10);
        docs.trim(bound);
        assert_eq!(docs.docs.len(), bound, "trimmed to the bound");
        assert!(!docs.over(bound));
    }

    #[test]
    fn a_live_batchs_documents_are_kept_decoded_up_to_the_bound_beside_their_states() {
        let doc = |events: u64| ProfileDoc {
            events,
            ..ProfileDoc::default()
        };
        let mut docs = Docs::default();
        // A deferring batch's document, held decoded only.
        docs.put_back_warm([(key(100), doc(100))]);
        let batch = |range: std::ops::Range<usize>| -> FastMap<ProfileKey, ProfileDoc> {
            range.map(|n| (key(n), doc(n as u64))).collect()
        };
        let first = batch(0..3);
        docs.put_back(first.iter().map(|(k, d)| (k.clone(), d.to_state())));
        docs.keep_warm(first, 4, 1);
        assert_eq!(
            docs.warm_len(),
            4,
            "room for the batch's three and the one before"
        );
        assert!(docs.warm.contains_key(&key(100)));
        let second = batch(3..6);
        docs.put_back(second.iter().map(|(k, d)| (k.clone(), d.to_state())));
        docs.keep_warm(second, 3, 1);
        assert_eq!(
            docs.warm_len(),
            3,
            "the earlier ones dropped down to the bound"
        );
        for n in 3..6 {
            assert!(
                docs.warm.contains_key(&key(n)),
                "the latest batch's are kept"
            );
        }
        // Every profile is still held encoded as it was left, the deferring batch's too (encoded
        // when it was dropped from the decoded ones).
        for n in (0..6).chain([100]) {
            let state = docs.state(&key(n)).map(<[u8]>::to_vec);
            let state = state.unwrap_or_else(|| panic!("profile {n} is held encoded"));
            let decoded = ProfileDoc::from_stored(Some(&state), None).unwrap();
            assert_eq!(decoded.events, n as u64, "profile {n}");
        }
        // Taken decoded, a document is out both ways.
        let warm = (3..6).find(|n| docs.warm.contains_key(&key(*n))).unwrap();
        assert_eq!(docs.take_warm(&key(warm)).unwrap().events, warm as u64);
        assert!(docs.take(&key(warm)).is_none() && !docs.holds(&key(warm)));
        // A batch larger than the bound keeps only the bound decoded.
        let big = batch(10..20);
        docs.put_back(big.iter().map(|(k, d)| (k.clone(), d.to_state())));
        docs.keep_warm(big, 4, 1);
        assert_eq!(docs.warm_len(), 4);
    }

    #[test]
    fn an_entry_comes_back_as_it_was_put() {
        let tag = ProfileTag {
            tag: "rfm".into(),
            value: TagValue {
                value: json!("champions"),
                detail: json!({"r": 5, "m": 1234.5}),
            },
            manual: false,
            changed_at: 1_700_000_000_123,
            caused_by: Some("m-1".into()),
        };
        let vip = ProfileTag {
            tag: "vip".into(),
            value: TagValue::plain(json!(true)),
            manual: true,
            changed_at: 5,
            caused_by: None,
        };
        let member = Membership {
            segment: "buyers".into(),
            since: 42,
            caused_by: Some("m-2".into()),
        };
        let derived = Derived {
            tags: [(tag.tag.clone(), tag), (vip.tag.clone(), vip)]
                .into_iter()
                .collect(),
            members: [(member.segment.clone(), member)].into_iter().collect(),
            spend: Some(99.5),
            due: Some(None),
        };
        let key = ("ws".to_owned(), ProfileId::parse("p1").unwrap());
        let mut held = Docs::default();
        held.put_back_derived([(key.clone(), derived.clone())].into_iter());
        assert!(!held.over(1) && held.over(0));
        assert_eq!(held.take_derived(&key), Some(derived));
        assert_eq!(held.take_derived(&key), None, "taken out");
        assert!(held.is_empty(), "nothing of the profile is left");
        held.put_back_derived([(key.clone(), Derived::default())].into_iter());
        assert_eq!(held.take_derived(&key), Some(Derived::default()));
    }

    #[test]
    fn a_profile_s_state_and_derived_rows_share_its_entry() {
        let key = ("ws".to_owned(), ProfileId::parse("p1").unwrap());
        let mut held = Docs::default();
        held.put_back([(key.clone(), vec![1, 2, 3])]);
        held.put_back_derived([(key.clone(), Derived::default())].into_iter());
        assert_eq!(held.len(), 1);
        assert_eq!(held.take(&key).as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(held.len(), 1, "the derived rows are still held");
        held.put_back([(key.clone(), vec![4])]);
        held.forget_derived();
        assert_eq!(held.take_derived(&key), None);
        assert_eq!(
            held.take(&key).as_deref(),
            Some(&[4u8][..]),
            "the state stays"
        );
        assert!(held.is_empty());
        held.put_back([(key.clone(), vec![5])]);
        held.put_back_derived([(key.clone(), Derived::default())].into_iter());
        held.forget(&key);
        assert!(held.is_empty(), "forgetting a profile drops both");
    }
}
