//! Reading the audience index's rows from the engine's tables: each profile's stored state (traits,
//! computed values at a time, consent, orders), its stored tags and segment memberships, and its track
//! events' summaries in `event_profiles` — for a whole workspace, or for the profiles a batch touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_domain::audience::{hour_of_micros, Names, ProfileRow};
use cdp_domain::catalog::{Catalog, SPEND_TRAIT};
use cdp_domain::consent::{CHANNELS, PURPOSES};
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::profiles::numbered;
use crate::runner::ProjectionError;

/// Profiles read per query when a whole workspace is loaded.
const PAGE: i64 = 10_000;
/// Profiles named per query when some are read again.
const CHUNK: usize = 500;

/// The names a catalog resolves `{"trait": x}` through.
pub fn names_of(catalog: &Catalog) -> Names {
    Names {
        computed: catalog.folded().keys().cloned().collect(),
        tags: catalog.tags.keys().cloned().collect(),
    }
}

/// Which profiles to read.
pub enum Which<'a> {
    /// Every profile of the workspace after this id (a page).
    After(&'a str),
    /// These profiles.
    Named(&'a [String]),
}

type StateRow = (String, Option<Vec<u8>>, Option<String>);

/// The rows of a page of the workspace's profiles (`After`) or of the named ones that are live. The
/// profiles of `Named` missing from the answer are gone.
pub async fn rows(
    store: &Store,
    workspace: &str,
    catalog: &Catalog,
    which: Which<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<ProfileRow>, ProjectionError> {
    let states: Vec<StateRow> = match which {
        Which::After(cursor) => {
            query_rows(
                store,
                "SELECT profile, state, doc FROM profiles WHERE workspace = ? AND profile > ? \
                 ORDER BY profile LIMIT ?",
                &[Bind::Text(workspace), Bind::Text(cursor), Bind::Int(PAGE)],
            )
            .await?
        }
        Which::Named(profiles) => {
            by_profile(
                store,
                "SELECT profile, state, doc FROM profiles WHERE workspace = ? AND profile",
                workspace,
                profiles,
            )
            .await?
        }
    };
    let Some(first) = states.first().map(|s| s.0.clone()) else {
        return Ok(Vec::new());
    };
    let last = states.last().map(|s| s.0.clone()).unwrap_or_default();
    let names: Vec<String> = states.iter().map(|s| s.0.clone()).collect();
    let (tags, members, events) = match which {
        // A page: its profiles are a range of ids, read as one.
        Which::After(_) => (
            query_rows::<(String, String, String)>(
                store,
                "SELECT profile, tag, value FROM profile_tags \
                 WHERE workspace = ? AND profile >= ? AND profile <= ?",
                &[Bind::Text(workspace), Bind::Text(&first), Bind::Text(&last)],
            )
            .await?,
            query_rows::<(String, String)>(
                store,
                "SELECT profile, segment FROM segment_members \
                 WHERE workspace = ? AND profile >= ? AND profile <= ?",
                &[Bind::Text(workspace), Bind::Text(&first), Bind::Text(&last)],
            )
            .await?,
            query_rows::<EventRow>(
                store,
                "SELECT profile, kind, name, event_time FROM event_profiles \
                 WHERE workspace = ? AND profile >= ? AND profile <= ?",
                &[Bind::Text(workspace), Bind::Text(&first), Bind::Text(&last)],
            )
            .await?,
        ),
        Which::Named(_) => (
            by_profile(
                store,
                "SELECT profile, tag, value FROM profile_tags WHERE workspace = ? AND profile",
                workspace,
                &names,
            )
            .await?,
            by_profile(
                store,
                "SELECT profile, segment FROM segment_members WHERE workspace = ? AND profile",
                workspace,
                &names,
            )
            .await?,
            by_profile(
                store,
                "SELECT profile, kind, name, event_time FROM event_profiles \
                 WHERE workspace = ? AND profile",
                workspace,
                &names,
            )
            .await?,
        ),
    };
    let mut tags_of: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
    for (p, tag, value) in tags {
        let value = serde_json::from_str(&value).map_err(ProjectionError::corrupt)?;
        tags_of.entry(p).or_default().insert(tag, value);
    }
    let mut segments_of: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (p, segment) in members {
        segments_of.entry(p).or_default().insert(segment);
    }
    let mut events_of: HashMap<String, Option<Vec<Summary>>> = HashMap::new();
    for (p, kind, name, event_time) in events {
        let known = events_of.entry(p).or_insert_with(|| Some(Vec::new()));
        match (kind.as_deref(), name, event_time) {
            (Some("track"), Some(name), Some(t)) => {
                if let Some(list) = known {
                    list.push((name, hour_of_micros(t), 1));
                }
            }
            // Another kind of message: nothing an event condition counts.
            (Some(_), _, Some(_)) => {}
            // A row written before events had summaries.
            _ => *known = None,
        }
    }
    let decoded = crate::parallel::map(&states, crate::parallel::default_parts(), |state| {
        crate::profiles::decode(&(state.1.clone(), state.2.clone()))
    });
    let mut out = Vec::with_capacity(states.len());
    for ((profile, _, _), doc) in states.into_iter().zip(decoded) {
        let doc = doc?;
        let computed: BTreeMap<String, Value> = doc
            .computed_values(catalog.folded(), now)
            .into_iter()
            .map(|(name, v)| (name, v.value))
            .collect();
        let spend = computed
            .get(SPEND_TRAIT)
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let consents = CHANNELS
            .iter()
            .flat_map(|c| PURPOSES.iter().map(move |p| (*c, *p)))
            .filter(|(c, p)| doc.consent.allows(c, p))
            .map(|(c, p)| (c.to_owned(), p.to_owned()))
            .collect();
        out.push(ProfileRow {
            traits: doc
                .traits
                .iter()
                .map(|(name, t)| (name.clone(), t.value.clone()))
                .collect(),
            computed,
            tags: tags_of.remove(&profile).unwrap_or_default(),
            segments: segments_of.remove(&profile).unwrap_or_default(),
            consents,
            spend,
            orders: doc
                .counts_by_event
                .get("Order Completed")
                .copied()
                .unwrap_or(0),
            events: events_of.remove(&profile).unwrap_or(Some(Vec::new())),
            valid_until: doc.next_computed_change(catalog.folded(), now),
            profile,
        });
    }
    Ok(out)
}

type EventRow = (String, Option<String>, Option<String>, Option<i64>);
/// Track events of one name in one UTC hour: `(name, hour, count)`.
type Summary = (String, i32, u32);

/// A bound parameter.
enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

async fn query_rows<R>(
    store: &Store,
    sql: &str,
    binds: &[Bind<'_>],
) -> Result<Vec<R>, ProjectionError>
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
                q = match b {
                    Bind::Text(t) => q.bind(*t),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(s.read_pool()).await?
        }
        Store::Postgres(s) => {
            let sql = numbered(sql);
            let mut q = sqlx::query_as::<_, R>(&sql);
            for b in binds {
                q = match b {
                    Bind::Text(t) => q.bind(*t),
                    Bind::Int(i) => q.bind(*i),
                };
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
    let rows: Vec<(String,)> = query_rows(
        store,
        sql,
        &[Bind::Text(crate::identity::IdentityResolver::NAME)],
    )
    .await?;
    Ok(rows.into_iter().next().map(|(t,)| t))
}
