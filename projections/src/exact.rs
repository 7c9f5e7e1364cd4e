//! Answers folded from the events for the API, beside the engine's stored model: a segment
//! definition evaluated over every live profile before it is saved (the exact path of
//! `POST /v1/segments/preview`, when the audience index cannot answer), and a profile's segments at a
//! past time ("was this customer in the segment then").

use std::collections::BTreeMap;

use cdp_domain::catalog::Catalog;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::profile::{FoldRules, ProfileDoc};
use cdp_domain::store::Store;
use cdp_domain::tags::RfmThresholds;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog;
use crate::evaluation::derive::evaluate;
use crate::evaluation::derive::parse_profile;
use crate::jobs::backfill;
use crate::profiles;
use crate::runner::ProjectionError;

/// What a segment definition would hold, evaluated over every live profile of a workspace without
/// saving it (`POST /v1/segments/preview`).
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Profiles in the segment.
    pub count: i64,
    /// Profiles looked at.
    pub profiles: i64,
    /// Up to `sample` members, in profile id order.
    pub sample: Vec<String>,
    /// What the members spent (the built-in spend) and how many orders they placed.
    pub spend: f64,
    pub orders: u64,
    /// Every member.
    pub members: Vec<String>,
}

/// The id a previewed definition is evaluated under.
pub const PREVIEW: &str = "~preview";

/// Evaluates `def` on every live profile of `workspace` as it stands: event conditions are folded from
/// each profile's events (as a backfill would), other conditions read the profile, its computed traits,
/// tags and the segments in force.
#[tracing::instrument(name = "segment.preview", skip_all, fields(workspace = %workspace))]
pub async fn preview(
    store: &Store,
    workspace: &WorkspaceId,
    def: &cdp_domain::segments::SegmentDef,
    sample: usize,
    now: DateTime<Utc>,
) -> Result<Preview, ProjectionError> {
    let stored = catalog::load_in(store, workspace).await?;
    let mut segments = stored.segments.clone();
    segments.insert(
        PREVIEW.to_owned(),
        cdp_domain::catalog::DefinedSegment {
            version: i64::MAX,
            def: def.clone(),
        },
    );
    let cat = Catalog::new(stored.traits.clone(), stored.tags.clone(), segments)
        .with_consent(stored.consent.clone());
    let thresholds: BTreeMap<String, RfmThresholds> = catalog::thresholds_in(store, workspace)
        .await?
        .into_iter()
        .map(|(tag, (_, _, t))| (tag, t))
        .collect();
    let mut out = Preview {
        count: 0,
        profiles: 0,
        sample: Vec::new(),
        spend: 0.0,
        orders: 0,
        members: Vec::new(),
    };
    let mut after = String::new();
    loop {
        let page = catalog::profiles_after_in(store, workspace, &after, 1_000).await?;
        let Some((last, _)) = page.last() else {
            return Ok(out);
        };
        after = last.clone();
        let mut docs = Vec::with_capacity(page.len());
        for (p, doc) in page {
            docs.push((parse_profile(&p)?, doc));
        }
        backfill(store, &cat, workspace, &mut docs).await?;
        let names: Vec<&str> = docs.iter().map(|(p, _)| p.as_str()).collect();
        let tags = catalog::tags_of_in(store, workspace, &names).await?;
        for (p, doc) in &docs {
            let manual: BTreeMap<String, Value> = tags
                .get(p.as_str())
                .into_iter()
                .flatten()
                .filter(|t| t.manual)
                .map(|t| (t.tag.clone(), t.value.value.clone()))
                .collect();
            let eval = evaluate(doc, &cat, &manual, &thresholds, now);
            out.profiles += 1;
            if eval.segments.contains(PREVIEW) {
                out.count += 1;
                out.spend += eval.spend;
                out.orders += doc
                    .counts_by_event
                    .get("Order Completed")
                    .copied()
                    .unwrap_or(0);
                if out.sample.len() < sample {
                    out.sample.push(p.to_string());
                }
                out.members.push(p.to_string());
            }
        }
    }
}

/// What a profile's events up to a time make of it, by event time: see [`segments_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct AsOf {
    /// The segments the profile's events up to the time put it in, under today's definitions.
    pub segments: Vec<String>,
    /// Its events that had happened by then.
    pub events: usize,
    /// The latest of them: (message id, event name or kind, event time).
    pub latest: Option<(String, String, DateTime<Utc>)>,
}

/// "Was this customer in the segment then": the profile's document folded from its events that had
/// happened by `at` (event time, whenever they arrived — a backfilled order of 2023 counts in 2023),
/// evaluated at `at` under the definitions in force now (manual tags and RFM cut points as they stand).
/// The recorded membership history says what the platform published and when; this says what the
/// customer's history made them at that moment, also before a segment was defined.
pub async fn segments_at(
    store: &Store,
    workspace: &cdp_domain::ident::WorkspaceId,
    profile: &cdp_domain::identity::ProfileId,
    at: DateTime<Utc>,
) -> Result<AsOf, ProjectionError> {
    use cdp_domain::identity::identifiers_of;
    use cdp_domain::message::MessageKind;
    let cat = catalog::load_in(store, workspace).await?;
    let thresholds: BTreeMap<String, RfmThresholds> = catalog::thresholds_in(store, workspace)
        .await?
        .into_iter()
        .map(|(tag, (_, _, t))| (tag, t))
        .collect();
    let rules = crate::identity::rules_of(store, workspace).await?;
    let seqs = profiles::events_of(store, workspace, std::slice::from_ref(profile)).await?;
    let mut events: Vec<_> = store
        .events_by_seq(&seqs)
        .await?
        .into_iter()
        .filter(|e| e.event.kind != MessageKind::Operator && e.event.event_time <= at)
        .collect();
    events.sort_by_key(|e| (e.event.event_time, e.position.seq));
    let fold = FoldRules {
        source_priority: &rules.source_priority,
        traits: cat.folded(),
    };
    let mut doc = ProfileDoc::default();
    for stored in &events {
        let e = &stored.event;
        let payload: Value = serde_json::from_str(&e.payload).map_err(ProjectionError::corrupt)?;
        let carried = identifiers_of(
            &payload,
            e.user_id.as_deref(),
            e.anonymous_id.as_deref(),
            &rules,
        );
        doc.apply(e, &payload, &carried, fold);
    }
    let tags = catalog::tags_of_in(store, workspace, &[profile.as_str()]).await?;
    let manual: BTreeMap<String, Value> = tags
        .get(profile.as_str())
        .into_iter()
        .flatten()
        .filter(|t| t.manual)
        .map(|t| (t.tag.clone(), t.value.value.clone()))
        .collect();
    let eval = evaluate(&doc, &cat, &manual, &thresholds, at);
    Ok(AsOf {
        segments: eval
            .segments
            .into_iter()
            .filter(|s| cat.segments.contains_key(s))
            .collect(),
        events: events.len(),
        latest: events.last().map(|s| {
            let e = &s.event;
            (
                e.message_id.clone(),
                e.name.clone().unwrap_or_else(|| e.kind.as_str().to_owned()),
                e.event_time,
            )
        }),
    })
}
