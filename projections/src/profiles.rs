//! Storage of the 360° profile read model the resolver maintains: one `ProfileDoc` per live profile
//! (`profiles`) and the profile each customer event belongs to now (`event_profiles`), with the reads the
//! API serves from them — a profile's document and its paged timeline.

use std::collections::HashMap;

use cdp_domain::event::StoredEvent;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::identity::{Identifier, ProfileId};
use cdp_domain::profile::{EventSummary, ProfileDoc, RECENT_EVENTS};
use cdp_domain::store::sql::{query, verbatim};
use cdp_domain::store::Store;

use crate::runner::ProjectionError;

pub mod derived;
pub(crate) mod sql;
pub mod view_cache;
mod writes;

pub(crate) use writes::write;

/// A profile of a workspace.
pub type ProfileKey = (String, ProfileId);

const PER_STATEMENT: usize = 500;

/// A stored profile row's state (binary) and document (JSON of earlier versions).
pub type StoredDoc = (Option<Vec<u8>>, Option<String>);

/// A stored profile row with its key: workspace, profile, state, document.
pub type KeyedDoc = (String, String, Option<Vec<u8>>, Option<String>);

/// The document of a stored row.
pub fn decode((state, doc): &StoredDoc) -> Result<ProfileDoc, ProjectionError> {
    ProfileDoc::from_stored(state.as_deref(), doc.as_deref()).map_err(ProjectionError::corrupt)
}

/// The document of a live profile; `None` for a profile merged away or never created.
pub async fn load(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<ProfileDoc>, ProjectionError> {
    let row: Option<StoredDoc> = query(sql::LOAD)
        .bind(workspace.as_str())
        .bind(profile)
        .fetch_optional(store.reader())
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The documents of these profiles that exist. Reads through the pools: only the resolver writes them,
/// and it re-checks its checkpoint under the write lock.
pub async fn load_many(
    store: &Store,
    keys: &[ProfileKey],
) -> Result<HashMap<ProfileKey, ProfileDoc>, ProjectionError> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(PER_STATEMENT) {
        let rows: Vec<KeyedDoc> = match store {
            Store::Sqlite(_) => {
                let mut rows = Vec::with_capacity(chunk.len());
                let mut by_workspace: Vec<(&str, Vec<&str>)> = Vec::new();
                for (w, p) in chunk {
                    match by_workspace.iter_mut().find(|(x, _)| x == w) {
                        Some((_, ps)) => ps.push(p.as_str()),
                        None => by_workspace.push((w.as_str(), vec![p.as_str()])),
                    }
                }
                for (w, ps) in &by_workspace {
                    let found: Vec<KeyedDoc> = query(sql::LOAD_MANY_SQLITE)
                        .bind(*w)
                        .bind(ps)
                        .fetch_all(store.reader())
                        .await?;
                    rows.extend(found);
                }
                rows
            }
            Store::Postgres(_) => {
                let (w, p) = unzip(chunk);
                verbatim(sql::LOAD_MANY_POSTGRES)
                    .bind(&w)
                    .bind(&p)
                    .fetch_all(store.reader())
                    .await?
            }
        };
        for (w, p, state, json) in rows {
            let profile = ProfileId::parse(&p).map_err(ProjectionError::corrupt)?;
            let doc = decode(&(state, json))?;
            found.insert((w, profile), doc);
        }
    }
    Ok(found)
}

fn unzip(keys: &[ProfileKey]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(w, p)| (w.as_str(), p.as_str())).unzip()
}

/// The sequence numbers of the events that belong to any of `profiles` now.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn events_of(
    store: &Store,
    workspace: &str,
    profiles: &[ProfileId],
) -> Result<Vec<i64>, ProjectionError> {
    let names: Vec<&str> = profiles.iter().map(ProfileId::as_str).collect();
    let mut seqs = Vec::new();
    for chunk in names.chunks(PER_STATEMENT) {
        let rows: Vec<i64> = query(sql::EVENTS_OF)
            .bind(workspace)
            .bind(chunk)
            .scalars(store.reader())
            .await?;
        seqs.extend(rows);
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The sequence numbers of the events of each of `profiles` now, in log order.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn events_by_profile(
    store: &Store,
    workspace: &str,
    profiles: &[ProfileId],
) -> Result<HashMap<String, Vec<i64>>, ProjectionError> {
    let names: Vec<&str> = profiles.iter().map(ProfileId::as_str).collect();
    let mut out: HashMap<String, Vec<i64>> = HashMap::new();
    for chunk in names.chunks(PER_STATEMENT) {
        let rows: Vec<(String, i64)> = query(sql::EVENTS_BY_PROFILE)
            .bind(workspace)
            .bind(chunk)
            .fetch_all(store.reader())
            .await?;
        for (p, seq) in rows {
            out.entry(p).or_default().push(seq);
        }
    }
    for seqs in out.values_mut() {
        seqs.sort_unstable();
    }
    Ok(out)
}

/// The live profile `profile` is now: itself when it has a document, its survivor when it was merged
/// away; `None` when no such profile exists in the workspace.
pub async fn survivor(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<String>, ProjectionError> {
    for sql in [sql::LIVE, sql::SURVIVOR_OF] {
        let found: Option<String> = query(sql)
            .bind(workspace.as_str())
            .bind(profile)
            .scalar_optional(store.reader())
            .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The profiles merged into a live profile, directly or not.
pub async fn aliases_of(
    store: &Store,
    workspace: &WorkspaceId,
    survivor: &str,
) -> Result<Vec<String>, ProjectionError> {
    Ok(query(sql::ALIASES_OF)
        .bind(workspace.as_str())
        .bind(survivor)
        .scalars(store.reader())
        .await?)
}

/// The live profile holding an identifier (type and normalised value), if it is linked.
pub async fn holder(
    store: &Store,
    workspace: &WorkspaceId,
    id_type: &str,
    value: &str,
) -> Result<Option<String>, ProjectionError> {
    Ok(query(sql::HOLDER)
        .bind(workspace.as_str())
        .bind(id_type)
        .bind(value)
        .scalar_optional(store.reader())
        .await?)
}

/// A page of a live profile's timeline: its events with `seq` below `before`, newest first.
pub async fn timeline(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let before = before.unwrap_or(i64::MAX);
    let seqs: Vec<i64> = query(sql::TIMELINE_PAGE)
        .bind(workspace.as_str())
        .bind(profile)
        .bind(before)
        .bind(i64::from(limit))
        .scalars(store.reader())
        .await?;
    let mut events = store.events_by_seq(&seqs).await?;
    events.reverse();
    Ok(events)
}

/// A stored event summary: message id, type, name, channel, event time and arrival (µs).
type SummaryRow = (String, String, Option<String>, String, i64, i64);

/// The most recent events of a live profile by event time (then message id), newest first: the
/// summaries the resolver wrote with each event's `event_profiles` row.
pub async fn recent_events(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Vec<EventSummary>, ProjectionError> {
    // Every event at the boundary's time is taken, so the message-id order among equal times is the
    // same as a sort of all of them would give.
    let skip = RECENT_EVENTS as i64 - 1;
    let rows: Vec<SummaryRow> = query(sql::RECENT_EVENTS)
        .bind(workspace.as_str())
        .bind(profile)
        .bind(workspace.as_str())
        .bind(profile)
        .bind(skip)
        .fetch_all(store.reader())
        .await?;
    summaries_newest_first(rows)
}

/// Stored summary rows as summaries, newest first, at most [`RECENT_EVENTS`].
fn summaries_newest_first(rows: Vec<SummaryRow>) -> Result<Vec<EventSummary>, ProjectionError> {
    let time = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .ok_or_else(|| ProjectionError::corrupt(format!("{us} µs is not a time")))
    };
    let mut recent = Vec::with_capacity(rows.len());
    for (message_id, kind, name, channel, at, received) in rows {
        recent.push(EventSummary {
            message_id,
            kind,
            name,
            channel,
            timestamp: time(at)?,
            received_at: time(received)?,
            facets: None,
        });
    }
    recent.sort_by(EventSummary::newest_first);
    recent.truncate(RECENT_EVENTS);
    Ok(recent)
}

/// A live profile as its 360° view reads it: the document, the most recent events (as
/// [`recent_events`]) and the stored tags, all of one snapshot.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub doc: ProfileDoc,
    pub recent: Vec<EventSummary>,
    pub tags: Vec<crate::catalog::ProfileTag>,
    /// What a reader made of the view that depends on nothing else (the API's JSON of the document and
    /// its events), made once however often a view held in memory is read.
    pub rendered: std::sync::OnceLock<String>,
}

impl PartialEq for ProfileView {
    /// The same profile, events and tags (what was made of them aside).
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc && self.recent == other.recent && self.tags == other.tags
    }
}

/// One row of [`view`]'s statement: which part it is of (0 the profile, 1 an event, 2 a tag), then
/// the part's columns in the shared slots.
type ViewRow = (
    i32,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<bool>,
);

/// The 360° view of a live profile; `None` for a profile merged away or never created. On
/// PostgreSQL one statement (one round trip, one snapshot) reads the three parts; on SQLite, in the
/// process, the three reads.
pub async fn view(
    store: &Store,
    workspace: &WorkspaceId,
    profile: &str,
) -> Result<Option<ProfileView>, ProjectionError> {
    if matches!(store, Store::Sqlite(_)) {
        let Some(doc) = load(store, workspace, profile).await? else {
            return Ok(None);
        };
        let recent = recent_events(store, workspace, profile).await?;
        let tags = crate::catalog::tags_of_in(store, workspace, &[profile])
            .await?
            .remove(profile)
            .unwrap_or_default();
        return Ok(Some(ProfileView {
            doc,
            recent,
            tags,
            rendered: Default::default(),
        }));
    }
    let rows: Vec<ViewRow> = verbatim(sql::VIEW_POSTGRES)
        .bind(workspace.as_str())
        .bind(profile)
        .bind(RECENT_EVENTS as i64)
        .fetch_all(store.reader())
        .await?;
    let missing = |what: &str| ProjectionError::corrupt(format!("a stored {what} lacks a column"));
    let mut doc = None;
    let mut summaries: Vec<SummaryRow> = Vec::new();
    let mut tags = Vec::new();
    for (part, state, a, b, c, d, e, f, g) in rows {
        match part {
            0 => doc = Some(decode(&(state, a))?),
            1 => summaries.push((
                a.ok_or_else(|| missing("event summary"))?,
                b.ok_or_else(|| missing("event summary"))?,
                c,
                d.ok_or_else(|| missing("event summary"))?,
                e.ok_or_else(|| missing("event summary"))?,
                f.ok_or_else(|| missing("event summary"))?,
            )),
            _ => {
                let row = (
                    profile.to_owned(),
                    a.ok_or_else(|| missing("tag"))?,
                    b.ok_or_else(|| missing("tag"))?,
                    c,
                    g.ok_or_else(|| missing("tag"))?,
                    e.ok_or_else(|| missing("tag"))?,
                    d,
                );
                tags.push(crate::catalog::tag_of(row)?.1);
            }
        }
    }
    let Some(doc) = doc else {
        return Ok(None);
    };
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(Some(ProfileView {
        doc,
        recent: summaries_newest_first(summaries)?,
        tags,
        rendered: Default::default(),
    }))
}

/// A merge, applied in order inside the resolver's transaction: every event and identifier of `from`
/// now belongs to `to`, and `from` (and whatever was merged into it) is an alias of `to`.
#[derive(Debug, Clone)]
pub struct Reassign {
    pub workspace: String,
    pub from: ProfileId,
    pub to: ProfileId,
}

/// `(log_seq, workspace, profile, summary)`: where an event belongs after a batch.
pub type OwnerRow = (i64, String, ProfileId, Option<EventSummary>);

/// What the resolver writes for a batch besides its decisions.
#[derive(Debug, Default)]
pub struct ModelWrites {
    pub reassigns: Vec<Reassign>,
    /// `(log_seq, workspace, profile)`: where an event belongs after the batch; written after the
    /// reassigns, so they hold for the events and identifiers the batch touched.
    /// With the event's summary when it is new to the model (an event of the batch).
    pub owners: Vec<OwnerRow>,
    /// `(workspace, identifier, profile)`: who holds an identifier after the batch.
    pub holders: Vec<(String, Identifier, ProfileId)>,
    /// Documents of live profiles, in their binary form (`ProfileDoc::to_state`).
    pub docs: Vec<(ProfileKey, Vec<u8>)>,
    /// Profiles merged away in the batch.
    pub gone: Vec<ProfileKey>,
}

/// How many live profiles the model holds, every workspace.
pub async fn count_all(store: &Store) -> Result<u64, ProjectionError> {
    let n: i64 = query(sql::COUNT_ALL).scalar(store.reader()).await?;
    Ok(n.max(0) as u64)
}

/// How many live profiles each workspace holds (workspaces without one are not listed).
pub async fn count_by_workspace(store: &Store) -> Result<Vec<(String, u64)>, ProjectionError> {
    let rows: Vec<(String, i64)> = query(sql::COUNT_BY_WORKSPACE)
        .fetch_all(store.reader())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(w, n)| (w, n.max(0) as u64))
        .collect())
}
