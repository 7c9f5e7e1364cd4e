//! One batch of the resolver: decide identity for each event in log order (customer events through
//! `resolve`, operator commands through `commands`), then fold the events into the profile documents and
//! work out where every event and identifier belongs afterwards.

use cdp_domain::fastmap::{map_with_capacity, FastMap, FastSet};
use std::collections::HashMap;
use std::ops::Range;

use std::collections::BTreeMap;

use cdp_domain::catalog::{Catalog, CatalogCommand};
use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::identity::{
    apply_rules_diff, identifiers_of, manual_merge, resolve, rules_diff, split, Identifier,
    IdentityEvent, IdentityGraph, IdentityRules, OperatorCommand, ProfileId,
};
use cdp_domain::message::MessageKind;
use cdp_domain::profile::{
    channel_of, split_docs, EventSummary, FoldRules, OwnedEvent, ProfileDoc,
};
use cdp_domain::store::{EventStore, Store};
use cdp_domain::tags::RfmThresholds;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::catalog_commands::{apply_catalog, decide_catalog, event_slug};
use super::derive::{self, Derivation, ManualChange};
use super::housekeeping::Housekeeping;
use super::{profile_id_for, rules_after, PreparedDecisions, RecordedDecision};
use crate::catalog::CatalogWrites;
use crate::profiles::{self, ModelWrites, ProfileKey, Reassign};
use crate::runner::ProjectionError;

/// One event of the batch with what was decided for it.
struct Step<'a> {
    event: &'a StoredEvent,
    /// `None` for an operator command: it is not part of any profile.
    payload: Option<Value>,
    carried: Vec<Identifier>,
    target: Option<ProfileId>,
    decisions: Vec<IdentityEvent>,
    /// A catalog command that was not refused.
    command: Option<CatalogCommand>,
    /// The rules a rules command put in force: the workspace's later events resolve under them.
    rules: Option<IdentityRules>,
}

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
}

pub(super) async fn prepare(
    store: &Store,
    graphs: &mut HashMap<String, IdentityGraph>,
    cache: &mut super::Docs,
    known: &mut derive::DerivedCache,
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
    } = ctx;
    let started = std::time::Instant::now();
    let mut steps = Vec::with_capacity(events.len());
    // The rules in force as the batch's rules commands change them, for the later events.
    let at_start = rules.clone();
    let mut rules = rules;
    // The catalogs as the commands of this batch change them, for deciding the later commands (a
    // segment may read one defined earlier in the same batch).
    let mut deciding = catalogs.clone();
    // Every payload parsed once, over the cores (an erased event's is not read).
    let mut payloads = crate::parallel::map(events, parts, |stored| {
        (!cdp_domain::shred::is_erased(&stored.event))
            .then(|| serde_json::from_str::<Value>(&stored.event.payload))
    })
    .into_iter();
    for stored in events {
        let parsed = payloads.next().flatten();
        let e = &stored.event;
        if cdp_domain::shred::is_erased(e) {
            // Its subject was erased: nothing of it belongs to anyone any more.
            steps.push(Step {
                event: stored,
                payload: None,
                carried: Vec::new(),
                target: None,
                decisions: Vec::new(),
                command: None,
                rules: None,
            });
            continue;
        }
        let in_force = &rules[&e.workspace];
        let payload: Value = match parsed {
            Some(parsed) => parsed.map_err(ProjectionError::corrupt)?,
            None => serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?,
        };
        let graph = graphs.entry(e.workspace.clone()).or_default();
        let step = if e.kind == MessageKind::Operator && CatalogCommand::is_catalog(&payload) {
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
            Step {
                event: stored,
                payload: None,
                carried: Vec::new(),
                target: None,
                decisions,
                command,
                rules: None,
            }
        } else if e.kind == MessageKind::Operator {
            let (decisions, new_rules) =
                decide_command(store, graph, in_force, stored, payload).await?;
            Step {
                event: stored,
                payload: None,
                carried: Vec::new(),
                target: None,
                decisions,
                command: None,
                rules: new_rules,
            }
        } else {
            let carried = identifiers_of(
                &payload,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
                in_force,
            );
            let pairs: Vec<(String, String)> = carried
                .iter()
                .map(|i| (i.id_type.clone(), i.value.clone()))
                .collect();
            let resolution = resolve(graph, in_force, &pairs, &e.message_id, || {
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
        }
        steps.push(step);
    }

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
    keys.sort();
    keys.dedup();
    keys.retain(|k| !house.docs.contains_key(k) && !created.contains(k));
    // Sized once for every document the batch will hold (growing by rehash faults in fresh pages).
    let mut docs = map_with_capacity(keys.len() + house.docs.len() + created.len());
    let mut held: Vec<(ProfileKey, Box<[u8]>)> = Vec::with_capacity(keys.len());
    keys.retain(|k| match cache.take(k) {
        Some(state) => {
            held.push((k.clone(), state));
            false
        }
        None => true,
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
    let loaded = started.elapsed();
    docs.extend(house.docs);
    let as_read = house.as_read;
    let mut touched = house.touched;
    let mut catalog_writes = CatalogWrites {
        jobs: house.jobs,
        thresholds: house
            .thresholds
            .into_iter()
            .map(|(w, tag, version, t)| (w, tag, version, derive::to_ms(now), t))
            .collect(),
        ..CatalogWrites::default()
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
            folded.record(i, &e.workspace, d, &e.message_id);
        }
        if let Some(command) = &step.command {
            let jobs_before = catalog_writes.jobs.len();
            let changed = apply_catalog(
                command,
                step.event,
                &mut catalogs_now,
                &mut catalog_writes,
                now,
            );
            if catalog_writes.jobs.len() > jobs_before {
                // A definition met before the workspace has any profile (the catalog set up
                // before the data arrives, and any rebuild of such a log) has nothing to
                // backfill: every profile made later folds it live.
                let empty = match stored_empty.get(&e.workspace) {
                    Some(empty) => *empty,
                    None => {
                        let empty = crate::catalog::count_profiles(store, &e.workspace).await? == 0;
                        stored_empty.insert(e.workspace.clone(), empty);
                        empty
                    }
                };
                if empty && !model.docs.keys().any(|(w, _)| *w == e.workspace) {
                    for job in &mut catalog_writes.jobs[jobs_before..] {
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
    for (key, cause) in folded.touched {
        touched.insert(key, cause);
    }
    let subscribed = folded.subscribed;
    let merged: Vec<(String, ProfileId, ProfileId)> = folded
        .merged
        .into_iter()
        .map(|(_, w, absorbed, survivor)| (w, absorbed, survivor))
        .collect();
    for (i, profile) in subscribed {
        let e = &steps[i].event.event;
        let profile = model.resolve_in_batch(&e.workspace, &profile);
        let name = e.name.as_deref().unwrap_or_default();
        let properties = steps[i]
            .payload
            .as_ref()
            .and_then(|p| p.get("properties"))
            .unwrap_or(&Value::Null);
        let payload = EventMessage {
            event: name,
            message_id: &e.message_id,
            profile_id: profile.as_str(),
            properties,
            timestamp: cdp_domain::message::rfc3339(e.event_time),
            kind: "event",
            workspace: &e.workspace,
        };
        catalog_writes.outbox.push((
            e.workspace.clone(),
            format!("cdp.out.{}.event.{}", e.workspace, event_slug(name)),
            serde_json::to_string(&payload).map_err(ProjectionError::corrupt)?,
        ));
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
        known,
        &mut catalog_writes,
    )
    .await?;
    *catalogs = catalogs_now;
    // The documents as this batch leaves them; if it does not commit, the whole cache is dropped.
    for key in &model.gone {
        cache.forget(key);
    }
    let derived = started.elapsed();
    let (writes, states) = model.into_writes(&as_read, parts);
    cache.put_back(states);
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
        catalog: catalog_writes,
        rules: rules_writes
            .into_iter()
            .map(|(w, (r, at))| (w, r, at))
            .collect(),
        token: String::new(),
        based_on: None,
    })
}

/// The message of a track event for its subscribers, serialised without copying its properties. The
/// fields are in the order a JSON object writes its keys (alphabetical), so the text is what a `json!`
/// object of the same fields gave.
#[derive(serde::Serialize)]
struct EventMessage<'a> {
    event: &'a str,
    message_id: &'a str,
    profile_id: &'a str,
    properties: &'a Value,
    timestamp: String,
    #[serde(rename = "type")]
    kind: &'static str,
    workspace: &'a str,
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

/// The decisions of an operator command, against the graph and under the rules as they stand at the
/// command's place in the log; with the rules a rules command puts in force (`None` when it changes
/// nothing: the same rules, whatever version it names).
async fn decide_command(
    store: &Store,
    graph: &IdentityGraph,
    rules: &IdentityRules,
    stored: &StoredEvent,
    payload: Value,
) -> Result<(Vec<IdentityEvent>, Option<IdentityRules>), ProjectionError> {
    let e = &stored.event;
    let rejected = |command: &str, reason: String| {
        vec![IdentityEvent::CommandRejected {
            command: command.to_owned(),
            reason,
            caused_by: e.message_id.clone(),
        }]
    };
    let command: OperatorCommand = match serde_json::from_value(payload) {
        Ok(c) => c,
        Err(err) => return Ok((rejected("unknown", format!("not a command: {err}")), None)),
    };
    let name = command.name();
    let decisions = match command {
        OperatorCommand::Merge {
            profile_ids,
            reason,
            ..
        } => manual_merge(graph, rules, &profile_ids, &reason, &e.message_id)
            .unwrap_or_else(|err| rejected(name, err.0)),
        OperatorCommand::Split {
            profile_id,
            identifiers,
            reason,
            ..
        } => {
            let into = profile_id_for(&e.workspace, &e.message_id);
            match split(
                graph,
                rules,
                &profile_id,
                &identifiers,
                into,
                &reason,
                &e.message_id,
            ) {
                Ok(event) => vec![event],
                Err(err) => rejected(name, err.0),
            }
        }
        OperatorCommand::Rules {
            rules: proposed, ..
        } => {
            // The version is the resolver's to give (the one in force + 1), so that it follows the
            // log whatever the command names.
            let Some(new) = rules_after(rules, proposed) else {
                return Ok((Vec::new(), None));
            };
            let log = workspace_log(store, &e.workspace, stored.position, &new).await?;
            let diff = rules_diff(graph, &new, &log);
            let mut n = 0;
            let decisions = apply_rules_diff(graph, &new, &diff, &e.message_id, || {
                n += 1;
                profile_id_for(&e.workspace, &format!("{}#{n}", e.message_id))
            });
            return Ok((decisions, Some(new)));
        }
    };
    Ok((decisions, None))
}

/// The customer events of a workspace before `until`, in log order, with their identifiers under `rules`.
pub async fn workspace_log(
    store: &Store,
    workspace: &str,
    until: Position,
    rules: &IdentityRules,
) -> Result<Vec<(String, Vec<(String, String)>)>, ProjectionError> {
    const PAGE: u32 = 5_000;
    let mut out = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_after(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.position;
        for stored in &page {
            if stored.position >= until {
                return Ok(out);
            }
            let e = &stored.event;
            if e.workspace != workspace
                || e.kind == MessageKind::Operator
                || cdp_domain::shred::is_erased(e)
            {
                continue;
            }
            let payload: Value =
                serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
            let ids = identifiers_of(
                &payload,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
                rules,
            )
            .into_iter()
            .map(|i| (i.id_type, i.value))
            .collect();
            out.push((e.message_id.clone(), ids));
        }
    }
}

/// What folding a batch records besides the model, each with the step it came from: the profiles to
/// evaluate (with the message that caused it), the merges and the track events.
#[derive(Default)]
struct Folded {
    touched: BTreeMap<ProfileKey, String>,
    /// `(step, workspace, absorbed, survivor)`.
    merged: Vec<(usize, String, ProfileId, ProfileId)>,
    subscribed: Vec<(usize, ProfileId)>,
}

impl Folded {
    /// What decision `d` of step `i` makes the batch evaluate.
    fn record(&mut self, i: usize, ws: &str, d: &IdentityEvent, cause: &str) {
        match d {
            IdentityEvent::ProfilesMerged {
                survivor, absorbed, ..
            } => {
                self.merged
                    .push((i, ws.to_owned(), absorbed.clone(), survivor.clone()));
                self.touched
                    .insert((ws.to_owned(), survivor.clone()), cause.to_owned());
            }
            IdentityEvent::ProfileSplit { from, into, .. } => {
                for p in [from, into] {
                    self.touched
                        .insert((ws.to_owned(), p.clone()), cause.to_owned());
                }
            }
            _ => {}
        }
    }

    /// Takes in what another part of the batch recorded (of other profiles).
    fn absorb(&mut self, part: Folded) {
        self.touched.extend(part.touched);
        self.merged.extend(part.merged);
        self.subscribed.extend(part.subscribed);
    }
}

/// The rules and the catalogs in force, by workspace, at a step of the batch.
type InForce<'r> = (
    &'r HashMap<String, IdentityRules>,
    &'r HashMap<String, Catalog>,
);

/// Folds the customer steps `run`: in parts on threads of their own when there are enough of them
/// (each part's profiles apart from the others'), else in turn; the same model either way.
fn fold_run<'a>(
    model: &mut Model<'a>,
    steps: &[Step<'_>],
    run: Range<usize>,
    parts: usize,
    (rules, catalogs): InForce<'_>,
    folded: &mut Folded,
) {
    let Some(plan) = partition(steps, run.clone(), parts) else {
        for i in run {
            model.fold_customer(i, &steps[i], rules, catalogs, folded);
        }
        return;
    };
    let threads = run.len() >= crate::parallel::MIN_PARALLEL;
    let models: Vec<Model<'a>> = (0..plan.parts.len())
        .map(|part| model.take_part(&plan, part, run.len() / plan.parts.len()))
        .collect();
    let work: Vec<(Model<'a>, &Vec<usize>)> = models.into_iter().zip(&plan.parts).collect();
    let done = crate::parallel::each(work, threads, |(mut part, indexes)| {
        let mut out = Folded::default();
        for &i in indexes {
            part.fold_customer(i, &steps[i], rules, catalogs, &mut out);
        }
        (part, out)
    });
    for (part, out) in done {
        model.absorb(part);
        folded.absorb(out);
    }
}

/// How a run of customer steps is folded in parts: the steps of each part (in log order), and the
/// part of every profile they touch. Steps that touch the same profile, or link the same identifier,
/// are in the same part, so a part's folds read and change nothing of another's.
struct Plan {
    parts: Vec<Vec<usize>>,
    part_of: FastMap<ProfileKey, usize>,
}

impl Plan {
    fn part_of(&self, key: &ProfileKey) -> Option<usize> {
        self.part_of.get(key).copied()
    }
}

/// A node of the batch's connections: a profile or an identifier of a workspace.
#[derive(PartialEq, Eq, Hash, Clone, Copy)]
enum Node<'s> {
    Profile(&'s str, &'s str),
    Identifier(&'s str, &'s str, &'s str),
}

/// The plan for folding the customer steps `run` of `steps` in up to `parts` parts, or `None` when
/// they must be folded as one sequence (a split reads the events of the profile it splits; only
/// commands split).
fn partition<'s>(steps: &'s [Step<'_>], run: Range<usize>, parts: usize) -> Option<Plan> {
    if parts <= 1 {
        return None;
    }
    let offset = run.start;
    let steps = &steps[run];
    let mut index: FastMap<Node<'s>, usize> = map_with_capacity(steps.len() * 2);
    let mut parent: Vec<usize> = Vec::with_capacity(steps.len() * 2);
    fn root(parent: &mut [usize], mut n: usize) -> usize {
        while parent[n] != n {
            parent[n] = parent[parent[n]];
            n = parent[n];
        }
        n
    }
    let mut node = |parent: &mut Vec<usize>, key: Node<'s>| -> usize {
        *index.entry(key).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    // The first node of each step: every step with a target or a decision has one.
    let mut first: Vec<Option<usize>> = Vec::with_capacity(steps.len());
    let mut step_nodes: Vec<Node<'s>> = Vec::new();
    let mut index_of = Vec::new();
    for step in steps {
        let ws = step.event.event.workspace.as_str();
        step_nodes.clear();
        step_nodes.extend(step.target.iter().map(|p| Node::Profile(ws, p.as_str())));
        for d in &step.decisions {
            match d {
                IdentityEvent::ProfileSplit { .. } => return None,
                IdentityEvent::ProfileCreated { profile, .. } => {
                    step_nodes.push(Node::Profile(ws, profile.as_str()));
                }
                IdentityEvent::IdentifierLinked {
                    profile,
                    id_type,
                    value,
                    ..
                } => {
                    step_nodes.push(Node::Profile(ws, profile.as_str()));
                    step_nodes.push(Node::Identifier(ws, id_type, value));
                }
                IdentityEvent::ProfilesMerged {
                    survivor, absorbed, ..
                } => {
                    step_nodes.push(Node::Profile(ws, survivor.as_str()));
                    step_nodes.push(Node::Profile(ws, absorbed.as_str()));
                }
                _ => {}
            }
        }
        index_of.clear();
        for n in &step_nodes {
            index_of.push(node(&mut parent, *n));
        }
        for pair in index_of.windows(2) {
            let (a, b) = (root(&mut parent, pair[0]), root(&mut parent, pair[1]));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
        first.push(index_of.first().copied());
    }
    // Each connected set to the part with the fewest steps so far, in the order the sets first appear.
    let mut part_of_root: FastMap<usize, usize> = FastMap::default();
    let mut plan = Plan {
        parts: vec![Vec::new(); parts],
        part_of: map_with_capacity(index.len()),
    };
    for (i, n) in first.iter().enumerate() {
        let Some(n) = n else { continue };
        let r = root(&mut parent, *n);
        let part = *part_of_root.entry(r).or_insert_with(|| {
            (0..parts)
                .min_by_key(|p| plan.parts[*p].len())
                .unwrap_or_default()
        });
        plan.parts[part].push(offset + i);
    }
    for (key, n) in &index {
        if let Node::Profile(ws, p) = key {
            let r = root(&mut parent, *n);
            if let (Some(part), Ok(p)) = (part_of_root.get(&r), ProfileId::parse(p)) {
                plan.part_of.insert((ws.to_string(), p), *part);
            }
        }
    }
    Some(plan)
}

/// The profile model as the batch changes it, in memory until written.
struct Model<'a> {
    store: &'a Store,
    docs: FastMap<ProfileKey, ProfileDoc>,
    gone: FastSet<ProfileKey>,
    /// Where each event the batch touched belongs now.
    owners: FastMap<i64, (String, ProfileId)>,
    /// The summary of each customer event of the batch (the 360 view's recent events).
    summaries: FastMap<i64, EventSummary>,
    /// The events of `owners` by owner, and the identifiers of `holders` by holder (an entry may be
    /// stale: checked against `owners` / `holders` when used), so a merge moves what it must without a
    /// scan of the batch.
    owned_by: FastMap<ProfileKey, Vec<i64>>,
    held_by: FastMap<ProfileKey, Vec<Identifier>>,
    /// Who holds each identifier the batch touched.
    holders: FastMap<(String, Identifier), ProfileId>,
    /// Profiles merged away in this batch, to the profile that absorbed them.
    merged_in_batch: FastMap<ProfileKey, ProfileId>,
    /// With the step of the merge, so that parts folded apart are put back in log order.
    reassigns: Vec<(usize, Reassign)>,
    /// The step of each customer event of the batch, by its sequence number.
    in_batch: FastMap<i64, usize>,
}

impl<'a> Model<'a> {
    /// An empty model for about `events` events.
    fn new(store: &'a Store, events: usize) -> Model<'a> {
        Model {
            store,
            docs: FastMap::default(),
            gone: FastSet::default(),
            owners: map_with_capacity(events),
            summaries: map_with_capacity(events),
            owned_by: map_with_capacity(events),
            held_by: FastMap::default(),
            holders: FastMap::default(),
            merged_in_batch: FastMap::default(),
            reassigns: Vec::new(),
            in_batch: map_with_capacity(events),
        }
    }

    /// What part `part` of `plan` folds: the documents of its profiles, and what the batch so far
    /// says they own and hold (a merge moves it).
    fn take_part(&mut self, plan: &Plan, part: usize, events: usize) -> Model<'a> {
        let mine = |key: &ProfileKey| plan.part_of(key) == Some(part);
        let mut m = Model::new(self.store, events);
        m.docs.extend(self.docs.extract_if(|k, _| mine(k)));
        m.owned_by.extend(self.owned_by.extract_if(|k, _| mine(k)));
        m.held_by.extend(self.held_by.extract_if(|k, _| mine(k)));
        for ((ws, profile), seqs) in &m.owned_by {
            for seq in seqs {
                if self
                    .owners
                    .get(seq)
                    .is_some_and(|o| o.0 == *ws && o.1 == *profile)
                {
                    if let Some(owner) = self.owners.remove(seq) {
                        m.owners.insert(*seq, owner);
                    }
                }
            }
        }
        for ((ws, profile), ids) in &m.held_by {
            for id in ids {
                let key = (ws.clone(), id.clone());
                if self.holders.get(&key) == Some(profile) {
                    self.holders.remove(&key);
                    m.holders.insert(key, profile.clone());
                }
            }
        }
        m
    }

    /// Takes in a part folded apart (other profiles, other events, other identifiers).
    fn absorb(&mut self, part: Model<'_>) {
        self.docs.extend(part.docs);
        self.gone.extend(part.gone);
        self.owners.extend(part.owners);
        self.summaries.extend(part.summaries);
        self.owned_by.extend(part.owned_by);
        self.held_by.extend(part.held_by);
        self.holders.extend(part.holders);
        self.merged_in_batch.extend(part.merged_in_batch);
        self.reassigns.extend(part.reassigns);
        self.in_batch.extend(part.in_batch);
    }

    /// Folds customer step `i`: its decisions, then its event into its profile.
    fn fold_customer(
        &mut self,
        i: usize,
        step: &Step<'_>,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
        out: &mut Folded,
    ) {
        let e = &step.event.event;
        for d in &step.decisions {
            self.apply_decision(i, &e.workspace, d, rules, catalogs);
            out.record(i, &e.workspace, d, &e.message_id);
        }
        self.fold_event(i, step, rules, catalogs, out);
    }

    /// Folds the event of step `i` into the profile it was decided for (nothing for a command).
    fn fold_event(
        &mut self,
        i: usize,
        step: &Step<'_>,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
        out: &mut Folded,
    ) {
        let (Some(target), Some(payload)) = (&step.target, &step.payload) else {
            return;
        };
        let e = &step.event.event;
        let seq = step.event.position.seq;
        let fold = FoldRules {
            source_priority: &rules[&e.workspace].source_priority,
            traits: catalogs[&e.workspace].folded(),
        };
        self.docs
            .entry((e.workspace.clone(), target.clone()))
            .or_default()
            .apply(e, payload, &step.carried, fold);
        self.set_owner(seq, &e.workspace, target);
        self.summaries
            .insert(seq, EventSummary::of(e, channel_of(payload)));
        self.in_batch.insert(seq, i);
        out.touched
            .insert((e.workspace.clone(), target.clone()), e.message_id.clone());
        if e.kind == MessageKind::Track {
            out.subscribed.push((i, target.clone()));
        }
    }

    /// Event `seq` belongs to `profile` now.
    fn set_owner(&mut self, seq: i64, ws: &str, profile: &ProfileId) {
        self.owners.insert(seq, (ws.to_owned(), profile.clone()));
        self.owned_by
            .entry((ws.to_owned(), profile.clone()))
            .or_default()
            .push(seq);
    }

    /// `profile` holds identifier `id` now.
    fn set_holder(&mut self, ws: &str, id: Identifier, profile: &ProfileId) {
        self.held_by
            .entry((ws.to_owned(), profile.clone()))
            .or_default()
            .push(id.clone());
        self.holders.insert((ws.to_owned(), id), profile.clone());
    }

    /// Applies decision `decision` of step `i` to the model; a split is [`Model::split`]'s.
    fn apply_decision(
        &mut self,
        i: usize,
        ws: &str,
        decision: &IdentityEvent,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
    ) {
        match decision {
            IdentityEvent::ProfileCreated { profile, .. } => {
                self.docs
                    .entry((ws.to_owned(), profile.clone()))
                    .or_default();
            }
            IdentityEvent::IdentifierLinked {
                profile,
                id_type,
                value,
                ..
            } => {
                let id = Identifier::new(id_type, value);
                let doc = self
                    .docs
                    .entry((ws.to_owned(), profile.clone()))
                    .or_default();
                if !doc.linked.contains(&id) {
                    doc.linked.push(id.clone());
                }
                self.set_holder(ws, id, profile);
            }
            IdentityEvent::ProfilesMerged {
                survivor, absorbed, ..
            } => {
                let gone = (ws.to_owned(), absorbed.clone());
                let absorbed_doc = self.docs.remove(&gone).unwrap_or_default();
                let fold = FoldRules {
                    source_priority: &rules[ws].source_priority,
                    traits: catalogs[ws].folded(),
                };
                self.docs
                    .entry((ws.to_owned(), survivor.clone()))
                    .or_default()
                    .absorb(absorbed_doc, fold);
                // Through the reverse indexes: what the absorbed profile owns and holds in the batch.
                let absorbed_key = (ws.to_owned(), absorbed.clone());
                for seq in self.owned_by.remove(&absorbed_key).unwrap_or_default() {
                    if self.owners.get(&seq).is_some_and(|o| o.1 == *absorbed) {
                        self.set_owner(seq, ws, survivor);
                    }
                }
                for id in self.held_by.remove(&absorbed_key).unwrap_or_default() {
                    let key = (ws.to_owned(), id);
                    if self.holders.get(&key) == Some(absorbed) {
                        self.set_holder(ws, key.1, survivor);
                    }
                }
                self.reassigns.push((
                    i,
                    Reassign {
                        workspace: ws.to_owned(),
                        from: absorbed.clone(),
                        to: survivor.clone(),
                    },
                ));
                self.merged_in_batch.insert(gone.clone(), survivor.clone());
                self.gone.insert(gone);
            }
            IdentityEvent::ProfileSplit { .. }
            | IdentityEvent::MergeRejected { .. }
            | IdentityEvent::LinkRejected { .. }
            | IdentityEvent::ProfileErased { .. }
            | IdentityEvent::CommandRejected { .. } => {}
        }
    }

    /// Re-folds both sides of a split from the events that belong to `from` at this point of the batch.
    async fn split(
        &mut self,
        ws: &str,
        from: &ProfileId,
        into: &ProfileId,
        moved: &[Identifier],
        steps: &[Step<'_>],
        (rules, catalogs): InForce<'_>,
    ) -> Result<(), ProjectionError> {
        // In the database, `from`'s events may still belong to profiles it absorbed in this batch.
        let mut stored_owners = vec![from.clone()];
        for (absorbed_key, _) in self.merged_in_batch.iter() {
            if absorbed_key.0 == ws && self.resolve_in_batch(ws, &absorbed_key.1) == *from {
                stored_owners.push(absorbed_key.1.clone());
            }
        }
        for seq in profiles::events_of(self.store, ws, &stored_owners).await? {
            if !self.owners.contains_key(&seq) {
                self.set_owner(seq, ws, from);
            }
        }
        let mut members: Vec<i64> = self
            .owners
            .iter()
            .filter(|(_, (w, p))| w == ws && p == from)
            .map(|(seq, _)| *seq)
            .collect();
        members.sort_unstable();

        let earlier: Vec<i64> = members
            .iter()
            .copied()
            .filter(|s| !self.in_batch.contains_key(s))
            .collect();
        let rules = &rules[ws];
        let store = self.store;
        let mut fetched = Vec::with_capacity(earlier.len());
        for stored in store.events_by_seq(&earlier).await? {
            if cdp_domain::shred::is_erased(&stored.event) {
                continue;
            }
            let payload: Value =
                serde_json::from_str(&stored.event.payload).map_err(ProjectionError::corrupt)?;
            let carried = identifiers_of(
                &payload,
                stored.event.user_id.as_deref(),
                stored.event.anonymous_id.as_deref(),
                rules,
            );
            fetched.push((stored, payload, carried));
        }
        let mut owned: Vec<(i64, OwnedEvent<'_>)> = fetched
            .iter()
            .map(|(stored, payload, carried)| {
                (
                    stored.position.seq,
                    OwnedEvent {
                        event: &stored.event,
                        payload,
                        carried,
                    },
                )
            })
            .collect();
        for seq in &members {
            if let Some(step) = self.in_batch.get(seq).map(|i| &steps[*i]) {
                if let Some(payload) = &step.payload {
                    owned.push((
                        *seq,
                        OwnedEvent {
                            event: &step.event.event,
                            payload,
                            carried: &step.carried,
                        },
                    ));
                }
            }
        }
        let from_key = (ws.to_owned(), from.clone());
        let linked = self
            .docs
            .get(&from_key)
            .map(|d| d.linked.clone())
            .unwrap_or_default();
        let events: Vec<OwnedEvent<'_>> = owned.iter().map(|(_, e)| e.clone()).collect();
        let fold = FoldRules {
            source_priority: &rules.source_priority,
            traits: catalogs[ws].folded(),
        };
        let (stays, leaves, went) = split_docs(&linked, moved, &events, rules, fold);
        let moved_seqs: Vec<i64> = owned
            .iter()
            .zip(went)
            .filter(|(_, went)| *went)
            .map(|((seq, _), _)| *seq)
            .collect();
        drop(events);
        drop(owned);
        for seq in moved_seqs {
            self.set_owner(seq, ws, into);
        }
        for id in moved {
            self.set_holder(ws, id.clone(), into);
        }
        self.docs.insert(from_key, stays);
        self.docs.insert((ws.to_owned(), into.clone()), leaves);
        Ok(())
    }

    fn resolve_in_batch(&self, ws: &str, profile: &ProfileId) -> ProfileId {
        let mut current = profile.clone();
        for _ in 0..=self.merged_in_batch.len() {
            match self.merged_in_batch.get(&(ws.to_owned(), current.clone())) {
                Some(next) => current = next.clone(),
                None => break,
            }
        }
        current
    }

    /// The rows to write, and the states to keep in memory (every document's, encoded once). A
    /// document whose state is what was read (`as_read`) is not written again.
    fn into_writes(
        self,
        as_read: &FastMap<ProfileKey, Vec<u8>>,
        parts: usize,
    ) -> (ModelWrites, Vec<(ProfileKey, Vec<u8>)>) {
        let held: Vec<(&ProfileKey, &ProfileDoc)> = self.docs.iter().collect();
        let states: Vec<(ProfileKey, Vec<u8>)> =
            crate::parallel::map(&held, parts, |(key, doc)| ((*key).clone(), doc.to_state()));
        drop(held);
        let mut docs: Vec<(ProfileKey, Vec<u8>)> = states
            .iter()
            .filter(|(key, state)| as_read.get(key) != Some(state))
            .cloned()
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut summaries = self.summaries;
        let mut owners: Vec<(i64, String, ProfileId, Option<EventSummary>)> = self
            .owners
            .into_iter()
            .map(|(seq, (w, p))| (seq, w, p, summaries.remove(&seq)))
            .collect();
        owners.sort_by_key(|o| o.0);
        let mut holders: Vec<(String, Identifier, ProfileId)> = self
            .holders
            .into_iter()
            .map(|((w, id), p)| (w, id, p))
            .collect();
        holders.sort();
        let mut gone: Vec<ProfileKey> = self
            .gone
            .into_iter()
            .filter(|k| !self.docs.contains_key(k))
            .collect();
        gone.sort();
        let mut reassigns = self.reassigns;
        reassigns.sort_by_key(|r| r.0);
        let writes = ModelWrites {
            reassigns: reassigns.into_iter().map(|r| r.1).collect(),
            owners,
            holders,
            docs,
            gone,
        };
        (writes, states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_message_reads_as_the_json_object_of_its_fields() {
        let properties = serde_json::json!({"total": 12.5, "products": [{"sku": "a"}], "b": null});
        let message = EventMessage {
            event: "Order Completed",
            message_id: "m1",
            profile_id: "p_1",
            properties: &properties,
            timestamp: "2026-12-03T10:00:00.000Z".into(),
            kind: "event",
            workspace: "w",
        };
        let object = serde_json::json!({
            "type": "event",
            "workspace": "w",
            "profile_id": "p_1",
            "event": "Order Completed",
            "message_id": "m1",
            "timestamp": "2026-12-03T10:00:00.000Z",
            "properties": properties,
        });
        assert_eq!(serde_json::to_string(&message).unwrap(), object.to_string());
    }
}
