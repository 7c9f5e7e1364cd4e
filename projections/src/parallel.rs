//! A batch's per-event and per-profile work spread over the cores: ordered maps over slices on scoped
//! threads, so that the result is the one a single thread gives whatever the number of parts.

use std::num::NonZeroUsize;

/// Below this many items a map runs on the calling thread: starting a thread costs more than the work.
pub const MIN_PARALLEL: usize = 256;

/// The parts a batch's work is split into by default: one per core.
pub fn default_parts() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// `items` cut into at most `parts` runs of consecutive items of about equal length, in order.
pub fn runs<T>(items: &[T], parts: usize) -> impl Iterator<Item = &[T]> {
    let size = items.len().div_ceil(parts.max(1)).max(1);
    items.chunks(size)
}

/// `f` of every item, in the order of `items`: on `parts` threads (the caller's among them) when there
/// are at least [`MIN_PARALLEL`] items, else on the calling thread.
pub fn map<'a, T: Sync, R: Send>(
    items: &'a [T],
    parts: usize,
    f: impl Fn(&'a T) -> R + Sync,
) -> Vec<R> {
    map_runs(items, parts, |run| run.iter().map(&f).collect::<Vec<R>>())
        .into_iter()
        .flatten()
        .collect()
}

/// `f` of each run of consecutive items (see [`runs`]), in order; the runs on threads of their own as
/// in [`map`].
pub fn map_runs<'a, T: Sync, R: Send>(
    items: &'a [T],
    parts: usize,
    f: impl Fn(&'a [T]) -> R + Sync,
) -> Vec<R> {
    if parts <= 1 || items.len() < MIN_PARALLEL {
        return vec![f(items)];
    }
    let mut cut = runs(items, parts);
    let first = cut.next().unwrap_or_default();
    let f = &f;
    std::thread::scope(|scope| {
        let rest: Vec<_> = cut.map(|run| scope.spawn(move || f(run))).collect();
        let mut out = Vec::with_capacity(rest.len() + 1);
        out.push(f(first));
        for handle in rest {
            match handle.join() {
                Ok(r) => out.push(r),
                // A panic in a part is the caller's panic, as it would have been on one thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

/// `f` of each part, each on a thread of its own (the first on the caller's) when `threads`, else
/// one after the other; the results in the order of `parts`.
pub fn each<P: Send, R: Send>(parts: Vec<P>, threads: bool, f: impl Fn(P) -> R + Sync) -> Vec<R> {
    if !threads || parts.len() <= 1 {
        return parts.into_iter().map(f).collect();
    }
    let f = &f;
    let mut parts = parts.into_iter();
    let first = parts.next();
    std::thread::scope(|scope| {
        let rest: Vec<_> = parts.map(|p| scope.spawn(move || f(p))).collect();
        let mut out = Vec::with_capacity(rest.len() + 1);
        out.extend(first.map(f));
        for handle in rest {
            match handle.join() {
                Ok(r) => out.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_gives_the_order_of_one_thread_whatever_the_parts() {
        let items: Vec<u64> = (0..5_000).collect();
        let one: Vec<u64> = items.iter().map(|x| x * x + 1).collect();
        for parts in [1, 2, 3, 7, 64] {
            assert_eq!(map(&items, parts, |x| x * x + 1), one, "{parts} parts");
        }
        assert_eq!(map(&items[..10], 4, |x| x + 1), (1..11).collect::<Vec<_>>());
        assert!(map(&[] as &[u64], 4, |x| *x).is_empty());
    }

    #[test]
    fn runs_cover_every_item_once_in_order() {
        let items: Vec<usize> = (0..1_001).collect();
        for parts in [1, 2, 3, 10, 2_000] {
            let joined: Vec<usize> = runs(&items, parts).flatten().copied().collect();
            assert_eq!(joined, items);
            assert!(runs(&items, parts).count() <= parts);
        }
    }

    #[test]
    fn parts_run_on_threads_or_in_turn_with_the_same_results() {
        let parts: Vec<Vec<u32>> = vec![vec![1, 2], vec![3], vec![], vec![4, 5, 6]];
        let sums = |threads| each(parts.clone(), threads, |p| p.iter().sum::<u32>());
        assert_eq!(sums(true), vec![3, 3, 0, 15]);
        assert_eq!(sums(false), sums(true));
    }
}
