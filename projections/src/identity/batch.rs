//! One batch of the resolver: decide identity for each event in log order (customer events through
//! `resolve`, operator commands through `commands`), then fold the events into the profile documents and
//! work out where every event and identifier belongs afterwards.

use cdp_domain::fastmap::{map_with_capacity, FastSet};
use std::collections::HashMap;

use std::collections::BTreeMap;

use cdp_domain::catalog::{Catalog, CatalogCommand};
use cdp_domain::event::StoredEvent;
use cdp_domain::identity::{
    identifiers_of, resolve_normalised, IdentityEvent, IdentityGraph, IdentityRules, ProfileId,
};
use cdp_domain::json::{Json, JsonRead};
use cdp_domain::message::MessageKind;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::store::Store;
use cdp_domain::tags::RfmThresholds;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::Instrument;

use super::catalog_commands::{apply_catalog, decide_catalog};
use super::model::{fold_run, Folded, Model};
use super::operator::decide_command;
use super::step::Step;
use super::{profile_id_for, PreparedDecisions, RecordedDecision};
use crate::catalog::CatalogWrites;
use crate::evaluation::derive::{self, Derivation, ManualChange};
use crate::jobs::Housekeeping;
use crate::outbox::{OutboxMessage, Topic};
use crate::profiles::{self, ProfileKey};
use crate::runner::ProjectionError;
use crate::stages::StageWrites;

/// What the batch works with besides its events.
pub(super) struct Context<'a> {
    /// The rules in force for each workspace of the batch at its start.
    pub rules: HashMap<String, IdentityRules>,
    pub catalogs: &'a mut HashMap<String, Catalog>,
    pub thresholds: &'a HashMap<String, BTreeMap<String, RfmThresholds>>,
    pub house: Housekeeping,
    pub now: DateTime<Utc>,
    /// How many parts the batch's folds and evaluations are split into (one per core).
    pub parts: usize,
    /// A plain batch of a rebuild: its last-value rows are deferred here, its profiles evaluated at
    /// the flush (`super::deferred`), not now.
    pub deferred: Option<&'a mut super::deferred::Deferred>,
    /// Whether the documents the batch reads that lack a computed trait are backfilled from the log
    /// as they are read (see [`backfill_lacking`]): while a job runs, with every batch before this
    /// one committed.
    pub backfill_read: bool,
    /// Whether the batch's track events are published (the outbox): a rebuild's shadow publishes
    /// nothing, and its batches make no message.
    pub publishes: bool,
}

pub(super) async fn prepare(
    store: &Store,
    graphs: &mut HashMap<String, IdentityGraph>,
    cache: &mut super::held::Docs,
    ctx: Context<'_>,
    events: &[StoredEvent],
) -> Result<PreparedDecisions, ProjectionError> {
    let Context {
        rules,
        catalogs,
        thresholds,
        house,
        now,
        parts,
        mut deferred,
        backfill_read,
        publishes,
    } = ctx;
    let started = std::time::Instant::now();
    let mut steps = Vec::with_capacity(events.len());
    // The rules in force as the batch's rules commands change them, for the later events.
    let at_start = rules.clone();
    let mut rules = rules;
    // The catalogs as the commands of this batch change them, for deciding the later commands (a
    // segment may read one defined earlier in the same batch).
    let mut deciding = catalogs.clone();
    // Every customer event's payload parsed once, over the cores, borrowing the event's text, with
    // the identifiers it carries under the rules in force at the batch's start (an erased event's is
    // not read; an operator command's is parsed in the loop, as its own type).
    let mut payloads = crate::parallel::map(events, parts, |stored| {
        let e = &stored.event;
        (!cdp_domain::shred::is_erased(e) && e.kind != MessageKind::Operator).then(|| {
            Json::parse(&e.payload).map(|payload| {
                let carried = identifiers_of(
                    &payload,
                    e.user_id.as_deref(),
                    e.anonymous_id.as_deref(),
                    &at_start[&e.workspace],
                );
                (payload, carried)
            })
        })
    })
    .into_iter();
    // The workspaces whose rules a command of this batch changed: their later events' identifiers
    // are found again under the new rules.
    let mut rules_changed: FastSet<String> = FastSet::default();
    // Each event decided in log order, in a span of its own (the batch's decide stage).
    let decide = tracing::info_span!("resolver.decide", events = events.len());
    async {
        for stored in events {
            let parsed = payloads.next().flatten();
            let e = &stored.event;
            if cdp_domain::shred::is_erased(e) {
                // Its subject was erased: nothing of it belongs to anyone any more.
                steps.push(Step::apart(stored, Vec::new(), None, None));
                continue;
            }
            let in_force = &rules[&e.workspace];
            // Looked up by reference: an entry's key is copied only for a workspace's first event.
            if !graphs.contains_key(&e.workspace) {
                graphs.insert(e.workspace.clone(), IdentityGraph::default());
            }
            let graph = graphs
                .get_mut(&e.workspace)
                .expect("the workspace's graph was just ensured");
            let step = if e.kind == MessageKind::Operator {
                let payload: Value =
                    serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
                if CatalogCommand::is_catalog(&payload) {
                    let catalog = deciding.get(&e.workspace);
                    let (command, decisions) = decide_catalog(graph, catalog, stored, payload);
                    if let Some(accepted) = &command {
                        apply_catalog(
                            accepted,
                            stored,
                            &mut deciding,
                            &mut CatalogWrites::default(),
                            now,
                        );
                    }
                    Step::apart(stored, decisions, command, None)
                } else {
                    let (decisions, new_rules) =
                        decide_command(store, graph, in_force, stored, payload).await?;
                    Step::apart(stored, decisions, None, new_rules)
                }
            } else {
                let (payload, found) = match parsed {
                    Some(parsed) => {
                        let (payload, carried) = parsed.map_err(ProjectionError::corrupt)?;
                        (payload, Some(carried))
                    }
                    None => (
                        Json::parse(&e.payload).map_err(ProjectionError::corrupt)?,
                        None,
                    ),
                };
                let carried = match found {
                    Some(carried) if !parsed_under_other_rules(&rules_changed, &e.workspace) => {
                        carried
                    }
                    _ => identifiers_of(
                        &payload,
                        e.user_id.as_deref(),
                        e.anonymous_id.as_deref(),
                        in_force,
                    ),
                };
                let resolution =
                    resolve_normalised(graph, in_force, &carried, &e.message_id, || {
                        profile_id_for(&e.workspace, &e.message_id)
                    });
                Step {
                    event: stored,
                    payload: Some(payload),
                    carried,
                    target: resolution.profile,
                    decisions: resolution.events,
                    command: None,
                    rules: None,
                }
            };
            for d in &step.decisions {
                graph.apply(d);
            }
            if let Some(new_rules) = &step.rules {
                rules.insert(e.workspace.clone(), new_rules.clone());
                rules_changed.insert(e.workspace.clone());
            }
            steps.push(step);
        }
        Ok::<(), ProjectionError>(())
    }
    .instrument(decide)
    .await?;

    let mut keys: Vec<ProfileKey> = Vec::new();
    // Profiles this batch creates: nothing of them is stored, so nothing of them is read.
    let mut created: FastSet<ProfileKey> = FastSet::default();
    for step in &steps {
        let ws = &step.event.event.workspace;
        keys.extend(step.target.iter().map(|p| (ws.clone(), p.clone())));
        for d in &step.decisions {
            if let IdentityEvent::ProfileCreated { profile, .. } = d {
                created.insert((ws.clone(), profile.clone()));
            }
            keys.extend(profiles_named(d).into_iter().map(|p| (ws.clone(), p)));
        }
        if let Some(
            CatalogCommand::TagProfile { profile_id, .. }
            | CatalogCommand::UntagProfile { profile_id, .. },
        ) = &step.command
        {
            let survivor = graphs
                .get(ws)
                .map_or(profile_id.clone(), |g| g.resolve(profile_id));
            keys.push((ws.clone(), survivor));
        }
    }
    let decided = started.elapsed();
    keys.extend(house.touched.keys().cloned());
    keys.sort_unstable();
    keys.dedup();
    keys.retain(|k| !house.docs.contains_key(k) && !created.contains(k));
    // Sized once for every document the batch will hold (growing by rehash faults in fresh pages).
    let mut docs = map_with_capacity(keys.len() + house.docs.len() + created.len());
    let mut held: Vec<(ProfileKey, Box<[u8]>)> = Vec::with_capacity(keys.len());
    keys.retain(|k| {
        if let Some(doc) = cache.take_warm(k) {
            docs.insert(k.clone(), doc);
            return false;
        }
        match cache.take(k) {
            Some(state) => {
                held.push((k.clone(), state));
                false
            }
            None => true,
        }
    });
    // The held states decoded over the cores.
    let decoded = crate::parallel::map(&held, parts, |(_, state)| {
        ProfileDoc::from_stored(Some(state), None)
    });
    for ((key, _), doc) in held.into_iter().zip(decoded) {
        docs.insert(key, doc.map_err(ProjectionError::corrupt)?);
    }
    let missed = keys.len();
    docs.extend(profiles::load_many(store, &keys).await?);
    if backfill_read {
        backfill_lacking(store, catalogs, &mut docs).await?;
    }
    let loaded = started.elapsed();
    docs.extend(house.docs);
    let as_read = house.as_read;
    let fill = house.fill;
    let mut touched = house.touched;
    let mut stage_writes = StageWrites {
        catalog: CatalogWrites {
            jobs: house.jobs,
            thresholds: house
                .thresholds
                .into_iter()
                .map(|(w, tag, version, t)| (w, tag, version, derive::to_ms(now), t))
                .collect(),
            ..CatalogWrites::default()
        },
        ..StageWrites::default()
    };
    let mut manual = Vec::new();

    let mut model = Model::new(store, steps.len());
    model.docs = docs;
    // The rules and catalogs in force at the step being folded: the batch's commands change them, in
    // their place (the rules in force at the batch's start, again).
    let mut rules_now = at_start;
    let mut catalogs_now = std::mem::take(catalogs);
    let mut folded = Folded::default();
    let mut rules_writes: BTreeMap<String, (IdentityRules, i64)> = BTreeMap::new();
    // Whether a workspace had no stored profile when the batch began, asked once per workspace.
    let mut stored_empty: HashMap<String, bool> = HashMap::new();
    // The decisions folded into the documents, in log order (the batch's fold stage).
    let fold = tracing::info_span!("resolver.fold", steps = steps.len());
    async {
        let mut i = 0;
        while i < steps.len() {
            if steps[i].event.event.kind != MessageKind::Operator {
                // A run of customer events: folded in parts (no command among them changes what they read).
                let end = steps[i..]
                    .iter()
                    .position(|s| s.event.event.kind == MessageKind::Operator)
                    .map_or(steps.len(), |n| i + n);
                let run = i..end;
                i = end;
                fold_run(
                    &mut model,
                    &steps,
                    run,
                    parts,
                    (&rules_now, &catalogs_now),
                    &mut folded,
                );
                continue;
            }
            let step = &steps[i];
            let e = &step.event.event;
            if let Some(new_rules) = &step.rules {
                // The command's own decisions (its merges and splits) are taken under the new rules.
                rules_now.insert(e.workspace.clone(), new_rules.clone());
                let at = cdp_domain::event::to_millis(e.received_at);
                rules_writes.insert(e.workspace.clone(), (new_rules.clone(), at));
            }
            for d in &step.decisions {
                if let IdentityEvent::ProfileSplit {
                    from,
                    into,
                    identifiers,
                    ..
                } = d
                {
                    model
                        .split(
                            &e.workspace,
                            from,
                            into,
                            identifiers,
                            &steps,
                            (&rules_now, &catalogs_now),
                        )
                        .await?;
                } else {
                    model.apply_decision(i, &e.workspace, d, &rules_now, &catalogs_now);
                }
                folded.record(i, &e.workspace, d);
            }
            if let Some(command) = &step.command {
                let jobs_before = stage_writes.catalog.jobs.len();
                let changed = apply_catalog(
                    command,
                    step.event,
                    &mut catalogs_now,
                    &mut stage_writes.catalog,
                    now,
                );
                if stage_writes.catalog.jobs.len() > jobs_before {
                    // A definition met before the workspace has any profile (the catalog set up
                    // before the data arrives, and any rebuild of such a log) has nothing to
                    // backfill: every profile made later folds it live.
                    let empty = match stored_empty.get(&e.workspace) {
                        Some(empty) => *empty,
                        None => {
                            let empty =
                                crate::catalog::count_profiles(store, &e.workspace).await? == 0;
                            stored_empty.insert(e.workspace.clone(), empty);
                            empty
                        }
                    };
                    if empty && !model.docs.keys().any(|(w, _)| *w == e.workspace) {
                        for job in &mut stage_writes.catalog.jobs[jobs_before..] {
                            job.total = 0;
                            job.status = "done".to_owned();
                            job.finished_at = Some(derive::to_ms(now));
                        }
                    }
                }
                if let Some(change) = changed {
                    let survivor = graphs
                        .get(&e.workspace)
                        .map(|g| g.resolve(&change.key.1))
                        .unwrap_or(change.key.1.clone());
                    manual.push(ManualChange {
                        key: (e.workspace.clone(), survivor),
                        ..change
                    });
                }
            }
            i += 1;
        }
        Ok::<(), ProjectionError>(())
    }
    .instrument(fold)
    .await?;
    folded.merged.sort_by_key(|m| m.0);
    folded.subscribed.sort_by_key(|s| s.0);
    let decisions: Vec<RecordedDecision> = steps
        .iter()
        .flat_map(|step| {
            let e = &step.event.event;
            step.decisions.iter().map(|d| RecordedDecision {
                workspace: e.workspace.clone(),
                log_seq: step.event.position.seq,
                recorded_at_ms: cdp_domain::event::to_millis(e.received_at),
                event: d.clone(),
            })
        })
        .collect();
    for (key, i) in folded.touched {
        touched.insert(key, steps[i].event.event.message_id.clone());
    }
    let subscribed = folded.subscribed;
    let merged: Vec<(String, ProfileId, ProfileId)> = folded
        .merged
        .into_iter()
        .map(|(_, w, absorbed, survivor)| (w, absorbed, survivor))
        .collect();
    for (i, profile) in subscribed.into_iter().filter(|_| publishes) {
        let e = &steps[i].event.event;
        let profile = model.resolve_in_batch(&e.workspace, &profile);
        let name = e.name.as_deref().unwrap_or_default();
        let properties = steps[i].payload.as_ref().and_then(|p| p.get("properties"));
        let payload = EventMessage {
            event: name,
            message_id: &e.message_id,
            profile_id: profile.as_str(),
            properties,
            timestamp: cdp_domain::message::rfc3339(e.event_time),
            kind: "event",
            workspace: &e.workspace,
        };
        stage_writes.outbox.push(OutboxMessage {
            workspace: e.workspace.clone(),
            topic: Topic::Event {
                name: name.to_owned(),
            },
            payload: serde_json::to_string(&payload).map_err(ProjectionError::corrupt)?,
        });
    }
    // Profiles merged away in the batch are evaluated as their survivors.
    let merged: Vec<(ProfileKey, ProfileKey, String)> = merged
        .into_iter()
        .map(|(w, absorbed, _)| {
            let survivor = model.resolve_in_batch(&w, &absorbed);
            let cause = touched
                .get(&(w.clone(), survivor.clone()))
                .cloned()
                .unwrap_or_default();
            ((w.clone(), absorbed), (w, survivor), cause)
        })
        .collect();
    for (gone, survivor, _) in &merged {
        if let Some(cause) = touched.remove(gone) {
            touched.entry(survivor.clone()).or_insert(cause);
        }
    }
    for change in &mut manual {
        change.key.1 = model.resolve_in_batch(&change.key.0, &change.key.1);
        touched
            .entry(change.key.clone())
            .or_insert_with(|| change.caused_by.clone());
    }
    touched.retain(|k, _| model.docs.contains_key(k));
    let folded = started.elapsed();
    // The profiles derive evaluates (every segment of them): a fill leaves them to it.
    let evaluated: FastSet<ProfileKey> = fill
        .as_ref()
        .map(|_| {
            touched
                .keys()
                .cloned()
                .chain(merged.iter().flat_map(|(g, s, _)| [g.clone(), s.clone()]))
                .chain(created.iter().cloned())
                .collect()
        })
        .unwrap_or_default();
    match deferred.as_deref_mut() {
        Some(deferred) => deferred.note(touched, &created, merged),
        None => {
            derive::derive(
                store,
                Derivation {
                    docs: &model.docs,
                    touched,
                    created: &created,
                    merged,
                    manual,
                    catalogs: &catalogs_now,
                    thresholds,
                    now,
                    parts,
                },
                cache,
                &mut stage_writes,
            )
            .await?
        }
    }
    if let Some(fill) = fill {
        for (profiles, entered) in [(&fill.enter, true), (&fill.leave, false)] {
            for p in profiles {
                let key = (fill.workspace.clone(), derive::parse_profile(p)?);
                if !evaluated.contains(&key) {
                    derive::membership_change(
                        &mut stage_writes,
                        &key,
                        &fill.segment,
                        entered,
                        &fill.cause,
                        now,
                    );
                }
            }
        }
    }
    *catalogs = catalogs_now;
    // The documents as this batch leaves them; if it does not commit, the whole cache is dropped.
    for key in &model.gone {
        cache.forget(key);
    }
    let derived = started.elapsed();
    let (writes, deferred) = match deferred {
        // A deferring batch writes no state: its documents stay decoded for the next batch and the
        // flush (the untouched ones past the bound are encoded).
        Some(deferred) => {
            let (writes, docs) = model.into_rows();
            deferred.hold(&writes.gone, docs.keys().cloned());
            let touched: FastSet<ProfileKey> = docs.keys().cloned().collect();
            cache.put_back_warm(docs);
            if cache.warm_len() > super::held::WARM_AT_MOST {
                cache.cool(parts, |k| touched.contains(k));
            }
            (writes, true)
        }
        // A live batch's documents are held both ways: encoded (what was written) and, up to
        // `LIVE_WARM`, decoded for the next batches that touch them.
        None => {
            let (writes, states, docs) = model.into_writes(&as_read, parts);
            cache.put_back(states);
            cache.keep_warm(docs, super::held::LIVE_WARM, parts);
            (writes, false)
        }
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        events = events.len(),
        profiles = writes.docs.len(),
        read_from_database = missed,
        decide_ms = ms(decided),
        load_ms = ms(loaded - decided),
        fold_ms = ms(folded - loaded),
        derive_ms = ms(derived - folded),
        encode_ms = ms(started.elapsed() - derived),
        "resolver batch prepared"
    );
    Ok(PreparedDecisions {
        decisions,
        model: writes,
        stages: stage_writes,
        rules: rules_writes
            .into_iter()
            .map(|(w, (r, at))| (w, r, at))
            .collect(),
        token: String::new(),
        based_on: None,
        deferred,
    })
}

/// Backfills, from their events in the log, the documents that lack a computed trait of their
/// workspace's catalog (one defined or changed while a job has not reached them yet), before the
/// batch folds its events into them: a profile an event, merge or command touches is evaluated on
/// complete traits, as its job page would, and not on the events since the definition alone — a
/// member filled from the audience index never leaves because its job has not come yet. The log's
/// owners must be every event of these profiles: every batch before this one is committed (the
/// caller's condition) and the batch's own events are folded after.
async fn backfill_lacking(
    store: &Store,
    catalogs: &HashMap<String, Catalog>,
    docs: &mut cdp_domain::fastmap::FastMap<ProfileKey, ProfileDoc>,
) -> Result<(), ProjectionError> {
    let mut lacking: BTreeMap<String, Vec<ProfileKey>> = BTreeMap::new();
    for (key, doc) in docs.iter() {
        let Some(catalog) = catalogs.get(&key.0) else {
            continue;
        };
        if !doc.incomplete_computed(catalog.folded()).is_empty() {
            lacking.entry(key.0.clone()).or_default().push(key.clone());
        }
    }
    for (workspace, mut keys) in lacking {
        // In profile order, as a job page reads them.
        keys.sort();
        let mut taken: Vec<(ProfileId, ProfileDoc)> = keys
            .iter()
            .filter_map(|k| docs.remove(k).map(|d| (k.1.clone(), d)))
            .collect();
        crate::jobs::backfill(store, &catalogs[&workspace], &workspace, &mut taken).await?;
        for (p, doc) in taken {
            docs.insert((workspace.clone(), p), doc);
        }
    }
    Ok(())
}

/// The message of a track event for its subscribers, serialised without copying its properties. The
/// fields are in the order a JSON object writes its keys (alphabetical), so the text is what a `json!`
/// object of the same fields gave (no properties: `null`).
#[derive(serde::Serialize)]
struct EventMessage<'a> {
    event: &'a str,
    message_id: &'a str,
    profile_id: &'a str,
    properties: Option<&'a Json<'a>>,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'static str,
    workspace: &'a str,
}

/// Whether an event of `workspace` had its identifiers found under rules a command of the batch has
/// changed since.
fn parsed_under_other_rules(changed: &FastSet<String>, workspace: &str) -> bool {
    !changed.is_empty() && changed.contains(workspace)
}

/// The profiles a decision reads or changes the document of.
fn profiles_named(d: &IdentityEvent) -> Vec<ProfileId> {
    match d {
        IdentityEvent::IdentifierLinked { profile, .. } => vec![profile.clone()],
        IdentityEvent::ProfilesMerged {
            survivor, absorbed, ..
        } => vec![survivor.clone(), absorbed.clone()],
        IdentityEvent::ProfileSplit { from, .. } => vec![from.clone()],
        IdentityEvent::ProfileCreated { .. }
        | IdentityEvent::MergeRejected { .. }
        | IdentityEvent::LinkRejected { .. }
        | IdentityEvent::ProfileErased { .. }
        | IdentityEvent::CommandRejected { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
