//! Hash maps for the hot path: foldhash's per-process seeded hasher instead of SipHash (several
//! times faster on the short keys of profiles and identifiers, still keyed at random per process
//! so crafted identifiers cannot pick the buckets).

use std::collections::{HashMap, HashSet};

/// The hasher of [`FastMap`] and [`FastSet`].
pub type FastHasher = foldhash::fast::RandomState;

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastHasher>;

/// A `HashSet` with [`FastHasher`].
pub type FastSet<T> = HashSet<T, FastHasher>;

/// An empty [`FastMap`] with room for `n` entries.
pub fn map_with_capacity<K, V>(n: usize) -> FastMap<K, V> {
    FastMap::with_capacity_and_hasher(n, FastHasher::default())
}
