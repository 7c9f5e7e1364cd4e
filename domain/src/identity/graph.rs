//! The identity graph: the state that applying identity events builds — which profile holds each
//! identifier, each profile's identifiers in the order they were linked, and where merged-away profiles went.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::fastmap::FastMap;

use super::events::{Identifier, IdentityEvent, ProfileId};

/// A live profile in the graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The order of creation: the survivor of a merge is the profile with the lowest.
    pub order: u64,
    /// Its identifiers, in the order they were linked (an absorbed profile's follow the survivor's);
    /// each shared with the graph's owners map, not copied (three identifiers a profile cost ~850 bytes
    /// held twice, BENCHMARKS.md, memory).
    pub identifiers: Vec<Arc<Identifier>>,
    /// How many profiles were merged into it, directly or through the profiles it absorbed.
    pub merges: u32,
    /// Whether an operator merged profiles into it (or into a profile it absorbed).
    pub operator_merged: bool,
}

impl Profile {
    /// Whether it holds `id`.
    pub fn holds(&self, id: &Identifier) -> bool {
        self.identifiers.iter().any(|i| **i == *id)
    }

    /// Its identifiers, copied out of the graph.
    pub fn identifiers_owned(&self) -> Vec<Identifier> {
        self.identifiers
            .iter()
            .map(|i| Identifier::clone(i))
            .collect()
    }

    /// How many of its identifiers are of `id_type`.
    pub fn count_of(&self, id_type: &str) -> usize {
        self.identifiers
            .iter()
            .filter(|i| i.id_type == id_type)
            .count()
    }
}

/// The identity graph of one workspace. Built only by [`IdentityGraph::apply`], so two graphs fed the same
/// events are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityGraph {
    /// Looked up once or more per event: hashed, not ordered (nothing iterates it).
    owners: FastMap<Arc<Identifier>, ProfileId>,
    /// Looked up per event; iterated only by [`IdentityGraph::profiles`], which sorts.
    profiles: FastMap<ProfileId, Profile>,
    /// Followed on every lookup; iterated only by [`IdentityGraph::members`], which sorts what it finds.
    merged_into: FastMap<ProfileId, ProfileId>,
    /// Pairs an operator split apart, smaller id first; compared after resolving both sides.
    apart: BTreeSet<(ProfileId, ProfileId)>,
    /// Erased profiles: never live again, whatever is applied after.
    erased: BTreeSet<ProfileId>,
    created: u64,
}

impl IdentityGraph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one decision. Rejections change nothing; links and merges of what is already linked or
    /// merged are ignored, so applying is idempotent.
    pub fn apply(&mut self, event: &IdentityEvent) {
        match event {
            IdentityEvent::ProfileCreated { profile, .. } => {
                if !self.knows(profile) {
                    self.profiles.insert(
                        profile.clone(),
                        Profile {
                            order: self.created,
                            ..Profile::default()
                        },
                    );
                    self.created += 1;
                }
            }
            IdentityEvent::IdentifierLinked {
                profile,
                id_type,
                value,
                ..
            } => {
                let profile = self.resolve(profile);
                let identifier = Arc::new(Identifier::new(id_type, value));
                if self.owners.contains_key(&*identifier) {
                    return;
                }
                if let Some(state) = self.profiles.get_mut(&profile) {
                    state.identifiers.push(identifier.clone());
                    self.owners.insert(identifier, profile);
                }
            }
            IdentityEvent::ProfilesMerged {
                survivor,
                absorbed,
                by_operator,
                ..
            } => {
                let survivor = self.resolve(survivor);
                let absorbed = self.resolve(absorbed);
                if survivor == absorbed || !self.profiles.contains_key(&survivor) {
                    return;
                }
                let Some(gone) = self.profiles.remove(&absorbed) else {
                    return;
                };
                for identifier in &gone.identifiers {
                    self.owners.insert(identifier.clone(), survivor.clone());
                }
                if let Some(state) = self.profiles.get_mut(&survivor) {
                    state.identifiers.extend(gone.identifiers);
                    state.merges = state.merges.saturating_add(gone.merges).saturating_add(1);
                    state.operator_merged |= *by_operator || gone.operator_merged;
                }
                self.merged_into.insert(absorbed, survivor);
            }
            IdentityEvent::ProfileSplit {
                from,
                into,
                identifiers,
                keep_apart,
                ..
            } => {
                let from = self.resolve(from);
                if self.knows(into) || !self.profiles.contains_key(&from) {
                    return;
                }
                let moved: Vec<Arc<Identifier>> = self.profiles[&from]
                    .identifiers
                    .iter()
                    .filter(|i| identifiers.contains(i))
                    .cloned()
                    .collect();
                if let Some(state) = self.profiles.get_mut(&from) {
                    state.identifiers.retain(|i| !moved.contains(i));
                }
                for identifier in &moved {
                    self.owners.insert(identifier.clone(), into.clone());
                }
                self.profiles.insert(
                    into.clone(),
                    Profile {
                        order: self.created,
                        identifiers: moved,
                        merges: 0,
                        operator_merged: false,
                    },
                );
                self.created += 1;
                if *keep_apart {
                    self.apart.insert(ordered(from, into.clone()));
                }
            }
            IdentityEvent::ProfileErased { profile, .. } => {
                let profile = self.resolve(profile);
                let members = self.members(&profile);
                if let Some(gone) = self.profiles.remove(&profile) {
                    for identifier in &gone.identifiers {
                        self.owners.remove(&**identifier);
                    }
                }
                for member in members {
                    self.merged_into.remove(&member);
                    self.erased.insert(member);
                }
            }
            IdentityEvent::MergeRejected { .. }
            | IdentityEvent::LinkRejected { .. }
            | IdentityEvent::CommandRejected { .. } => {}
        }
    }

    /// Whether an operator split `a` and `b` (or profiles merged into them) apart.
    pub fn kept_apart(&self, a: &ProfileId, b: &ProfileId) -> bool {
        let (a, b) = (self.resolve(a), self.resolve(b));
        a != b
            && self.apart.iter().any(|(x, y)| {
                ordered(self.resolve(x), self.resolve(y)) == ordered(a.clone(), b.clone())
            })
    }

    /// `profile` and every profile merged into it, directly or not; empty when it is not live.
    pub fn members(&self, profile: &ProfileId) -> Vec<ProfileId> {
        if !self.profiles.contains_key(profile) {
            return Vec::new();
        }
        let mut absorbed: Vec<ProfileId> = self
            .merged_into
            .keys()
            .filter(|p| self.resolve(p) == *profile)
            .cloned()
            .collect();
        absorbed.sort();
        let mut members = vec![profile.clone()];
        members.extend(absorbed);
        members
    }

    /// The live profile `profile` resolves to: itself, or the survivor of the merges that absorbed it.
    pub fn resolve(&self, profile: &ProfileId) -> ProfileId {
        self.resolved(profile).clone()
    }

    /// [`IdentityGraph::resolve`] without a copy.
    fn resolved<'a>(&'a self, profile: &'a ProfileId) -> &'a ProfileId {
        let mut current = profile;
        // Every merge points at a profile that was live when it was applied, so this ends; the bound
        // guards against a corrupt graph all the same.
        for _ in 0..=self.merged_into.len() {
            match self.merged_into.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    /// The live profile holding an identifier, if any.
    pub fn profile_of(&self, id_type: &str, value: &str) -> Option<ProfileId> {
        self.owner(&Identifier::new(id_type, value))
    }

    /// The live profile holding an identifier, if any.
    pub fn owner(&self, identifier: &Identifier) -> Option<ProfileId> {
        self.owners.get(identifier).map(|p| self.resolve(p))
    }

    /// A profile's state, following merges.
    pub fn profile(&self, profile: &ProfileId) -> Option<&Profile> {
        self.profiles.get(self.resolved(profile))
    }

    /// The live profiles, in id order.
    pub fn profiles(&self) -> impl Iterator<Item = (&ProfileId, &Profile)> {
        let mut all: Vec<(&ProfileId, &Profile)> = self.profiles.iter().collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Whether `profile` was ever created (live or merged away).
    pub fn knows(&self, profile: &ProfileId) -> bool {
        self.profiles.contains_key(profile)
            || self.merged_into.contains_key(profile)
            || self.erased.contains(profile)
    }
}

fn ordered(a: ProfileId, b: ProfileId) -> (ProfileId, ProfileId) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str) -> ProfileId {
        ProfileId::parse(id).unwrap()
    }

    fn created(id: &str) -> IdentityEvent {
        IdentityEvent::ProfileCreated {
            profile: p(id),
            caused_by: "m".into(),
        }
    }

    fn linked(id: &str, id_type: &str, value: &str) -> IdentityEvent {
        IdentityEvent::IdentifierLinked {
            profile: p(id),
            id_type: id_type.into(),
            value: value.into(),
            caused_by: "m".into(),
            rule_version: 1,
        }
    }

    fn merged(survivor: &str, absorbed: &str) -> IdentityEvent {
        IdentityEvent::ProfilesMerged {
            survivor: p(survivor),
            absorbed: p(absorbed),
            via: Some(Identifier::new("email", "x@y.z")),
            reason: None,
            by_operator: false,
            caused_by: "m".into(),
            rule_version: 1,
        }
    }

    #[test]
    fn merged_away_profiles_resolve_transitively_to_the_survivor() {
        let mut graph = IdentityGraph::new();
        for event in [
            created("a"),
            created("b"),
            created("c"),
            linked("a", "user_id", "1"),
            linked("b", "email", "b@x.y"),
            linked("c", "phone", "8613800138000"),
            merged("b", "c"),
            merged("a", "b"),
        ] {
            graph.apply(&event);
        }
        assert_eq!(graph.resolve(&p("c")), p("a"));
        assert_eq!(graph.resolve(&p("b")), p("a"));
        assert_eq!(graph.profile_of("phone", "8613800138000"), Some(p("a")));
        let a = graph.profile(&p("c")).unwrap();
        assert_eq!(a.identifiers.len(), 3);
        assert_eq!(a.merges, 2);
        assert_eq!(graph.profiles().count(), 1);
        assert!(graph.knows(&p("b")));
    }

    #[test]
    fn links_to_a_merged_away_profile_land_on_the_survivor_and_repeat_links_are_ignored() {
        let mut graph = IdentityGraph::new();
        for event in [
            created("a"),
            created("b"),
            merged("a", "b"),
            linked("b", "email", "b@x.y"),
            linked("a", "email", "b@x.y"),
        ] {
            graph.apply(&event);
        }
        assert_eq!(graph.profile(&p("a")).unwrap().identifiers.len(), 1);
        assert_eq!(graph.profile_of("email", "b@x.y"), Some(p("a")));
    }
}
