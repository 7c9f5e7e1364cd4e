//! A rebuild too large for memory, cut into slices: the engine's parts by workspace
//! (`cdp_projections::partitions`), rebuilt one after the other, each holding only its own
//! workspaces' profiles; a slice done keeps its identity graphs and lets its profiles go.

use cdp_domain::store::Store;
use cdp_projections::partitions::{part_of, Part, Watermark, MAX_PARTS};
use cdp_projections::runner::ProjectionError;

/// Into how many slices a rebuild of a model with `counts` profiles per workspace is cut so that a
/// slice holds at most `held` profiles: the fewest parts (by the engine's stable workspace hash) whose
/// largest has at most `held` — or, when one workspace alone has more, at most that workspace's (a
/// workspace is never cut: its identity decisions are one sequence). 1 when everything fits.
pub fn slices_for(counts: &[(String, u64)], held: u64) -> u32 {
    let total: u64 = counts.iter().map(|c| c.1).sum();
    if total <= held {
        return 1;
    }
    let largest = counts.iter().map(|c| c.1).max().unwrap_or(0);
    let fits = held.max(largest);
    let mut best = (u64::MAX, 1);
    for count in 1..=MAX_PARTS {
        let most = largest_slice(counts, count);
        if most <= fits {
            return count;
        }
        if most < best.0 {
            best = (most, count);
        }
    }
    best.1
}

/// The profiles of the largest of `count` slices.
pub fn largest_slice(counts: &[(String, u64)], count: u32) -> u64 {
    let mut sums = vec![0u64; count.max(1) as usize];
    for (workspace, n) in counts {
        sums[part_of(workspace, count.max(1)) as usize] += n;
    }
    sums.into_iter().max().unwrap_or(0)
}

/// The slices an interrupted rebuild was cut into, read from its shadow's checkpoints (`None`: it
/// has none yet). A resumed rebuild keeps them, whatever the live model has grown to since.
pub(super) async fn stored_slices(shadow: &Store) -> Result<Option<u32>, ProjectionError> {
    let watermark = Watermark::read(shadow).await?;
    Ok(watermark
        .parts()
        .iter()
        .find_map(|(name, _)| Part::parse(name))
        .map(|p| p.count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(ns: &[u64]) -> Vec<(String, u64)> {
        ns.iter()
            .enumerate()
            .map(|(i, n)| (format!("ws{i}"), *n))
            .collect()
    }

    #[test]
    fn a_model_that_fits_is_rebuilt_whole() {
        assert_eq!(slices_for(&counts(&[10, 20, 30]), 60), 1);
        assert_eq!(slices_for(&[], 0), 1);
    }

    #[test]
    fn a_model_past_the_bound_is_cut_into_slices_that_fit() {
        let c = counts(&[10, 20, 30, 5, 25]);
        let k = slices_for(&c, 40);
        assert!(k > 1);
        assert!(largest_slice(&c, k) <= 40, "{k} slices");
        assert!(largest_slice(&c, k - 1) > 40, "the fewest that fit");
    }

    proptest! {
        /// Each slice holds at most the bound, or the largest workspace when that alone is larger;
        /// no fewer slices would do; every workspace is in exactly one slice.
        #[test]
        fn slices_are_the_fewest_that_fit(
            ns in proptest::collection::vec(0u64..1_000, 0..40),
            held in 1u64..5_000,
        ) {
            let c = counts(&ns);
            let k = slices_for(&c, held);
            prop_assert!((1..=MAX_PARTS).contains(&k));
            let fits = held.max(ns.iter().copied().max().unwrap_or(0));
            let most = largest_slice(&c, k);
            if most <= fits {
                for fewer in 1..k {
                    prop_assert!(largest_slice(&c, fewer) > fits);
                }
            } else {
                // Nothing fits: the count with the smallest largest slice.
                for other in 1..=MAX_PARTS {
                    prop_assert!(largest_slice(&c, other) >= most);
                }
            }
            let total: u64 = ns.iter().sum();
            let in_slices: u64 = (0..k)
                .map(|i| c.iter().filter(|(w, _)| Part { index: i, count: k }.keeps(w)).map(|x| x.1).sum::<u64>())
                .sum();
            prop_assert_eq!(in_slices, total);
        }
    }
}
