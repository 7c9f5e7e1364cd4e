//! What the stages' writers share (`audience::writes`, `profiles::derived`): the last row per key of a
//! batch's rows, and the key columns their PostgreSQL statements bind as arrays (`UNNEST`). Below the
//! stages, so that `stages` (which commits them) and the writers depend on it one way.

use std::collections::HashMap;

/// The last of `rows` for each key, in the order those last ones came.
pub(crate) fn last_per_key<'r, T, K: Eq + std::hash::Hash>(
    rows: &'r [T],
    key: impl Fn(&'r T) -> K,
) -> Vec<&'r T> {
    let mut last: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(key(row), i);
    }
    rows.iter()
        .enumerate()
        .filter(|(i, row)| last.get(&key(row)) == Some(i))
        .map(|(_, row)| row)
        .collect()
}

/// The key columns of a statement's rows: workspace, profile and a third (tag or segment) where the
/// table has one.
#[derive(Default)]
pub(crate) struct Keys<'r> {
    pub(crate) workspace: Vec<&'r str>,
    pub(crate) profile: Vec<&'r str>,
    pub(crate) third: Vec<&'r str>,
}

impl<'r> Keys<'r> {
    pub(crate) fn push(&mut self, workspace: &'r str, profile: &'r str, third: Option<&'r str>) {
        self.workspace.push(workspace);
        self.profile.push(profile);
        if let Some(third) = third {
            self.third.push(third);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workspace.is_empty()
    }
}
