//! Resolution: what one incoming event's identifiers do to the identity graph, decided as identity events.
//!
//! No profile matches → a new profile. One matches → the new identifiers link to it. Several match → they
//! merge into the earliest, unless the merged profile would hold more values of a type than its limit
//! allows: then the event's lowest-priority identifier is dropped and the rest retried (Segment's rule), and
//! the conflict is recorded with its evidence. Identifiers of a type that may not merge link but never join
//! two profiles. Past the caps on merges and identifiers no merge or link is made, the event still
//! resolves, and the cap is recorded. Decisions depend only on the graph, the rules and the input.

use std::collections::BTreeMap;

use super::events::{Identifier, IdentityEvent, ProfileId, RejectReason};
use super::graph::IdentityGraph;
use super::rules::IdentityRules;

/// The decisions for one event and the profile it resolves to (`None` only when it carries no usable
/// identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub profile: Option<ProfileId>,
    pub events: Vec<IdentityEvent>,
}

/// The identity events one incoming event causes. `identifiers` are raw `(type, value)` pairs, in the
/// order the event carries them; `caused_by` is its message id; `new_profile_id` is called at most once.
pub fn decide(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    identifiers: &[(String, String)],
    caused_by: &str,
    new_profile_id: impl FnMut() -> ProfileId,
) -> Vec<IdentityEvent> {
    resolve(graph, rules, identifiers, caused_by, new_profile_id).events
}

/// The identity events of a batch of `(message id, identifiers)`, each decided against the graph as the
/// earlier ones in the batch left it. The same as deciding and applying them one by one.
pub fn decide_batch(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    batch: &[(String, Vec<(String, String)>)],
    mut new_profile_id: impl FnMut() -> ProfileId,
) -> Vec<IdentityEvent> {
    let mut scratch = graph.clone();
    let mut out = Vec::new();
    for (caused_by, identifiers) in batch {
        let events = decide(&scratch, rules, identifiers, caused_by, &mut new_profile_id);
        for event in &events {
            scratch.apply(event);
        }
        out.extend(events);
    }
    out
}

/// Like [`decide`], also answering the profile the event resolves to.
pub fn resolve(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    identifiers: &[(String, String)],
    caused_by: &str,
    new_profile_id: impl FnMut() -> ProfileId,
) -> Resolution {
    let kept = normalise_all(rules, identifiers);
    resolve_normalised(graph, rules, &kept, caused_by, new_profile_id)
}

/// Raw `(type, value)` pairs normalised under `rules`, the invalid and blocked dropped, each kept once
/// in the order first carried.
pub(crate) fn normalise_all(
    rules: &IdentityRules,
    identifiers: &[(String, String)],
) -> Vec<Identifier> {
    let mut kept: Vec<Identifier> = Vec::new();
    for (id_type, raw) in identifiers {
        if let Some(value) = rules.normalise(id_type, raw) {
            let identifier = Identifier::new(id_type, &value);
            if !kept.contains(&identifier) {
                kept.push(identifier);
            }
        }
    }
    kept
}

/// [`resolve`] of identifiers already normalised and without repeats — what
/// [`identifiers_of`](super::identifiers_of) gives (normalising is idempotent, so the decisions are
/// the same): the resolver's path, which does not normalise every identifier twice.
pub fn resolve_normalised(
    graph: &IdentityGraph,
    rules: &IdentityRules,
    identifiers: &[Identifier],
    caused_by: &str,
    mut new_profile_id: impl FnMut() -> ProfileId,
) -> Resolution {
    // Copied only when a limit makes the resolution drop one (rare).
    let mut kept = std::borrow::Cow::Borrowed(identifiers);
    if kept.is_empty() {
        return Resolution {
            profile: None,
            events: Vec::new(),
        };
    }

    let ctx = Ctx {
        graph,
        rules,
        caused_by,
    };
    let mut dropped: Vec<Identifier> = Vec::new();
    let mut conflicting: Vec<Identifier> = Vec::new();
    let mut impossible = false;
    let plan = loop {
        let plan = ctx.plan(&kept);
        let evidence = ctx.violations(&plan, &kept);
        if evidence.is_empty() {
            break plan;
        }
        push_new(&mut conflicting, evidence);
        if kept.len() <= 1 {
            impossible = true;
            break plan;
        }
        let weakest = kept
            .iter()
            .enumerate()
            .max_by_key(|(i, id)| (rules.priority(&id.id_type), *i))
            .map_or(0, |(i, _)| i);
        dropped.push(kept.to_mut().remove(weakest));
    };

    if impossible && plan.candidates.is_empty() {
        // A lone new identifier of a type whose limit is 0: nothing to resolve to, nothing to link.
        return Resolution {
            profile: None,
            events: Vec::new(),
        };
    }

    let mut events = Vec::new();
    let mut absorbed: Vec<ProfileId> = Vec::new();
    let target = match plan.candidates.split_first() {
        None => {
            let profile = new_profile_id();
            events.push(IdentityEvent::ProfileCreated {
                profile: profile.clone(),
                caused_by: caused_by.to_owned(),
            });
            profile
        }
        Some((survivor, [])) => survivor.clone(),
        Some((survivor, others)) => {
            let via: Vec<Identifier> = kept
                .iter()
                .filter(|id| {
                    rules.may_merge(&id.id_type)
                        && graph.owner(id).is_some_and(|p| others.contains(&p))
                })
                .cloned()
                .collect();
            match ctx.merge_refusal(&plan.candidates, impossible) {
                Some(reason) => {
                    let evidence = if reason == RejectReason::LimitExceeded {
                        conflicting.clone()
                    } else {
                        via
                    };
                    events.push(ctx.merge_rejected(plan.candidates.clone(), reason, evidence));
                }
                None => {
                    for other in others {
                        let Some(through) = via
                            .iter()
                            .find(|id| graph.owner(id).as_ref() == Some(other))
                        else {
                            continue;
                        };
                        events.push(IdentityEvent::ProfilesMerged {
                            survivor: survivor.clone(),
                            absorbed: other.clone(),
                            via: Some(through.clone()),
                            reason: None,
                            by_operator: false,
                            caused_by: caused_by.to_owned(),
                            rule_version: rules.version,
                        });
                        absorbed.push(other.clone());
                    }
                }
            }
            survivor.clone()
        }
    };

    // Links, within the type limits and the identifier cap of the (merged) target. The target's
    // identifiers are counted only when the event carries one nobody holds (most events carry none).
    let fresh: Vec<&Identifier> = kept.iter().filter(|id| graph.owner(id).is_none()).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total = 0usize;
    if !fresh.is_empty() {
        for profile in std::iter::once(&target).chain(&absorbed) {
            if let Some(state) = graph.profile(profile) {
                for id in &state.identifiers {
                    *counts.entry(id.id_type.as_str()).or_default() += 1;
                    total += 1;
                }
            }
        }
    }
    for id in fresh {
        let count = counts.entry(id.id_type.as_str()).or_default();
        let reason = if total >= rules.max_identifiers as usize {
            Some(RejectReason::IdentifierCap)
        } else if *count >= rules.limit(&id.id_type) as usize {
            Some(RejectReason::LimitExceeded)
        } else {
            None
        };
        match reason {
            Some(reason) => events.push(ctx.link_rejected(&target, id, reason)),
            None => {
                *count += 1;
                total += 1;
                events.push(IdentityEvent::IdentifierLinked {
                    profile: target.clone(),
                    id_type: id.id_type.clone(),
                    value: id.value.clone(),
                    caused_by: caused_by.to_owned(),
                    rule_version: rules.version,
                });
            }
        }
    }

    // Identifiers dropped to keep within a limit: a conflict with the profile holding them, or a link refused.
    let mut conflict_profiles = vec![target.clone()];
    let mut conflict_evidence = Vec::new();
    for id in &dropped {
        match graph.owner(id) {
            Some(owner) if owner != target && !absorbed.contains(&owner) => {
                if !conflict_profiles.contains(&owner) {
                    conflict_profiles.push(owner);
                }
                conflict_evidence.push(id.clone());
            }
            Some(_) => {}
            None => events.push(ctx.link_rejected(&target, id, RejectReason::LimitExceeded)),
        }
    }
    if conflict_profiles.len() > 1 {
        push_new(&mut conflict_evidence, conflicting);
        let profiles = ctx.by_age(conflict_profiles);
        events.push(ctx.merge_rejected(profiles, RejectReason::LimitExceeded, conflict_evidence));
    }

    // Identifiers of a type that may not merge, held by another profile: they stay where they are.
    let mut apart_profiles = vec![target.clone()];
    let mut apart_evidence = Vec::new();
    for (id, owner) in &plan.apart {
        if *owner != target && !absorbed.contains(owner) {
            if !apart_profiles.contains(owner) {
                apart_profiles.push(owner.clone());
            }
            apart_evidence.push(id.clone());
        }
    }
    if apart_profiles.len() > 1 {
        let profiles = ctx.by_age(apart_profiles);
        events.push(ctx.merge_rejected(profiles, RejectReason::TypeMayNotMerge, apart_evidence));
    }

    Resolution {
        profile: Some(target),
        events,
    }
}

/// The profiles an event's identifiers would join, and the identifiers of a type that may not merge that
/// are held by other profiles.
struct Plan {
    /// Oldest first: the first is the survivor.
    candidates: Vec<ProfileId>,
    apart: Vec<(Identifier, ProfileId)>,
}

struct Ctx<'a> {
    graph: &'a IdentityGraph,
    rules: &'a IdentityRules,
    caused_by: &'a str,
}

impl Ctx<'_> {
    fn age(&self, profile: &ProfileId) -> (u64, ProfileId) {
        let order = self.graph.profile(profile).map_or(u64::MAX, |p| p.order);
        (order, profile.clone())
    }

    fn by_age(&self, mut profiles: Vec<ProfileId>) -> Vec<ProfileId> {
        profiles.sort_by_key(|p| self.age(p));
        profiles.dedup();
        profiles
    }

    fn plan(&self, kept: &[Identifier]) -> Plan {
        // Each identifier's owner looked up once (an identifier is only borrowed until it is kept
        // apart, which is rare).
        let owners: Vec<Option<ProfileId>> = kept.iter().map(|id| self.graph.owner(id)).collect();
        let mut candidates: Vec<ProfileId> = kept
            .iter()
            .zip(&owners)
            .filter(|(id, _)| self.rules.may_merge(&id.id_type))
            .filter_map(|(_, p)| p.clone())
            .collect();
        let new_mergeable = kept
            .iter()
            .zip(&owners)
            .any(|(id, p)| p.is_none() && self.rules.may_merge(&id.id_type));
        if candidates.is_empty() && !new_mergeable {
            // Only identifiers that may not merge: the event joins the oldest profile holding one.
            candidates.extend(owners.iter().flatten().cloned().min_by_key(|p| self.age(p)));
        }
        let candidates = self.by_age(candidates);
        let apart = kept
            .iter()
            .zip(owners)
            .filter_map(|(id, p)| p.map(|p| (id, p)))
            .filter(|(_, p)| !candidates.contains(p))
            .map(|(id, p)| (id.clone(), p))
            .collect();
        Plan { candidates, apart }
    }

    /// The identifiers of every type of which joining the candidates and the new identifiers would hold
    /// more than the limit (and more than any candidate already holds, so that lowering a limit does not
    /// make existing profiles unreachable). Empty when the join is within the limits.
    fn violations(&self, plan: &Plan, kept: &[Identifier]) -> Vec<Identifier> {
        let fresh: Vec<&Identifier> = kept
            .iter()
            .filter(|id| self.graph.owner(id).is_none())
            .collect();
        if fresh.is_empty() && plan.candidates.len() <= 1 {
            // Nothing joins: no type can hold more than the one candidate already does (the case of
            // most events, a known customer's).
            return Vec::new();
        }
        let states: Vec<_> = plan
            .candidates
            .iter()
            .filter_map(|p| self.graph.profile(p))
            .collect();
        // Counted without copying: the identifiers themselves are copied only when over a limit.
        let mut largest: BTreeMap<&str, usize> = BTreeMap::new();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for state in &states {
            let mut own: BTreeMap<&str, usize> = BTreeMap::new();
            for id in &state.identifiers {
                *own.entry(&id.id_type).or_default() += 1;
            }
            for (t, n) in own {
                let l = largest.entry(t).or_default();
                *l = (*l).max(n);
                *counts.entry(t).or_default() += n;
            }
        }
        for id in &fresh {
            *counts.entry(&id.id_type).or_default() += 1;
        }
        let over: Vec<&str> = counts
            .into_iter()
            .filter(|(t, n)| {
                *n > self.rules.limit(t) as usize && *n > largest.get(t).copied().unwrap_or(0)
            })
            .map(|(t, _)| t)
            .collect();
        if over.is_empty() {
            return Vec::new();
        }
        states
            .iter()
            .flat_map(|s| s.identifiers.iter().map(|i| &**i))
            .chain(fresh)
            .filter(|id| over.contains(&id.id_type.as_str()))
            .cloned()
            .collect()
    }

    /// Why the candidates may not merge, if they may not.
    fn merge_refusal(&self, candidates: &[ProfileId], impossible: bool) -> Option<RejectReason> {
        if impossible {
            return Some(RejectReason::LimitExceeded);
        }
        let apart = candidates.iter().enumerate().any(|(i, a)| {
            candidates[i + 1..]
                .iter()
                .any(|b| self.graph.kept_apart(a, b))
        });
        if apart {
            return Some(RejectReason::KeptApart);
        }
        let states: Vec<_> = candidates
            .iter()
            .filter_map(|p| self.graph.profile(p))
            .collect();
        let merges: u64 = states.iter().map(|s| u64::from(s.merges)).sum::<u64>()
            + (states.len() as u64).saturating_sub(1);
        let identifiers: usize = states.iter().map(|s| s.identifiers.len()).sum();
        if merges > u64::from(self.rules.max_merges) {
            Some(RejectReason::MergeCap)
        } else if identifiers > self.rules.max_identifiers as usize {
            Some(RejectReason::IdentifierCap)
        } else {
            None
        }
    }

    fn merge_rejected(
        &self,
        profiles: Vec<ProfileId>,
        reason: RejectReason,
        evidence: Vec<Identifier>,
    ) -> IdentityEvent {
        IdentityEvent::MergeRejected {
            profiles,
            reason,
            evidence,
            caused_by: self.caused_by.to_owned(),
            rule_version: self.rules.version,
        }
    }

    fn link_rejected(
        &self,
        profile: &ProfileId,
        id: &Identifier,
        reason: RejectReason,
    ) -> IdentityEvent {
        IdentityEvent::LinkRejected {
            profile: profile.clone(),
            id_type: id.id_type.clone(),
            value: id.value.clone(),
            reason,
            caused_by: self.caused_by.to_owned(),
            rule_version: self.rules.version,
        }
    }
}

/// Appends the identifiers of `more` not already in `to`.
fn push_new(to: &mut Vec<Identifier>, more: Vec<Identifier>) {
    for id in more {
        if !to.contains(&id) {
            to.push(id);
        }
    }
}
