//! Identity decisions as events: what resolution decided, with the identifier, the message and the rule
//! version that caused it, so that replaying them reproduces the graph exactly even after the rules change.
//!
//! The JSON form (format version [`IDENTITY_EVENT_VERSION`]) is tagged by `kind`; change it only by adding
//! fields with defaults or new kinds: recorded decisions are never rewritten.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ident::IdentError;

/// The version of the JSON form of [`IdentityEvent`] written by this code.
pub const IDENTITY_EVENT_VERSION: i16 = 1;

/// A profile id: 1–128 characters, none of them whitespace or control characters. Shared, not copied:
/// the engine keeps a profile's id in several maps at once (the graph's owners and profiles, the held
/// states), and a clone is a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProfileId(Arc<str>);

impl ProfileId {
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(IdentError(format!(
                "profile id {raw:?} must be 1-128 characters without whitespace"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProfileId {
    type Error = IdentError;

    fn try_from(raw: String) -> Result<Self, IdentError> {
        Self::parse(&raw)
    }
}

impl From<ProfileId> for String {
    fn from(id: ProfileId) -> String {
        id.0.as_ref().to_owned()
    }
}

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised identifier: its type and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub id_type: String,
    pub value: String,
}

impl Identifier {
    pub fn new(id_type: &str, value: &str) -> Self {
        Self {
            id_type: id_type.to_owned(),
            value: value.to_owned(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.id_type, self.value)
    }
}

/// Why a merge or a link was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The connecting identifier's type may link but never merge.
    TypeMayNotMerge,
    /// The result would hold more values of a type than its limit allows.
    LimitExceeded,
    /// The profile has reached the cap on merges.
    MergeCap,
    /// The profile has reached the cap on identifiers.
    IdentifierCap,
    /// An operator split these profiles apart; only an operator merge joins them again.
    KeptApart,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TypeMayNotMerge => "type may not merge",
            RejectReason::LimitExceeded => "limit exceeded",
            RejectReason::MergeCap => "merge cap reached",
            RejectReason::IdentifierCap => "identifier cap reached",
            RejectReason::KeptApart => "kept apart by an operator split",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identity decision. `caused_by` is the message id of the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdentityEvent {
    ProfileCreated {
        profile: ProfileId,
        caused_by: String,
    },
    IdentifierLinked {
        profile: ProfileId,
        id_type: String,
        value: String,
        caused_by: String,
        rule_version: u64,
    },
    /// `absorbed` now resolves to `survivor`, the earlier of the two. `via` is the identifier that joined
    /// them; an operator merge or a rules change has none and says why in `reason`. `by_operator` marks
    /// an operator's merge, which no rules change undoes.
    ProfilesMerged {
        survivor: ProfileId,
        absorbed: ProfileId,
        via: Option<Identifier>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_operator: bool,
        caused_by: String,
        rule_version: u64,
    },
    /// `identifiers` moved from `from` to the new profile `into`, and with them the events that carried
    /// them. When `keep_apart` (an operator split), no identifier joins the two again; only an operator
    /// merge does.
    ProfileSplit {
        from: ProfileId,
        into: ProfileId,
        identifiers: Vec<Identifier>,
        keep_apart: bool,
        reason: String,
        caused_by: String,
        rule_version: u64,
    },
    /// The profile, and every profile merged into it, was erased (the right to be forgotten): it is gone
    /// from the graph, its identifiers are free, and the decisions about it keep no identifier value.
    /// `caused_by` is the erasure's id (`erasure_<seq>`), not a customer message.
    ProfileErased {
        profile: ProfileId,
        caused_by: String,
    },
    /// An operator command that could not be carried out as the graph stood when it was processed.
    CommandRejected {
        command: String,
        reason: String,
        caused_by: String,
    },
    /// `profiles` stay apart; `evidence` holds the identifiers that would have joined or conflicted.
    MergeRejected {
        profiles: Vec<ProfileId>,
        reason: RejectReason,
        evidence: Vec<Identifier>,
        caused_by: String,
        rule_version: u64,
    },
    /// The identifier was not linked to `profile`.
    LinkRejected {
        profile: ProfileId,
        id_type: String,
        value: String,
        reason: RejectReason,
        caused_by: String,
        rule_version: u64,
    },
}

impl IdentityEvent {
    /// The message id of the event that caused this decision.
    pub fn caused_by(&self) -> &str {
        match self {
            IdentityEvent::ProfileCreated { caused_by, .. }
            | IdentityEvent::IdentifierLinked { caused_by, .. }
            | IdentityEvent::ProfilesMerged { caused_by, .. }
            | IdentityEvent::MergeRejected { caused_by, .. }
            | IdentityEvent::LinkRejected { caused_by, .. }
            | IdentityEvent::ProfileSplit { caused_by, .. }
            | IdentityEvent::ProfileErased { caused_by, .. }
            | IdentityEvent::CommandRejected { caused_by, .. } => caused_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_ids_are_restricted() {
        assert!(ProfileId::parse("p_1").is_ok());
        assert!(ProfileId::parse("").is_err());
        assert!(ProfileId::parse("a b").is_err());
        assert!(serde_json::from_str::<ProfileId>(r#""""#).is_err());
    }

    #[test]
    fn events_round_trip_through_json_tagged_by_kind() {
        let event = IdentityEvent::ProfilesMerged {
            survivor: ProfileId::parse("p1").unwrap(),
            absorbed: ProfileId::parse("p2").unwrap(),
            via: Some(Identifier::new("email", "ann@example.com")),
            reason: None,
            by_operator: false,
            caused_by: "m1".into(),
            rule_version: 3,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"], "profiles_merged");
        assert_eq!(json["via"]["type"], "email");
        assert_eq!(
            serde_json::from_value::<IdentityEvent>(json).unwrap(),
            event
        );
        let rejected = IdentityEvent::MergeRejected {
            profiles: vec![],
            reason: RejectReason::TypeMayNotMerge,
            evidence: vec![],
            caused_by: "m2".into(),
            rule_version: 1,
        };
        let json = serde_json::to_value(&rejected).unwrap();
        assert_eq!(json["reason"], "type_may_not_merge");
        assert_eq!(rejected.caused_by(), "m2");
    }
}
