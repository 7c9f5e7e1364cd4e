//! How a run of customer events is folded in parts over the cores: a union-find over the profiles and
//! identifiers the steps touch keeps the steps of one connected set in the same part.

use std::ops::Range;

use cdp_domain::fastmap::{map_with_capacity, FastMap};
use cdp_domain::identity::{IdentityEvent, ProfileId};

use super::step::Step;
use crate::profiles::ProfileKey;

/// How a run of customer steps is folded in parts: the steps of each part (in log order), and the
/// part of every profile they touch. Steps that touch the same profile, or link the same identifier,
/// are in the same part, so a part's folds read and change nothing of another's.
pub(super) struct Plan {
    pub(super) parts: Vec<Vec<usize>>,
    part_of: FastMap<ProfileKey, usize>,
}

impl Plan {
    pub(super) fn part_of(&self, key: &ProfileKey) -> Option<usize> {
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
pub(super) fn partition<'s>(
    steps: &'s [Step<'_>],
    run: Range<usize>,
    parts: usize,
) -> Option<Plan> {
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
