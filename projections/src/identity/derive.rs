//! What the resolver derives from profiles besides their documents: each profile's tags (rule, value,
//! RFM and manual), what it is worth, when it must be looked at again, and a message in the outbox for
//! every change of a tag value. Also the work it does between batches: backfilling computed traits
//! from the log and re-evaluating tags, a page of profiles at a time, and profiles whose time came.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_domain::catalog::{Catalog, SPEND_TRAIT};
use cdp_domain::event::to_millis;
use cdp_domain::profile::{FoldRules, OwnedEvent, ProfileDoc};
use cdp_domain::segments::SegmentFacts;
use cdp_domain::store::Store;
use cdp_domain::tags::{Facts, FieldKey, RfmInputs, RfmThresholds, Scoring, TagDef, TagValue};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::catalog::{self, CatalogWrites, Job, Membership, MembershipChange, ProfileTag};
use crate::profiles::{self, ProfileKey};
use crate::runner::ProjectionError;

/// Profiles a job visits per batch.
pub const JOB_PAGE: i64 = 200;
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

/// A profile's facts as tags read them: computed traits, then tags, then the profile's traits.
struct ProfileFacts<'a> {
    doc: &'a ProfileDoc,
    catalog: &'a Catalog,
    computed: BTreeMap<String, Value>,
    manual: &'a BTreeMap<String, Value>,
    thresholds: &'a BTreeMap<String, RfmThresholds>,
    now: DateTime<Utc>,
    tags: RefCell<BTreeMap<String, Option<TagValue>>>,
    visiting: RefCell<BTreeSet<String>>,
    segments: RefCell<BTreeMap<String, bool>>,
}

impl SegmentFacts for ProfileFacts<'_> {
    fn in_segment(&self, id: &str) -> bool {
        if let Some(known) = self.segments.borrow().get(id) {
            return *known;
        }
        // Definitions that read themselves are refused; this guards against one slipping through.
        let key = format!("segment {id}");
        if !self.visiting.borrow_mut().insert(key.clone()) {
            return false;
        }
        let member = self
            .catalog
            .segments
            .get(id)
            .is_some_and(|s| s.def.holds(id, self, self.now));
        self.visiting.borrow_mut().remove(&key);
        self.segments.borrow_mut().insert(id.to_owned(), member);
        member
    }
}

fn values_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Null => Vec::new(),
        Value::Array(items) => items.clone(),
        v => vec![v.clone()],
    }
}

impl ProfileFacts<'_> {
    fn tag(&self, name: &str) -> Option<TagValue> {
        if let Some(known) = self.tags.borrow().get(name) {
            return known.clone();
        }
        // Definitions that read themselves are refused; this guards against one slipping through.
        if !self.visiting.borrow_mut().insert(name.to_owned()) {
            return None;
        }
        let value = match self.catalog.tags.get(name).map(|t| &t.def) {
            Some(TagDef::Manual) => self.manual.get(name).cloned().map(TagValue::plain),
            Some(def) => def.evaluate(name, self, self.thresholds.get(name), self.now),
            None => None,
        };
        self.visiting.borrow_mut().remove(name);
        self.tags
            .borrow_mut()
            .insert(name.to_owned(), value.clone());
        value
    }
}

impl Facts for ProfileFacts<'_> {
    fn field(&self, key: FieldKey, name: &str) -> Vec<Value> {
        let computed = || self.computed.get(name).map(values_of);
        let tag = || {
            self.catalog.tags.contains_key(name).then(|| {
                self.tag(name)
                    .map(|t| values_of(&t.value))
                    .unwrap_or_default()
            })
        };
        let found = match key {
            FieldKey::Computed => computed(),
            FieldKey::Tag => tag(),
            FieldKey::Trait => computed()
                .or_else(tag)
                .or_else(|| self.doc.traits.get(name).map(|t| values_of(&t.value))),
        };
        found.unwrap_or_default()
    }
}

/// What one profile's tags, worth and next due time are now.
pub struct Evaluation {
    /// Every tag the profile has, manual ones included.
    pub tags: BTreeMap<String, TagValue>,
    /// The segments the profile is in.
    pub segments: BTreeSet<String>,
    pub spend: f64,
    pub due_at: Option<DateTime<Utc>>,
}

/// Evaluates every tag of `catalog` on a profile.
pub fn evaluate(
    doc: &ProfileDoc,
    catalog: &Catalog,
    manual: &BTreeMap<String, Value>,
    thresholds: &BTreeMap<String, RfmThresholds>,
    now: DateTime<Utc>,
) -> Evaluation {
    let computed: BTreeMap<String, Value> = doc
        .computed_values(catalog.folded(), now)
        .into_iter()
        .map(|(name, v)| (name, v.value))
        .collect();
    let spend = computed
        .get(SPEND_TRAIT)
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let facts = ProfileFacts {
        doc,
        catalog,
        computed,
        manual,
        thresholds,
        now,
        tags: RefCell::new(BTreeMap::new()),
        visiting: RefCell::new(BTreeSet::new()),
        segments: RefCell::new(BTreeMap::new()),
    };
    let tags: BTreeMap<String, TagValue> = catalog
        .tags
        .keys()
        .filter_map(|name| facts.tag(name).map(|v| (name.clone(), v)))
        .collect();
    let segments: BTreeSet<String> = catalog
        .segments
        .keys()
        .filter(|id| facts.in_segment(id))
        .cloned()
        .collect();
    // Tags and segments read windows and the age of the last purchase, which move with the clock.
    let mut due_at = if catalog.tags.is_empty() && catalog.segments.is_empty() {
        None
    } else {
        doc.next_computed_change(catalog.folded(), now)
    };
    let ages = catalog
        .tags
        .iter()
        .any(|(name, t)| matches!(t.def, TagDef::Rfm(_)) && tags.contains_key(name));
    if ages {
        let midnight = (now + Duration::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc());
        due_at = match (due_at, midnight) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Evaluation {
        tags,
        segments,
        spend,
        due_at,
    }
}

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
    let facts = ProfileFacts {
        doc,
        catalog,
        computed: doc
            .computed_values(catalog.folded(), now)
            .into_iter()
            .map(|(n, v)| (n, v.value))
            .collect(),
        manual: &no_manual,
        thresholds: &no_thresholds,
        now,
        tags: RefCell::new(BTreeMap::new()),
        visiting: RefCell::new(BTreeSet::new()),
        segments: RefCell::new(BTreeMap::new()),
    };
    def.inputs(tag, &facts, now)
}

/// A change of a profile's tag, for the outbox.
fn change_message(
    workspace: &str,
    profile: &str,
    tag: &str,
    previous: Option<&TagValue>,
    now_value: Option<&TagValue>,
    caused_by: &str,
    at: DateTime<Utc>,
) -> (String, String, String) {
    let payload = json!({
        "type": "tag.changed",
        "workspace": workspace,
        "profile_id": profile,
        "tag": tag,
        "value": now_value.map(|t| t.value.clone()),
        "previous": previous.map(|t| t.value.clone()),
        "detail": now_value.map(|t| t.detail.clone()).unwrap_or(Value::Null),
        "changed_at": cdp_domain::message::rfc3339(at),
        "caused_by": caused_by,
    });
    (
        workspace.to_owned(),
        format!("cdp.out.{workspace}.tag.{tag}.changed"),
        payload.to_string(),
    )
}

/// A manual tag set (`Some`) or removed on a profile by a command of the batch.
#[derive(Debug, Clone)]
pub struct ManualChange {
    pub key: ProfileKey,
    pub tag: String,
    pub value: Option<Value>,
    pub caused_by: String,
}

/// Everything the batch changed that tags depend on.
pub struct Derivation<'a> {
    pub docs: &'a HashMap<ProfileKey, ProfileDoc>,
    /// Profiles to evaluate, with what caused it (the last event, a command, `clock`, a job).
    pub touched: BTreeMap<ProfileKey, String>,
    /// Profiles merged away, with their survivor after the batch and the cause.
    pub merged: Vec<(ProfileKey, ProfileKey, String)>,
    pub manual: Vec<ManualChange>,
    pub catalogs: &'a HashMap<String, Catalog>,
    pub thresholds: &'a HashMap<String, BTreeMap<String, RfmThresholds>>,
    pub now: DateTime<Utc>,
}

/// Evaluates the touched profiles and writes the differences with their stored tags into `out`.
pub async fn derive(
    store: &Store,
    d: Derivation<'_>,
    out: &mut CatalogWrites,
) -> Result<(), ProjectionError> {
    let now_ms = to_millis(d.now);
    let mut by_workspace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (w, p) in d.touched.keys() {
        by_workspace.entry(w).or_default().insert(p.as_str());
    }
    for ((w, p), _, _) in &d.merged {
        by_workspace.entry(w).or_default().insert(p.as_str());
    }
    let mut stored: HashMap<ProfileKey, BTreeMap<String, ProfileTag>> = HashMap::new();
    for (w, profiles) in &by_workspace {
        let list: Vec<&str> = profiles.iter().copied().collect();
        for (p, tags) in catalog::tags_of(store, w, &list).await? {
            let key = (w.to_string(), parse_profile(&p)?);
            stored.insert(key, tags.into_iter().map(|t| (t.tag.clone(), t)).collect());
        }
    }
    let mut members: HashMap<ProfileKey, BTreeMap<String, Membership>> = HashMap::new();
    for (w, profiles) in &by_workspace {
        let list: Vec<&str> = profiles.iter().copied().collect();
        for (p, ms) in catalog::memberships_of(store, w, &list).await? {
            let key = (w.to_string(), parse_profile(&p)?);
            members.insert(
                key,
                ms.into_iter().map(|m| (m.segment.clone(), m)).collect(),
            );
        }
    }
    // Manual values after the batch: stored, moved by merges, then changed by commands.
    let mut manual: HashMap<ProfileKey, BTreeMap<String, (Value, String)>> = HashMap::new();
    let stored_manual = |key: &ProfileKey| -> BTreeMap<String, (Value, String)> {
        stored
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, t)| t.manual)
            .map(|(n, t)| {
                (
                    n.clone(),
                    (
                        t.value.value.clone(),
                        t.caused_by.clone().unwrap_or_default(),
                    ),
                )
            })
            .collect()
    };
    for key in d.touched.keys() {
        manual.insert(key.clone(), stored_manual(key));
    }
    for (gone, survivor, cause) in &d.merged {
        let moved = stored_manual(gone);
        let into = manual
            .entry(survivor.clone())
            .or_insert_with(|| stored_manual(survivor));
        for (tag, (value, _)) in moved {
            into.entry(tag).or_insert((value, cause.clone()));
        }
        // The merged-away profile's tags go with it.
        for (tag, old) in stored.get(gone).into_iter().flatten() {
            out.tags
                .push((gone.0.clone(), gone.1.to_string(), tag.clone(), None));
            out.outbox.push(change_message(
                &gone.0,
                gone.1.as_str(),
                tag,
                Some(&old.value),
                None,
                cause,
                d.now,
            ));
        }
        for segment in members.get(gone).into_iter().flatten().map(|(s, _)| s) {
            leave(out, gone, segment, cause, d.now);
        }
        out.spend.push((gone.0.clone(), gone.1.to_string(), None));
        out.due.push((gone.0.clone(), gone.1.to_string(), None));
    }
    for change in &d.manual {
        let tags = manual
            .entry(change.key.clone())
            .or_insert_with(|| stored_manual(&change.key));
        match &change.value {
            Some(v) => tags.insert(change.tag.clone(), (v.clone(), change.caused_by.clone())),
            None => tags.remove(&change.tag),
        };
    }

    let empty = BTreeMap::new();
    let mut keys: Vec<&ProfileKey> = manual.keys().collect();
    keys.sort();
    for key in keys {
        let Some(doc) = d.docs.get(key) else {
            continue;
        };
        let (w, p) = key;
        let catalog = d.catalogs.get(w.as_str());
        let Some(catalog) = catalog else {
            continue;
        };
        if catalog.tags.is_empty()
            && catalog.segments.is_empty()
            && !stored.contains_key(key)
            && !members.contains_key(key)
        {
            // Nothing to evaluate: a workspace without tags or segments pays nothing here.
            continue;
        }
        let manual_values: BTreeMap<String, Value> = manual[key]
            .iter()
            .filter(|(tag, _)| {
                matches!(catalog.tags.get(*tag).map(|t| &t.def), Some(TagDef::Manual))
            })
            .map(|(tag, (v, _))| (tag.clone(), v.clone()))
            .collect();
        let thresholds = d.thresholds.get(w.as_str()).unwrap_or(&empty);
        let eval = evaluate(doc, catalog, &manual_values, thresholds, d.now);
        let cause = d
            .touched
            .get(key)
            .cloned()
            .unwrap_or_else(|| "merge".to_owned());
        let before = stored.get(key).unwrap_or(&BTreeMap::new()).clone();
        for (tag, value) in &eval.tags {
            let is_manual = manual_values.contains_key(tag);
            let tag_cause = if is_manual {
                manual[key]
                    .get(tag)
                    .map(|(_, c)| c.clone())
                    .unwrap_or_else(|| cause.clone())
            } else {
                attribute(&cause, tag, catalog)
            };
            match before.get(tag) {
                Some(old) if old.value.value == value.value => {
                    if old.value.detail != value.detail || old.manual != is_manual {
                        out.tags.push((
                            w.clone(),
                            p.to_string(),
                            tag.clone(),
                            Some(ProfileTag {
                                value: value.clone(),
                                manual: is_manual,
                                ..old.clone()
                            }),
                        ));
                    }
                }
                old => {
                    out.tags.push((
                        w.clone(),
                        p.to_string(),
                        tag.clone(),
                        Some(ProfileTag {
                            tag: tag.clone(),
                            value: value.clone(),
                            manual: is_manual,
                            changed_at: now_ms,
                            caused_by: Some(tag_cause.clone()),
                        }),
                    ));
                    out.outbox.push(change_message(
                        w,
                        p.as_str(),
                        tag,
                        old.map(|o| &o.value),
                        Some(value),
                        &tag_cause,
                        d.now,
                    ));
                }
            }
        }
        for (tag, old) in &before {
            if !eval.tags.contains_key(tag) {
                let cause = attribute(&cause, tag, catalog);
                out.tags.push((w.clone(), p.to_string(), tag.clone(), None));
                out.outbox.push(change_message(
                    w,
                    p.as_str(),
                    tag,
                    Some(&old.value),
                    None,
                    &cause,
                    d.now,
                ));
            }
        }
        let was: BTreeSet<&String> = members
            .get(key)
            .into_iter()
            .flatten()
            .map(|(s, _)| s)
            .collect();
        for segment in eval.segments.iter().filter(|s| !was.contains(s)) {
            let segment_cause = attribute(&cause, segment, catalog);
            enter(out, key, segment, &segment_cause, d.now);
        }
        for segment in was.into_iter().filter(|s| !eval.segments.contains(*s)) {
            let segment_cause = attribute(&cause, segment, catalog);
            leave(out, key, segment, &segment_cause, d.now);
        }
        out.spend.push((w.clone(), p.to_string(), Some(eval.spend)));
        // Stored as a float so one statement serves both tables; whole milliseconds are exact.
        let due = eval.due_at.map(|t| to_millis(t).max(now_ms + 1_000) as f64);
        out.due.push((w.clone(), p.to_string(), due));
    }
    Ok(())
}

/// A profile enters a segment: its membership, the history, and the message.
fn enter(out: &mut CatalogWrites, key: &ProfileKey, segment: &str, cause: &str, at: DateTime<Utc>) {
    membership_change(out, key, segment, true, cause, at);
}

/// A profile leaves a segment.
fn leave(out: &mut CatalogWrites, key: &ProfileKey, segment: &str, cause: &str, at: DateTime<Utc>) {
    membership_change(out, key, segment, false, cause, at);
}

fn membership_change(
    out: &mut CatalogWrites,
    (w, p): &ProfileKey,
    segment: &str,
    entered: bool,
    cause: &str,
    at: DateTime<Utc>,
) {
    let at_ms = to_millis(at);
    let membership = entered.then(|| Membership {
        segment: segment.to_owned(),
        since: at_ms,
        caused_by: Some(cause.to_owned()),
    });
    out.members
        .push((w.clone(), segment.to_owned(), p.to_string(), membership));
    out.history.push((
        w.clone(),
        MembershipChange {
            seq: 0,
            profile: p.to_string(),
            segment: segment.to_owned(),
            entered,
            at: at_ms,
            caused_by: Some(cause.to_owned()),
        },
    ));
    let what = if entered { "entered" } else { "exited" };
    let payload = json!({
        "type": format!("segment.{what}"),
        "workspace": w,
        "profile_id": p.as_str(),
        "segment": segment,
        "at": cdp_domain::message::rfc3339(at),
        "caused_by": cause,
    });
    out.outbox.push((
        w.clone(),
        format!("cdp.out.{w}.segment.{segment}.{what}"),
        payload.to_string(),
    ));
}

/// What caused a change of `tag` found by a profile's evaluation that `cause` prompted. A job re-evaluates
/// every tag of the profile, so a tag defined after the job's definition changed because of its own
/// definition, not the job's.
fn attribute(cause: &str, tag: &str, catalog: &Catalog) -> String {
    let job_version = match cause.split_once(':') {
        Some((catalog::TAG, name)) => catalog.tags.get(name).map(|t| t.version),
        Some((catalog::TRAIT, name)) => catalog.folded().get(name).map(|t| t.version),
        Some((catalog::SEGMENT, name)) => catalog.segments.get(name).map(|t| t.version),
        _ => None,
    };
    let own = catalog
        .tags
        .get(tag)
        .map(|t| (catalog::TAG, t.version))
        .or_else(|| {
            catalog
                .segments
                .get(tag)
                .map(|s| (catalog::SEGMENT, s.version))
        });
    match (job_version, own) {
        (Some(job), Some((kind, version))) if version > job => format!("{kind}:{tag}"),
        _ => cause.to_owned(),
    }
}

/// Milliseconds since the epoch.
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    to_millis(t)
}

fn parse_profile(p: &str) -> Result<cdp_domain::identity::ProfileId, ProjectionError> {
    cdp_domain::identity::ProfileId::parse(p).map_err(ProjectionError::corrupt)
}

/// Work found between batches: documents re-folded by a backfill (to be used instead of the stored
/// ones), profiles to evaluate, and the jobs' progress.
#[derive(Default)]
pub struct Housekeeping {
    pub docs: HashMap<ProfileKey, ProfileDoc>,
    pub touched: BTreeMap<ProfileKey, String>,
    pub jobs: Vec<Job>,
    /// New RFM cut points: `(workspace, tag, version, thresholds)`.
    pub thresholds: Vec<(String, String, i64, RfmThresholds)>,
}

/// Whether there is work without new events: a running job, a profile whose time came, or RFM cut
/// points to measure again.
pub async fn pending(store: &Store, now: DateTime<Utc>) -> Result<bool, ProjectionError> {
    if !catalog::running_jobs(store).await?.is_empty() {
        return Ok(true);
    }
    if catalog::next_due(store)
        .await?
        .is_some_and(|t| t <= to_millis(now))
    {
        return Ok(true);
    }
    Ok(!stale_rfm_jobs(store, now).await?.is_empty())
}

/// Quantile RFM tags whose cut points must be measured again, as jobs to start: those whose last job
/// finished more than [`RFM_REFRESH`] ago, or — while no cut points exist (nobody had bought when the
/// tag was defined) — more than [`RFM_RETRY`] ago. Defining a tag starts its first job.
async fn stale_rfm_jobs(store: &Store, now: DateTime<Utc>) -> Result<Vec<Job>, ProjectionError> {
    let workspaces = catalog::workspaces_with_rfm(store).await?;
    let mut jobs = Vec::new();
    for w in workspaces {
        let cat = catalog::load(store, &w).await?;
        let measured = catalog::thresholds(store, &w).await?;
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
            let stale = catalog::latest_job(store, &w, catalog::TAG, tag)
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

/// Does one page of the oldest running job and takes the profiles whose time came.
pub async fn housekeeping(
    store: &Store,
    catalogs: &mut HashMap<String, Catalog>,
    thresholds: &mut HashMap<String, BTreeMap<String, RfmThresholds>>,
    now: DateTime<Utc>,
) -> Result<Housekeeping, ProjectionError> {
    let mut work = Housekeeping::default();
    let mut jobs = catalog::running_jobs(store).await?;
    if jobs.is_empty() {
        jobs = stale_rfm_jobs(store, now).await?;
        for j in &mut jobs {
            j.cursor = THRESHOLDS_NEXT.to_owned();
        }
    }
    if let Some(mut job) = jobs.into_iter().next() {
        ensure_workspace(store, catalogs, thresholds, &job.workspace).await?;
        run_job_page(store, catalogs, thresholds, &mut job, now, &mut work).await?;
        work.jobs.push(job);
    }
    for (w, p) in catalog::due(store, to_millis(now), DUE_PAGE).await? {
        ensure_workspace(store, catalogs, thresholds, &w).await?;
        let key = (w, parse_profile(&p)?);
        work.touched
            .entry(key)
            .or_insert_with(|| "clock".to_owned());
    }
    Ok(work)
}

/// Loads a workspace's catalog and cut points if this batch has not yet.
pub async fn ensure_workspace(
    store: &Store,
    catalogs: &mut HashMap<String, Catalog>,
    thresholds: &mut HashMap<String, BTreeMap<String, RfmThresholds>>,
    workspace: &str,
) -> Result<(), ProjectionError> {
    if !catalogs.contains_key(workspace) {
        catalogs.insert(workspace.to_owned(), catalog::load(store, workspace).await?);
    }
    if !thresholds.contains_key(workspace) {
        let cat = &catalogs[workspace];
        let current = catalog::thresholds(store, workspace)
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
    let (prefix, after) = match job.cursor.strip_prefix(SECOND_PASS) {
        Some(rest) => (SECOND_PASS, rest.to_owned()),
        None => ("", job.cursor.clone()),
    };
    let page = catalog::profiles_after(store, &ws, &after, JOB_PAGE).await?;
    let mut docs = Vec::with_capacity(page.len());
    for (p, json) in &page {
        let doc: ProfileDoc = serde_json::from_str(json).map_err(ProjectionError::corrupt)?;
        docs.push((parse_profile(p)?, doc));
    }
    backfill(store, catalog, &ws, &mut docs).await?;
    let cause = format!("{}:{}", job.kind, job.name);
    for (p, doc) in docs {
        let key = (ws.clone(), p);
        work.touched.insert(key.clone(), cause.clone());
        work.docs.insert(key, doc);
    }
    job.done += page.len() as i64;
    match page.last() {
        Some((last, _)) if page.len() as i64 == JOB_PAGE => {
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
                job.cursor = format!("{prefix}{}", page.last().map_or("", |l| l.0.as_str()));
            }
        }
    }
    Ok(())
}

/// Re-folds the computed traits the documents lack from their events in the log.
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
        let page = catalog::profiles_after(store, workspace, &after, 1_000).await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = last.clone();
        for (_, json) in &page {
            let doc: ProfileDoc = serde_json::from_str(json).map_err(ProjectionError::corrupt)?;
            if let Some(inputs) = rfm_inputs(&doc, catalog, tag, now) {
                population.push(inputs);
            }
        }
    }
    Ok(RfmThresholds::from_population(&population))
}

/// What a segment definition would hold, evaluated over every live profile of a workspace without
/// saving it (`POST /v1/segments/preview`).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Profiles in the segment.
    pub count: i64,
    /// Profiles looked at.
    pub profiles: i64,
    /// Up to `sample` members, in profile id order.
    pub sample: Vec<String>,
    /// What the members spent (the built-in spend) and how many orders they placed.
    pub spend: f64,
    pub orders: u64,
}

/// The id a previewed definition is evaluated under.
pub const PREVIEW: &str = "~preview";

/// Evaluates `def` on every live profile of `workspace` as it stands: event conditions are folded from
/// each profile's events (as a backfill would), other conditions read the profile, its computed traits,
/// tags and the segments in force.
pub async fn preview(
    store: &Store,
    workspace: &str,
    def: &cdp_domain::segments::SegmentDef,
    sample: usize,
    now: DateTime<Utc>,
) -> Result<Preview, ProjectionError> {
    let stored = catalog::load(store, workspace).await?;
    let mut segments = stored.segments.clone();
    segments.insert(
        PREVIEW.to_owned(),
        cdp_domain::catalog::DefinedSegment {
            version: i64::MAX,
            def: def.clone(),
        },
    );
    let cat = Catalog::new(stored.traits.clone(), stored.tags.clone(), segments);
    let thresholds: BTreeMap<String, RfmThresholds> = catalog::thresholds(store, workspace)
        .await?
        .into_iter()
        .map(|(tag, (_, _, t))| (tag, t))
        .collect();
    let mut out = Preview {
        count: 0,
        profiles: 0,
        sample: Vec::new(),
        spend: 0.0,
        orders: 0,
    };
    let mut after = String::new();
    loop {
        let page = catalog::profiles_after(store, workspace, &after, 1_000).await?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = last.clone();
        let mut docs = Vec::with_capacity(page.len());
        for (p, json) in &page {
            let doc: ProfileDoc = serde_json::from_str(json).map_err(ProjectionError::corrupt)?;
            docs.push((parse_profile(p)?, doc));
        }
        backfill(store, &cat, workspace, &mut docs).await?;
        let names: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
        let tags = catalog::tags_of(store, workspace, &names).await?;
        for (p, doc) in &docs {
            let manual: BTreeMap<String, Value> = tags
                .get(p.as_str())
                .into_iter()
                .flatten()
                .filter(|t| t.manual)
                .map(|t| (t.tag.clone(), t.value.value.clone()))
                .collect();
            let eval = evaluate(doc, &cat, &manual, &thresholds, now);
            out.profiles += 1;
            if eval.segments.contains(PREVIEW) {
                out.count += 1;
                out.spend += eval.spend;
                out.orders += doc
                    .counts_by_event
                    .get("Order Completed")
                    .copied()
                    .unwrap_or(0);
                if out.sample.len() < sample {
                    out.sample.push(p.to_string());
                }
            }
        }
    }
}
