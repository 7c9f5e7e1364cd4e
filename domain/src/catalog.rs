//! A workspace's catalog — its computed traits, tags and segments — and the operator commands that change it.
//!
//! Definitions are events of the log like every other operator command (`MessageKind::Operator`), so the
//! resolver takes them in their place in the global order: the events before a definition are folded
//! without it (and backfilled), those after it with it, and replaying the log gives the same profiles.
//! A definition's version is the log sequence number of the command that made it. The workspace's
//! consent policy is such a command too (`set_consent_policy`, appended at start when `CDP_CONFIG`
//! changes it), for the same reason: segment conditions on consent read it, and a rebuild must meet
//! the policy where the live resolver did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::computed::{DefinitionError, TraitDef};
use crate::consent::ConsentPolicy;
use crate::identity::ProfileId;
use crate::segments::SegmentDef;
use crate::tags::TagDef;

/// The hidden computed trait every workspace keeps: what a profile has spent (the sum of
/// `properties.total` of its `Order Completed` events), shown as the value of a tag's population.
pub const SPEND_TRAIT: &str = "~spend";
/// The version of the built-in traits (they never change).
pub const BUILT_IN_VERSION: i64 = 0;

/// An operator command on the catalog, as the log stores it (tagged by `command`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum CatalogCommand {
    PutTrait {
        name: String,
        definition: Value,
        actor: String,
    },
    DeleteTrait {
        name: String,
        actor: String,
    },
    PutTag {
        name: String,
        definition: Value,
        actor: String,
    },
    DeleteTag {
        name: String,
        actor: String,
    },
    /// A manual tag set on a profile (store staff tagging a member).
    TagProfile {
        profile_id: ProfileId,
        tag: String,
        value: Value,
        actor: String,
    },
    UntagProfile {
        profile_id: ProfileId,
        tag: String,
        actor: String,
    },
    PutSegment {
        id: String,
        definition: Value,
        actor: String,
    },
    DeleteSegment {
        id: String,
        actor: String,
    },
    /// The workspace's consent policy (`ConsentPolicy::to_json`), from `CDP_CONFIG`'s
    /// `[workspace.consent]`: what silence means on each channel and purpose.
    SetConsentPolicy {
        policy: Value,
        actor: String,
    },
}

impl CatalogCommand {
    pub fn name(&self) -> &'static str {
        match self {
            CatalogCommand::PutTrait { .. } => "put_trait",
            CatalogCommand::DeleteTrait { .. } => "delete_trait",
            CatalogCommand::PutTag { .. } => "put_tag",
            CatalogCommand::DeleteTag { .. } => "delete_tag",
            CatalogCommand::TagProfile { .. } => "tag_profile",
            CatalogCommand::UntagProfile { .. } => "untag_profile",
            CatalogCommand::PutSegment { .. } => "put_segment",
            CatalogCommand::DeleteSegment { .. } => "delete_segment",
            CatalogCommand::SetConsentPolicy { .. } => "set_consent_policy",
        }
    }

    /// Whether a command payload (an operator event's JSON) is a catalog command.
    pub fn is_catalog(payload: &Value) -> bool {
        matches!(
            payload.get("command").and_then(Value::as_str),
            Some(
                "put_trait"
                    | "delete_trait"
                    | "put_tag"
                    | "delete_tag"
                    | "tag_profile"
                    | "untag_profile"
                    | "put_segment"
                    | "delete_segment"
                    | "set_consent_policy"
            )
        )
    }
}

/// A name of a trait or tag a user defines: 1–64 of `a-z A-Z 0-9 _ - .`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), DefinitionError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(DefinitionError {
            field: "name".into(),
            message: "1-64 letters, digits, '_', '-' or '.', starting with a letter".into(),
        })
    }
}

/// A computed trait in force: its definition and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinedTrait {
    pub version: i64,
    pub def: TraitDef,
}

/// A tag in force.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinedTag {
    pub version: i64,
    pub def: TagDef,
}

/// A segment in force.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinedSegment {
    pub version: i64,
    pub def: SegmentDef,
}

/// The consent policy in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefinedConsent {
    /// The log position of the command that set it; [`BUILT_IN_VERSION`]: never set (opt-in).
    pub version: i64,
    pub policy: ConsentPolicy,
}

/// The definitions in force in one workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Computed traits the workspace defined.
    pub traits: BTreeMap<String, DefinedTrait>,
    pub tags: BTreeMap<String, DefinedTag>,
    pub segments: BTreeMap<String, DefinedSegment>,
    /// What a customer's silence means on each channel and purpose: segment conditions on consent
    /// read it as the outputs do.
    pub consent: DefinedConsent,
    /// Every trait folded into profiles: the defined ones, the ones tags and segments need (RFM inputs,
    /// event conditions), and the built-in.
    folded: BTreeMap<String, DefinedTrait>,
}

impl Catalog {
    pub fn new(
        traits: BTreeMap<String, DefinedTrait>,
        tags: BTreeMap<String, DefinedTag>,
        segments: BTreeMap<String, DefinedSegment>,
    ) -> Catalog {
        let mut folded = traits.clone();
        folded.insert(SPEND_TRAIT.to_owned(), spend_trait());
        for (name, tag) in &tags {
            for (hidden, def) in tag.def.hidden_traits(name) {
                folded.insert(
                    hidden,
                    DefinedTrait {
                        version: tag.version,
                        def,
                    },
                );
            }
        }
        for (id, segment) in &segments {
            for (hidden, def) in segment.def.hidden_traits(id) {
                folded.insert(
                    hidden,
                    DefinedTrait {
                        version: segment.version,
                        def,
                    },
                );
            }
        }
        Catalog {
            traits,
            tags,
            segments,
            consent: DefinedConsent::default(),
            folded,
        }
    }

    /// The catalog under the consent policy `consent`.
    pub fn with_consent(mut self, consent: DefinedConsent) -> Catalog {
        self.consent = consent;
        self
    }

    /// Whether a saved segment reads consent: only then does a change of policy change members.
    pub fn reads_consent(&self) -> bool {
        self.segments.values().any(|s| s.def.reads_consent())
    }

    /// Every trait folded into the profiles of the workspace, by name.
    pub fn folded(&self) -> &BTreeMap<String, DefinedTrait> {
        &self.folded
    }

    /// Whether `name` is a trait a user defined (not one of the hidden ones).
    pub fn is_visible(name: &str) -> bool {
        !name.starts_with('~') && !name.contains(':')
    }
}

fn spend_trait() -> DefinedTrait {
    let def = TraitDef::parse(&json!({
        "event": "Order Completed",
        "function": "sum",
        "property": "properties.total",
    }))
    .expect("the built-in spend trait is a valid definition");
    DefinedTrait {
        version: BUILT_IN_VERSION,
        def,
    }
}
