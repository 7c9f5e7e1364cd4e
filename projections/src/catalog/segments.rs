//! Reading segment memberships: the members of a segment and the segments of a profile now, their
//! history of enters and exits, and the sizes and daily changes the console charts.

use std::collections::BTreeMap;

use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;

use super::sql;
use crate::runner::ProjectionError;

/// A profile's membership of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub segment: String,
    pub since: i64,
    pub caused_by: Option<String>,
}

/// The segments these profiles of `workspace` are in now, by profile.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn memberships_of(
    store: &Store,
    workspace: &str,
    profiles: &[&str],
) -> Result<BTreeMap<String, Vec<Membership>>, ProjectionError> {
    let mut out: BTreeMap<String, Vec<Membership>> = BTreeMap::new();
    for chunk in profiles.chunks(500) {
        let rows: Vec<(String, String, i64, Option<String>)> = query(sql::MEMBERSHIPS_OF)
            .bind(workspace)
            .bind(chunk)
            .fetch_all(store.reader())
            .await?;
        for (profile, segment, since, caused_by) in rows {
            out.entry(profile).or_default().push(Membership {
                segment,
                since,
                caused_by,
            });
        }
    }
    Ok(out)
}

/// One enter or exit of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    pub seq: i64,
    pub profile: String,
    pub segment: String,
    pub entered: bool,
    pub at: i64,
    pub caused_by: Option<String>,
}

/// Every enter and exit of these profiles (a live profile and the ones merged into it), in order.
pub async fn membership_history(
    store: &Store,
    workspace: &WorkspaceId,
    profiles: &[String],
) -> Result<Vec<MembershipChange>, ProjectionError> {
    let mut out = Vec::new();
    for p in profiles {
        let rows: Vec<(i64, String, String, bool, i64, Option<String>)> =
            query(sql::MEMBERSHIP_HISTORY)
                .bind(workspace.as_str())
                .bind(p)
                .fetch_all(store.reader())
                .await?;
        out.extend(
            rows.into_iter()
                .map(
                    |(seq, profile, segment, entered, at, caused_by)| MembershipChange {
                        seq,
                        profile,
                        segment,
                        entered,
                        at,
                        caused_by,
                    },
                ),
        );
    }
    out.sort_by_key(|c| c.seq);
    Ok(out)
}

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The net change of `segment`'s members (enters less exits) on each UTC day from `since_ms` on, as
/// `(day since the epoch, change)` in day order: a range of `segment_history_by_segment` (workspace,
/// segment, at), read from the index alone, however long the history before it.
pub async fn segment_changes_since(
    store: &Store,
    workspace: &WorkspaceId,
    segment: &str,
    since_ms: i64,
) -> Result<Vec<(i64, i64)>, ProjectionError> {
    let rows: Vec<(i64, i64)> = query(sql::SEGMENT_CHANGES_SINCE)
        .bind(workspace.as_str())
        .bind(segment)
        .bind(since_ms)
        .fetch_all(store.reader())
        .await?;
    Ok(rows)
}

/// How many profiles each segment of `workspace` has now.
pub async fn segment_sizes(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<BTreeMap<String, i64>, ProjectionError> {
    let rows: Vec<(String, i64)> = query(sql::SEGMENT_SIZES)
        .bind(workspace.as_str())
        .fetch_all(store.reader())
        .await?;
    Ok(rows.into_iter().collect())
}

/// A page of a segment's members after `after` (profile id order).
pub async fn members_page(
    store: &Store,
    workspace: &WorkspaceId,
    segment: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, i64, Option<String>)>, ProjectionError> {
    Ok(query(sql::MEMBERS_PAGE)
        .bind(workspace.as_str())
        .bind(segment)
        .bind(after)
        .bind(limit)
        .fetch_all(store.reader())
        .await?)
}
