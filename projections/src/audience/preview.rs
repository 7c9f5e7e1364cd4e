//! `POST /v1/segments/preview` over the audience index: the members of an unsaved definition as a
//! bitmap, their count, sample and totals, a breakdown by up to two fields and the overlap with the
//! saved segments. A definition the index cannot answer alone (an event condition with a `where`, an
//! aggregate of a property, a sequence; events without summaries) takes its members from the exact
//! path — every profile's events folded (`exact::preview`) — and the rest from the
//! index. While the index is not ready (being built at start, or read whole again after a rebuild's
//! switch, an erasure, another instance's batches) the exact path answers alone: its members, and
//! the breakdown and overlap from an index of the members only, read for the request.

use cdp_domain::audience::{AudienceIndex, Breakdown, BreakdownField, Summary};
use cdp_domain::ident::WorkspaceId;
use cdp_domain::segments::SegmentDef;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use super::{Audiences, Refreshed};
use crate::runner::ProjectionError;

/// How the members were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluatedBy {
    /// Every condition from the index.
    Index,
    /// The event conditions by folding every profile's events (the exact path).
    Events,
}

impl EvaluatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvaluatedBy::Index => "index",
            EvaluatedBy::Events => "events",
        }
    }
}

/// What a preview answers.
#[derive(Debug, Clone)]
pub struct AudiencePreview {
    pub summary: Summary,
    pub breakdown: Option<Breakdown>,
    /// Members each saved segment holds too.
    pub overlap: Vec<(String, u64)>,
    pub evaluated_by: EvaluatedBy,
    /// Why the index could not answer alone.
    pub fallback: Option<String>,
    /// How the index was brought up to date first.
    pub refreshed: Refreshed,
    /// When the index was last read whole.
    pub built_at: Option<DateTime<Utc>>,
    /// Whether the workspace's index was ready (`false`: the exact path answered alone).
    pub ready: bool,
}

/// Why the index did not answer when it is not ready.
pub const NOT_READY: &str = "the audience index is not ready (being built)";

/// A breakdown field no profile has and the catalog does not define: its place in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownField(pub usize);

/// Evaluates `def` over `workspace`'s index, current as of the call.
#[tracing::instrument(name = "segment.preview", skip_all, fields(workspace = %workspace))]
pub async fn preview(
    audiences: &Audiences,
    store: &Store,
    workspace: &WorkspaceId,
    def: &SegmentDef,
    breakdown: Option<&[BreakdownField]>,
    sample: usize,
    now: DateTime<Utc>,
) -> Result<Result<AudiencePreview, UnknownField>, ProjectionError> {
    let Some((slot, mut refreshed)) = audiences.current(store, workspace, now).await? else {
        return without_index(store, workspace, def, breakdown, sample, now).await;
    };
    let missing = || ProjectionError::Stale("the audience index was not built".into());
    let index = slot.index().ok_or_else(missing)?;
    if let Some(at) = breakdown
        .into_iter()
        .flatten()
        .position(|f| !index.knows(f))
    {
        return Ok(Err(UnknownField(at)));
    }
    let answer = slot.index().ok_or_else(missing)?.matching(def, now);
    let (slot, members, evaluated_by, fallback) = match answer {
        Ok(members) => (slot, members, EvaluatedBy::Index, None),
        Err(why) => {
            // The exact path reads the tables for minutes at scale: the index is not held meanwhile.
            drop(slot);
            let exact = crate::exact::preview(store, workspace, def, 0, now).await?;
            let Some((slot, again)) = audiences.current(store, workspace, now).await? else {
                return without_index(store, workspace, def, breakdown, sample, now).await;
            };
            refreshed.whole |= again.whole;
            refreshed.profiles += again.profiles;
            let members = slot
                .index()
                .ok_or_else(missing)?
                .rows_of(exact.members.iter().map(String::as_str));
            (slot, members, EvaluatedBy::Events, Some(why.to_string()))
        }
    };
    let index = slot.index().ok_or_else(missing)?;
    Ok(Ok(AudiencePreview {
        summary: index.summary(&members, sample),
        breakdown: breakdown.map(|fields| index.breakdown(&members, fields)),
        overlap: index.overlap(&members),
        evaluated_by,
        fallback,
        refreshed,
        built_at: slot.built().map(|(at, _)| at),
        ready: true,
    }))
}

/// The answer while the workspace's index is not ready: the members from the exact path (every
/// profile's events folded), their totals as it counts them, and the breakdown and overlap from an
/// index of the members alone (read for this request). A breakdown field is refused only when the
/// catalog does not define it and no member has it.
async fn without_index(
    store: &Store,
    workspace: &WorkspaceId,
    def: &SegmentDef,
    breakdown: Option<&[BreakdownField]>,
    sample: usize,
    now: DateTime<Utc>,
) -> Result<Result<AudiencePreview, UnknownField>, ProjectionError> {
    let exact = crate::exact::preview(store, workspace, def, sample, now).await?;
    let catalog = crate::catalog::load_in(store, workspace).await?;
    let mut index = AudienceIndex::new(super::names_of(&catalog));
    for row in super::load::named(store, workspace, &catalog, &exact.members, now).await? {
        index.upsert(row);
    }
    if let Some(at) = breakdown
        .into_iter()
        .flatten()
        .position(|f| !index.knows(f))
    {
        return Ok(Err(UnknownField(at)));
    }
    let members = index.rows_of(exact.members.iter().map(String::as_str));
    Ok(Ok(AudiencePreview {
        summary: Summary {
            count: exact.count.max(0) as u64,
            profiles: exact.profiles.max(0) as u64,
            sample: exact.sample,
            spend: exact.spend,
            orders: exact.orders,
        },
        breakdown: breakdown.map(|fields| index.breakdown(&members, fields)),
        overlap: index.overlap(&members),
        evaluated_by: EvaluatedBy::Events,
        fallback: Some(NOT_READY.to_owned()),
        refreshed: Refreshed::default(),
        built_at: None,
        ready: false,
    }))
}
