//! What the resolver derives from profiles besides their documents: each profile's tags (rule, value,
//! RFM and manual) and segments, what it is worth, when it must be looked at again, and a message in the
//! outbox for every change of a tag value and every enter and exit of a segment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_domain::fastmap::{map_with_capacity, FastMap, FastSet};

use cdp_domain::catalog::Catalog;
use cdp_domain::event::to_millis;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::store::Store;
use cdp_domain::tags::{RfmThresholds, TagDef, TagValue};
use cdp_domain::vecmap::VecMap;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::catalog::{self, Membership, MembershipChange, ProfileTag};
use crate::outbox::{OutboxMessage, Topic};
use crate::stages::StageWrites;

use crate::profiles::ProfileKey;
use crate::runner::ProjectionError;

pub use super::evaluate::{evaluate, Evaluation};

/// What derive last stored for a profile: its tags, its segments, and the spend and due time it wrote
/// (`None`: not known to have been written by this resolver).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub tags: VecMap<String, ProfileTag>,
    pub members: VecMap<String, Membership>,
    pub spend: Option<f64>,
    pub due: Option<Option<f64>>,
}

/// Where the engine keeps what derive last wrote for each profile between batches (the resolver's held
/// profiles, `identity::held`): derive takes out the entries of the profiles it evaluates and puts back
/// what it wrote. A trait, so that evaluation does not depend on the resolver that calls it.
pub trait DerivedMemory {
    /// Takes out what derive last wrote for a profile, if it is held.
    fn take_derived(&mut self, key: &ProfileKey) -> Option<Derived>;
    /// Puts back what derive wrote.
    fn put_back_derived(&mut self, entries: impl Iterator<Item = (ProfileKey, Derived)>);
}

/// The `tag.changed` message of a change (`now_value: None`: the tag was taken off).
/// `workspace` as the log's text (checked at ingestion): called per tag change on the resolver's hot path, so
/// `&str`, never a parse per event.
pub fn change_message(
    workspace: &str,
    profile: &str,
    tag: &str,
    previous: Option<&TagValue>,
    now_value: Option<&TagValue>,
    caused_by: &str,
    at: DateTime<Utc>,
) -> OutboxMessage {
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
    OutboxMessage {
        workspace: workspace.to_owned(),
        topic: Topic::TagChanged {
            tag: tag.to_owned(),
        },
        payload: payload.to_string(),
    }
}

/// A tag of a profile set to `now_value` (or removed) from `previous`, because of `caused_by`: the row
/// and, when the value changed, the message. A change of the detail alone keeps the row's time and cause.
pub fn tag_change(
    out: &mut StageWrites,
    (w, p): (&str, &str),
    previous: Option<&ProfileTag>,
    now_value: Option<ProfileTag>,
    caused_by: &str,
    at: DateTime<Utc>,
) {
    let tag = match (&now_value, previous) {
        (Some(t), _) | (None, Some(t)) => t.tag.clone(),
        (None, None) => return,
    };
    let same_value = match (previous, &now_value) {
        (Some(old), Some(new)) => old.value.value == new.value.value,
        _ => false,
    };
    if same_value {
        let (Some(old), Some(new)) = (previous, now_value) else {
            return;
        };
        out.audiences.tags.push((
            w.to_owned(),
            p.to_owned(),
            tag,
            Some(ProfileTag {
                value: new.value,
                manual: new.manual,
                ..old.clone()
            }),
        ));
        return;
    }
    out.outbox.push(change_message(
        w,
        p,
        &tag,
        previous.map(|o| &o.value),
        now_value.as_ref().map(|n| &n.value),
        caused_by,
        at,
    ));
    out.audiences.tags.push((
        w.to_owned(),
        p.to_owned(),
        tag,
        now_value.map(|n| ProfileTag {
            changed_at: to_millis(at),
            caused_by: Some(caused_by.to_owned()),
            ..n
        }),
    ));
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
    pub docs: &'a FastMap<ProfileKey, ProfileDoc>,
    /// Profiles to evaluate, with what caused it (the last event, a command, `clock`, a job).
    pub touched: BTreeMap<ProfileKey, String>,
    /// Profiles the batch created: no rows of them are stored yet.
    pub created: &'a FastSet<ProfileKey>,
    /// Profiles merged away, with their survivor after the batch and the cause.
    pub merged: Vec<(ProfileKey, ProfileKey, String)>,
    pub manual: Vec<ManualChange>,
    pub catalogs: &'a HashMap<String, Catalog>,
    pub thresholds: &'a HashMap<String, BTreeMap<String, RfmThresholds>>,
    pub now: DateTime<Utc>,
    /// How many runs the profiles are evaluated in (on as many threads).
    pub parts: usize,
}

/// A profile without stored tags.
static NO_TAGS: VecMap<String, ProfileTag> = VecMap::new();

/// The cause of a re-evaluation because a profile was due.
pub const CLOCK: &str = "clock";

/// Evaluates the touched profiles and writes the differences with their stored tags into `out`.
#[tracing::instrument(
    name = "resolver.derive",
    skip_all,
    fields(profiles = d.touched.len(), merged = d.merged.len())
)]
pub async fn derive(
    store: &Store,
    d: Derivation<'_>,
    known: &mut impl DerivedMemory,
    out: &mut StageWrites,
) -> Result<(), ProjectionError> {
    let now_ms = to_millis(d.now);
    let mut by_workspace: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (w, p) in d.touched.keys() {
        by_workspace.entry(w).or_default().insert(p.as_str());
    }
    for ((w, p), _, _) in &d.merged {
        by_workspace.entry(w).or_default().insert(p.as_str());
    }
    // What derive wrote last for each profile: from memory where held, else from the tables.
    // Sized once (growing by rehash faults in fresh pages every batch).
    let profiles = d.touched.len() + d.merged.len();
    let mut stored: FastMap<ProfileKey, VecMap<String, ProfileTag>> = map_with_capacity(profiles);
    let mut members: FastMap<ProfileKey, VecMap<String, Membership>> = map_with_capacity(profiles);
    let mut last_written: FastMap<ProfileKey, (Option<f64>, Option<Option<f64>>)> =
        map_with_capacity(profiles);
    for (w, profiles) in &by_workspace {
        let mut missing: Vec<&str> = Vec::new();
        for p in profiles {
            let key = (w.to_string(), parse_profile(p)?);
            if d.created.contains(&key) {
                continue;
            }
            match known.take_derived(&key) {
                Some(k) => {
                    if !k.tags.is_empty() {
                        stored.insert(key.clone(), k.tags);
                    }
                    if !k.members.is_empty() {
                        members.insert(key.clone(), k.members);
                    }
                    last_written.insert(key, (k.spend, k.due));
                }
                None => missing.push(p),
            }
        }
        if missing.is_empty() {
            continue;
        }
        for (p, tags) in catalog::tags_of_in(store, w, &missing).await? {
            let key = (w.to_string(), parse_profile(&p)?);
            stored.insert(key, tags.into_iter().map(|t| (t.tag.clone(), t)).collect());
        }
        for (p, ms) in catalog::memberships_of(store, w, &missing).await? {
            let key = (w.to_string(), parse_profile(&p)?);
            members.insert(
                key,
                ms.into_iter().map(|m| (m.segment.clone(), m)).collect(),
            );
        }
    }
    let evaluated = (out.audiences.tags.len(), out.audiences.members.len());
    // Manual values after the batch: stored, moved by merges, then changed by commands.
    let mut manual: FastMap<ProfileKey, BTreeMap<String, (Value, String)>> =
        map_with_capacity(profiles);
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
            out.audiences
                .tags
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
        out.derived
            .spend
            .push((gone.0.clone(), gone.1.to_string(), None));
        out.derived
            .due
            .push((gone.0.clone(), gone.1.to_string(), None));
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
    // Each profile on its own: the profiles in runs over the cores, their writes put together in the
    // order of the keys (what one thread writes).
    type Written = (ProfileKey, (Option<f64>, Option<Option<f64>>));
    let evaluate_one = |key: &ProfileKey, out: &mut StageWrites, written: &mut Vec<Written>| {
        let Some(doc) = d.docs.get(key) else {
            return;
        };
        let (w, p) = key;
        let catalog = d.catalogs.get(w.as_str());
        let Some(catalog) = catalog else {
            return;
        };
        if catalog.tags.is_empty()
            && catalog.segments.is_empty()
            && !stored.contains_key(key)
            && !members.contains_key(key)
        {
            // Nothing to evaluate: a workspace without tags or segments pays nothing here. A profile
            // taken because it was due is due no more.
            if d.touched.get(key).is_some_and(|cause| cause == CLOCK) {
                out.derived.due.push((w.clone(), p.to_string(), None));
            }
            return;
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
        let before = stored.get(key).unwrap_or(&NO_TAGS);
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
                        out.audiences.tags.push((
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
                    out.audiences.tags.push((
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
        for (tag, old) in before {
            if !eval.tags.contains_key(tag) {
                let cause = attribute(&cause, tag, catalog);
                out.audiences
                    .tags
                    .push((w.clone(), p.to_string(), tag.clone(), None));
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
        // Written only when it changed since this resolver last wrote it.
        let (spend_was, due_was) = last_written.get(key).copied().unwrap_or((None, None));
        if spend_was != Some(eval.spend) {
            out.derived
                .spend
                .push((w.clone(), p.to_string(), Some(eval.spend)));
        }
        // Stored as a float so one statement serves both tables; whole milliseconds are exact.
        let due = eval.due_at.map(|t| to_millis(t).max(now_ms + 1_000) as f64);
        if due_was != Some(due) {
            out.derived.due.push((w.clone(), p.to_string(), due));
        }
        written.push((key.clone(), (Some(eval.spend), Some(due))));
    };
    let runs = crate::parallel::map_runs(&keys, d.parts, |run| {
        let mut out = StageWrites::default();
        let mut written = Vec::with_capacity(run.len());
        for key in run {
            evaluate_one(key, &mut out, &mut written);
        }
        (out, written)
    });
    for (run, written) in runs {
        out.append(run);
        last_written.extend(written);
    }
    // What is stored now, for the next batch: the stored rows with this batch's changes.
    for (w, p, tag, value) in &out.audiences.tags[evaluated.0..] {
        apply_change(&mut stored, w, p, tag, value.as_ref())?;
    }
    for (w, segment, p, membership) in &out.audiences.members[evaluated.1..] {
        apply_change(&mut members, w, p, segment, membership.as_ref())?;
    }
    let gone: FastSet<&ProfileKey> = d.merged.iter().map(|(gone, _, _)| gone).collect();
    let mut keys: Vec<ProfileKey> = stored.keys().chain(members.keys()).cloned().collect();
    keys.extend(last_written.keys().cloned());
    keys.sort();
    keys.dedup();
    known.put_back_derived(keys.into_iter().filter(|k| !gone.contains(k)).map(|key| {
        let (spend, due) = last_written.get(&key).copied().unwrap_or((None, None));
        let entry = Derived {
            tags: stored.remove(&key).unwrap_or_default(),
            members: members.remove(&key).unwrap_or_default(),
            spend,
            due,
        };
        (key, entry)
    }));
    for g in gone {
        known.take_derived(g);
    }
    Ok(())
}

/// Sets (`Some`) or removes the row `name` of profile `(w, p)` in `rows`.
fn apply_change<T: Clone>(
    rows: &mut FastMap<ProfileKey, VecMap<String, T>>,
    w: &str,
    p: &str,
    name: &str,
    value: Option<&T>,
) -> Result<(), ProjectionError> {
    let of_profile = rows.entry((w.to_owned(), parse_profile(p)?)).or_default();
    match value {
        Some(v) => of_profile.insert(name.to_owned(), v.clone()),
        None => of_profile.remove(name),
    };
    Ok(())
}

/// A profile enters a segment: its membership, the history, and the message.
fn enter(out: &mut StageWrites, key: &ProfileKey, segment: &str, cause: &str, at: DateTime<Utc>) {
    membership_change(out, key, segment, true, cause, at);
}

/// A profile leaves a segment.
fn leave(out: &mut StageWrites, key: &ProfileKey, segment: &str, cause: &str, at: DateTime<Utc>) {
    membership_change(out, key, segment, false, cause, at);
}

/// A profile enters (`entered`) or leaves a segment: the membership, its history and the message.
pub fn membership_change(
    out: &mut StageWrites,
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
    out.audiences
        .members
        .push((w.clone(), segment.to_owned(), p.to_string(), membership));
    out.audiences.history.push((
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
    out.outbox.push(OutboxMessage {
        workspace: w.clone(),
        topic: Topic::Segment {
            segment: segment.to_owned(),
            entered,
        },
        payload: payload.to_string(),
    });
}

/// What caused a change of `tag` found by a profile's evaluation that `cause` prompted. A job re-evaluates
/// every tag of the profile, so a tag defined after the job's definition changed because of its own
/// definition, not the job's.
fn attribute(cause: &str, tag: &str, catalog: &Catalog) -> String {
    let job_version = match cause.split_once(':') {
        Some((catalog::TAG, name)) => catalog.tags.get(name).map(|t| t.version),
        Some((catalog::TRAIT, name)) => catalog.folded().get(name).map(|t| t.version),
        Some((catalog::SEGMENT, name)) => catalog.segments.get(name).map(|t| t.version),
        Some((catalog::CONSENT, _)) => Some(catalog.consent.version),
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

pub(crate) fn parse_profile(p: &str) -> Result<cdp_domain::identity::ProfileId, ProjectionError> {
    cdp_domain::identity::ProfileId::parse(p).map_err(ProjectionError::corrupt)
}
