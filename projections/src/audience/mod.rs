//! The audience index of each workspace (`cdp_domain::audience`), built from the engine's tables on
//! first use and kept current as the resolver commits.
//!
//! The resolver stages, with every batch it writes, the profiles the batch touched and its token with
//! the token it was prepared on ([`Audiences::stage`]); nothing is applied then. Before an index
//! answers, the stored token is read: equal to the index's, the index is current; reachable from it
//! through the staged batches (each names the token it followed), the profiles those batches touched
//! are read again from the tables; otherwise — another instance's resolver, a rebuild's switch, an
//! erasure, a failed commit, a definition changed — the workspace is read whole again. Profiles whose
//! computed values changed by themselves since (a window moved on) are read again too. So an answer
//! reflects every batch committed before it started; see ARCHITECTURE.md ("The audience index").

mod load;
pub mod preview;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cdp_domain::audience::AudienceIndex;
use cdp_domain::catalog::Catalog;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use crate::profiles::ProfileKey;
use crate::runner::ProjectionError;

pub use load::{names_of, stored_token};

/// Staged profiles kept at most (over it the oldest batches are dropped: an index that needed them
/// is read whole again).
const MAX_STAGED: usize = 200_000;

/// One committed-or-not batch of the resolver, as staged.
#[derive(Debug)]
struct Staged {
    token: String,
    based_on: Option<String>,
    profiles: Vec<ProfileKey>,
    /// Workspaces whose definitions the batch changed.
    redefined: BTreeSet<String>,
}

/// The indexes of this process, one per workspace met, and what the resolver staged for them.
#[derive(Clone, Default)]
pub struct Audiences {
    staged: Arc<Mutex<VecDeque<Staged>>>,
    slots: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>>,
}

impl std::fmt::Debug for Audiences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audiences").finish_non_exhaustive()
    }
}

/// One workspace's index and where it stands.
#[derive(Default)]
pub struct Slot {
    index: Option<AudienceIndex>,
    catalog: Catalog,
    /// The stored token the index reflects (at least).
    token: Option<String>,
    /// When it was last read whole, and how long that took.
    built: Option<(DateTime<Utc>, std::time::Duration)>,
}

impl Slot {
    pub fn index(&self) -> Option<&AudienceIndex> {
        self.index.as_ref()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// When the index was last read whole, and how long it took.
    pub fn built(&self) -> Option<(DateTime<Utc>, std::time::Duration)> {
        self.built
    }
}

/// How an index was brought up to date before an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refreshed {
    /// The workspace was read whole.
    pub whole: bool,
    /// Profiles read again.
    pub profiles: usize,
}

impl Audiences {
    /// Called by the resolver for every batch it writes (before its commit): the profiles the batch
    /// touched, its token and the one it followed, the workspaces it redefined.
    pub fn stage(
        &self,
        token: &str,
        based_on: Option<&str>,
        profiles: Vec<ProfileKey>,
        redefined: BTreeSet<String>,
    ) {
        if self.slots.lock().expect("audience slots lock").is_empty() {
            // No index yet: the first is read whole.
            return;
        }
        self.prune();
        let mut staged = self.staged.lock().expect("audience staging lock");
        staged.push_back(Staged {
            token: token.to_owned(),
            based_on: based_on.map(str::to_owned),
            profiles,
            redefined,
        });
        let mut total: usize = staged.iter().map(|s| s.profiles.len()).sum();
        while total > MAX_STAGED && staged.len() > 1 {
            if let Some(old) = staged.pop_front() {
                total -= old.profiles.len();
            }
        }
    }

    /// Approximate heap bytes of every index held.
    pub fn heap_bytes(&self) -> usize {
        let slots: Vec<_> = self
            .slots
            .lock()
            .expect("audience slots lock")
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok())
            .filter_map(|s| s.index.as_ref().map(AudienceIndex::heap_bytes))
            .sum()
    }

    /// The index of `workspace`, current with every batch committed before the call, locked for the
    /// caller.
    pub async fn current(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed), ProjectionError> {
        let found = self.refresh(store, workspace, now, true).await?;
        found.ok_or_else(|| ProjectionError::Stale("the audience index was not built".into()))
    }

    /// The members of each saved segment of `workspace` from the index's bitmaps, when this process
    /// holds an index of it that a few rows bring up to date; `None` otherwise (the caller counts the
    /// stored rows instead).
    pub async fn segment_sizes(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, ProjectionError> {
        let held = self
            .slots
            .lock()
            .expect("audience slots lock")
            .contains_key(workspace);
        if !held {
            return Ok(None);
        }
        let found = self.refresh(store, workspace, now, false).await?;
        Ok(found.and_then(|(slot, _)| slot.index().map(AudienceIndex::segment_sizes)))
    }

    /// A tag's population per value (each value's live profiles and their spend) from the index's
    /// bitmaps, when this process holds an index of `workspace` that a few rows bring up to date and
    /// it can say (see [`AudienceIndex::tag_values`]); `None` otherwise (the caller counts the stored
    /// rows instead).
    pub async fn tag_values(
        &self,
        store: &Store,
        workspace: &str,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(serde_json::Value, u64, f64)>>, ProjectionError> {
        let held = self
            .slots
            .lock()
            .expect("audience slots lock")
            .contains_key(workspace);
        if !held {
            return Ok(None);
        }
        let found = self.refresh(store, workspace, now, false).await?;
        Ok(found.and_then(|(slot, _)| slot.index().and_then(|i| i.tag_values(tag))))
    }

    /// Brings the index of `workspace` up to date; `None` when that needs it read whole and `whole`
    /// does not allow it.
    async fn refresh(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
        whole: bool,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        let slot = self
            .slots
            .lock()
            .expect("audience slots lock")
            .entry(workspace.to_owned())
            .or_default()
            .clone();
        let mut slot = slot.lock_owned().await;
        let stored = stored_token(store).await?;
        let mut refreshed = Refreshed::default();
        let touched = match &slot.index {
            None => None,
            Some(_) if slot.token == stored => Some(Vec::new()),
            Some(_) => self.touched_between(workspace, slot.token.as_deref(), stored.as_deref()),
        };
        match touched {
            None if !whole => return Ok(None),
            None => {
                build_whole(store, workspace, &mut slot, now).await?;
                refreshed.whole = true;
            }
            Some(mut profiles) => {
                if let Some(index) = &slot.index {
                    profiles.extend(index.stale_at(now));
                }
                profiles.sort_unstable();
                profiles.dedup();
                refreshed.profiles = profiles.len();
                read_again(store, workspace, &mut slot, &profiles, now).await?;
            }
        }
        slot.token = stored;
        Ok(Some((slot, refreshed)))
    }

    /// The profiles of `workspace` the batches after `from` up to `to` touched, following each batch's
    /// predecessor back from `to`; `None` when the chain does not lead to `from` or a batch on it
    /// redefined the workspace.
    fn touched_between(
        &self,
        workspace: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Option<Vec<String>> {
        let staged = self.staged.lock().expect("audience staging lock");
        let mut at = to;
        let mut profiles = Vec::new();
        let mut steps = 0;
        while at != from {
            let batch = staged.iter().rev().find(|s| Some(s.token.as_str()) == at)?;
            if batch.redefined.contains(workspace) {
                return None;
            }
            profiles.extend(
                batch
                    .profiles
                    .iter()
                    .filter(|(w, _)| w == workspace)
                    .map(|(_, p)| p.to_string()),
            );
            at = batch.based_on.as_deref();
            steps += 1;
            if steps > staged.len() {
                return None;
            }
        }
        Some(profiles)
    }

    /// Drops the staged batches no index needs: those up to the oldest index's token. Skipped while
    /// an index is being refreshed (its token is not known yet).
    fn prune(&self) {
        let tokens: Option<Vec<Option<String>>> = self
            .slots
            .lock()
            .expect("audience slots lock")
            .values()
            .map(|s| s.try_lock().ok().map(|s| s.token.clone()))
            .collect();
        let Some(tokens) = tokens else { return };
        let mut staged = self.staged.lock().expect("audience staging lock");
        let keep_from = tokens
            .iter()
            .filter_map(|t| {
                let t = t.as_deref()?;
                staged.iter().enumerate().find_map(|(i, s)| {
                    if s.token == t {
                        Some(i + 1)
                    } else if s.based_on.as_deref() == Some(t) {
                        Some(i)
                    } else {
                        None
                    }
                })
            })
            .min()
            .unwrap_or(0);
        staged.drain(..keep_from);
    }
}

/// Stages what one resolver batch touched: every profile whose state, tags, memberships or spend it
/// writes, and the workspaces whose definitions it changes.
pub fn stage_batch(
    audiences: &Audiences,
    token: &str,
    based_on: Option<&str>,
    model: &crate::profiles::ModelWrites,
    catalog: &crate::catalog::CatalogWrites,
) {
    if audiences
        .slots
        .lock()
        .expect("audience slots lock")
        .is_empty()
    {
        return;
    }
    let mut profiles: Vec<ProfileKey> = model
        .docs
        .iter()
        .map(|(key, _)| key.clone())
        .chain(model.gone.iter().cloned())
        .collect();
    let mut named = |w: &str, p: &str| {
        if let Ok(p) = cdp_domain::identity::ProfileId::parse(p) {
            profiles.push((w.to_owned(), p));
        }
    };
    for (w, p, _, _) in &catalog.tags {
        named(w, p);
    }
    for (w, _, p, _) in &catalog.members {
        named(w, p);
    }
    for (w, p, _) in &catalog.spend {
        named(w, p);
    }
    let redefined = catalog
        .definitions
        .iter()
        .map(|d| d.workspace.clone())
        .collect();
    audiences.stage(token, based_on, profiles, redefined);
}

/// Reads the workspace whole into a new index.
async fn build_whole(
    store: &Store,
    workspace: &str,
    slot: &mut Slot,
    now: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    let started = Instant::now();
    let catalog = crate::catalog::load(store, workspace).await?;
    let mut index = AudienceIndex::new(names_of(&catalog));
    load::whole(store, workspace, &catalog, now, |rows| {
        for row in rows {
            index.upsert(row);
        }
    })
    .await?;
    tracing::debug!(
        workspace,
        profiles = index.profiles(),
        ms = started.elapsed().as_millis() as u64,
        "audience index built"
    );
    slot.index = Some(index);
    slot.catalog = catalog;
    slot.built = Some((now, started.elapsed()));
    Ok(())
}

/// Reads the named profiles again: those live replace their rows, the others leave the index.
async fn read_again(
    store: &Store,
    workspace: &str,
    slot: &mut Slot,
    profiles: &[String],
    now: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    if profiles.is_empty() {
        return Ok(());
    }
    let rows = load::named(store, workspace, &slot.catalog, profiles, now).await?;
    let Some(index) = slot.index.as_mut() else {
        return Ok(());
    };
    let live: BTreeSet<String> = rows.iter().map(|r| r.profile.clone()).collect();
    for p in profiles {
        if !live.contains(p) {
            index.remove(p);
        }
    }
    for row in rows {
        index.upsert(row);
    }
    Ok(())
}
