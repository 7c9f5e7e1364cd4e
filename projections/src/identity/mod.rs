//! The identity resolver: follows the log in its global order, resolves each event's identifiers with the
//! pure OneID core (`cdp_domain::identity`), and records every decision in `identity_events`.
//!
//! Resolution runs as a projection, so it is serialised like one: batches are decided one after another
//! in log order and committed in that order under the checkpoint (a row lock on PostgreSQL, checked at
//! commit), which is what keeps two service instances from creating two profiles for one person. The
//! pipeline may prepare a batch before the previous one committed (`may_prepare_ahead` says when). The
//! graph is kept in memory, per workspace, as the fold of `identity_events`; when a batch may not have
//! committed (or another instance moved on) it is reloaded from the table.
//!
//! In the same transaction the resolver keeps the 360° profiles (`crate::profiles`): each customer event
//! is folded into the document of the profile it resolved to; a merge joins two documents; a split
//! re-folds both sides from their events, so that both are exactly what they would have been apart.
//! Operator commands (`MessageKind::Operator` events: manual merges, splits, rules changes) are decided
//! here too, in their place in the log.

mod batch;
mod catalog_commands;
mod deferred;
mod held;
mod model;
mod operator;
mod partition;
pub mod queries;
mod sql;
mod step;
mod token;
mod write;

pub use held::WARM_AT_MOST;
pub use operator::workspace_log;
pub use queries::*;
pub(crate) use token::forget_state;
use token::{new_token, stored_token, write_token};

use std::collections::{BTreeMap, HashMap, VecDeque};

use cdp_domain::fastmap::FastSet;
use std::sync::{Arc, Mutex};

use cdp_domain::catalog::Catalog;
use cdp_domain::event::StoredEvent;
use cdp_domain::identity::{Identifier, IdentityEvent, IdentityGraph, IdentityRules, ProfileId};
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use cdp_domain::tags::RfmThresholds;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::profiles::{ModelWrites, ProfileKey};
use crate::runner::{ModelTx, Projection, ProjectionError};
use crate::stages::StageWrites;

/// A decision with where it came from, ready to be stored.
#[derive(Debug, Clone)]
pub struct RecordedDecision {
    pub workspace: String,
    pub log_seq: i64,
    /// When the causing event arrived: a fact of the log, so a rebuild records the same time.
    pub recorded_at_ms: i64,
    pub event: IdentityEvent,
}

/// What `prepare` decided for a batch: the decisions and the profile model's changes.
#[derive(Debug, Default)]
pub struct PreparedDecisions {
    decisions: Vec<RecordedDecision>,
    model: ModelWrites,
    /// What the batch's stages write besides: catalog, derived rows, audiences, outbox.
    stages: StageWrites,
    /// The rules the batch's rules commands put in force: `(workspace, rules, command's arrival in ms)`.
    rules: Vec<(String, IdentityRules, i64)>,
    token: String,
    /// The stored token the batch was prepared against; the write refuses when it changed meanwhile.
    based_on: Option<String>,
    /// Whether the batch left its last-value rows to a later flush (a rebuild's plain batch).
    deferred: bool,
}

/// Profiles whose state a resolver keeps in memory between batches unless told otherwise
/// ([`IdentityResolver::holding`]): ~2 KB each for a retail profile, its identity graph included
/// (BENCHMARKS.md, memory).
pub const HELD_PROFILES: usize = 1_000_000;

#[derive(Default)]
struct ResolverState {
    graphs: HashMap<String, IdentityGraph>,
    /// Whether `graphs` were loaded from `identity_events`.
    loaded: bool,
    docs: held::Docs,
    /// What is known of the work between batches (jobs, due profiles, RFM).
    memo: crate::jobs::Memo,
    /// The tags, segments, spend and due time derive last wrote per profile.
    /// The catalogs, RFM cut points and identity rules of the workspaces met so far.
    catalogs: HashMap<String, Catalog>,
    thresholds: HashMap<String, BTreeMap<String, RfmThresholds>>,
    rules: HashMap<String, IdentityRules>,
    /// The stored token the state was last known to agree with, then the tokens of the batches
    /// prepared since, in order (the last is the newest batch's). A batch may be prepared while those
    /// before it are still being written (the pipeline); when the stored token is none of these, a
    /// batch was not committed (or another instance went on) and the state is reloaded.
    issued: VecDeque<Option<String>>,
    /// Whether the newest batch left the state such that the next may be prepared before it commits
    /// (it defined nothing, started no job, changed no rules).
    plain: bool,
    /// What plain batches of a rebuild left to write (empty unless the resolver defers).
    deferred: deferred::Deferred,
}

impl ResolverState {
    /// The newest token: of the newest batch prepared, or the stored one the state was loaded at.
    fn token(&self) -> Option<&String> {
        self.issued.back().and_then(Option::as_ref)
    }
}

/// The time, as the resolver sees it: the wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The resolver projection. Each batch resolves under the rules in force for its workspaces
/// (`identity_rules`, Segment's defaults where none are stored) — changed, in their place in the log,
/// by the rules commands it decides, which it stores with the batch —, and folds and evaluates the computed
/// traits and tags of their catalogs.
#[derive(Clone)]
pub struct IdentityResolver {
    /// Shared by the clones of a resolver (the pipeline's writer holds one).
    state: Arc<Mutex<ResolverState>>,
    clock: Clock,
    /// Whether batches write what is published — the outbox and `segment_history`, the record of
    /// what subscribers were told. A rebuild's shadow writes neither: it publishes nothing, and its
    /// switch records the changes it makes itself.
    publishes: bool,
    /// How many profiles' state is kept in memory between batches.
    held_profiles: usize,
    /// How many parts a batch's folds and evaluations are split into (one per core by default).
    parts: usize,
    /// Whether plain batches leave the rows that hold a last value to a flush (a rebuild's shadow:
    /// each profile written and evaluated once, not once per batch; see `deferred`).
    defers: bool,
    /// The audience indexes told of every batch written (`crate::audience`).
    audiences: Option<crate::audience::Audiences>,
    /// The profiles' views this process holds in memory, told of every batch written.
    views: Option<crate::profiles::view_cache::ViewCache>,
    /// The views the commit under way marked as being written (unmarked when it ends).
    marked: Arc<Mutex<Vec<crate::profiles::view_cache::Marked>>>,
    /// The part of the engine this resolver runs: its workspaces, checkpoint, token and lease.
    part: crate::partitions::Part,
}

impl std::fmt::Debug for IdentityResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityResolver").finish_non_exhaustive()
    }
}

impl Default for IdentityResolver {
    fn default() -> Self {
        IdentityResolver::with_clock(Arc::new(Utc::now))
    }
}

/// A profile id derived from the event that created it, so replaying the log makes the same ids.
/// `workspace` as the log's text (checked at ingestion): called per event on the resolver's hot path, so
/// `&str`, never a parse per event.
pub fn profile_id_for(workspace: &str, message_id: &str) -> ProfileId {
    let digest = Sha256::digest(format!("{workspace}\n{message_id}").as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    ProfileId::parse(&format!("p_{hex}")).expect("p_ and hex digits make a valid profile id")
}

impl IdentityResolver {
    pub const NAME: &'static str = crate::projection::RESOLVER;
    /// The version of the resolver's model code; see [`Projection::version`]. 2: documents hold consent.
    /// 3: recent events are summaries in `event_profiles`, no longer in the documents.
    pub const VERSION: i64 = 3;

    /// The profile states this resolver holds in memory now.
    pub fn held_profiles(&self) -> usize {
        self.state.lock().expect("resolver state lock").docs.len()
    }

    /// How many profiles' state this resolver keeps in memory at most ([`IdentityResolver::holding`]).
    pub fn held_bound(&self) -> usize {
        self.held_profiles
    }

    /// The time as this resolver sees it.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// A resolver reading the time from `clock` (windows, tags that move with time).
    pub fn with_clock(clock: Clock) -> IdentityResolver {
        IdentityResolver {
            state: Arc::new(Mutex::new(ResolverState::default())),
            clock,
            publishes: true,
            held_profiles: HELD_PROFILES,
            parts: crate::parallel::default_parts(),
            defers: false,
            audiences: None,
            views: None,
            marked: Arc::default(),
            part: crate::partitions::Part::WHOLE,
        }
    }

    /// This resolver, running `part` of the engine: the events of its workspaces only, under its
    /// own checkpoint and token (`crate::partitions`).
    pub fn in_part(mut self, part: crate::partitions::Part) -> IdentityResolver {
        self.part = part;
        self
    }

    /// The part of the engine this resolver runs.
    pub fn part(&self) -> crate::partitions::Part {
        self.part
    }

    /// This resolver, telling `audiences` what each batch it writes touched.
    pub fn reporting_to(mut self, audiences: crate::audience::Audiences) -> IdentityResolver {
        self.audiences = Some(audiences);
        self
    }

    /// This resolver, dropping from `views` every profile a batch changes, before its commit is seen.
    pub fn caching_views(
        mut self,
        views: crate::profiles::view_cache::ViewCache,
    ) -> IdentityResolver {
        self.views = Some(views);
        self
    }

    /// This resolver, keeping at most `profiles` profiles' state in memory between batches (the
    /// others are read from the tables when next touched).
    pub fn holding(mut self, profiles: usize) -> IdentityResolver {
        self.held_profiles = profiles;
        self
    }

    /// This resolver, splitting each batch's folds and evaluations into `parts` parts (the result is
    /// the same for any number; 1: all on one thread).
    pub fn in_parts(mut self, parts: usize) -> IdentityResolver {
        self.parts = parts.max(1);
        self
    }

    /// A resolver on the same clock, with a state of its own, that writes nothing that is published
    /// and writes each profile's last-value rows once per run of plain batches (a rebuild's shadow;
    /// [`IdentityResolver::flush`] writes what is left).
    pub fn without_output(&self) -> IdentityResolver {
        IdentityResolver {
            publishes: false,
            defers: true,
            held_profiles: self.held_profiles,
            parts: self.parts,
            ..IdentityResolver::with_clock(self.clock.clone())
        }
    }

    /// Whether `events` make a plain batch: customer events only, no work between batches due at
    /// `now`, the held profiles within their bound — a batch that reads nothing from the stored model
    /// but the profiles it does not hold (none, in a rebuild) and the log.
    fn plain_at(&self, state: &ResolverState, events: &[StoredEvent], now: DateTime<Utc>) -> bool {
        !events.is_empty()
            && !events
                .iter()
                .any(|e| e.event.kind == cdp_domain::message::MessageKind::Operator)
            && state.memo.idle_at(now)
            && !state.docs.over(self.held_profiles)
            && !state.deferred.full()
    }

    /// Writes what plain batches deferred (a rebuild's shadow, once it has caught up): every batch
    /// prepared must be committed.
    /// A resolver that holds no state (it prepared nothing since it started or forgot) cannot write
    /// what an earlier one deferred: [`ProjectionError::Stale`] when the stored model misses such rows.
    pub async fn flush(&self, store: &Store) -> Result<(), ProjectionError> {
        let mut state = std::mem::take(&mut *self.state.lock().expect("resolver state lock"));
        if !state.loaded && deferred::unwritten(store).await? {
            return Err(ProjectionError::Stale(
                "a rebuild's deferred rows were lost with its state".into(),
            ));
        }
        let now = (self.clock)();
        let flushed = deferred::flush(store, &mut state, now, self.parts).await;
        if flushed.is_ok() {
            *self.state.lock().expect("resolver state lock") = state;
        }
        flushed
    }

    /// Lets go of every profile state held in memory — each is read from the tables when next
    /// touched —, keeping the identity graphs, rules and catalogs. A rebuild in slices calls it when a
    /// slice is done and flushed (every batch it prepared committed, nothing deferred), so that the
    /// next slice has the memory.
    pub fn release_profiles(&self) {
        let mut state = self.state.lock().expect("resolver state lock");
        debug_assert!(state.deferred.is_empty(), "released with rows deferred");
        state.docs.trim(0);
    }

    async fn load_after(
        store: &Store,
        after: i64,
    ) -> Result<Vec<(i64, String, IdentityEvent)>, ProjectionError> {
        let rows: Vec<(i64, String, String)> = query(sql::DECISIONS_AFTER)
            .bind(after)
            .fetch_all(store.reader())
            .await?;
        rows.into_iter()
            .map(|(seq, workspace, body)| {
                let event = serde_json::from_str(&body).map_err(ProjectionError::corrupt)?;
                Ok((seq, workspace, event))
            })
            .collect()
    }
}

impl Projection for IdentityResolver {
    type Prepared = PreparedDecisions;

    fn name(&self) -> &'static str {
        self.part.name()
    }

    fn keeps(&self, event: &StoredEvent) -> bool {
        self.part.keeps(&event.event.workspace)
    }

    fn version(&self) -> i64 {
        Self::VERSION
    }

    #[tracing::instrument(name = "resolver.prepare", skip_all, fields(events = events.len()))]
    async fn prepare(
        &self,
        store: &Store,
        events: &[StoredEvent],
    ) -> Result<PreparedDecisions, ProjectionError> {
        let stored_token = stored_token(store.reader(), self.part.name()).await?;
        // The runner prepares one batch at a time, so the state can leave the lock while the batch is
        // worked on (splits and rules changes read the log). On error it is dropped and reloaded.
        let mut state = std::mem::take(&mut *self.state.lock().expect("resolver state lock"));
        match state.issued.iter().position(|t| *t == stored_token) {
            // Committed up to there; what follows is being written.
            Some(at) => drop(state.issued.drain(..at)),
            None => {
                // Written by something else since: nothing held of the model holds.
                state = ResolverState::default();
                state.issued.push_back(stored_token.clone());
                if let Some(views) = &self.views {
                    views.clear(stored_token.clone());
                }
            }
        }
        let now = (self.clock)();
        if !state.loaded && self.defers && deferred::unwritten(store).await? {
            // The rows a lost state deferred are missing from the stored model.
            return Err(ProjectionError::Stale(
                "a rebuild's deferred rows were lost with its state".into(),
            ));
        }
        // A plain batch of a rebuild defers its last-value rows; any other first writes what was
        // deferred, since it may read those rows (every batch before it is committed: the pipeline
        // prepares ahead only what `may_prepare_ahead` allows, the same plain batches).
        if !state.deferred.is_empty() && !self.plain_at(&state, events, now) {
            if state.issued.len() != 1 {
                return Err(ProjectionError::Stale(
                    "a batch prepared ahead needs the deferred rows written".into(),
                ));
            }
            deferred::flush(store, &mut state, now, self.parts).await?;
        }
        // Batches prepared before this one are not committed yet: the caches keep every profile
        // they hold, whose rows in the database are not yet what the caches hold.
        if state.issued.len() == 1 && state.deferred.is_empty() {
            state.docs.trim(self.held_profiles);
        }
        if !state.loaded {
            // A fresh state: the graphs are the fold of every decision stored. Otherwise the last
            // batch this resolver prepared committed (the token) and nothing else wrote decisions
            // since (every writer moves the token), so the graphs hold them already.
            for (_, workspace, event) in &Self::load_after(store, 0).await? {
                if !self.part.keeps(workspace) {
                    continue;
                }
                state
                    .graphs
                    .entry(workspace.clone())
                    .or_default()
                    .apply(event);
            }
            state.loaded = true;
        }
        // The catalogs, cut points and rules of the workspaces met so far stay in memory while the
        // token holds: only the resolver changes them, through the log.
        let mut catalogs = std::mem::take(&mut state.catalogs);
        let mut thresholds = std::mem::take(&mut state.thresholds);
        let house = crate::jobs::housekeeping(
            store,
            self.audiences.as_ref(),
            &mut state.memo,
            &mut catalogs,
            &mut thresholds,
            now,
            self.part,
        )
        .await?;
        // Memberships filled from the audience index are written beside derive's: what derive
        // remembers of the stored rows is read again after this batch commits.
        let filled = house.fill.is_some();
        // Housekeeping found nothing to do (it read nothing deferred: there was nothing, or no
        // work was known).
        let defer = self.defers && house.is_empty() && self.plain_at(&state, events, now);
        let mut rules: HashMap<String, IdentityRules> = HashMap::new();
        let workspaces = events
            .iter()
            .map(|e| &e.event.workspace)
            .chain(house.touched.keys().map(|k| &k.0));
        for w in workspaces {
            if !rules.contains_key(w) {
                let in_force = match state.rules.get(w) {
                    Some(r) => r.clone(),
                    None => {
                        let r = rules_in(store, w).await?;
                        state.rules.insert(w.clone(), r.clone());
                        r
                    }
                };
                rules.insert(w.clone(), in_force);
                crate::jobs::ensure_workspace(store, &mut catalogs, &mut thresholds, w).await?;
            }
        }
        // While a job runs, documents it has not reached lack its traits: those the batch reads
        // are backfilled first, which needs the log's owners complete (nothing being written).
        let backfill_read = !state.memo.no_running_jobs && state.issued.len() == 1;
        let context = batch::Context {
            backfill_read,
            rules,
            catalogs: &mut catalogs,
            thresholds: &thresholds,
            house,
            now,
            parts: self.parts,
            deferred: defer.then_some(&mut state.deferred),
            publishes: self.publishes,
        };
        let mut prepared =
            batch::prepare(store, &mut state.graphs, &mut state.docs, context, events).await?;
        for (w, r, _) in &prepared.rules {
            state.rules.insert(w.clone(), r.clone());
        }
        state.memo.wrote(&prepared.stages);
        // A batch that changed definitions but left nothing to work out from the stored rows — no job
        // running (a definition met before its workspace has profiles starts none), no cut points, no
        // rules — keeps its catalogs as it applied them (the later events of the batch were folded with
        // them; reading them back gives the same) and lets the next batch be prepared before it
        // commits. Otherwise the definitions (and the cut points, kept per tag version) are read again
        // from what it wrote.
        let settled = !prepared
            .stages
            .catalog
            .jobs
            .iter()
            .any(|j| j.status == "running")
            && prepared.stages.catalog.thresholds.is_empty()
            && prepared.rules.is_empty();
        if prepared.stages.catalog.definitions.is_empty() || settled {
            state.catalogs = catalogs;
            state.thresholds = thresholds;
        } else {
            state.docs.forget_derived();
        }
        state.plain = settled && !filled;
        if filled {
            state.docs.forget_derived();
        }
        let token = new_token();
        prepared.based_on = state.token().cloned();
        prepared.token = token.clone();
        state.issued.push_back(Some(token));
        *self.state.lock().expect("resolver state lock") = state;
        Ok(prepared)
    }

    async fn write(
        &self,
        tx: &mut ModelTx<'_>,
        mut prepared: PreparedDecisions,
    ) -> Result<(), ProjectionError> {
        if !self.publishes {
            prepared.stages.outbox.clear();
            prepared.stages.audiences.history.clear();
        }
        let started = std::time::Instant::now();
        // Under the write lock (SQLite) or the checkpoint's row lock (PostgreSQL): a model changed
        // since the batch was prepared (an erasure, a rebuild's switch) must not be overwritten with
        // documents computed from the old one.
        if stored_token(tx.exec(), self.part.name()).await? != prepared.based_on {
            return Err(ProjectionError::Stale(
                "the resolver's token moved since the batch was prepared".into(),
            ));
        }
        if prepared.deferred {
            deferred::mark(tx).await?;
        }
        write::write_decisions(tx, &prepared.decisions).await?;
        let decided = started.elapsed();
        crate::profiles::write(tx, &prepared.model).await?;
        let profiled = started.elapsed();
        crate::stages::write(tx, &prepared.stages).await?;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            decisions = prepared.decisions.len(),
            owners = prepared.model.owners.len(),
            holders = prepared.model.holders.len(),
            outbox = prepared.stages.outbox.len(),
            decisions_ms = ms(decided),
            profiles_ms = ms(profiled - decided),
            catalog_ms = ms(started.elapsed() - profiled),
            "resolver batch written"
        );
        queries::write_rules(tx, &prepared.rules).await?;
        write_token(tx, self.part.name(), &prepared.token).await?;
        let in_memory = self.audiences.as_ref().is_some_and(|a| a.has_slots());
        if in_memory || self.views.is_some() {
            let touched = write::touched(&prepared.model, &prepared.stages);
            if let Some(views) = &self.views {
                let marked = views.writing(&prepared.token, touched.iter());
                self.marked.lock().expect("marked views lock").push(marked);
            }
            if let Some(audiences) = self.audiences.as_ref().filter(|_| in_memory) {
                write::stage_in_audiences(
                    audiences,
                    &prepared.token,
                    prepared.based_on.as_deref(),
                    touched,
                    &prepared.stages,
                );
            }
        }
        Ok(())
    }

    fn may_prepare_ahead(&self, events: &[StoredEvent]) -> bool {
        let now = (self.clock)();
        let state = self.state.lock().expect("resolver state lock");
        // What preparing reads from the database then is what no uncommitted batch changes: the
        // stored rows of profiles no batch in flight touched (those are in the caches, which keep
        // everything until the writes are in), rules and catalogs nothing redefined.
        let ahead = state.plain && state.loaded && self.plain_at(&state, events, now);
        if !ahead {
            tracing::debug!(
                plain = state.plain,
                loaded = state.loaded,
                memo = ?state.memo,
                "resolver: the batch waits for the writes before it"
            );
        }
        ahead
    }

    fn forget(&self) {
        *self.state.lock().expect("resolver state lock") = ResolverState::default();
        if let Some(views) = &self.views {
            views.clear(None);
        }
    }

    fn ended(&self) {
        if let Some(views) = &self.views {
            for marked in self.marked.lock().expect("marked views lock").drain(..) {
                views.ended(marked);
            }
        }
    }

    #[tracing::instrument(name = "resolver.write", skip_all, fields(batches = group.len()))]
    async fn write_group(
        &self,
        tx: &mut ModelTx<'_>,
        mut group: Vec<PreparedDecisions>,
    ) -> Result<(), ProjectionError> {
        // A profile's state written by a later batch of the group replaces an earlier one's: only
        // the last is written.
        // So are the other rows that hold a last value (who holds an identifier, a profile's tags,
        // segments, spend and due time); what is appended (decisions, owners of new events, history,
        // outbox) is written by every batch.
        if group.len() > 1 {
            let mut later: FastSet<ProfileKey> = FastSet::default();
            let mut holders: FastSet<(String, Identifier)> = FastSet::default();
            let mut tags: FastSet<(String, String, String)> = FastSet::default();
            let mut members: FastSet<(String, String, String)> = FastSet::default();
            let mut spend: FastSet<(String, String)> = FastSet::default();
            let mut due: FastSet<(String, String)> = FastSet::default();
            for prepared in group.iter_mut().rev() {
                let (m, s) = (&mut prepared.model, &mut prepared.stages);
                write::keep_last(&mut m.docs, &mut later, |(key, _)| key.clone());
                // A profile merged away by a later batch is deleted: no earlier batch writes it.
                later.extend(m.gone.iter().cloned());
                write::keep_last(&mut m.holders, &mut holders, |(w, id, _)| {
                    (w.clone(), id.clone())
                });
                write::keep_last(&mut s.audiences.tags, &mut tags, |(w, p, t, _)| {
                    (w.clone(), p.clone(), t.clone())
                });
                write::keep_last(&mut s.audiences.members, &mut members, |(w, s, p, _)| {
                    (w.clone(), s.clone(), p.clone())
                });
                write::keep_last(&mut s.derived.spend, &mut spend, |(w, p, _)| {
                    (w.clone(), p.clone())
                });
                write::keep_last(&mut s.derived.due, &mut due, |(w, p, _)| {
                    (w.clone(), p.clone())
                });
            }
        }
        for prepared in group {
            self.write(tx, prepared).await?;
        }
        Ok(())
    }

    async fn has_pending_work(&self, store: &Store) -> Result<bool, ProjectionError> {
        let now = (self.clock)();
        let idle = {
            let state = self.state.lock().expect("resolver state lock");
            state.memo.idle_at(now).then(|| state.token().cloned())
        };
        // What this resolver knows holds only if nothing else wrote since its last batch.
        if let Some(token) = idle {
            if token.is_some() && stored_token(store.reader(), self.part.name()).await? == token {
                return Ok(false);
            }
        }
        crate::jobs::pending(store, now, self.part).await
    }
}
