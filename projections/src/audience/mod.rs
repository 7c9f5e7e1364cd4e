//! The audience index of each workspace (`cdp_domain::audience`), built from the engine's tables in
//! the background ([`Audiences::keep_built`]: at start once the resolver has caught up, and again
//! whenever an index cannot follow the resolver) and kept current as the resolver commits.
//!
//! The resolver stages, with every batch it writes, the profiles the batch touched and its token with
//! the token it was prepared on ([`Audiences::stage`]); nothing is applied then. Before an index
//! answers, the stored token is read: equal to the index's, the index is current; reachable from it
//! through the staged batches (each names the token it followed), the profiles those batches touched
//! are read again from the tables (a batch that changed definitions breaks the chain only when the
//! index's columns depend on what it changed: a computed trait folded, a tag's name, the consent
//! policy); otherwise —
//! another instance's resolver, a rebuild's switch, an erasure, a failed commit — the index is not
//! current, the caller answers without it (the exact path, the stored rows), and the background
//! builder reads the workspace whole again. Profiles whose computed values changed by themselves
//! since (a window moved on) are read again too. So an answer reflects every batch committed before
//! it started; see ARCHITECTURE.md ("The audience index").
//!
//! The audiences stage's rows — tags, segment memberships (both read by the index) and the
//! memberships' history — are written in `writes`.

mod builder;
mod load;
pub mod preview;
pub mod writes;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cdp_domain::audience::AudienceIndex;
use cdp_domain::catalog::Catalog;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use crate::profiles::ProfileKey;
use crate::runner::ProjectionError;

pub use load::{names_of, stored_token};

/// Staged profiles kept at most (over it the oldest batches are dropped: an index that needed them
/// is read whole again).
const MAX_STAGED: usize = 200_000;

/// The newest staged batches are kept apart, each as staged: some of them are not committed yet, and
/// the stored token an index follows from is one of them.
const KEPT_APART: usize = 8;

/// Past this many staged batches the older ones (all but [`KEPT_APART`]) are merged into as few
/// records as the indexes' tokens allow, each profile named once: what is staged then grows with the
/// distinct profiles touched, not with the batches — a steady stream over the same customers does not
/// push the staging towards its bound (nor the background builder into reading them all again).
const COMPACT_PAST: usize = 4 * KEPT_APART;

/// One committed-or-not batch of the resolver, as staged.
#[derive(Debug)]
struct Staged {
    token: String,
    based_on: Option<String>,
    profiles: Vec<ProfileKey>,
    /// Workspaces whose definitions the batch changed.
    redefined: BTreeSet<String>,
}

/// The indexes of this process, one per workspace, and what the resolver staged for them.
#[derive(Clone, Default)]
pub struct Audiences {
    staged: Arc<Mutex<VecDeque<Staged>>>,
    slots: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>>,
    /// Wakes the background builder (an answer found an index that was not current).
    wake: Arc<tokio::sync::Notify>,
    /// Where the background builder stands, for `/readyz` and `/metrics`.
    status: Arc<Mutex<BuilderStatus>>,
}

/// Where the background builder stands.
#[derive(Debug, Clone, Default)]
pub struct BuilderStatus {
    /// Whether it has built every workspace's index once since the process started.
    pub started: bool,
    /// The workspace whose index it is reading whole now.
    pub building: Option<String>,
    /// Each built workspace: its live profiles, when it was last read whole, how many seconds
    /// that took.
    pub built: BTreeMap<String, BuiltIndex>,
    /// Whole reads done since the process started.
    pub builds: u64,
}

/// One workspace's index as last built.
#[derive(Debug, Clone, Copy)]
pub struct BuiltIndex {
    pub profiles: u64,
    pub at: DateTime<Utc>,
    pub seconds: f64,
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
    /// The workspace was read whole. Always `false` now: an answer never reads it whole (the
    /// background builder does); kept for the preview's `index.read_whole`.
    pub whole: bool,
    /// Profiles read again.
    pub profiles: usize,
}

impl Audiences {
    /// Whether any workspace has an index slot (built or being built); until then nothing is staged, so
    /// the resolver need not list what its batches touched.
    pub fn has_slots(&self) -> bool {
        !self.slots.lock().expect("audience slots lock").is_empty()
    }

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
        let tokens = self.prune();
        let mut staged = self.staged.lock().expect("audience staging lock");
        staged.push_back(Staged {
            token: token.to_owned(),
            based_on: based_on.map(str::to_owned),
            profiles,
            redefined,
        });
        let mut total: usize = staged.iter().map(|s| s.profiles.len()).sum();
        // Merged past a number of batches, and before large batches (a catch-up's) would pass the bound.
        if staged.len() > COMPACT_PAST || total > MAX_STAGED {
            if let Some(tokens) = tokens {
                compact(&mut staged, &tokens);
                total = staged.iter().map(|s| s.profiles.len()).sum();
            }
        }
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
    /// caller; `None` when this process holds none that the staged batches bring up to date (it is
    /// being built, or must be read whole again: the background builder is woken).
    pub async fn current(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        self.current_in(store, workspace, now).await
    }

    /// [`Audiences::current`] for the engine, which holds workspaces as the events' text.
    pub(crate) async fn current_in(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        let found = self.refresh(store, workspace, now).await?;
        if found.is_none() {
            self.wake.notify_one();
        }
        Ok(found)
    }

    /// Reads `workspace` whole into a new index now, in the caller (the background builder; tools
    /// that measure the build), and puts it in place of the one held.
    pub async fn build(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        self.build_in(store, workspace, now).await
    }

    /// [`Audiences::build`] for the engine, which holds workspaces as the events' text.
    pub(crate) async fn build_in(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ProjectionError> {
        // The slot first (the resolver stages batches once there is one), then the token: a batch
        // committed while the tables are read is on the chain after it (its rows read again by the
        // first answer), whatever the read already saw of it.
        let slot = self.slot(workspace);
        let token = stored_token(store).await?;
        let started = Instant::now();
        let catalog = crate::catalog::load_in(store, workspace).await?;
        let mut index = AudienceIndex::new(names_of(&catalog));
        load::whole(store, workspace, &catalog, now, |rows| {
            for row in rows {
                index.upsert(row);
            }
        })
        .await?;
        let took = started.elapsed();
        tracing::info!(
            workspace,
            profiles = index.profiles(),
            ms = took.as_millis() as u64,
            "audience index built"
        );
        let profiles = index.profiles();
        let mut slot = slot.lock().await;
        slot.index = Some(index);
        slot.catalog = catalog;
        slot.token = token;
        slot.built = Some((now, took));
        drop(slot);
        let mut status = self.status.lock().expect("audience status lock");
        status.builds += 1;
        status.built.insert(
            workspace.to_owned(),
            BuiltIndex {
                profiles,
                at: now,
                seconds: took.as_secs_f64(),
            },
        );
        Ok(())
    }

    /// Profiles staged and not yet pruned, all but the newest batches merged first (so the count is
    /// about the distinct profiles touched, whatever the size of the batches).
    fn staged_profiles(&self) -> usize {
        let tokens = self.prune();
        let mut staged = self.staged.lock().expect("audience staging lock");
        if let Some(tokens) = tokens {
            compact(&mut staged, &tokens);
        }
        staged.iter().map(|s| s.profiles.len()).sum()
    }

    fn slot(&self, workspace: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots
            .lock()
            .expect("audience slots lock")
            .entry(workspace.to_owned())
            .or_default()
            .clone()
    }

    /// The members of each saved segment of `workspace` from the index's bitmaps, when this process
    /// holds an index of it that a few rows bring up to date; `None` otherwise (the caller counts the
    /// stored rows instead).
    pub async fn segment_sizes(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, ProjectionError> {
        self.held_answer(store, workspace, now, |i| Some(i.segment_sizes()))
            .await
    }

    /// A tag's population per value (each value's live profiles and their spend) from the index's
    /// bitmaps, when this process holds an index of `workspace` that a few rows bring up to date and
    /// it can say (see [`AudienceIndex::tag_values`]); `None` otherwise (the caller counts the stored
    /// rows instead).
    pub async fn tag_values(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(serde_json::Value, u64, f64)>>, ProjectionError> {
        self.held_answer(store, workspace, now, |i| i.tag_values(tag))
            .await
    }

    /// What `answer` says of the index of `workspace`, brought up to date by a few rows, when this
    /// process holds one; `None` when it holds none, the index needs to be read whole, or `answer`
    /// cannot say.
    async fn held_answer<T>(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
        answer: impl FnOnce(&AudienceIndex) -> Option<T>,
    ) -> Result<Option<T>, ProjectionError> {
        let held = self
            .slots
            .lock()
            .expect("audience slots lock")
            .contains_key(workspace);
        if !held {
            return Ok(None);
        }
        let found = self.refresh(store, workspace, now).await?;
        Ok(found.and_then(|(slot, _)| slot.index().and_then(answer)))
    }

    /// Brings the index of `workspace` up to date; `None` when there is none or that needs it read
    /// whole.
    async fn refresh(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        let slot = self.slot(workspace);
        let mut slot = slot.lock_owned().await;
        if slot.index.is_none() {
            return Ok(None);
        }
        let stored = stored_token(store).await?;
        let mut refreshed = Refreshed::default();
        let (mut profiles, catalog) = if slot.token == stored {
            (Vec::new(), None)
        } else {
            match self
                .follow(store, workspace, &slot, stored.as_deref())
                .await?
            {
                Some(found) => found,
                None => return Ok(None),
            }
        };
        if let Some(catalog) = catalog {
            slot.catalog = catalog;
        }
        if let Some(index) = &slot.index {
            profiles.extend(index.stale_at(now));
        }
        profiles.sort_unstable();
        profiles.dedup();
        refreshed.profiles = profiles.len();
        read_again(store, workspace, &mut slot, &profiles, now).await?;
        slot.token = stored;
        Ok(Some((slot, refreshed)))
    }

    /// The profiles of `workspace` the batches after the slot's token up to `to` touched, and the
    /// catalog in force when one of them changed definitions; `None` when the chain does not lead
    /// back to the slot's token, or a definition changed what the index's columns are (a computed
    /// trait folded (not a segment's hidden one), a tag defined or deleted: names resolve differently, values are computed
    /// differently; the consent policy: every row's reachable channels) — then the index is read
    /// whole. A segment's definition changes no column (its event conditions' hidden traits are
    /// read by no column): its members are staged as any membership.
    async fn follow(
        &self,
        store: &Store,
        workspace: &str,
        slot: &Slot,
        to: Option<&str>,
    ) -> Result<Option<(Vec<String>, Option<Catalog>)>, ProjectionError> {
        let Some((profiles, redefined)) =
            self.touched_between(workspace, slot.token.as_deref(), to)
        else {
            return Ok(None);
        };
        if !redefined {
            return Ok(Some((profiles, None)));
        }
        let catalog = crate::catalog::load_in(store, workspace).await?;
        // The catalog read must be the one in force at `to`: no batch committed since redefined
        // the workspace (else it may be newer than the rows, and the next look would compare with it).
        let since = stored_token(store).await?;
        if since.as_deref() != to {
            match self.touched_between(workspace, to, since.as_deref()) {
                Some((_, false)) => {}
                _ => return Ok(None),
            }
        }
        // A segment's hidden traits are no column the index reads (saved segments are their stored
        // members, a preview's event conditions read the summaries): they may change under it. The
        // consent policy decides every row's reachable channels, as it does the engine's.
        let columns = |c: &Catalog| {
            c.folded()
                .iter()
                .filter(|(name, _)| !cdp_domain::segments::is_segment_trait(name))
                .map(|(name, t)| (name.clone(), t.clone()))
                .collect::<Vec<_>>()
        };
        let same_columns = columns(&catalog) == columns(&slot.catalog)
            && catalog.tags.keys().eq(slot.catalog.tags.keys())
            && catalog.consent == slot.catalog.consent;
        Ok(same_columns.then_some((profiles, Some(catalog))))
    }

    /// The profiles of `workspace` the batches after `from` up to `to` touched, following each batch's
    /// predecessor back from `to`, and whether a batch on the way redefined the workspace; `None` when
    /// the chain does not lead to `from`.
    fn touched_between(
        &self,
        workspace: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Option<(Vec<String>, bool)> {
        let staged = self.staged.lock().expect("audience staging lock");
        let mut at = to;
        let mut profiles = Vec::new();
        let mut redefined = false;
        let mut steps = 0;
        while at != from {
            let batch = staged.iter().rev().find(|s| Some(s.token.as_str()) == at)?;
            redefined |= batch.redefined.contains(workspace);
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
        Some((profiles, redefined))
    }

    /// Drops the staged batches no index needs: those up to the oldest index's token. Skipped while
    /// an index is being refreshed (its token is not known yet). Returns the indexes' tokens when
    /// every one was known.
    fn prune(&self) -> Option<Vec<Option<String>>> {
        let tokens: Option<Vec<Option<String>>> = self
            .slots
            .lock()
            .expect("audience slots lock")
            .values()
            .map(|s| s.try_lock().ok().map(|s| s.token.clone()))
            .collect();
        let tokens = tokens?;
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
        Some(tokens)
    }
}

/// Merges the staged batches older than the newest [`KEPT_APART`] into as few records as keep every
/// walk of [`Audiences::touched_between`] that can end at an index's token (`tokens`): a run of batches
/// each following the one before becomes one record, from the first one's predecessor to the last
/// one's token, naming each profile once and every workspace any of them redefined; a run is cut after
/// a batch whose token an index holds. A walk that would have ended inside a run now finds no way and
/// the index is read whole — never a walk that misses a batch.
fn compact(staged: &mut VecDeque<Staged>, tokens: &[Option<String>]) {
    let end = staged.len().saturating_sub(KEPT_APART);
    if end < 2 {
        return;
    }
    let held = |token: &str| tokens.iter().any(|t| t.as_deref() == Some(token));
    let newest: Vec<Staged> = staged.drain(end..).collect();
    let mut merged: Vec<Staged> = Vec::new();
    for batch in staged.drain(..) {
        match merged.last_mut() {
            Some(run)
                if batch.based_on.as_deref() == Some(run.token.as_str()) && !held(&run.token) =>
            {
                run.token = batch.token;
                run.profiles.extend(batch.profiles);
                run.redefined.extend(batch.redefined);
            }
            _ => merged.push(batch),
        }
    }
    for run in &mut merged {
        run.profiles.sort_unstable();
        run.profiles.dedup();
    }
    staged.extend(merged);
    staged.extend(newest);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::identity::ProfileId;

    fn profile(n: u32) -> ProfileKey {
        let id = ProfileId::parse(&format!("p_{n}")).expect("a profile id");
        ("w".to_owned(), id)
    }

    /// Batches `t0`…`t{n-1}`, each following the one before (the first following nothing), batch `i`
    /// touching profiles `i % 3` and `100 + i`; batch 5 redefines `w`.
    fn chain(n: usize) -> VecDeque<Staged> {
        (0..n)
            .map(|i| Staged {
                token: format!("t{i}"),
                based_on: i.checked_sub(1).map(|p| format!("t{p}")),
                profiles: vec![profile((i % 3) as u32), profile(100 + i as u32)],
                redefined: if i == 5 {
                    BTreeSet::from(["w".to_owned()])
                } else {
                    BTreeSet::new()
                },
            })
            .collect()
    }

    fn walk(staged: VecDeque<Staged>, from: Option<&str>, to: &str) -> Option<(Vec<String>, bool)> {
        let audiences = Audiences::default();
        *audiences.staged.lock().expect("staging lock") = staged;
        audiences
            .touched_between("w", from, Some(to))
            .map(|(mut profiles, redefined)| {
                profiles.sort_unstable();
                profiles.dedup();
                (profiles, redefined)
            })
    }

    #[test]
    fn compacting_keeps_every_walk_from_an_index_token_and_names_each_profile_once() {
        let n = COMPACT_PAST + 10;
        let last = format!("t{}", n - 1);
        let held = vec![Some("t20".to_owned())];
        let mut compacted = chain(n);
        compact(&mut compacted, &held);
        // Two runs (cut after the held token) and the newest kept apart.
        assert_eq!(compacted.len(), 2 + KEPT_APART);
        assert_eq!(compacted[0].token, "t20");
        assert_eq!(compacted[0].profiles.len(), 3 + 21, "each profile once");
        assert!(compacted[0].redefined.contains("w"));
        for from in [None, Some("t20")] {
            assert_eq!(
                walk(compacted_clone(&compacted), from, &last),
                walk(chain(n), from, &last)
            );
        }
        // From the index's token up to a batch kept apart: only what followed, not redefined.
        let (profiles, redefined) =
            walk(compacted_clone(&compacted), Some("t20"), &last).expect("a way");
        assert!(!redefined);
        assert!(!profiles.contains(&profile(120).1.to_string()));
        assert!(profiles.contains(&profile(121).1.to_string()));
        // A walk ending inside a run finds no way (the index is read whole), never a shorter one.
        assert_eq!(walk(compacted_clone(&compacted), Some("t10"), &last), None);
        assert!(walk(chain(n), Some("t10"), &last).is_some());
    }

    #[test]
    fn a_batch_not_following_the_one_before_starts_a_run_of_its_own() {
        let mut staged = chain(COMPACT_PAST + 1);
        // A batch prepared after a failed commit follows the stored token, not the failed batch.
        staged[10].based_on = Some("t8".to_owned());
        compact(&mut staged, &[]);
        assert_eq!(staged.len(), 2 + KEPT_APART);
        assert_eq!(staged[0].token, "t9");
        assert_eq!(staged[1].based_on.as_deref(), Some("t8"));
    }

    fn compacted_clone(staged: &VecDeque<Staged>) -> VecDeque<Staged> {
        staged
            .iter()
            .map(|s| Staged {
                token: s.token.clone(),
                based_on: s.based_on.clone(),
                profiles: s.profiles.clone(),
                redefined: s.redefined.clone(),
            })
            .collect()
    }
}
