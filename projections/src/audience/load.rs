//! Reading the audience index's rows from the engine's tables: each profile's stored state (traits,
//! computed values at a time, consent, orders), its stored tags and segment memberships, and its track
//! events' summaries in `event_profiles` — for a whole workspace, or for the profiles a batch touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_domain::audience::facets::parse_facets;
use cdp_domain::audience::{Names, ProfileRow};
use cdp_domain::catalog::Catalog;
use cdp_domain::consent::{CHANNELS, PURPOSES};
use cdp_domain::store::sql::{query, Record};
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::sql;
use crate::runner::ProjectionError;

/// Profiles decoded at a time when a whole workspace is read.
const PAGE: usize = 10_000;
/// Profiles named per query when some are read again.
const CHUNK: usize = 500;

/// The names a catalog resolves `{"trait": x}` through.
pub fn names_of(catalog: &Catalog) -> Names {
    Names {
        computed: catalog.folded().keys().cloned().collect(),
        tags: catalog.tags.keys().cloned().collect(),
    }
}

type StateRow = (String, Option<Vec<u8>>, Option<String>);

/// The stored rows besides the states, by profile: tags, segment memberships, event summaries
/// (`None`: some event of the profile has no summary), track events with facets (as stored text,
/// parsed a page of profiles at a time).
#[derive(Default)]
struct Beside {
    tags: HashMap<String, BTreeMap<String, Value>>,
    segments: HashMap<String, BTreeSet<String>>,
    events: HashMap<String, Option<Vec<Summary>>>,
    faceted: HashMap<String, Vec<(String, i32, Option<String>)>>,
}

impl Beside {
    fn read(
        tags: Vec<(String, String, String)>,
        members: Vec<(String, String)>,
        events: Vec<EventRow>,
        faceted: Vec<FacetRow>,
    ) -> Result<Beside, ProjectionError> {
        let mut out = Beside::default();
        for (p, name, hour, facets) in faceted {
            if let (Some(name), Some(hour)) = (name, hour) {
                out.faceted
                    .entry(p)
                    .or_default()
                    .push((name, clamp_hour(hour), facets));
            }
        }
        for (p, tag, value) in tags {
            let value = serde_json::from_str(&value).map_err(ProjectionError::corrupt)?;
            out.tags.entry(p).or_default().insert(tag, value);
        }
        for (p, segment) in members {
            out.segments.entry(p).or_default().insert(segment);
        }
        for (p, kind, name, hour, n) in events {
            let known = out.events.entry(p).or_insert_with(|| Some(Vec::new()));
            match (kind.as_deref(), name, hour) {
                (Some("track"), Some(name), Some(hour)) => {
                    if let Some(list) = known {
                        let n = u32::try_from(n).unwrap_or(u32::MAX);
                        list.push((name, clamp_hour(hour), n));
                    }
                }
                // Another kind of message: nothing an event condition counts.
                (Some(_), _, Some(_)) => {}
                // A row written before events had summaries.
                _ => *known = None,
            }
        }
        Ok(out)
    }
}

fn clamp_hour(hour: i64) -> i32 {
    i32::try_from(hour).unwrap_or(if hour < 0 { i32::MIN } else { i32::MAX })
}

/// The rows of the named profiles that are live; those missing from the answer are gone.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces its audience indexes are keyed by, so it takes `&str` rather than parse them again.
pub async fn named(
    store: &Store,
    workspace: &str,
    catalog: &Catalog,
    profiles: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<ProfileRow>, ProjectionError> {
    let states: Vec<StateRow> = by_profile(store, sql::STATES_OF, workspace, profiles).await?;
    let names: Vec<String> = states.iter().map(|s| s.0.clone()).collect();
    let tags = by_profile(store, sql::TAGS_OF, workspace, &names).await?;
    let members = by_profile(store, sql::MEMBERSHIPS_OF, workspace, &names).await?;
    let events = by_profile(store, sql::EVENTS_OF, workspace, &names).await?;
    let faceted = by_profile(store, sql::FACETED_OF, workspace, &names).await?;
    let mut beside = Beside::read(tags, members, events, faceted)?;
    rows_of(states, &mut beside, catalog, now)
}

/// Every profile of the workspace, a part at a time to `take`: each table read in one pass (the
/// states streamed, the rest gathered by profile first; events counted per name and hour in SQL).
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces its audience indexes are keyed by, so it takes `&str` rather than parse them again.
pub async fn whole(
    store: &Store,
    workspace: &str,
    catalog: &Catalog,
    now: DateTime<Utc>,
    mut take: impl FnMut(Vec<ProfileRow>),
) -> Result<(), ProjectionError> {
    let read = |text| query(text).bind(workspace);
    let tags = read(sql::TAGS).fetch_all(store.reader()).await?;
    let members = read(sql::MEMBERSHIPS).fetch_all(store.reader()).await?;
    let events = read(sql::EVENT_COUNTS).fetch_all(store.reader()).await?;
    let faceted = read(sql::FACETED).fetch_all(store.reader()).await?;
    let mut beside = Beside::read(tags, members, events, faceted)?;
    let mut part: Vec<StateRow> = Vec::with_capacity(PAGE);
    query(sql::STATES)
        .bind(workspace)
        .fetch_each(store.reader(), |row: StateRow| {
            part.push(row);
            if part.len() == PAGE {
                take(rows_of(
                    std::mem::take(&mut part),
                    &mut beside,
                    catalog,
                    now,
                )?);
            }
            Ok::<_, ProjectionError>(())
        })
        .await?;
    take(rows_of(part, &mut beside, catalog, now)?);
    Ok(())
}

/// The rows of decoded states with what `beside` holds of them.
fn rows_of(
    states: Vec<StateRow>,
    beside: &mut Beside,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<Vec<ProfileRow>, ProjectionError> {
    let decoded = crate::parallel::map(&states, crate::parallel::default_parts(), |state| {
        crate::profiles::decode(&(state.1.clone(), state.2.clone()))
    });
    let mut out = Vec::with_capacity(states.len());
    for ((profile, _, _), doc) in states.into_iter().zip(decoded) {
        let doc = doc?;
        let (computed, spend) = crate::evaluation::computed_and_spend(&doc, catalog, now);
        let consents = CHANNELS
            .iter()
            .flat_map(|c| PURPOSES.iter().map(move |p| (*c, *p)))
            .filter(|(c, p)| doc.consent.reaches(c, p, &catalog.consent.policy).is_some())
            .map(|(c, p)| (c.to_owned(), p.to_owned()))
            .collect();
        out.push(ProfileRow {
            traits: doc
                .traits
                .iter()
                .map(|(name, t)| (name.clone(), t.value.clone()))
                .collect(),
            computed,
            tags: beside.tags.remove(&profile).unwrap_or_default(),
            segments: beside.segments.remove(&profile).unwrap_or_default(),
            consents,
            spend,
            orders: doc
                .counts_by_event
                .get("Order Completed")
                .copied()
                .unwrap_or(0),
            events: beside.events.remove(&profile).unwrap_or(Some(Vec::new())),
            faceted: beside
                .faceted
                .remove(&profile)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, hour, text)| (name, hour, text.as_deref().and_then(parse_facets)))
                .collect(),
            valid_until: doc.next_computed_change(catalog.folded(), now),
            profile,
        });
    }
    Ok(out)
}

/// `(profile, kind, name, UTC hour, events)`.
type EventRow = (String, Option<String>, Option<String>, Option<i64>, i64);
/// `(profile, name, UTC hour, facets)` of a track event.
type FacetRow = (String, Option<String>, Option<i64>, Option<String>);
/// Track events of one name in one UTC hour: `(name, hour, count)`.
type Summary = (String, i32, u32);

/// `text` (ending in `AND profile IN (?...)`) for the named profiles of `workspace`, a chunk at a time.
async fn by_profile<R: Record>(
    store: &Store,
    text: &'static str,
    workspace: &str,
    profiles: &[String],
) -> Result<Vec<R>, ProjectionError> {
    let mut out = Vec::new();
    for chunk in profiles.chunks(CHUNK) {
        let rows: Vec<R> = query(text)
            .bind(workspace)
            .bind(chunk)
            .fetch_all(store.reader())
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// The resolver's stored token: it moves with every batch it commits and with every other writer of
/// the model (`identity::forget_state`).
pub async fn stored_token(store: &Store) -> Result<Option<String>, ProjectionError> {
    crate::projection::resolver_token(store).await
}
