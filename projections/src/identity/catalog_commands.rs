//! Catalog commands in the resolver's batch: deciding them against the catalog as the batch has changed
//! it so far (a refusal is recorded like any refused command), applying them (the definition, the job
//! that brings every profile up to it, a manual tag change).

use std::collections::{BTreeMap, HashMap};

use cdp_domain::catalog::{
    check_name, Catalog, CatalogCommand, DefinedConsent, DefinedSegment, DefinedTag, DefinedTrait,
};
use cdp_domain::computed::TraitDef;
use cdp_domain::consent::ConsentPolicy;
use cdp_domain::event::StoredEvent;
use cdp_domain::identity::{IdentityEvent, IdentityGraph};
use cdp_domain::segments::{segment_cycle, SegmentDef};
use cdp_domain::tags::{cycle, TagDef};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::catalog::{self as stored_catalog, CatalogWrites};
use crate::evaluation::derive::ManualChange;
use crate::jobs::new_job;

/// The decisions on a catalog command: none when it applies, a refusal when it cannot (a definition
/// that no longer parses, a profile that does not exist, a tag that is not manual).
pub(super) fn decide_catalog(
    graph: &IdentityGraph,
    catalog: Option<&Catalog>,
    stored: &StoredEvent,
    payload: Value,
) -> (Option<CatalogCommand>, Vec<IdentityEvent>) {
    let e = &stored.event;
    let rejected = |command: &str, reason: String| {
        (
            None,
            vec![IdentityEvent::CommandRejected {
                command: command.to_owned(),
                reason,
                caused_by: e.message_id.clone(),
            }],
        )
    };
    let command: CatalogCommand = match serde_json::from_value(payload) {
        Ok(c) => c,
        Err(err) => return rejected("unknown", format!("not a command: {err}")),
    };
    let name = command.name();
    let refusal = match &command {
        CatalogCommand::PutTrait {
            name: n,
            definition,
            ..
        } => check_name(n)
            .and_then(|()| TraitDef::parse(definition).map(|_| ()))
            .err()
            .map(|err| err.to_string()),
        CatalogCommand::PutTag {
            name: n,
            definition,
            ..
        } => match check_name(n).and_then(|()| TagDef::parse(definition)) {
            Err(err) => Some(err.to_string()),
            Ok(def) => {
                let mut defs: BTreeMap<String, TagDef> = catalog
                    .map(|c| {
                        c.tags
                            .iter()
                            .map(|(k, t)| (k.clone(), t.def.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                defs.insert(n.clone(), def);
                cycle(&defs, n).map(|path| format!("the tag reads itself: {}", path.join(" -> ")))
            }
        },
        CatalogCommand::TagProfile {
            profile_id, tag, ..
        }
        | CatalogCommand::UntagProfile {
            profile_id, tag, ..
        } => {
            let manual = catalog
                .and_then(|c| c.tags.get(tag))
                .is_some_and(|t| t.def == TagDef::Manual);
            if !graph.knows(profile_id) {
                Some(format!("profile {profile_id} does not exist"))
            } else if !manual {
                Some(format!("{tag} is not a manual tag"))
            } else {
                None
            }
        }
        CatalogCommand::PutSegment { id, definition, .. } => {
            match check_name(id).and_then(|()| SegmentDef::parse(definition)) {
                Err(err) => Some(err.to_string()),
                Ok(def) => {
                    let mut defs: BTreeMap<String, SegmentDef> = catalog
                        .map(|c| {
                            c.segments
                                .iter()
                                .map(|(k, s)| (k.clone(), s.def.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let unknown = def
                        .references()
                        .into_iter()
                        .find(|r| r != id && !defs.contains_key(r));
                    defs.insert(id.clone(), def);
                    match unknown {
                        Some(r) => Some(format!("no segment {r:?}")),
                        None => segment_cycle(&defs, id)
                            .map(|path| format!("the segment reads itself: {}", path.join(" -> "))),
                    }
                }
            }
        }
        CatalogCommand::SetConsentPolicy { policy, .. } => ConsentPolicy::parse(policy).err(),
        CatalogCommand::DeleteTrait { .. }
        | CatalogCommand::DeleteTag { .. }
        | CatalogCommand::DeleteSegment { .. } => None,
    };
    match refusal {
        Some(reason) => rejected(name, reason),
        None => (Some(command), Vec::new()),
    }
}

/// Applies a catalog command to the workspace's catalog, recording the definition and the job that
/// brings every profile up to it (for a consent policy, only when a segment reads consent). Returns
/// the manual tag change it makes, if any.
pub(super) fn apply_catalog(
    command: &CatalogCommand,
    stored: &StoredEvent,
    catalogs: &mut HashMap<String, Catalog>,
    writes: &mut CatalogWrites,
    now: DateTime<Utc>,
) -> Option<ManualChange> {
    let e = &stored.event;
    let ws = &e.workspace;
    let version = stored.position.seq;
    let catalog = catalogs.entry(ws.clone()).or_default();
    let mut traits = catalog.traits.clone();
    let mut tags = catalog.tags.clone();
    let mut segments = catalog.segments.clone();
    let (kind, name, body) = match command {
        CatalogCommand::PutTrait {
            name, definition, ..
        } => {
            let def = TraitDef::parse(definition).ok()?;
            let body = def.to_json().to_string();
            traits.insert(name.clone(), DefinedTrait { version, def });
            (stored_catalog::TRAIT, name, Some(body))
        }
        CatalogCommand::DeleteTrait { name, .. } => {
            traits.remove(name)?;
            (stored_catalog::TRAIT, name, None)
        }
        CatalogCommand::PutTag {
            name, definition, ..
        } => {
            let def = TagDef::parse(definition).ok()?;
            let body = def.to_json().to_string();
            tags.insert(name.clone(), DefinedTag { version, def });
            (stored_catalog::TAG, name, Some(body))
        }
        CatalogCommand::DeleteTag { name, .. } => {
            tags.remove(name)?;
            (stored_catalog::TAG, name, None)
        }
        CatalogCommand::PutSegment { id, definition, .. } => {
            let def = SegmentDef::parse(definition).ok()?;
            let body = def.to_json().to_string();
            segments.insert(id.clone(), DefinedSegment { version, def });
            (stored_catalog::SEGMENT, id, Some(body))
        }
        CatalogCommand::DeleteSegment { id, .. } => {
            segments.remove(id)?;
            (stored_catalog::SEGMENT, id, None)
        }
        CatalogCommand::SetConsentPolicy { policy, .. } => {
            let policy = ConsentPolicy::parse(policy).ok()?;
            // Members change only where a segment reads consent: then every profile is evaluated
            // again under the new policy (a job, as for a changed segment). A segment defined later
            // is evaluated under the policy in force by its own job.
            let job = catalog.reads_consent();
            catalog.consent = DefinedConsent {
                version,
                policy: policy.clone(),
            };
            writes.definitions.push(crate::catalog::DefinitionRow {
                workspace: ws.clone(),
                kind: stored_catalog::CONSENT,
                name: stored_catalog::CONSENT_POLICY.to_owned(),
                version,
                body: Some(policy.to_json().to_string()),
                defined_at: cdp_domain::event::to_millis(e.received_at),
            });
            if job {
                writes.jobs.push(new_job(
                    ws,
                    stored_catalog::CONSENT,
                    stored_catalog::CONSENT_POLICY,
                    version,
                    now,
                ));
            }
            return None;
        }
        CatalogCommand::TagProfile {
            profile_id,
            tag,
            value,
            ..
        } => {
            return Some(ManualChange {
                key: (ws.clone(), profile_id.clone()),
                tag: tag.clone(),
                value: Some(value.clone()),
                caused_by: e.message_id.clone(),
            })
        }
        CatalogCommand::UntagProfile {
            profile_id, tag, ..
        } => {
            return Some(ManualChange {
                key: (ws.clone(), profile_id.clone()),
                tag: tag.clone(),
                value: None,
                caused_by: e.message_id.clone(),
            })
        }
    };
    let consent = std::mem::take(&mut catalog.consent);
    *catalog = Catalog::new(traits, tags, segments).with_consent(consent);
    writes.definitions.push(crate::catalog::DefinitionRow {
        workspace: ws.clone(),
        kind,
        name: name.clone(),
        version,
        body,
        defined_at: cdp_domain::event::to_millis(e.received_at),
    });
    writes.jobs.push(new_job(ws, kind, name, version, now));
    None
}
