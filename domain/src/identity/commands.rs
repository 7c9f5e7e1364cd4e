//! Operator commands on the identity graph — a manual merge, a split, a change of rules — decided as
//! identity events, like resolution: pure, against the graph as it stands when the command is processed.
//!
//! A manual merge is the operator's judgement: it joins profiles an identifier type or an earlier split
//! keeps apart, but never past the caps. A split moves identifiers (and, in the read models, the events
//! that carried them) to a new profile and keeps the two apart from then on. A rules change re-resolves
//! the workspace's events into a shadow graph under the new rules; [`rules_diff`] says which existing
//! profiles that would merge and which would split, and [`apply_rules_diff`] turns that into events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::events::{Identifier, IdentityEvent, ProfileId};
use super::graph::IdentityGraph;
use super::resolve::decide_batch;
use super::rules::IdentityRules;

/// An operator command as the log stores it: the payload of a `MessageKind::Operator` event, tagged by
/// `command`. `actor` names the credential that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OperatorCommand {
    Merge {
        profile_ids: Vec<ProfileId>,
        reason: String,
        actor: String,
    },
    /// The new profile's id is derived from the command's message id.
    Split {
        profile_id: ProfileId,
        identifiers: Vec<Identifier>,
        reason: String,
        actor: String,
    },
    /// New rules: re-resolve the workspace under them and apply the difference. The resolver puts them
    /// in force under the next version (whatever `rules.version` says); the rules in force change nothing.
    Rules { rules: IdentityRules, actor: String },
}

impl OperatorCommand {
    pub fn name(&self) -> &'static str {
        match self {
            OperatorCommand::Merge { .. } => "merge",
            OperatorCommand::Split { .. } => "split",
            OperatorCommand::Rules { .. } => "rules",
        }
    }
}

/// Why a command was refused; the text is shown to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// The events of an operator merge of `profiles` into the earliest of them.
pub fn manual_merge(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    profiles: &[ProfileId],
    reason: &str,
    caused_by: &str,
) -> Result<Vec<IdentityEvent>, CommandError> {
    let mut live: Vec<ProfileId> = Vec::new();
    for p in profiles {
        if !graph.knows(p) {
            return Err(CommandError(format!("profile {p} does not exist")));
        }
        let survivor = graph.resolve(p);
        if !live.contains(&survivor) {
            live.push(survivor);
        }
    }
    if live.len() < 2 {
        return Err(CommandError(
            "the profiles are already one profile: nothing to merge".into(),
        ));
    }
    live.sort_by_key(|p| (graph.profile(p).map_or(u64::MAX, |s| s.order), p.clone()));
    let states: Vec<_> = live.iter().filter_map(|p| graph.profile(p)).collect();
    let merges: u64 =
        states.iter().map(|s| u64::from(s.merges)).sum::<u64>() + live.len() as u64 - 1;
    let identifiers: usize = states.iter().map(|s| s.identifiers.len()).sum();
    if merges > u64::from(rules.max_merges) {
        return Err(CommandError(format!(
            "the merged profile would hold {merges} merges, past the cap of {}",
            rules.max_merges
        )));
    }
    if identifiers > rules.max_identifiers as usize {
        return Err(CommandError(format!(
            "the merged profile would hold {identifiers} identifiers, past the cap of {}",
            rules.max_identifiers
        )));
    }
    let (survivor, absorbed) = live.split_first().expect("at least two profiles");
    Ok(absorbed
        .iter()
        .map(|a| IdentityEvent::ProfilesMerged {
            survivor: survivor.clone(),
            absorbed: a.clone(),
            via: None,
            reason: Some(reason.to_owned()),
            by_operator: true,
            caused_by: caused_by.to_owned(),
            rule_version: rules.version,
        })
        .collect())
}

/// The event of an operator split moving `identifiers` of `profile` to the new profile `into`. Every
/// identifier must be held by the profile, and at least one must stay with it.
pub fn split(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    profile: &ProfileId,
    identifiers: &[Identifier],
    into: ProfileId,
    reason: &str,
    caused_by: &str,
) -> Result<IdentityEvent, CommandError> {
    if !graph.knows(profile) {
        return Err(CommandError(format!("profile {profile} does not exist")));
    }
    if graph.knows(&into) {
        return Err(CommandError(format!("profile {into} already exists")));
    }
    let from = graph.resolve(profile);
    let state = graph
        .profile(&from)
        .ok_or_else(|| CommandError(format!("profile {profile} does not exist")))?;
    let mut moved: Vec<Identifier> = Vec::new();
    for raw in identifiers {
        let value = rules
            .normalise(&raw.id_type, &raw.value)
            .unwrap_or_else(|| raw.value.clone());
        let id = Identifier::new(&raw.id_type, &value);
        if !state.holds(&id) {
            return Err(CommandError(format!("profile {from} does not hold {id}")));
        }
        if !moved.contains(&id) {
            moved.push(id);
        }
    }
    if moved.is_empty() {
        return Err(CommandError("name at least one identifier to move".into()));
    }
    if moved.len() == state.identifiers.len() {
        return Err(CommandError(format!(
            "a split must leave {from} at least one identifier"
        )));
    }
    // In the order the profile holds them, so the result does not depend on the request's order.
    let ordered = state
        .identifiers
        .iter()
        .filter(|i| moved.contains(i))
        .map(|i| Identifier::clone(i))
        .collect();
    Ok(IdentityEvent::ProfileSplit {
        from,
        into,
        identifiers: ordered,
        keep_apart: true,
        reason: reason.to_owned(),
        caused_by: caused_by.to_owned(),
        rule_version: rules.version,
    })
}

/// What new rules would change in the existing profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesDiff {
    /// Groups of existing profiles that would become one.
    pub merges: Vec<MergePlan>,
    /// Existing profiles whose identifiers would fall into several profiles.
    pub splits: Vec<SplitPlan>,
}

impl RulesDiff {
    pub fn is_empty(&self) -> bool {
        self.merges.is_empty() && self.splits.is_empty()
    }
}

/// Existing profiles the new rules would join (oldest first), and the identifiers of the profile they
/// would become.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MergePlan {
    pub profiles: Vec<ProfileId>,
    pub identifiers: Vec<Identifier>,
}

/// One existing profile the new rules would split: `stays` remain with it, each group of `leave` would
/// become a profile of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    pub profile: ProfileId,
    pub stays: Vec<Identifier>,
    pub leave: Vec<Vec<Identifier>>,
}

/// Re-resolves `log` — every event of the workspace so far, in log order, as `(message id, raw
/// identifiers)` — under `rules` into a shadow graph and compares its clusters with `graph`'s. What an
/// operator decided stands: profiles an operator merged are not split, profiles an operator split apart
/// are not merged.
pub fn rules_diff(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    log: &[(String, Vec<(String, String)>)],
) -> RulesDiff {
    let mut n = 0u64;
    let decisions = decide_batch(&IdentityGraph::new(), rules, log, || {
        n += 1;
        ProfileId::parse(&format!("shadow_{n}")).expect("a valid profile id")
    });
    let mut shadow = IdentityGraph::new();
    for d in &decisions {
        shadow.apply(d);
    }
    let age = |p: &ProfileId| (graph.profile(p).map_or(u64::MAX, |s| s.order), p.clone());

    let mut splits = Vec::new();
    for (profile, state) in graph.profiles() {
        // An operator's merge is not undone by a rules change.
        if state.operator_merged {
            continue;
        }
        let mut groups: BTreeMap<(u64, ProfileId), Vec<Identifier>> = BTreeMap::new();
        for id in &state.identifiers {
            if let Some(s) = shadow.owner(id) {
                let order = shadow.profile(&s).map_or(u64::MAX, |x| x.order);
                groups
                    .entry((order, s))
                    .or_default()
                    .push(Identifier::clone(id));
            }
        }
        if groups.len() > 1 {
            // The group holding the profile's first identifier stays; the others leave.
            let first = state.identifiers.iter().find_map(|id| shadow.owner(id));
            let mut stays = Vec::new();
            let mut leave = Vec::new();
            for ((_, s), ids) in groups {
                if Some(&s) == first.as_ref() {
                    stays = ids;
                } else {
                    leave.push(ids);
                }
            }
            splits.push(SplitPlan {
                profile: profile.clone(),
                stays,
                leave,
            });
        }
    }

    let mut merges = Vec::new();
    for (_, state) in shadow.profiles() {
        // An operator's split is not undone by a rules change.
        let mut owners: Vec<ProfileId> = Vec::new();
        for id in &state.identifiers {
            if let Some(p) = graph.owner(id) {
                if !owners.contains(&p) {
                    owners.push(p);
                }
            }
        }
        let apart = owners
            .iter()
            .enumerate()
            .any(|(i, a)| owners[i + 1..].iter().any(|b| graph.kept_apart(a, b)));
        if owners.len() > 1 && !apart {
            owners.sort_by_key(|p| age(p));
            merges.push(MergePlan {
                profiles: owners,
                identifiers: state.identifiers_owned(),
            });
        }
    }
    merges.sort();
    RulesDiff { merges, splits }
}

/// The events that bring `graph` to the clusters of [`rules_diff`]: first the splits (each leaving group
/// to a profile of its own, named by `new_profile_id`), then the merges of what the shadow joins. They are
/// the rules' doing, not an operator's: nothing is kept apart.
pub fn apply_rules_diff(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    diff: &RulesDiff,
    caused_by: &str,
    mut new_profile_id: impl FnMut() -> ProfileId,
) -> Vec<IdentityEvent> {
    let reason = format!("identity rules version {}", rules.version);
    let mut scratch = graph.clone();
    let mut events = Vec::new();
    for plan in &diff.splits {
        for group in &plan.leave {
            let event = IdentityEvent::ProfileSplit {
                from: plan.profile.clone(),
                into: new_profile_id(),
                identifiers: group.clone(),
                keep_apart: false,
                reason: reason.clone(),
                caused_by: caused_by.to_owned(),
                rule_version: rules.version,
            };
            scratch.apply(&event);
            events.push(event);
        }
    }
    for plan in &diff.merges {
        // A split above may have moved some of the identifiers: merge whatever holds them now.
        let mut live: Vec<ProfileId> = plan
            .identifiers
            .iter()
            .filter_map(|id| scratch.owner(id))
            .collect();
        live.sort_by_key(|p| (scratch.profile(p).map_or(u64::MAX, |s| s.order), p.clone()));
        live.dedup();
        if let Some((survivor, absorbed)) = live.split_first() {
            for a in absorbed {
                let event = IdentityEvent::ProfilesMerged {
                    survivor: survivor.clone(),
                    absorbed: a.clone(),
                    via: None,
                    reason: Some(reason.clone()),
                    by_operator: false,
                    caused_by: caused_by.to_owned(),
                    rule_version: rules.version,
                };
                scratch.apply(&event);
                events.push(event);
            }
        }
    }
    events
}
