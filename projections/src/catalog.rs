//! Storage of the catalog (computed trait, tag and segment definitions, the consent policy) and of what the resolver derives from it:
//! the backfill and re-evaluation jobs, the tags each profile has, what each profile is worth, when a
//! profile must be looked at again, and the RFM cut points.
//! The resolver writes all of it in the transaction of its batch, each stage its own rows
//! (`crate::stages`: the catalog's here, in `writes`); the API reads it.

use std::collections::BTreeMap;

use cdp_domain::catalog::{Catalog, DefinedConsent, DefinedSegment, DefinedTag, DefinedTrait};
use cdp_domain::computed::TraitDef;
use cdp_domain::consent::ConsentPolicy;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::profile::ProfileDoc;
use cdp_domain::segments::SegmentDef;
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use cdp_domain::tags::{RfmThresholds, TagDef, TagValue};
use serde_json::Value;

use crate::runner::ProjectionError;

mod writes;

pub(crate) use writes::write;
pub use writes::{CatalogWrites, DefinitionRow};

mod segments;
pub(crate) mod sql;
pub use segments::{
    members_page, membership_history, memberships_of, segment_changes_since, segment_sizes,
    Membership, MembershipChange, DAY_MS,
};

/// Definition kinds.
pub const TRAIT: &str = "trait";
pub const TAG: &str = "tag";
pub const SEGMENT: &str = "segment";
/// The workspace's consent policy: one name, [`CONSENT_POLICY`].
pub const CONSENT: &str = "consent";
pub const CONSENT_POLICY: &str = "policy";

/// One stored version of a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    pub name: String,
    pub version: i64,
    /// `None`: deleted.
    pub body: Option<Value>,
    pub defined_at: i64,
}

/// The definitions in force in `workspace` (the newest version of each name, unless deleted).
pub async fn definitions(
    store: &Store,
    workspace: &WorkspaceId,
    kind: &str,
) -> Result<Vec<StoredDefinition>, ProjectionError> {
    definitions_in(store, workspace, kind).await
}

/// [`definitions`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn definitions_in(
    store: &Store,
    workspace: &str,
    kind: &str,
) -> Result<Vec<StoredDefinition>, ProjectionError> {
    let rows: Vec<(String, i64, Option<String>, i64)> = query(sql::NEWEST_DEFINITIONS)
        .bind(workspace)
        .bind(kind)
        .fetch_all(store.reader())
        .await?;
    rows.into_iter()
        .filter(|r| r.2.is_some())
        .map(|(name, version, body, defined_at)| {
            let body = body
                .map(|b| serde_json::from_str(&b).map_err(ProjectionError::corrupt))
                .transpose()?;
            Ok(StoredDefinition {
                name,
                version,
                body,
                defined_at,
            })
        })
        .collect()
}

/// The body of the segment `name`'s newest definition before `version` (`None`: none, or deleted).
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn previous_definition(
    store: &Store,
    workspace: &str,
    name: &str,
    version: i64,
) -> Result<Option<Value>, ProjectionError> {
    let row: Option<(Option<String>,)> = query(sql::SEGMENT_BODY_BEFORE)
        .bind(workspace)
        .bind(name)
        .bind(version)
        .fetch_optional(store.reader())
        .await?;
    row.and_then(|(body,)| body)
        .map(|b| serde_json::from_str(&b).map_err(ProjectionError::corrupt))
        .transpose()
}

/// The catalog in force in `workspace`.
pub async fn load(store: &Store, workspace: &WorkspaceId) -> Result<Catalog, ProjectionError> {
    load_in(store, workspace).await
}

/// [`load`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn load_in(store: &Store, workspace: &str) -> Result<Catalog, ProjectionError> {
    let mut traits = BTreeMap::new();
    for d in definitions_in(store, workspace, TRAIT).await? {
        let body = d.body.unwrap_or_default();
        let def = TraitDef::parse(&body).map_err(ProjectionError::corrupt)?;
        traits.insert(
            d.name,
            DefinedTrait {
                version: d.version,
                def,
            },
        );
    }
    let mut tags = BTreeMap::new();
    for d in definitions_in(store, workspace, TAG).await? {
        let body = d.body.unwrap_or_default();
        let def = TagDef::parse(&body).map_err(ProjectionError::corrupt)?;
        tags.insert(
            d.name,
            DefinedTag {
                version: d.version,
                def,
            },
        );
    }
    let mut segments = BTreeMap::new();
    for d in definitions_in(store, workspace, SEGMENT).await? {
        let body = d.body.unwrap_or_default();
        let def = SegmentDef::parse(&body).map_err(ProjectionError::corrupt)?;
        segments.insert(
            d.name,
            DefinedSegment {
                version: d.version,
                def,
            },
        );
    }
    let consent = consent_policy_in(store, workspace).await?;
    Ok(Catalog::new(traits, tags, segments).with_consent(consent))
}

/// The consent policy in force in `workspace`: the last `set_consent_policy` the resolver applied,
/// else the default (opt-in everywhere).
pub async fn consent_policy(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<DefinedConsent, ProjectionError> {
    consent_policy_in(store, workspace).await
}

/// [`consent_policy`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn consent_policy_in(
    store: &Store,
    workspace: &str,
) -> Result<DefinedConsent, ProjectionError> {
    let Some(d) = definitions_in(store, workspace, CONSENT)
        .await?
        .into_iter()
        .find(|d| d.name == CONSENT_POLICY)
    else {
        return Ok(DefinedConsent::default());
    };
    let policy =
        ConsentPolicy::parse(&d.body.unwrap_or_default()).map_err(ProjectionError::corrupt)?;
    Ok(DefinedConsent {
        version: d.version,
        policy,
    })
}

/// A backfill or re-evaluation job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub workspace: String,
    pub kind: String,
    pub name: String,
    pub version: i64,
    pub cursor: String,
    pub done: i64,
    pub total: i64,
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

type JobRow = (
    String,
    String,
    String,
    i64,
    String,
    i64,
    i64,
    String,
    i64,
    Option<i64>,
);

fn job_of(r: JobRow) -> Job {
    Job {
        workspace: r.0,
        kind: r.1,
        name: r.2,
        version: r.3,
        cursor: r.4,
        done: r.5,
        total: r.6,
        status: r.7,
        started_at: r.8,
        finished_at: r.9,
    }
}

/// The jobs still running, oldest first.
pub async fn running_jobs(store: &Store) -> Result<Vec<Job>, ProjectionError> {
    let rows: Vec<JobRow> = query(sql::RUNNING_JOBS).fetch_all(store.reader()).await?;
    Ok(rows.into_iter().map(job_of).collect())
}

/// The newest job of a definition.
pub async fn latest_job(
    store: &Store,
    workspace: &WorkspaceId,
    kind: &str,
    name: &str,
) -> Result<Option<Job>, ProjectionError> {
    latest_job_in(store, workspace, kind, name).await
}

/// [`latest_job`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn latest_job_in(
    store: &Store,
    workspace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Job>, ProjectionError> {
    let row: Option<JobRow> = query(sql::LATEST_JOB)
        .bind(workspace)
        .bind(kind)
        .bind(name)
        .fetch_optional(store.reader())
        .await?;
    Ok(row.map(job_of))
}

/// A tag a profile has.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileTag {
    pub tag: String,
    pub value: TagValue,
    pub manual: bool,
    pub changed_at: i64,
    pub caused_by: Option<String>,
}

/// A `profile_tags` row: profile, tag, value, detail, manual, changed_at, caused_by.
pub type TagRow = (
    String,
    String,
    String,
    Option<String>,
    bool,
    i64,
    Option<String>,
);

/// Decodes a [`TagRow`] into the profile and its tag.
pub fn tag_of(r: TagRow) -> Result<(String, ProfileTag), ProjectionError> {
    let value = serde_json::from_str(&r.2).map_err(ProjectionError::corrupt)?;
    let detail =
        r.3.map(|d| serde_json::from_str(&d).map_err(ProjectionError::corrupt))
            .transpose()?
            .unwrap_or(Value::Null);
    Ok((
        r.0,
        ProfileTag {
            tag: r.1,
            value: TagValue { value, detail },
            manual: r.4,
            changed_at: r.5,
            caused_by: r.6,
        },
    ))
}

/// The tags of these profiles of `workspace`, by profile.
pub async fn tags_of(
    store: &Store,
    workspace: &WorkspaceId,
    profiles: &[&str],
) -> Result<BTreeMap<String, Vec<ProfileTag>>, ProjectionError> {
    tags_of_in(store, workspace, profiles).await
}

/// [`tags_of`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn tags_of_in(
    store: &Store,
    workspace: &str,
    profiles: &[&str],
) -> Result<BTreeMap<String, Vec<ProfileTag>>, ProjectionError> {
    let mut out: BTreeMap<String, Vec<ProfileTag>> = BTreeMap::new();
    for chunk in profiles.chunks(500) {
        let rows: Vec<TagRow> = query(sql::TAGS_OF)
            .bind(workspace)
            .bind(chunk)
            .fetch_all(store.reader())
            .await?;
        for r in rows {
            let (profile, tag) = tag_of(r)?;
            out.entry(profile).or_default().push(tag);
        }
    }
    Ok(out)
}

/// How many profiles have each value of a tag, and what they spent.
#[derive(Debug, Clone, PartialEq)]
pub struct TagValueStats {
    pub value: Value,
    pub profiles: i64,
    pub spend: f64,
}

pub async fn tag_stats(
    store: &Store,
    workspace: &WorkspaceId,
    tag: &str,
) -> Result<Vec<TagValueStats>, ProjectionError> {
    let rows: Vec<(String, i64, Option<f64>)> = query(sql::TAG_STATS)
        .bind(workspace.as_str())
        .bind(tag)
        .fetch_all(store.reader())
        .await?;
    rows.into_iter()
        .map(|(value, profiles, spend)| {
            Ok(TagValueStats {
                value: serde_json::from_str(&value).map_err(ProjectionError::corrupt)?,
                profiles,
                spend: spend.unwrap_or(0.0),
            })
        })
        .collect()
}

/// The RFM cut points of the quantile-scored RFM tags of `workspace`, with the version of the tag they
/// were computed for and when.
pub async fn thresholds(
    store: &Store,
    workspace: &WorkspaceId,
) -> Result<BTreeMap<String, (i64, i64, RfmThresholds)>, ProjectionError> {
    thresholds_in(store, workspace).await
}

/// [`thresholds`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn thresholds_in(
    store: &Store,
    workspace: &str,
) -> Result<BTreeMap<String, (i64, i64, RfmThresholds)>, ProjectionError> {
    let rows: Vec<(String, i64, i64, String)> = query(sql::THRESHOLDS)
        .bind(workspace)
        .fetch_all(store.reader())
        .await?;
    rows.into_iter()
        .map(|(tag, version, at, body)| {
            let t = serde_json::from_str(&body).map_err(ProjectionError::corrupt)?;
            Ok((tag, (version, at, t)))
        })
        .collect()
}

/// One page of a workspace's live profiles after `cursor`, in id order, with their documents.
pub async fn profiles_after(
    store: &Store,
    workspace: &WorkspaceId,
    cursor: &str,
    limit: i64,
) -> Result<Vec<(String, ProfileDoc)>, ProjectionError> {
    profiles_after_in(store, workspace, cursor, limit).await
}

/// [`profiles_after`] for the engine, which holds workspaces as the events' text.
pub(crate) async fn profiles_after_in(
    store: &Store,
    workspace: &str,
    cursor: &str,
    limit: i64,
) -> Result<Vec<(String, ProfileDoc)>, ProjectionError> {
    let rows: Vec<(String, Option<Vec<u8>>, Option<String>)> = query(sql::PROFILES_AFTER)
        .bind(workspace)
        .bind(cursor)
        .bind(limit)
        .fetch_all(store.reader())
        .await?;
    rows.into_iter()
        .map(|(p, state, doc)| {
            let doc = ProfileDoc::from_stored(state.as_deref(), doc.as_deref())
                .map_err(ProjectionError::corrupt)?;
            Ok((p, doc))
        })
        .collect()
}

/// Profiles whose tags are due to be evaluated again by `now_ms`.
/// Of `workspaces` only when given (a part of the engine's).
pub async fn due(
    store: &Store,
    workspaces: Option<&[String]>,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, ProjectionError> {
    Ok(match workspaces {
        None => {
            query(sql::DUE)
                .bind(now_ms)
                .bind(limit)
                .fetch_all(store.reader())
                .await?
        }
        Some(workspaces) => {
            query(sql::DUE_IN)
                .bind(now_ms)
                .bind(workspaces)
                .bind(limit)
                .fetch_all(store.reader())
                .await?
        }
    })
}

/// The earliest time a profile is due, if any; of `workspaces` only when given.
pub async fn next_due(
    store: &Store,
    workspaces: Option<&[String]>,
) -> Result<Option<i64>, ProjectionError> {
    Ok(match workspaces {
        None => query(sql::NEXT_DUE).scalar(store.reader()).await?,
        Some(workspaces) => {
            query(sql::NEXT_DUE_IN)
                .bind(workspaces)
                .scalar(store.reader())
                .await?
        }
    })
}

/// The workspaces a part of the engine runs, `None` when it is whole (every workspace).
pub async fn workspaces_of(
    store: &Store,
    part: crate::partitions::Part,
) -> Result<Option<Vec<String>>, ProjectionError> {
    if part.count <= 1 {
        return Ok(None);
    }
    let all: Vec<String> = query(sql::ALL_WORKSPACES).scalars(store.reader()).await?;
    Ok(Some(all.into_iter().filter(|w| part.keeps(w)).collect()))
}

/// Workspaces that define tags (where quantile RFM tags may need their cut points measured).
pub async fn workspaces_with_rfm(store: &Store) -> Result<Vec<String>, ProjectionError> {
    Ok(query(sql::WORKSPACES_WITH_RFM)
        .scalars(store.reader())
        .await?)
}

/// How many live profiles a workspace has.
/// `workspace` as the log's text (checked at ingestion): the engine calls it per batch with the
/// workspaces of its events and jobs, so it takes `&str` rather than parse them again.
pub async fn count_profiles(store: &Store, workspace: &str) -> Result<i64, ProjectionError> {
    Ok(query(sql::COUNT_PROFILES)
        .bind(workspace)
        .scalar(store.reader())
        .await?)
}
