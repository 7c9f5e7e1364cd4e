//! The engine's partitions: the workspaces split into `count` parts by a stable hash of their id, each
//! part one resolver with its own checkpoint, token and lease (`crate::lease`), so that several
//! instances (or several engine threads of one) share the work. A workspace's identity sequence is
//! always in one part: its decisions stay one ordered sequence whichever instance makes them.
//!
//! With one part (the default) the resolver is named as it always was, `identity`. With more, part
//! `i` of `n` is `identity/i-of-n`. Every part follows the whole log (skipping the events of the
//! others' workspaces), so each part's checkpoint moves through every position; what readers of "the
//! resolver's checkpoint" get ([`crate::projection::checkpoint`] of [`RESOLVER`]) is the lowest of
//! them: an event is applied once every part has passed it.
//!
//! The count is stored with the checkpoints: [`settle`] keeps the stored layout, or moves it to a
//! new count when no instance runs the engine and every part stands at the same position.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use chrono::Utc;

use cdp_domain::event::Position;

use crate::error::ProjectionError;
use crate::lease;
use crate::model_sql as sql;
use crate::model_tx::ModelTx;

/// The identity resolver's name, its checkpoint's key (`IdentityResolver::NAME`) when it is whole;
/// its parts are named after it. Here, below the resolver, for the readers that follow its
/// checkpoint (`crate::projection::checkpoint`, the audience index) without depending on it.
pub const RESOLVER: &str = "identity";

/// The name pattern of the resolver's parts' rows: `identity/%`.
pub fn parts_pattern() -> String {
    format!("{RESOLVER}/%")
}

/// The most parts an engine may be split into.
pub const MAX_PARTS: u32 = 64;

/// One part of the engine: the workspaces whose hash falls on `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

impl Part {
    /// The whole engine, one part.
    pub const WHOLE: Part = Part { index: 0, count: 1 };

    /// Every part of an engine split into `count` (at least one, at most [`MAX_PARTS`]).
    pub fn all(count: u32) -> Vec<Part> {
        let count = count.clamp(1, MAX_PARTS);
        (0..count).map(|index| Part { index, count }).collect()
    }

    /// The part's name: its checkpoint's, token's and lease's key. `identity` when whole.
    pub fn name(self) -> &'static str {
        if self.count <= 1 {
            return RESOLVER;
        }
        static NAMES: OnceLock<Mutex<HashMap<Part, &'static str>>> = OnceLock::new();
        let mut names = NAMES
            .get_or_init(Default::default)
            .lock()
            .expect("part names lock");
        // Interned: at most MAX_PARTS² names for the life of the process.
        names.entry(self).or_insert_with(|| {
            Box::leak(format!("{RESOLVER}/{}-of-{}", self.index, self.count).into_boxed_str())
        })
    }

    /// Whether the part runs `workspace`.
    pub fn keeps(self, workspace: &str) -> bool {
        self.count <= 1 || part_of(workspace, self.count) == self.index
    }

    /// The part a name stands for (`identity`, `identity/i-of-n`), if it is one of the resolver's.
    pub fn parse(name: &str) -> Option<Part> {
        if name == RESOLVER {
            return Some(Part::WHOLE);
        }
        let rest = name.strip_prefix(RESOLVER)?.strip_prefix('/')?;
        let (index, count) = rest.split_once("-of-")?;
        let (index, count) = (index.parse().ok()?, count.parse().ok()?);
        (index < count && count > 1 && count <= MAX_PARTS).then_some(Part { index, count })
    }
}

/// The part of `count` that runs `workspace`: FNV-1a of its id, stable across builds and machines
/// (a seeded hash would move workspaces between parts at every start).
pub fn part_of(workspace: &str, count: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in workspace.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(count.max(1))) as u32
}

/// The part of the stored layout that runs `workspace`, read from the store.
pub async fn part_of_workspace(store: &Store, workspace: &str) -> Result<Part, ProjectionError> {
    let name: Option<String> = query(sql::A_PART)
        .bind(parts_pattern())
        .scalar_optional(store.reader())
        .await?;
    let count = name.as_deref().and_then(Part::parse).map_or(1, |p| p.count);
    Ok(Part {
        index: part_of(workspace, count),
        count,
    })
}

/// The number of parts of the stored layout, read in `tx`.
pub(crate) async fn count_in(tx: &mut ModelTx<'_>) -> Result<u32, ProjectionError> {
    let name: Option<String> = query(sql::A_PART)
        .bind(parts_pattern())
        .scalar_optional(tx.exec())
        .await?;
    Ok(name.as_deref().and_then(Part::parse).map_or(1, |p| p.count))
}

/// The part of the stored layout that runs `workspace`, read in `tx`.
pub(crate) async fn part_in(
    tx: &mut ModelTx<'_>,
    workspace: &str,
) -> Result<Part, ProjectionError> {
    let count = count_in(tx).await?;
    Ok(Part {
        index: part_of(workspace, count),
        count,
    })
}

/// PostgreSQL: every part's checkpoint row locked until `tx` ends (the whole resolver's made first
/// when the resolver has none yet): no part prepares against the model or commits meanwhile.
pub(crate) async fn lock_all_postgres(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<(), ProjectionError> {
    for lock in [
        sql::ENSURE_RESOLVER_CHECKPOINT_POSTGRES,
        sql::LOCK_RESOLVER_CHECKPOINTS_POSTGRES,
    ] {
        cdp_domain::store::sql::verbatim(lock)
            .bind(parts_pattern())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Where every part of the resolver stands: a watermark that holds while no part moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Watermark(Vec<(String, Position)>);

impl Watermark {
    /// Every part's checkpoint now.
    pub async fn read(store: &Store) -> Result<Watermark, ProjectionError> {
        let rows: Vec<(String, i64, i64)> = query(sql::RESOLVER_CHECKPOINTS)
            .bind(parts_pattern())
            .fetch_all(store.reader())
            .await?;
        Ok(Watermark::of(rows))
    }

    /// Every part's checkpoint, read in `tx` (which holds them still: the caller locked them).
    pub(crate) async fn read_in(tx: &mut ModelTx<'_>) -> Result<Watermark, ProjectionError> {
        let rows: Vec<(String, i64, i64)> = query(sql::RESOLVER_CHECKPOINTS)
            .bind(parts_pattern())
            .fetch_all(tx.exec())
            .await?;
        Ok(Watermark::of(rows))
    }

    fn of(rows: Vec<(String, i64, i64)>) -> Watermark {
        Watermark(
            rows.into_iter()
                .map(|(name, tx, seq)| (name, Position { tx, seq }))
                .collect(),
        )
    }

    /// Each part's name and checkpoint, in name order.
    pub fn parts(&self) -> &[(String, Position)] {
        &self.0
    }

    /// The furthest any part has been: every event applied is at or before it (an event after a
    /// part's own checkpoint is not applied: it has no owner row yet).
    pub fn through(&self) -> Position {
        self.0
            .iter()
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(Position::START)
    }
}

/// The resolver's checkpoints as stored: each part's name and sequence number.
async fn stored_parts(store: &Store) -> Result<Vec<(Part, i64, i64)>, ProjectionError> {
    let rows: Vec<(String, i64, i64)> = query(sql::RESOLVER_CHECKPOINTS)
        .bind(parts_pattern())
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(name, tx, seq)| Part::parse(&name).map(|p| (p, tx, seq)))
        .collect())
}

/// The count the engine runs with: the stored one, or `wanted` when nothing is stored yet or the
/// layout can move to it now — no instance holds a part's lease and every part stands at the same
/// position (as they do once caught up). Otherwise the stored count, with an error logged saying why.
pub async fn settle(store: &Store, wanted: u32) -> Result<u32, ProjectionError> {
    let wanted = wanted.clamp(1, MAX_PARTS);
    let parts = stored_parts(store).await?;
    let stored = parts
        .iter()
        .map(|(p, _, _)| p.count)
        .max()
        .unwrap_or(wanted);
    let complete = parts.iter().filter(|(p, _, _)| p.count == stored).count() == stored as usize
        || (stored == 1 && parts.iter().all(|(p, _, _)| p.count == 1));
    if stored == wanted && complete {
        return Ok(wanted);
    }
    let now = Utc::now().timestamp_millis();
    let running: Vec<String> = lease::holders(store)
        .await?
        .into_iter()
        .filter(|h| h.live_at(now) && Part::parse(&h.part).is_some())
        .map(|h| format!("{} ({})", h.part, h.owner))
        .collect();
    let positions: std::collections::BTreeSet<(i64, i64)> =
        parts.iter().map(|(_, tx, seq)| (*tx, *seq)).collect();
    if stored != wanted && !running.is_empty() {
        tracing::error!(
            stored,
            wanted,
            running = running.join(", "),
            "the engine runs in the stored number of parts: stop every instance to change it"
        );
        return Ok(stored);
    }
    if positions.len() > 1 {
        tracing::error!(
            stored,
            wanted,
            "the engine's parts stand at different positions: it runs in the stored number of \
             parts until they have caught up; start again with the new count then"
        );
        return Ok(stored);
    }
    let (tx, seq) = positions.into_iter().next().unwrap_or((0, 0));
    let mut model = ModelTx::begin(store).await?;
    for delete in [
        sql::DELETE_RESOLVER_CHECKPOINTS,
        sql::DELETE_RESOLVER_TOKENS,
    ] {
        query(delete)
            .bind(parts_pattern())
            .execute(model.exec())
            .await?;
    }
    for part in Part::all(wanted) {
        query(sql::MOVE_CHECKPOINT)
            .bind(part.name())
            .bind(tx)
            .bind(seq)
            .bind(now)
            .execute(model.exec())
            .await?;
    }
    // Every part's state is read again from the tables: each part has a token of its own now, one no
    // resolver holds.
    let token = format!(
        "settled-{:x}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or(now),
        std::process::id()
    );
    query(sql::SET_RESOLVER_TOKENS)
        .bind(token)
        .bind(parts_pattern())
        .execute(model.exec())
        .await?;
    model.commit().await?;
    if stored != wanted {
        tracing::info!(
            from = stored,
            to = wanted,
            seq,
            "the engine's partitions changed"
        );
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_named_and_parsed_back() {
        assert_eq!(Part::WHOLE.name(), "identity");
        for part in Part::all(5) {
            assert_eq!(Part::parse(part.name()), Some(part));
        }
        assert_eq!(Part::parse("identity/3-of-3"), None);
        assert_eq!(Part::parse("identity~deferred"), None);
        assert_eq!(Part::parse("publisher"), None);
    }

    #[test]
    fn every_workspace_is_kept_by_exactly_one_part() {
        for count in [1, 2, 3, 8] {
            for w in ["acme", "b", "shoes-cn", "", "ws-17"] {
                let keeping = Part::all(count).into_iter().filter(|p| p.keeps(w)).count();
                assert_eq!(keeping, 1, "{w} in {count} parts");
            }
        }
        // Stable: the same part on every machine and build.
        assert_eq!(part_of("acme", 4), part_of("acme", 4));
        let spread: std::collections::BTreeSet<u32> =
            (0..64).map(|i| part_of(&format!("ws-{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
    }
}
