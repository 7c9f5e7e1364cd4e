//! What the resolver stages for the audience indexes, batch by batch (`Audiences::stage`: the
//! profiles a batch touched, its token and the one it followed), how the staging is kept small
//! (`compact`: older batches merged into runs, each profile named once; `prune`: what no index needs
//! dropped), and the walk from an index's token to the stored one (`touched_between`).

use std::collections::{BTreeSet, VecDeque};

use super::Audiences;
use crate::profiles::ProfileKey;

/// Staged profiles kept at most (over it the oldest batches are dropped: an index that needed them
/// is read whole again).
pub(super) const MAX_STAGED: usize = 200_000;

/// The newest staged batches are kept apart, each as staged: some of them are not committed yet, and
/// the stored token an index follows from is one of them.
const KEPT_APART: usize = 8;

/// Past this many staged batches the older ones (all but [`KEPT_APART`]) are merged into as few
/// records as the indexes' tokens allow, each profile named once: what is staged then grows with the
/// distinct profiles touched, not with the batches — a steady stream over the same customers does not
/// push the staging towards its bound (nor the background builder into reading them all again).
const COMPACT_PAST: usize = 4 * KEPT_APART;

/// One committed-or-not batch of the resolver, as staged.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) token: String,
    pub(super) based_on: Option<String>,
    pub(super) profiles: Vec<ProfileKey>,
    /// Workspaces whose definitions the batch changed.
    pub(super) redefined: BTreeSet<String>,
}

impl Audiences {
    /// Called by the resolver for every batch it writes (before its commit): the profiles the batch
    /// touched, its token and the one it followed, the workspaces it redefined.
    pub fn stage(
        &self,
        token: &str,
        based_on: Option<&str>,
        profiles: Vec<ProfileKey>,
        redefined: BTreeSet<String>,
    ) {
        if self.slots.lock().expect("audience slots lock").is_empty() {
            // No index yet: the first is read whole.
            return;
        }
        let tokens = self.prune();
        let mut staged = self.staged.lock().expect("audience staging lock");
        staged.push_back(Staged {
            token: token.to_owned(),
            based_on: based_on.map(str::to_owned),
            profiles,
            redefined,
        });
        let mut total: usize = staged.iter().map(|s| s.profiles.len()).sum();
        // Merged past a number of batches, and before large batches (a catch-up's) would pass the bound.
        if staged.len() > COMPACT_PAST || total > MAX_STAGED {
            if let Some(tokens) = tokens {
                compact(&mut staged, &tokens);
                total = staged.iter().map(|s| s.profiles.len()).sum();
            }
        }
        while total > MAX_STAGED && staged.len() > 1 {
            if let Some(old) = staged.pop_front() {
                total -= old.profiles.len();
            }
        }
    }

    /// Profiles staged and not yet pruned, all but the newest batches merged first (so the count is
    /// about the distinct profiles touched, whatever the size of the batches).
    pub(super) fn staged_profiles(&self) -> usize {
        let tokens = self.prune();
        let mut staged = self.staged.lock().expect("audience staging lock");
        if let Some(tokens) = tokens {
            compact(&mut staged, &tokens);
        }
        staged.iter().map(|s| s.profiles.len()).sum()
    }

    /// The profiles of `workspace` the batches after `from` up to `to` touched, following each batch's
    /// predecessor back from `to`, and whether a batch on the way redefined the workspace; `None` when
    /// the chain does not lead to `from`.
    pub(super) fn touched_between(
        &self,
        workspace: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Option<(Vec<String>, bool)> {
        let staged = self.staged.lock().expect("audience staging lock");
        let mut at = to;
        let mut profiles = Vec::new();
        let mut redefined = false;
        let mut steps = 0;
        while at != from {
            let batch = staged.iter().rev().find(|s| Some(s.token.as_str()) == at)?;
            redefined |= batch.redefined.contains(workspace);
            profiles.extend(
                batch
                    .profiles
                    .iter()
                    .filter(|(w, _)| w == workspace)
                    .map(|(_, p)| p.to_string()),
            );
            at = batch.based_on.as_deref();
            steps += 1;
            if steps > staged.len() {
                return None;
            }
        }
        Some((profiles, redefined))
    }

    /// Drops the staged batches no index needs: those up to the oldest index's token. Skipped while
    /// an index is being refreshed (its token is not known yet). Returns the indexes' tokens when
    /// every one was known.
    pub(super) fn prune(&self) -> Option<Vec<Option<String>>> {
        let tokens: Option<Vec<Option<String>>> = self
            .slots
            .lock()
            .expect("audience slots lock")
            .values()
            .map(|s| s.try_lock().ok().map(|s| s.token.clone()))
            .collect();
        let tokens = tokens?;
        let mut staged = self.staged.lock().expect("audience staging lock");
        let keep_from = tokens
            .iter()
            .filter_map(|t| {
                let t = t.as_deref()?;
                staged.iter().enumerate().find_map(|(i, s)| {
                    if s.token == t {
                        Some(i + 1)
                    } else if s.based_on.as_deref() == Some(t) {
                        Some(i)
                    } else {
                        None
                    }
                })
            })
            .min()
            .unwrap_or(0);
        staged.drain(..keep_from);
        Some(tokens)
    }
}

/// Merges the staged batches older than the newest [`KEPT_APART`] into as few records as keep every
/// walk of [`Audiences::touched_between`] that can end at an index's token (`tokens`): a run of batches
/// each following the one before becomes one record, from the first one's predecessor to the last
/// one's token, naming each profile once and every workspace any of them redefined; a run is cut after
/// a batch whose token an index holds. A walk that would have ended inside a run now finds no way and
/// the index is read whole — never a walk that misses a batch.
fn compact(staged: &mut VecDeque<Staged>, tokens: &[Option<String>]) {
    let end = staged.len().saturating_sub(KEPT_APART);
    if end < 2 {
        return;
    }
    let held = |token: &str| tokens.iter().any(|t| t.as_deref() == Some(token));
    let newest: Vec<Staged> = staged.drain(end..).collect();
    let mut merged: Vec<Staged> = Vec::new();
    for batch in staged.drain(..) {
        match merged.last_mut() {
            Some(run)
                if batch.based_on.as_deref() == Some(run.token.as_str()) && !held(&run.token) =>
            {
                run.token = batch.token;
                run.profiles.extend(batch.profiles);
                run.redefined.extend(batch.redefined);
            }
            _ => merged.push(batch),
        }
    }
    for run in &mut merged {
        run.profiles.sort_unstable();
        run.profiles.dedup();
    }
    staged.extend(merged);
    staged.extend(newest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::identity::ProfileId;

    fn profile(n: u32) -> ProfileKey {
        let id = ProfileId::parse(&format!("p_{n}")).expect("a profile id");
        ("w".to_owned(), id)
    }

    /// Batches `t0`…`t{n-1}`, each following the one before (the first following nothing), batch `i`
    /// touching profiles `i % 3` and `100 + i`; batch 5 redefines `w`.
    fn chain(n: usize) -> VecDeque<Staged> {
        (0..n)
            .map(|i| Staged {
                token: format!("t{i}"),
                based_on: i.checked_sub(1).map(|p| format!("t{p}")),
                profiles: vec![profile((i % 3) as u32), profile(100 + i as u32)],
                redefined: if i == 5 {
                    BTreeSet::from(["w".to_owned()])
                } else {
                    BTreeSet::new()
                },
            })
            .collect()
    }

    fn walk(staged: VecDeque<Staged>, from: Option<&str>, to: &str) -> Option<(Vec<String>, bool)> {
        let audiences = Audiences::default();
        *audiences.staged.lock().expect("staging lock") = staged;
        audiences
            .touched_between("w", from, Some(to))
            .map(|(mut profiles, redefined)| {
                profiles.sort_unstable();
                profiles.dedup();
                (profiles, redefined)
            })
    }

    #[test]
    fn compacting_keeps_every_walk_from_an_index_token_and_names_each_profile_once() {
        let n = COMPACT_PAST + 10;
        let last = format!("t{}", n - 1);
        let held = vec![Some("t20".to_owned())];
        let mut compacted = chain(n);
        compact(&mut compacted, &held);
        // Two runs (cut after the held token) and the newest kept apart.
        assert_eq!(compacted.len(), 2 + KEPT_APART);
        assert_eq!(compacted[0].token, "t20");
        assert_eq!(compacted[0].profiles.len(), 3 + 21, "each profile once");
        assert!(compacted[0].redefined.contains("w"));
        for from in [None, Some("t20")] {
            assert_eq!(
                walk(compacted_clone(&compacted), from, &last),
                walk(chain(n), from, &last)
            );
        }
        // From the index's token up to a batch kept apart: only what followed, not redefined.
        let (profiles, redefined) =
            walk(compacted_clone(&compacted), Some("t20"), &last).expect("a way");
        assert!(!redefined);
        assert!(!profiles.contains(&profile(120).1.to_string()));
        assert!(profiles.contains(&profile(121).1.to_string()));
        // A walk ending inside a run finds no way (the index is read whole), never a shorter one.
        assert_eq!(walk(compacted_clone(&compacted), Some("t10"), &last), None);
        assert!(walk(chain(n), Some("t10"), &last).is_some());
    }

    #[test]
    fn a_batch_not_following_the_one_before_starts_a_run_of_its_own() {
        let mut staged = chain(COMPACT_PAST + 1);
        // A batch prepared after a failed commit follows the stored token, not the failed batch.
        staged[10].based_on = Some("t8".to_owned());
        compact(&mut staged, &[]);
        assert_eq!(staged.len(), 2 + KEPT_APART);
        assert_eq!(staged[0].token, "t9");
        assert_eq!(staged[1].based_on.as_deref(), Some("t8"));
    }

    fn compacted_clone(staged: &VecDeque<Staged>) -> VecDeque<Staged> {
        staged
            .iter()
            .map(|s| Staged {
                token: s.token.clone(),
                based_on: s.based_on.clone(),
                profiles: s.profiles.clone(),
                redefined: s.redefined.clone(),
            })
            .collect()
    }
}
