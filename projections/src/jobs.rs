//! The work the resolver does between batches, a page at a time so the service keeps serving: backfilling
//! computed traits from the log and re-evaluating tags and segments for every profile (jobs), profiles
//! whose time came (a window moving on, a sequence timing out), measuring the RFM quintiles of a
//! workspace.

use std::collections::{BTreeMap, HashMap};

use cdp_domain::fastmap::FastMap;

use cdp_domain::catalog::Catalog;
use cdp_domain::event::to_millis;
use cdp_domain::profile::{FoldRules, OwnedEvent, ProfileDoc};
use cdp_domain::store::Store;
use cdp_domain::tags::{RfmInputs, RfmThresholds, Scoring, TagDef};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::catalog::{self, Job};
use crate::evaluation::derive::parse_profile;
use crate::evaluation::ProfileFacts;
use crate::partitions::Part;
use crate::profiles::{self, ProfileKey};
use crate::runner::ProjectionError;

/// Profiles a job visits per batch.
pub const JOB_PAGE: i64 = 1_000;
/// Profiles whose time came, looked at per batch.
pub const DUE_PAGE: i64 = 500;
/// How old quantile RFM cut points may get before the population is measured again.
pub const RFM_REFRESH: Duration = Duration::hours(24);
/// How soon a quantile RFM tag without cut points (no purchases yet) is measured again.
pub const RFM_RETRY: Duration = Duration::minutes(1);
/// The cursor of a quantile RFM job whose cut points are computed next.
const THRESHOLDS_NEXT: &str = "T";
/// The cursor prefix of a quantile RFM job's second pass (scoring with the new cut points).
const SECOND_PASS: &str = "2:";

/// The RFM inputs of a profile for the RFM tag `tag`.
fn rfm_inputs(
    doc: &ProfileDoc,
    catalog: &Catalog,
    tag: &str,
    now: DateTime<Utc>,
) -> Option<RfmInputs> {
    let Some(TagDef::Rfm(def)) = catalog.tags.get(tag).map(|t| &t.def) else {
        return None;
    };
    let no_manual = BTreeMap::new();
    let no_thresholds = BTreeMap::new();
    let facts = ProfileFacts::new(doc, catalog, &no_manual, &no_thresholds, now);
    def.inputs(tag, &facts, now)
}

/// Work found between batches: documents re-folded by a backfill (to be used instead of the stored
/// ones), profiles to evaluate, and the jobs' progress.
#[derive(Default)]
pub struct Housekeeping {
    pub docs: FastMap<ProfileKey, ProfileDoc>,
    /// The binary state of each of `docs` as it was read: a document the batch leaves as it was is not
    /// written again (a job visits every profile; most are unchanged).
    pub as_read: FastMap<ProfileKey, Vec<u8>>,
    pub touched: BTreeMap<ProfileKey, String>,
    pub jobs: Vec<Job>,
    /// New RFM cut points: `(workspace, tag, version, thresholds)`.
    pub thresholds: Vec<(String, String, i64, RfmThresholds)>,
    /// A saved or changed segment's members found at once from the audience index (its job done,
    /// or going on to backfill the hidden traits of its event conditions).
    pub fill: Option<Fill>,
}

/// A segment's membership filled from the audience index instead of a job visiting every profile:
/// the profiles that enter and those that leave, against its stored members. Written by the batch
/// like derive's changes (rows, history, outbox), except for the profiles the batch evaluates
/// anyway (its events', merges', commands' profiles: derive finds their change itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    pub workspace: String,
    pub segment: String,
    /// `segment:<id>`, as the job's re-evaluation would cause it.
    pub cause: String,
    pub enter: Vec<String>,
    pub leave: Vec<String>,
}

impl Housekeeping {
    /// Whether there is no work: no profile to look at, no job page, no cut points.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
            && self.touched.is_empty()
            && self.jobs.is_empty()
            && self.thresholds.is_empty()
            && self.fill.is_none()
    }
}

/// Whether there is work without new events: a running job, a profile whose time came, or RFM cut
/// points to measure again.
/// Of the workspaces of `part` only.
pub async fn pending(
    store: &Store,
    now: DateTime<Utc>,
    part: Part,
) -> Result<bool, ProjectionError> {
    if running_jobs(store, part).await?.next().is_some() {
        return Ok(true);
    }
    let scope = catalog::workspaces_of(store, part).await?;
    if catalog::next_due(store, scope.as_deref())
        .await?
        .is_some_and(|t| t <= to_millis(now))
    {
        return Ok(true);
    }
    Ok(!stale_rfm_jobs(store, now, part).await?.is_empty())
}

/// The running jobs of `part`'s workspaces.
async fn running_jobs(
    store: &Store,
    part: Part,
) -> Result<impl Iterator<Item = Job>, ProjectionError> {
    Ok(catalog::running_jobs(store)
        .await?
        .into_iter()
        .filter(move |j| part.keeps(&j.workspace)))
}

/// The workspaces with RFM tags of `part`.
async fn workspaces_with_rfm(store: &Store, part: Part) -> Result<Vec<String>, ProjectionError> {
    let mut all = catalog::workspaces_with_rfm(store).await?;
    all.retain(|w| part.keeps(w));
    Ok(all)
}

/// Quantile RFM tags whose cut points must be measured again, as jobs to start: those whose last job
/// finished more than [`RFM_REFRESH`] ago, or — while no cut points exist (nobody had bought when the
/// tag was defined) — more than [`RFM_RETRY`] ago. Defining a tag starts its first job.
async fn stale_rfm_jobs(
    store: &Store,
    now: DateTime<Utc>,
    part: Part,
) -> Result<Vec<Job>, ProjectionError> {
    let workspaces = workspaces_with_rfm(store, part).await?;
    stale_rfm_jobs_in(store, workspaces, now).await
}

/// [`stale_rfm_jobs`] of these workspaces.
async fn stale_rfm_jobs_in(
    store: &Store,
    workspaces: Vec<String>,
    now: DateTime<Utc>,
) -> Result<Vec<Job>, ProjectionError> {
    let mut jobs = Vec::new();
    for w in workspaces {
        let cat = catalog::load_in(store, &w).await?;
        let measured = catalog::thresholds_in(store, &w).await?;
        for (tag, t) in &cat.tags {
            if !matches!(&t.def, TagDef::Rfm(r) if r.scoring == Scoring::Quantiles) {
                continue;
            }
            let has_cut_points = measured.get(tag).is_some_and(|(v, _, _)| *v == t.version);
            let interval = if has_cut_points {
                RFM_REFRESH
            } else {
                RFM_RETRY
            };
            let stale = catalog::latest_job_in(store, &w, catalog::TAG, tag)
                .await?
                .and_then(|j| j.finished_at)
                .is_some_and(|at| at < to_millis(now - interval));
            if stale {
                jobs.push(new_job(&w, catalog::TAG, tag, t.version, now));
            }
        }
    }
    Ok(jobs)
}

/// A job to visit every profile of `workspace`.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub fn new_job(workspace: &str, kind: &str, name: &str, version: i64, now: DateTime<Utc>) -> Job {
    Job {
        workspace: workspace.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        version,
        cursor: String::new(),
        done: 0,
        total: -1,
        status: "running".to_owned(),
        started_at: to_millis(now),
        finished_at: None,
    }
}

/// What the resolver knows of the work between batches without asking the database: valid while its
/// token holds (only the resolver starts jobs, writes due times and definitions), so a step with no such
/// work costs no query for it.
#[derive(Debug, Default, Clone)]
pub struct Memo {
    /// No job is running: none was found, and no batch started one since.
    pub no_running_jobs: bool,
    /// The workspaces with RFM tags, read since definitions last changed.
    pub rfm_workspaces: Option<Vec<String>>,
    /// The earliest due time stored (ms; `Some(None)`: nothing is due), when known.
    pub next_due: Option<Option<i64>>,
    /// The workspaces of the resolver's part, when read (`Some(None)`: the resolver is whole).
    pub scope: Option<Option<Vec<String>>>,
}

impl Memo {
    /// A batch wrote `writes`: what it started, defined and made due.
    pub fn wrote(&mut self, writes: &crate::stages::StageWrites) {
        if writes.catalog.jobs.iter().any(|j| j.status == "running") {
            self.no_running_jobs = false;
        }
        // The workspaces with an RFM tag change only with a tag's definition that names RFM, or a
        // tag's deletion (whose body is gone): those are asked again.
        let rfm_may_change =
            writes.catalog.definitions.iter().any(|d| {
                d.kind == catalog::TAG && d.body.as_deref().is_none_or(|b| b.contains("rfm"))
            });
        if rfm_may_change {
            self.rfm_workspaces = None;
        }
        if let Some(Some(scope)) = &mut self.scope {
            // A workspace first met since the part's were read.
            for (w, _, _) in &writes.derived.due {
                if !scope.contains(w) {
                    scope.push(w.clone());
                }
            }
        }
        if let Some(known) = &mut self.next_due {
            for due in writes.derived.due.iter().filter_map(|(_, _, d)| *d) {
                let due = due as i64;
                *known = Some(known.map_or(due, |k| k.min(due)));
            }
        }
    }

    /// Whether there is surely no work without events at `now` (no query needed to say so).
    pub fn idle_at(&self, now: DateTime<Utc>) -> bool {
        self.no_running_jobs
            && self.rfm_workspaces.as_ref().is_some_and(Vec::is_empty)
            && matches!(self.next_due, Some(due) if due.is_none_or(|t| t > to_millis(now)))
    }
}

/// Does one page of the oldest running job and takes the profiles whose time came. A segment's job
/// is done at once from `audiences` when the index can (see [`fill_from_index`]).
/// Of the workspaces of the resolver's `part` only.
pub async fn housekeeping(
    store: &Store,
    audiences: Option<&crate::audience::Audiences>,
    memo: &mut Memo,
    catalogs: &mut HashMap<String, Catalog>,
    thresholds: &mut HashMap<String, BTreeMap<String, RfmThresholds>>,
    now: DateTime<Utc>,
    part: Part,
) -> Result<Housekeeping, ProjectionError> {
    let mut work = Housekeeping::default();
    let mut jobs: Vec<Job> = if memo.no_running_jobs {
        Vec::new()
    } else {
        running_jobs(store, part).await?.collect()
    };
    if jobs.is_empty() {
        memo.no_running_jobs = true;
        if memo.rfm_workspaces.is_none() {
            memo.rfm_workspaces = Some(workspaces_with_rfm(store, part).await?);
        }
        let rfm = memo.rfm_workspaces.clone().unwrap_or_default();
        jobs = stale_rfm_jobs_in(store, rfm, now).await?;
        for j in &mut jobs {
            j.cursor = THRESHOLDS_NEXT.to_owned();
        }
    }
    if let Some(mut job) = jobs.into_iter().next() {
        ensure_workspace(store, catalogs, thresholds, &job.workspace).await?;
        let filled = match audiences {
            Some(a) => fill_from_index(store, a, &catalogs[&job.workspace], &mut job, now).await?,
            None => None,
        };
        match filled {
            Some(fill) => work.fill = Some(fill),
            None => run_job_page(store, catalogs, thresholds, &mut job, now, &mut work).await?,
        }
        work.jobs.push(job);
    }
    if memo.scope.is_none() {
        memo.scope = Some(catalog::workspaces_of(store, part).await?);
    }
    let scope = memo.scope.as_ref().and_then(Option::as_deref);
    if memo.next_due.is_none() {
        memo.next_due = Some(catalog::next_due(store, scope).await?);
    }
    let due_now = memo
        .next_due
        .is_some_and(|due| due.is_some_and(|t| t <= to_millis(now)));
    if due_now {
        for (w, p) in catalog::due(store, scope, to_millis(now), DUE_PAGE).await? {
            ensure_workspace(store, catalogs, thresholds, &w).await?;
            let key = (w, parse_profile(&p)?);
            work.touched
                .entry(key)
                .or_insert_with(|| crate::evaluation::derive::CLOCK.to_owned());
        }
        // More may be due than a page: asked again at the next step.
        memo.next_due = None;
    }
    Ok(work)
}

/// Loads a workspace's catalog and cut points if this batch has not yet.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn ensure_workspace(
    store: &Store,
    catalogs: &mut HashMap<String, Catalog>,
    thresholds: &mut HashMap<String, BTreeMap<String, RfmThresholds>>,
    workspace: &str,
) -> Result<(), ProjectionError> {
    if !catalogs.contains_key(workspace) {
        catalogs.insert(
            workspace.to_owned(),
            catalog::load_in(store, workspace).await?,
        );
    }
    if !thresholds.contains_key(workspace) {
        let cat = &catalogs[workspace];
        let current = catalog::thresholds_in(store, workspace)
            .await?
            .into_iter()
            .filter(|(tag, (version, _, _))| {
                cat.tags.get(tag).is_some_and(|t| t.version == *version)
            })
            .map(|(tag, (_, _, t))| (tag, t))
            .collect();
        thresholds.insert(workspace.to_owned(), current);
    }
    Ok(())
}

/// The cursor of a segment job done at once from the audience index.
pub const FILLED_FROM_INDEX: &str = "~index";
/// The cursor prefix of a segment job whose members were filled at once from the audience index and
/// that goes on visiting every profile, a page a batch, to backfill the hidden computed traits of its
/// event conditions (or drop those of the definition it replaced); the profile id after it is where
/// the next page starts, as in an ordinary job.
pub const FILLED_THEN_BACKFILL: &str = "~index:";

/// A saved or changed segment's members from the audience index, at the job's first step — when the
/// job has not begun, the index of the workspace is current (it reflects every committed batch, and
/// the resolver prepares a job's batch only once every batch before it is committed, so the index
/// and the resolver's model are the same) and can evaluate the definition exactly (`matching`: event
/// conditions `count` and `days_active` from the index's event summaries and facets, not from the
/// hidden traits), and no other saved segment reads this one (their members would change with it).
/// `None` otherwise: the job visits every profile as before.
///
/// When neither the definition nor the one it replaces compiles to a hidden computed trait, the job
/// is done (cursor [`FILLED_FROM_INDEX`]). Otherwise every document must still have the hidden traits
/// folded (or the replaced ones dropped) so that the engine keeps the membership live and a replay
/// gives the same states: the job goes on from the first profile (cursor [`FILLED_THEN_BACKFILL`]),
/// each page backfilling and evaluating its profiles as any job's page — they find the memberships
/// the fill wrote (the index's answer is the evaluation of the definition on each profile's state,
/// held so by its property test), so they change none unless the profile changed since. A profile
/// an event touches before its page is backfilled when it is read (`batch::backfill_lacking`), so it
/// is never evaluated on an incomplete state. Such a definition changes the hidden traits folded,
/// which the index cannot follow batch by batch (its columns changed): it is read whole here, once, when this
/// process had built it before and the definition is one the index can answer — the resolver waits
/// for that read (one pass per table, as the background builder's) instead of publishing the
/// members only as the pages reach them.
///
/// The members are what the index's `matching` finds against the segment's stored members; the
/// profiles enter and leave as a job page would make them (rows, history, outbox; cause
/// `segment:<id>`, at the resolver's time). A rebuild's shadow resolver has no index and runs the
/// job: the same members (the switch keeps the rows it agrees with).
pub async fn fill_from_index(
    store: &Store,
    audiences: &crate::audience::Audiences,
    catalog: &Catalog,
    job: &mut Job,
    now: DateTime<Utc>,
) -> Result<Option<Fill>, ProjectionError> {
    if job.kind != catalog::SEGMENT || !job.cursor.is_empty() || job.done != 0 {
        return Ok(None);
    }
    let Some(defined) = catalog.segments.get(&job.name) else {
        return Ok(None);
    };
    if defined.version != job.version {
        return Ok(None);
    }
    let read_by_another = catalog
        .segments
        .iter()
        .any(|(id, s)| id != &job.name && s.def.references().contains(&job.name));
    if read_by_another {
        return Ok(None);
    }
    let mut folds = !defined.def.hidden_traits(&job.name).is_empty();
    let before =
        catalog::previous_definition(store, &job.workspace, &job.name, job.version).await?;
    if let Some(body) = before {
        folds |= cdp_domain::segments::SegmentDef::parse(&body)
            .map_or(true, |d| !d.hidden_traits(&job.name).is_empty());
    }
    // What the index cannot answer whatever its rows (a `where` filter, an aggregate, a sequence)
    // is known without it: no index is read for it.
    let empty = cdp_domain::audience::AudienceIndex::default();
    if empty.matching(&defined.def, now).is_err() {
        return Ok(None);
    }
    let mut found = audiences.current_in(store, &job.workspace, now).await?;
    if found.is_none() && folds && audiences.status().built.contains_key(&job.workspace) {
        // The definition's hidden traits changed the index's columns: read whole now rather than
        // in the background, so that the members are published before the job's pages.
        audiences.build_in(store, &job.workspace, now).await?;
        found = audiences.current_in(store, &job.workspace, now).await?;
    }
    let Some((slot, _)) = found else {
        return Ok(None);
    };
    let Some(index) = slot.index() else {
        return Ok(None);
    };
    let Ok(members) = index.matching(&defined.def, now) else {
        return Ok(None);
    };
    let (enter, leave) = index.membership_change(&job.name, &members);
    let profiles = index.profiles() as i64;
    drop(slot);
    job.total = profiles;
    if folds {
        job.cursor = FILLED_THEN_BACKFILL.to_owned();
    } else {
        job.done = profiles;
        job.cursor = FILLED_FROM_INDEX.to_owned();
        job.status = "done".to_owned();
        job.finished_at = Some(to_millis(now));
    }
    tracing::info!(
        workspace = %job.workspace,
        segment = %job.name,
        enter = enter.len(),
        leave = leave.len(),
        profiles,
        backfill = folds,
        "segment filled from the audience index"
    );
    Ok(Some(Fill {
        workspace: job.workspace.clone(),
        segment: job.name.clone(),
        cause: format!("{}:{}", job.kind, job.name),
        enter,
        leave,
    }))
}

async fn run_job_page(
    store: &Store,
    catalogs: &HashMap<String, Catalog>,
    thresholds: &mut HashMap<String, BTreeMap<String, RfmThresholds>>,
    job: &mut Job,
    now: DateTime<Utc>,
    work: &mut Housekeeping,
) -> Result<(), ProjectionError> {
    let ws = job.workspace.clone();
    let catalog = &catalogs[&ws];
    // A definition changed or deleted since the job began: a newer job visits every profile anyway.
    let current = match job.kind.as_str() {
        catalog::TRAIT => catalog.folded().get(&job.name).map(|t| t.version),
        catalog::SEGMENT => catalog.segments.get(&job.name).map(|s| s.version),
        catalog::CONSENT => Some(catalog.consent.version),
        _ => catalog.tags.get(&job.name).map(|t| t.version),
    };
    if current.is_some_and(|v| v != job.version) {
        job.status = "superseded".to_owned();
        job.finished_at = Some(to_millis(now));
        return Ok(());
    }
    if job.total < 0 {
        job.total = catalog::count_profiles(store, &ws).await?;
    }
    if job.cursor == THRESHOLDS_NEXT {
        let measured = measure_rfm(store, catalog, &ws, &job.name, now).await?;
        if let Some(t) = measured {
            thresholds
                .entry(ws.clone())
                .or_default()
                .insert(job.name.clone(), t.clone());
            work.thresholds
                .push((ws.clone(), job.name.clone(), job.version, t));
        }
        job.cursor = SECOND_PASS.to_owned();
        job.done = 0;
        return Ok(());
    }
    // A pass with a prefix keeps it: RFM's second pass, or the backfill after a fill from the index.
    let (prefix, after) = [SECOND_PASS, FILLED_THEN_BACKFILL]
        .into_iter()
        .find_map(|prefix| Some((prefix, job.cursor.strip_prefix(prefix)?.to_owned())))
        .unwrap_or(("", job.cursor.clone()));
    let page = catalog::profiles_after_in(store, &ws, &after, JOB_PAGE).await?;
    let mut docs = Vec::with_capacity(page.len());
    let last = page.last().map(|(p, _)| p.clone());
    let visited = page.len() as i64;
    for (p, mut doc) in page {
        let profile = parse_profile(&p)?;
        work.as_read
            .insert((ws.clone(), profile.clone()), doc.to_state());
        // A deleted definition's job visits every profile: its state goes.
        doc.prune_computed(catalog.folded());
        docs.push((profile, doc));
    }
    backfill(store, catalog, &ws, &mut docs).await?;
    let cause = format!("{}:{}", job.kind, job.name);
    for (p, doc) in docs {
        let key = (ws.clone(), p);
        work.touched.insert(key.clone(), cause.clone());
        work.docs.insert(key, doc);
    }
    job.done += visited;
    match last {
        Some(last) if visited == JOB_PAGE => {
            job.cursor = format!("{prefix}{last}");
        }
        _ => {
            let quantile_rfm = job.kind == catalog::TAG
                && matches!(catalog.tags.get(&job.name).map(|t| &t.def),
                    Some(TagDef::Rfm(r)) if r.scoring == Scoring::Quantiles);
            if quantile_rfm && prefix.is_empty() {
                // Every profile's inputs are complete now: measure the population, then score.
                job.cursor = THRESHOLDS_NEXT.to_owned();
            } else {
                job.status = "done".to_owned();
                job.finished_at = Some(to_millis(now));
                job.cursor = format!("{prefix}{}", last.as_deref().unwrap_or(""));
            }
        }
    }
    Ok(())
}

/// Re-folds the computed traits the documents lack from their events in the log.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn backfill(
    store: &Store,
    catalog: &Catalog,
    workspace: &str,
    docs: &mut [(cdp_domain::identity::ProfileId, ProfileDoc)],
) -> Result<(), ProjectionError> {
    let lacking: Vec<usize> = docs
        .iter()
        .enumerate()
        .filter(|(_, (_, d))| !d.incomplete_computed(catalog.folded()).is_empty())
        .map(|(i, _)| i)
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let names: Vec<cdp_domain::identity::ProfileId> =
        lacking.iter().map(|i| docs[*i].0.clone()).collect();
    let owned = profiles::events_by_profile(store, workspace, &names).await?;
    let seqs: Vec<i64> = {
        let mut all: Vec<i64> = owned.values().flatten().copied().collect();
        all.sort_unstable();
        all
    };
    let events = store.events_by_seq(&seqs).await?;
    let mut payloads: HashMap<i64, (usize, Value)> = HashMap::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let payload: Value =
            serde_json::from_str(&e.event.payload).map_err(ProjectionError::corrupt)?;
        payloads.insert(e.position.seq, (i, payload));
    }
    let fold = FoldRules {
        source_priority: &[],
        traits: catalog.folded(),
    };
    for i in lacking {
        let (p, doc) = &mut docs[i];
        let mine: Vec<OwnedEvent<'_>> = owned
            .get(p.as_str())
            .into_iter()
            .flatten()
            .filter_map(|seq| payloads.get(seq))
            .map(|(n, payload)| OwnedEvent {
                event: &events[*n].event,
                payload,
                carried: &[],
            })
            .collect();
        doc.backfill_computed(&mine, fold);
    }
    Ok(())
}

/// The quintile cut points of an RFM tag over every profile of the workspace with a purchase.
async fn measure_rfm(
    store: &Store,
    catalog: &Catalog,
    workspace: &str,
    tag: &str,
    now: DateTime<Utc>,
) -> Result<Option<RfmThresholds>, ProjectionError> {
    let mut population = Vec::new();
    let mut after = String::new();
    loop {
        let page = catalog::profiles_after_in(store, workspace, &after, 1_000).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.clone();
        for (_, doc) in &page {
            if let Some(inputs) = rfm_inputs(doc, catalog, tag, now) {
                population.push(inputs);
            }
        }
    }
    Ok(RfmThresholds::from_population(&population))
}
