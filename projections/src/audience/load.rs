//! Reading the audience index's rows from the engine's tables: each profile's stored state (traits,
//! computed values at a time, consent, orders), its stored tags and segment memberships, and its track
//! events' summaries in `event_profiles` — for a whole workspace, or for the profiles a batch touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_domain::audience::facets::parse_facets;
use cdp_domain::audience::{Names, ProfileRow};
use cdp_domain::catalog::Catalog;
use cdp_domain::consent::{CHANNELS, PURPOSES};
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::profiles::numbered;
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

/// The UTC hour of `event_profiles.event_time` (µs), rounded down also before 1970, in SQL.
const HOUR: &str = "CASE WHEN event_time IS NULL THEN NULL \
    ELSE (event_time - CASE WHEN event_time < 0 THEN 3599999999 ELSE 0 END) / 3600000000 END";

/// The track events of a workspace read one by one: those with facets, and those whose facets are
/// not known (`NULL`: stored before facets were).
const FACETED: &str = "workspace = ? AND kind = 'track' AND (facets IS NULL OR facets <> '{}')";

/// The rows of the named profiles that are live; those missing from the answer are gone.
pub async fn named(
    store: &Store,
    workspace: &str,
    catalog: &Catalog,
    profiles: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<ProfileRow>, ProjectionError> {
    let states: Vec<StateRow> = by_profile(
        store,
        "SELECT profile, state, doc FROM profiles WHERE workspace = ? AND profile",
        workspace,
        profiles,
    )
    .await?;
    let names: Vec<String> = states.iter().map(|s| s.0.clone()).collect();
    let tags = by_profile(
        store,
        "SELECT profile, tag, value FROM profile_tags WHERE workspace = ? AND profile",
        workspace,
        &names,
    )
    .await?;
    let members = by_profile(
        store,
        "SELECT profile, segment FROM segment_members WHERE workspace = ? AND profile",
        workspace,
        &names,
    )
    .await?;
    let events = by_profile(
        store,
        &format!(
            "SELECT profile, kind, name, {HOUR}, CAST(1 AS BIGINT) FROM event_profiles \
             WHERE workspace = ? AND profile"
        ),
        workspace,
        &names,
    )
    .await?;
    let faceted = by_profile(
        store,
        &format!(
            "SELECT profile, name, {HOUR}, facets FROM event_profiles WHERE {FACETED} AND profile"
        ),
        workspace,
        &names,
    )
    .await?;
    let mut beside = Beside::read(tags, members, events, faceted)?;
    rows_of(states, &mut beside, catalog, now)
}

/// Every profile of the workspace, a part at a time to `take`: each table read in one pass (the
/// states streamed, the rest gathered by profile first; events counted per name and hour in SQL).
pub async fn whole(
    store: &Store,
    workspace: &str,
    catalog: &Catalog,
    now: DateTime<Utc>,
    mut take: impl FnMut(Vec<ProfileRow>),
) -> Result<(), ProjectionError> {
    use futures::TryStreamExt;
    let ws = [workspace];
    let tags = query_rows(
        store,
        "SELECT profile, tag, value FROM profile_tags WHERE workspace = ?",
        &ws,
    )
    .await?;
    let members = query_rows(
        store,
        "SELECT profile, segment FROM segment_members WHERE workspace = ?",
        &ws,
    )
    .await?;
    let events = query_rows(
        store,
        &format!(
            "SELECT profile, kind, name, hour, count(*) FROM (SELECT profile, kind, name, {HOUR} AS hour \
             FROM event_profiles WHERE workspace = ? AND (kind = 'track' OR kind IS NULL OR event_time IS NULL)) e \
             GROUP BY profile, kind, name, hour"
        ),
        &ws,
    )
    .await?;
    let faceted = query_rows(
        store,
        &format!("SELECT profile, name, {HOUR}, facets FROM event_profiles WHERE {FACETED}"),
        &ws,
    )
    .await?;
    let mut beside = Beside::read(tags, members, events, faceted)?;
    let sql = "SELECT profile, state, doc FROM profiles WHERE workspace = ?";
    let mut part: Vec<StateRow> = Vec::with_capacity(PAGE);
    macro_rules! stream {
        ($rows:expr) => {{
            let mut rows = $rows;
            while let Some(row) = rows.try_next().await? {
                part.push(row);
                if part.len() == PAGE {
                    take(rows_of(
                        std::mem::take(&mut part),
                        &mut beside,
                        catalog,
                        now,
                    )?);
                }
            }
        }};
    }
    match store {
        Store::Sqlite(s) => stream!(sqlx::query_as::<_, StateRow>(sql)
            .bind(workspace)
            .fetch(s.read_pool())),
        Store::Postgres(s) => {
            let sql = numbered(sql);
            stream!(sqlx::query_as::<_, StateRow>(&sql)
                .bind(workspace)
                .fetch(s.pool()))
        }
    }
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

async fn query_rows<R>(store: &Store, sql: &str, binds: &[&str]) -> Result<Vec<R>, ProjectionError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    Ok(match store {
        Store::Sqlite(s) => {
            let mut q = sqlx::query_as::<_, R>(sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_all(s.read_pool()).await?
        }
        Store::Postgres(s) => {
            let sql = numbered(sql);
            let mut q = sqlx::query_as::<_, R>(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_all(s.pool()).await?
        }
    })
}

/// `sql` (ending in `AND profile`) for the named profiles of `workspace`: `= ANY(..)` on PostgreSQL,
/// `IN (..)` with one placeholder per profile on SQLite, a chunk at a time.
async fn by_profile<R>(
    store: &Store,
    sql: &str,
    workspace: &str,
    profiles: &[String],
) -> Result<Vec<R>, ProjectionError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    let mut out = Vec::new();
    for chunk in profiles.chunks(CHUNK) {
        match store {
            Store::Sqlite(s) => {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql = format!("{sql} IN ({marks})");
                let mut q = sqlx::query_as::<_, R>(&sql).bind(workspace);
                for p in chunk {
                    q = q.bind(p);
                }
                out.extend(q.fetch_all(s.read_pool()).await?);
            }
            Store::Postgres(s) => {
                let sql = format!("{} = ANY($2)", numbered(sql));
                let rows = sqlx::query_as::<_, R>(&sql)
                    .bind(workspace)
                    .bind(chunk)
                    .fetch_all(s.pool())
                    .await?;
                out.extend(rows);
            }
        }
    }
    Ok(out)
}

/// The resolver's stored token: it moves with every batch it commits and with every other writer of
/// the model (`identity::forget_state`).
pub async fn stored_token(store: &Store) -> Result<Option<String>, ProjectionError> {
    let sql = "SELECT token FROM projection_tokens WHERE name = ?";
    let rows: Vec<(String,)> = query_rows(store, sql, &[crate::runner::RESOLVER]).await?;
    Ok(rows.into_iter().next().map(|(t,)| t))
}
