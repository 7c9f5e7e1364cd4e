//! Hot profiles' 360° views held in memory (`ViewCache`), so that reading one again needs no database:
//! filled by the readers, emptied of what each commit of this process's resolver touches (marked before
//! the commit, dropped after it), and emptied whole when anything else moved the model (the resolver
//! finds another writer's token, or [`ViewCache::watch`] reads one).
//!
//! What a view holds is the committed model's: a profile's state, its recent events and its stored
//! tags, all written by the resolver in the transaction that moves its token. So a view cached here
//! is exact while the stored token is one this cache knows (one this process's resolver wrote, or
//! the one found when the cache was last emptied), with one rule for the races between a reader
//! filling the cache and a writer emptying it: every emptying first moves `generation`, and a reader
//! keeps what it put in only if `generation` did not move since it began its read of the database.
//! A write of another process (another instance's resolver, `cdp replay`, an erasure run elsewhere)
//! is seen within [`WATCH_EVERY`]; until then this process may answer with the view before it, as a
//! read of a replica that lags would.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;
use moka::ops::compute::Op;

use super::{view, ProfileKey, ProfileView};
use crate::runner::ProjectionError;

/// How often [`ViewCache::watch`] reads the stored token.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);

/// How many tokens of its own resolver a cache remembers (a commit's group and the batches prepared
/// ahead of it are far fewer).
const KNOWN_TOKENS: usize = 256;

/// The default bound of a cache's memory.
pub const DEFAULT_BYTES: u64 = 256 << 20;

/// A workspace and a live profile of it.
type ViewKey = (String, String);

#[derive(Clone)]
enum Slot {
    /// A batch being committed changes the profile: read from the database, never cached, until the
    /// commit has ended.
    Writing,
    View(Arc<ProfileView>),
}

/// Profiles' views in memory; clones share one cache.
#[derive(Clone)]
pub struct ViewCache {
    inner: Arc<Inner>,
}

struct Inner {
    views: moka::sync::Cache<ViewKey, Slot>,
    /// Moves before anything cached is dropped for being possibly stale.
    generation: AtomicU64,
    /// The stored tokens at which the cache is exact (newest last).
    known: Mutex<VecDeque<String>>,
    /// The profiles marked [`Slot::Writing`] by the batches of the commit under way.
    writing: Mutex<Vec<ViewKey>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Default for ViewCache {
    fn default() -> Self {
        ViewCache::with_bytes(DEFAULT_BYTES)
    }
}

impl ViewCache {
    /// A cache holding views of about `bytes` bytes in all (0: nothing is cached).
    pub fn with_bytes(bytes: u64) -> ViewCache {
        let views = moka::sync::Cache::builder()
            .max_capacity(bytes)
            .weigher(|_: &ViewKey, slot: &Slot| match slot {
                Slot::Writing => 64,
                Slot::View(v) => weight(v),
            })
            .build();
        ViewCache {
            inner: Arc::new(Inner {
                views,
                generation: AtomicU64::new(0),
                known: Mutex::new(VecDeque::new()),
                writing: Mutex::new(Vec::new()),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// The view of a live profile (`None`: merged away or never created), from memory when held.
    pub async fn view(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        profile: &str,
    ) -> Result<Option<Arc<ProfileView>>, ProjectionError> {
        let inner = &self.inner;
        let key = (workspace.to_string(), profile.to_owned());
        let held = inner.views.get(&key);
        if let Some(Slot::View(v)) = &held {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(v.clone()));
        }
        inner.misses.fetch_add(1, Ordering::Relaxed);
        let began = inner.generation.load(Ordering::SeqCst);
        let Some(found) = view(store, workspace, profile).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        if held.is_none() {
            self.keep(key, &found, began);
        }
        Ok(Some(found))
    }

    /// Puts a view read from the database in, unless a commit touching it is under way or anything was
    /// dropped since the read began (`began`: the generation then); takes it out again if something was
    /// dropped while it was being put in.
    fn keep(&self, key: ViewKey, found: &Arc<ProfileView>, began: u64) {
        let inner = &self.inner;
        let unmoved = || inner.generation.load(Ordering::SeqCst) == began;
        // Calls on one key run one at a time: a writer's mark cannot be overwritten.
        inner
            .views
            .entry(key.clone())
            .and_compute_with(|held| match held {
                None if unmoved() => Op::Put(Slot::View(found.clone())),
                _ => Op::Nop,
            });
        if !unmoved() {
            inner.views.entry(key).and_compute_with(|held| match held {
                Some(e) if matches!(e.value(), Slot::View(v) if Arc::ptr_eq(v, found)) => {
                    Op::Remove
                }
                _ => Op::Nop,
            });
        }
    }

    /// The resolver is about to commit a batch storing `token` and changing `profiles`: they are read
    /// from the database until [`ViewCache::ended`].
    pub(crate) fn writing<'a>(&self, token: &str, profiles: impl Iterator<Item = &'a ProfileKey>) {
        let inner = &self.inner;
        let mut known = inner.known.lock().expect("view cache tokens");
        known.push_back(token.to_owned());
        while known.len() > KNOWN_TOKENS {
            known.pop_front();
        }
        drop(known);
        let mut writing = inner.writing.lock().expect("view cache writes");
        for (w, p) in profiles {
            let key = (w.clone(), p.to_string());
            inner
                .views
                .entry(key.clone())
                .and_compute_with(|_| Op::Put(Slot::Writing));
            writing.push(key);
        }
    }

    /// The commit of the batches marked by [`ViewCache::writing`] ended (committed or not): their
    /// profiles' views are dropped, to be read again.
    pub(crate) fn ended(&self) {
        let inner = &self.inner;
        let touched = std::mem::take(&mut *inner.writing.lock().expect("view cache writes"));
        if touched.is_empty() {
            return;
        }
        inner.generation.fetch_add(1, Ordering::SeqCst);
        for key in touched {
            inner.views.entry(key).and_compute_with(|held| match held {
                Some(_) => Op::Remove,
                None => Op::Nop,
            });
        }
    }

    /// Drops every view: the model was written by something else (an erasure, a rebuild's switch,
    /// another instance). `token`: the stored token now, at which the emptied cache is exact.
    pub fn clear(&self, token: Option<String>) {
        let inner = &self.inner;
        let mut known = inner.known.lock().expect("view cache tokens");
        inner.generation.fetch_add(1, Ordering::SeqCst);
        inner.views.invalidate_all();
        known.clear();
        known.extend(token);
    }

    /// Empties the cache whenever the stored token is one it does not know, read every
    /// [`WATCH_EVERY`] (and when it cannot be read); runs until dropped, beside a resolver of the
    /// same cache.
    pub async fn watch(self, store: Store) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match crate::projection::resolver_token(&store).await {
                Ok(token) => self.saw(token),
                Err(e) => {
                    tracing::debug!(error = %e, "the view cache could not read the model's token");
                    self.clear(None);
                }
            }
        }
    }

    /// What the watcher does with the stored token it read.
    fn saw(&self, token: Option<String>) {
        let known = {
            let known = self.inner.known.lock().expect("view cache tokens");
            token.as_ref().is_some_and(|t| known.contains(t))
        };
        if !known {
            self.clear(token);
        }
    }

    /// Reads answered from memory and from the database since the start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.inner.hits.load(Ordering::Relaxed),
            self.inner.misses.load(Ordering::Relaxed),
        )
    }
}

/// About how many bytes a view holds in memory (its maps' entries and strings), at least 1.
fn weight(view: &ProfileView) -> u32 {
    let doc = &view.doc;
    let entries = doc.linked.len()
        + doc.seen.iter().map(|(_, v)| v.len()).sum::<usize>()
        + doc.traits.len()
        + doc.counts_by_type.len()
        + doc.counts_by_event.len()
        + doc.counts_by_channel.len();
    let bytes = 512
        + entries * 96
        + doc.computed.len() * 256
        + view.recent.len() * 192
        + view.tags.len() * 128;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
