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
//! Here the indexes' slots and the whole read (`build`); the staging and the walk along it in
//! `staging`, bringing an index up to date before an answer in `refresh`, the background builder in
//! `builder`, the reads of the engine's tables in `load`, the preview in `preview`. The audiences
//! stage's rows — tags, segment memberships (both read by the index) and the memberships' history —
//! are written in `writes`.

mod builder;
mod load;
pub mod preview;
mod refresh;
mod sql;
mod staging;
pub mod writes;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cdp_domain::audience::AudienceIndex;
use cdp_domain::catalog::Catalog;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use crate::runner::ProjectionError;

pub use load::{names_of, stored_token};
use staging::{Staged, MAX_STAGED};

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
    /// Whether an answer found the index unable to follow since it was last read whole.
    asked: bool,
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
        slot.asked = false;
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

    fn slot(&self, workspace: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        self.slots
            .lock()
            .expect("audience slots lock")
            .entry(workspace.to_owned())
            .or_default()
            .clone()
    }
}
