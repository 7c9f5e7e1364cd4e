//! Hot profiles' 360° views held in memory (`ViewCache`), so that reading one again needs no database:
//! filled by the readers, emptied of what each commit of this process's resolver touches (dropped and
//! marked as being written before the commit, unmarked after it), and emptied whole when anything else
//! moved the model (the resolver finds another writer's token, or [`ViewCache::watch`] reads one).
//!
//! What a view holds is the committed model's: a profile's state, its recent events and its stored
//! tags, all written by the resolver in the transaction that moves its token. So a view cached here
//! is exact while the stored token is one this cache knows (one this process's resolver wrote, or
//! the one found when the cache was last emptied), with one rule for the races between a reader
//! filling the cache and a writer emptying it: a writer marks a profile, then moves `generation`,
//! then drops its view; a reader looks for the mark after taking `generation`, does not keep what it
//! read of a marked profile, and keeps a view only if `generation` did not move since it took it. A
//! view read before a commit is therefore never held after it: either the reader saw the mark, or it
//! saw `generation` move, or it put the view in before the writer dropped it.
//! A write of another process (another instance's resolver, `cdp replay`, an erasure run elsewhere)
//! is seen within [`WATCH_EVERY`]; until then this process may answer with the view before it, as a
//! read of a replica that lags would.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;

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

/// The profiles one commit marked as being written ([`ViewCache::writing`]), handed back to
/// [`ViewCache::ended`] when it ended.
#[derive(Debug)]
pub struct Marked(Vec<ViewKey>);

/// Profiles' views in memory; clones share one cache.
#[derive(Clone)]
pub struct ViewCache {
    inner: Arc<Inner>,
}

struct Inner {
    views: moka::sync::Cache<ViewKey, Arc<ProfileView>>,
    /// Whether anything is held at all (a bound of 0 bytes holds nothing).
    holds: bool,
    /// Moves after profiles are marked as being written and before their views are dropped, and
    /// before the whole cache is emptied.
    generation: AtomicU64,
    /// The stored tokens at which the cache is exact (newest last).
    known: Mutex<VecDeque<String>>,
    /// The profiles the commits under way write (one count per commit marking each — the parts of a
    /// resolver commit apart): read from the database, never kept, until they ended.
    writing: Mutex<HashMap<ViewKey, u32>>,
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
            .weigher(|_: &ViewKey, view: &Arc<ProfileView>| weight(view))
            .build();
        ViewCache {
            inner: Arc::new(Inner {
                views,
                holds: bytes > 0,
                generation: AtomicU64::new(0),
                known: Mutex::new(VecDeque::new()),
                writing: Mutex::new(HashMap::new()),
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
        if !inner.holds {
            inner.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(view(store, workspace, profile).await?.map(Arc::new));
        }
        let key = (workspace.to_string(), profile.to_owned());
        if let Some(view) = inner.views.get(&key) {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(view));
        }
        inner.misses.fetch_add(1, Ordering::Relaxed);
        let began = inner.generation.load(Ordering::SeqCst);
        let marked = inner
            .writing
            .lock()
            .expect("view cache writes")
            .contains_key(&key);
        let Some(found) = view(store, workspace, profile).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        if !marked && inner.generation.load(Ordering::SeqCst) == began {
            inner.views.insert(key.clone(), found.clone());
            // Moved while it was put in: a writer may have dropped the profile before it was.
            if inner.generation.load(Ordering::SeqCst) != began {
                inner.views.invalidate(&key);
            }
        }
        Ok(Some(found))
    }

    /// The resolver is about to commit a batch storing `token` and changing `profiles`: they are read
    /// from the database until [`ViewCache::ended`] is handed what this returns.
    pub(crate) fn writing<'a>(
        &self,
        token: &str,
        profiles: impl Iterator<Item = &'a ProfileKey>,
    ) -> Marked {
        let inner = &self.inner;
        let mut known = inner.known.lock().expect("view cache tokens");
        known.push_back(token.to_owned());
        while known.len() > KNOWN_TOKENS {
            known.pop_front();
        }
        drop(known);
        let keys: Vec<ViewKey> = profiles.map(|(w, p)| (w.clone(), p.to_string())).collect();
        {
            let mut writing = inner.writing.lock().expect("view cache writes");
            for key in &keys {
                *writing.entry(key.clone()).or_default() += 1;
            }
        }
        inner.generation.fetch_add(1, Ordering::SeqCst);
        for key in &keys {
            inner.views.invalidate(key);
        }
        Marked(keys)
    }

    /// The commit of the batch marked by [`ViewCache::writing`] ended (committed or not): its profiles
    /// may be kept again, as read from now on (unless another commit under way marked them too).
    pub(crate) fn ended(&self, marked: Marked) {
        let mut writing = self.inner.writing.lock().expect("view cache writes");
        for key in marked.0 {
            if let std::collections::hash_map::Entry::Occupied(mut e) = writing.entry(key) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    /// Drops every view: the model was written by something else (an erasure, a rebuild's switch,
    /// another instance). `token`: the stored token now, at which the emptied cache is exact (the
    /// parts' tokens joined by `;` when the resolver runs in parts).
    pub fn clear(&self, token: Option<String>) {
        let inner = &self.inner;
        let mut known = inner.known.lock().expect("view cache tokens");
        inner.generation.fetch_add(1, Ordering::SeqCst);
        inner.views.invalidate_all();
        known.clear();
        known.extend(token.iter().flat_map(|t| t.split(';')).map(str::to_owned));
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
            // Every part's token one this cache knows.
            token
                .as_ref()
                .is_some_and(|t| t.split(';').all(|part| known.iter().any(|k| k == part)))
        };
        if !known {
            self.clear(token);
        }
    }

    /// The views held now and their weight (the bytes [`weight`] estimates, which the bound applies to),
    /// after the cache's pending evictions ran.
    pub fn held(&self) -> (u64, u64) {
        self.inner.views.run_pending_tasks();
        (
            self.inner.views.entry_count(),
            self.inner.views.weighted_size(),
        )
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
