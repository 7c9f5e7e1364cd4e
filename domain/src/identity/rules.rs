//! Identity rules: per identifier type its priority, its limit per profile, whether it may merge two
//! profiles and its blocked values, with Segment's defaults, and the normalisation of raw values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ident::{Email, Phone};

/// Values no identifier of any type may take (compared case-insensitively, after normalisation), beside
/// the values made only of `0` and `-` (Segment's `^[0-]*$`, which includes the empty string).
pub const DEFAULT_BLOCKED: [&str; 5] = ["-1", "null", "undefined", "anonymous", "nan"];

/// The limit of a type no rule names.
pub const DEFAULT_LIMIT: u32 = 5;

/// Segment's cap on the merges into one profile.
pub const DEFAULT_MAX_MERGES: u32 = 100;

/// Segment's cap on the identifiers of one profile.
pub const DEFAULT_MAX_IDENTIFIERS: u32 = 1000;

/// How one identifier type takes part in resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifierRule {
    /// Lower is stronger: when a merge would break a limit, the event's identifier with the highest
    /// number is dropped first.
    pub priority: u32,
    /// How many values of this type one profile may hold.
    pub limit: u32,
    /// Whether a value of this type may join two existing profiles (false for a shared family phone or a
    /// shop's tablet: such a value links, never merges).
    #[serde(default = "yes")]
    pub may_merge: bool,
    /// Further values of this type that never link, compared after normalisation.
    #[serde(default)]
    pub blocked: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_max_merges() -> u32 {
    DEFAULT_MAX_MERGES
}

fn default_max_identifiers() -> u32 {
    DEFAULT_MAX_IDENTIFIERS
}

impl IdentifierRule {
    /// A rule that may merge and blocks nothing beyond the defaults.
    pub fn new(priority: u32, limit: u32) -> Self {
        Self {
            priority,
            limit,
            may_merge: true,
            blocked: Vec::new(),
        }
    }

    /// The rule of a type the workspace has not declared: the lowest priority, Segment's limit.
    pub fn unknown() -> Self {
        Self::new(u32::MAX, DEFAULT_LIMIT)
    }
}

/// A workspace's identity rules. Every decision records the `version` it was taken under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRules {
    pub version: u64,
    pub types: BTreeMap<String, IdentifierRule>,
    /// Past this many merges into one profile, no more merges into it.
    #[serde(default = "default_max_merges")]
    pub max_merges: u32,
    /// Past this many identifiers on one profile, no more links or merges into it.
    #[serde(default = "default_max_identifiers")]
    pub max_identifiers: u32,
    /// Channels whose trait values win over others', strongest first (`crm` before `app`, say); traits
    /// from channels not named rank after them, then by event time.
    #[serde(default)]
    pub source_priority: Vec<String>,
}

impl Default for IdentityRules {
    /// Segment's defaults: `user_id` (limit 1), `email`, `phone`, `anonymous_id`, `device_id` (limit 5),
    /// in that order of priority.
    fn default() -> Self {
        let types = [
            ("user_id", 1, 1),
            ("email", 2, DEFAULT_LIMIT),
            ("phone", 3, DEFAULT_LIMIT),
            ("anonymous_id", 4, DEFAULT_LIMIT),
            ("device_id", 5, DEFAULT_LIMIT),
        ]
        .into_iter()
        .map(|(name, priority, limit)| (name.to_owned(), IdentifierRule::new(priority, limit)))
        .collect();
        Self {
            version: 1,
            types,
            max_merges: DEFAULT_MAX_MERGES,
            max_identifiers: DEFAULT_MAX_IDENTIFIERS,
            source_priority: Vec::new(),
        }
    }
}

impl IdentityRules {
    /// These rules with `id_type` declared (priority after every type declared so far, Segment's limit)
    /// unless it already is.
    pub fn declare(mut self, id_type: &str) -> Self {
        let next = self
            .types
            .values()
            .map(|r| r.priority)
            .filter(|p| *p < u32::MAX)
            .max()
            .unwrap_or(0)
            + 1;
        self.types
            .entry(id_type.to_owned())
            .or_insert_with(|| IdentifierRule::new(next, DEFAULT_LIMIT));
        self
    }

    /// These rules with the rule of `id_type` replaced.
    pub fn with(mut self, id_type: &str, rule: IdentifierRule) -> Self {
        self.types.insert(id_type.to_owned(), rule);
        self
    }

    /// The rule of `id_type`, [`IdentifierRule::unknown`] for an undeclared type.
    pub fn rule(&self, id_type: &str) -> IdentifierRule {
        self.types
            .get(id_type)
            .cloned()
            .unwrap_or_else(IdentifierRule::unknown)
    }

    pub fn priority(&self, id_type: &str) -> u32 {
        self.types.get(id_type).map_or(u32::MAX, |r| r.priority)
    }

    pub fn limit(&self, id_type: &str) -> u32 {
        self.types.get(id_type).map_or(DEFAULT_LIMIT, |r| r.limit)
    }

    pub fn may_merge(&self, id_type: &str) -> bool {
        self.types.get(id_type).is_none_or(|r| r.may_merge)
    }

    /// The normalised value of a raw identifier, `None` when it is invalid or blocked: emails and phones
    /// as [`Email`] and [`Phone`] parse them, every other type trimmed.
    pub fn normalise(&self, id_type: &str, raw: &str) -> Option<String> {
        let value = normalise_value(id_type, raw)?;
        if is_blocked_by_default(&value) {
            return None;
        }
        let blocked = self.types.get(id_type).is_some_and(|rule| {
            rule.blocked.iter().any(|b| {
                normalise_value(id_type, b).unwrap_or_else(|| b.trim().to_owned()) == value
            })
        });
        (!blocked).then_some(value)
    }
}

fn normalise_value(id_type: &str, raw: &str) -> Option<String> {
    match id_type {
        "email" => Email::parse(raw).ok().map(Email::into_string),
        "phone" => Phone::parse(raw).ok().map(Phone::into_string),
        _ => Some(raw.trim().to_owned()),
    }
}

/// Whether a normalised value is blocked for every type: empty, only `0`s and `-`s, or one of
/// [`DEFAULT_BLOCKED`] in any case.
pub fn is_blocked_by_default(value: &str) -> bool {
    value.chars().all(|c| c == '0' || c == '-')
        || DEFAULT_BLOCKED
            .iter()
            .any(|b| b.eq_ignore_ascii_case(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_blocked_values_never_normalise() {
        let rules = IdentityRules::default();
        for raw in [
            "",
            "  ",
            "0",
            "000",
            "0-0-0",
            "---",
            "-1",
            "null",
            "NULL",
            "undefined",
            "Anonymous",
            "NaN",
        ] {
            assert_eq!(rules.normalise("user_id", raw), None, "{raw:?}");
            assert_eq!(rules.normalise("member_card", raw), None, "{raw:?}");
        }
        assert_eq!(rules.normalise("phone", "000000"), None);
        assert_eq!(rules.normalise("user_id", " 10 "), Some("10".into()));
        assert_eq!(rules.normalise("user_id", "-10"), Some("-10".into()));
    }

    #[test]
    fn emails_and_phones_normalise_as_ident_does() {
        let rules = IdentityRules::default();
        assert_eq!(
            rules.normalise("email", " Ann@Example.COM"),
            Some("ann@example.com".into())
        );
        assert_eq!(rules.normalise("email", "not an email"), None);
        assert_eq!(
            rules.normalise("phone", "138 0013 8000"),
            Some("8613800138000".into())
        );
        assert_eq!(rules.normalise("phone", "call me"), None);
    }

    #[test]
    fn declared_blocked_values_compare_after_normalisation() {
        let mut phone = IdentifierRule::new(3, 5);
        phone.blocked = vec!["+86 400 000 0000".into()];
        let rules = IdentityRules::default().with("phone", phone);
        assert_eq!(rules.normalise("phone", "0086 400-000-0000"), None);
        assert!(rules.normalise("phone", "13800138000").is_some());
    }

    #[test]
    fn defaults_are_segments_and_unknown_types_rank_last() {
        let rules = IdentityRules::default().declare("member_card");
        assert_eq!(rules.limit("user_id"), 1);
        assert_eq!(rules.limit("device_id"), 5);
        assert_eq!(rules.priority("user_id"), 1);
        assert_eq!(rules.priority("member_card"), 6);
        assert_eq!(rules.rule("tmall_ouid"), IdentifierRule::unknown());
        assert!(rules.may_merge("tmall_ouid"));
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rules = IdentityRules::default().declare("wechat_unionid");
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<IdentityRules>(&json).unwrap(), rules);
        let sparse: IdentityRules =
            serde_json::from_str(r#"{"version":2,"types":{"phone":{"priority":1,"limit":2}}}"#)
                .unwrap();
        assert!(sparse.may_merge("phone"));
        assert_eq!(sparse.max_merges, DEFAULT_MAX_MERGES);
    }
}
