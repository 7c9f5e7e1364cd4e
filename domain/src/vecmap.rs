//! Small ordered maps and sets as sorted vectors: what a profile's state is made of (a few identifier
//! types, traits, event counts, computed traits and their day buckets per profile).
//!
//! A `BTreeMap` allocates a node of eleven slots for its first entry; a profile held in memory is a
//! dozen such maps, mostly of one to five entries, and measured 16.6 KB per profile that way (live heap
//! of 1,000 decoded states, `cdp bench --scenario memory`, 2026-12-04). A sorted vector holds exactly
//! its entries, iterates in the same key order and serialises exactly as the `BTreeMap` did (a map in
//! key order), so the stored states and the JSON answers do not change. Inserting is linear in the
//! length, which is right for maps this small; a map that grows large (a year of day buckets) stays
//! correct, only slower to insert into the middle of.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::RangeFrom;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Room to reserve before adding to a vector of `len`: one at a time while it is small (most maps of a
/// profile hold one to five entries; `Vec`'s own first step is four), doubling after.
/// Entries up to which a lookup scans instead of searching in order: below this, comparing each key
/// for equality (lengths first) is cheaper than a binary search's ordered comparisons.
pub const SCANNED: usize = 12;

fn extra(len: usize) -> usize {
    if len < 8 {
        1
    } else {
        len
    }
}

/// An ordered map held as a vector of entries sorted by key, keys unique.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K, V> VecMap<K, V> {
    pub const fn new() -> Self {
        VecMap {
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    pub fn first_key_value(&self) -> Option<(&K, &V)> {
        self.entries.first().map(|(k, v)| (k, v))
    }

    pub fn last_key_value(&self) -> Option<(&K, &V)> {
        self.entries.last().map(|(k, v)| (k, v))
    }

    /// Keeps the entries `keep` says yes to, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

impl<K: Ord, V> VecMap<K, V> {
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The index of `key`, if held: scanned for equality while the map is small (a text key's length
    /// is compared before its bytes, where each step of a binary search compares the bytes), searched
    /// in order past that.
    fn index_of<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if self.entries.len() <= SCANNED {
            self.entries.iter().position(|(k, _)| k.borrow() == key)
        } else {
            self.find(key).ok()
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.index_of(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.index_of(key).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.index_of(key).is_some()
    }

    /// Sets `key` to `value`; the value it had, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.reserve_exact(extra(self.entries.len()));
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.find(key) {
            Ok(i) => Some(self.entries.remove(i).1),
            Err(_) => None,
        }
    }

    /// The place of `key`, to read or fill.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        match self.find(&key) {
            Ok(index) => Entry {
                map: self,
                index,
                vacant: None,
            },
            Err(index) => Entry {
                map: self,
                index,
                vacant: Some(key),
            },
        }
    }

    /// The entries from `range.start` on, in key order.
    pub fn range<Q>(
        &self,
        range: RangeFrom<Q>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator
    where
        K: Borrow<Q>,
        Q: Ord,
    {
        let from = match self.find(&range.start) {
            Ok(i) | Err(i) => i,
        };
        self.entries[from..].iter().map(|(k, v)| (k, v))
    }

    /// Takes out the entries from `key` on (those with keys ≥ `key`), as `BTreeMap::split_off`.
    pub fn split_off<Q>(&mut self, key: &Q) -> VecMap<K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let at = match self.find(key) {
            Ok(i) | Err(i) => i,
        };
        VecMap {
            entries: self.entries.split_off(at),
        }
    }

    /// From entries in any order; of equal keys the last one stays (as inserting them one by one).
    fn from_unsorted(mut entries: Vec<(K, V)>) -> Self {
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable: of equal keys, the one that came last is last.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kept: Vec<(K, V)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match kept.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => kept.push(entry),
                }
            }
            entries = kept;
        }
        entries.shrink_to_fit();
        VecMap { entries }
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for VecMap<K, V> {
    type Output = V;

    /// The value of `key`; panics when there is none, as `BTreeMap`'s index does.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

/// A place in a [`VecMap`]: an entry that is there, or where one would go.
pub struct Entry<'a, K, V> {
    map: &'a mut VecMap<K, V>,
    index: usize,
    /// The key, when there is no entry for it yet.
    vacant: Option<K>,
}

impl<'a, K, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        if let Some(key) = self.vacant {
            let entries = &mut self.map.entries;
            entries.reserve_exact(extra(entries.len()));
            entries.insert(self.index, (key, make()));
        }
        &mut self.map.entries[self.index].1
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    pub fn and_modify(self, change: impl FnOnce(&mut V)) -> Self {
        if self.vacant.is_none() {
            change(&mut self.map.entries[self.index].1);
        }
        self
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        VecMap::from_unsorted(iter.into_iter().collect())
    }
}

impl<K: Ord, V> Extend<(K, V)> for VecMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a VecMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for VecMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for VecMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for Entries<K, V> {
            type Value = VecMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // Bounded: a length read from untrusted bytes must not reserve gigabytes.
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(1024));
                while let Some(entry) = access.next_entry()? {
                    entries.push(entry);
                }
                Ok(VecMap::from_unsorted(entries))
            }
        }
        deserializer.deserialize_map(Entries(PhantomData))
    }
}

/// An ordered set held as a sorted vector of unique values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct VecSet<T> {
    items: Vec<T>,
}

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet { items: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for VecSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.items).finish()
    }
}

impl<T> VecSet<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: Ord> VecSet<T> {
    /// Adds `value`; whether it was not there yet.
    pub fn insert(&mut self, value: T) -> bool {
        match self.items.binary_search(&value) {
            Ok(_) => false,
            Err(i) => {
                self.items.reserve_exact(extra(self.items.len()));
                self.items.insert(i, value);
                true
            }
        }
    }

    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.items
            .binary_search_by(|t| t.borrow().cmp(value))
            .is_ok()
    }

    fn from_unsorted(mut items: Vec<T>) -> Self {
        items.sort();
        items.dedup();
        items.shrink_to_fit();
        VecSet { items }
    }
}

impl<T: Ord> FromIterator<T> for VecSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        VecSet::from_unsorted(iter.into_iter().collect())
    }
}

impl<T: Ord> Extend<T> for VecSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.insert(v);
        }
    }
}

impl<T> IntoIterator for VecSet<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: Serialize> Serialize for VecSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.items.len()))?;
        for v in &self.items {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for VecSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Ord> Visitor<'de> for Items<T> {
            type Value = VecSet<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(access.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = access.next_element()? {
                    items.push(item);
                }
                Ok(VecSet::from_unsorted(items))
            }
        }
        deserializer.deserialize_seq(Items(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts and removes leaves the map a `BTreeMap` would be, and it
        /// serialises to the same bytes and JSON.
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u8..20, any::<u16>()), 0..60)) {
            let mut ours: VecMap<String, u16> = VecMap::new();
            let mut theirs: BTreeMap<String, u16> = BTreeMap::new();
            for (insert, k, v) in ops {
                let k = format!("k{k}");
                if insert {
                    prop_assert_eq!(ours.insert(k.clone(), v), theirs.insert(k, v));
                } else {
                    prop_assert_eq!(ours.remove(&k), theirs.remove(&k));
                }
                // Wrapping: a value inserted at u16::MAX must not overflow the test itself.
                let mine = ours.entry("k5".into()).or_default();
                *mine = mine.wrapping_add(1);
                let other = theirs.entry("k5".into()).or_default();
                *other = other.wrapping_add(1);
            }
            prop_assert!(ours.iter().eq(theirs.iter()));
            // Lookups, scanned or searched (the map holds up to 20 keys, past `SCANNED`).
            for k in (0u8..22).map(|k| format!("k{k}")) {
                prop_assert_eq!(ours.get(k.as_str()), theirs.get(&k));
                prop_assert_eq!(ours.contains_key(k.as_str()), theirs.contains_key(&k));
                prop_assert_eq!(ours.clone().get_mut(k.as_str()).copied(), theirs.get(&k).copied());
            }
            prop_assert_eq!(postcard::to_allocvec(&ours).unwrap(), postcard::to_allocvec(&theirs).unwrap());
            prop_assert_eq!(serde_json::to_string(&ours).unwrap(), serde_json::to_string(&theirs).unwrap());
            let back: VecMap<String, u16> = postcard::from_bytes(&postcard::to_allocvec(&theirs).unwrap()).unwrap();
            prop_assert_eq!(&back, &ours);
            let tail = ours.split_off("k1");
            let theirs_tail = theirs.split_off("k1");
            prop_assert!(tail.iter().eq(theirs_tail.iter()));
            prop_assert!(ours.range("k0".to_owned()..).eq(theirs.range("k0".to_owned()..)));
        }

        #[test]
        fn a_set_behaves_as_a_btreeset(items in proptest::collection::vec(0u8..30, 0..40)) {
            let ours: VecSet<u8> = items.iter().copied().collect();
            let theirs: BTreeSet<u8> = items.iter().copied().collect();
            prop_assert!(ours.iter().eq(theirs.iter()));
            prop_assert_eq!(postcard::to_allocvec(&ours).unwrap(), postcard::to_allocvec(&theirs).unwrap());
        }
    }

    #[test]
    fn unsorted_input_is_sorted_and_the_last_of_equal_keys_wins() {
        let m: VecMap<&str, i32> = [("b", 1), ("a", 2), ("b", 3)].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(&"a", &2), (&"b", &3)]);
        let json: VecMap<String, i32> = serde_json::from_str(r#"{"z":1,"a":2}"#).unwrap();
        assert_eq!(json.keys().collect::<Vec<_>>(), vec!["a", "z"]);
    }
}
