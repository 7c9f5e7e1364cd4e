//! Consent and preferences: per channel (sms, email, push, wechat, phone) and purpose (marketing,
//! service, analytics), granted or revoked, with its source and time — folded from the profile's own
//! events (Segment's `context.consent.categoryPreferences`, on any message, and the
//! `Segment Consent Preference Updated` event), so a rebuild reproduces it and a split gives each side
//! its own.
//!
//! Each identity that expressed a choice (the message's user id, else its anonymous id) keeps its
//! latest one; a channel is usable for a purpose only if every identity of the profile that said
//! anything granted it. So a merge is conservative by construction — a revoke on either side wins —
//! and the profile says which identity revoked. With no choice recorded a channel is not usable:
//! consent is opt-in — unless the workspace's [`ConsentPolicy`] makes a channel (or a channel for one
//! purpose) opt-out, where silence allows it and only a revoke forbids it. [`Consents::reaches`] is that
//! one rule, with its [`Basis`] (a grant or the opt-out policy); [`Consents::reachable_by`] applies it
//! to every channel. Segment conditions, the audience index, messages, exports and the profile view all
//! read it, under the policy in force in the workspace's catalog (a `set_consent_policy` command of
//! the log, so that a rebuild meets the same policy at the same place).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The channels a profile may be reached on.
pub const CHANNELS: [&str; 5] = ["sms", "email", "push", "wechat", "phone"];
/// What a channel may be used for.
pub const PURPOSES: [&str; 3] = ["marketing", "service", "analytics"];
/// The purpose activation messages and exports are for, unless another is asked.
pub const DEFAULT_PURPOSE: &str = "marketing";
/// The Segment event that carries nothing but a consent change.
pub const CONSENT_EVENT: &str = "Segment Consent Preference Updated";

/// One identity's latest choice for a channel and purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub granted: bool,
    #[serde(with = "crate::codec::time")]
    pub at: DateTime<Utc>,
    /// Where it came from: the message's `context.consent.source`, else its channel (`pos`, `crm`, ..).
    pub source: String,
    pub message_id: String,
}

impl Choice {
    /// The later of two choices: by time, then by message id, so that folding is order-independent.
    fn later(self, other: Choice) -> Choice {
        if (&other.at, &other.message_id) > (&self.at, &self.message_id) {
            other
        } else {
            self
        }
    }
}

/// A profile's consents: by `channel:purpose`, each identity's latest choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consents(pub BTreeMap<String, BTreeMap<String, Choice>>);

/// Where a profile stands on one channel and purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub granted: bool,
    /// The latest choice's time and source.
    pub at: DateTime<Utc>,
    pub source: String,
    /// When identities disagree (a merge): the ones that revoked, which decide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked_by: Vec<String>,
}

fn key(channel: &str, purpose: &str) -> String {
    format!("{channel}:{purpose}")
}

impl Consents {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records `subject`'s choice, keeping the later one.
    pub fn record(&mut self, channel: &str, purpose: &str, subject: &str, choice: Choice) {
        let by_subject = self.0.entry(key(channel, purpose)).or_default();
        let kept = match by_subject.remove(subject) {
            Some(old) => old.later(choice),
            None => choice,
        };
        by_subject.insert(subject.to_owned(), kept);
    }

    /// Joins another profile's consents (a merge): every identity keeps its latest choice.
    pub fn absorb(&mut self, other: Consents) {
        for (k, subjects) in other.0 {
            let (channel, purpose) = k.split_once(':').unwrap_or((k.as_str(), ""));
            for (subject, choice) in subjects {
                self.record(channel, purpose, &subject, choice);
            }
        }
    }

    /// Where the profile stands on `channel` for `purpose`; `None` when nobody said anything.
    pub fn standing(&self, channel: &str, purpose: &str) -> Option<Standing> {
        let subjects = self.0.get(&key(channel, purpose))?;
        let latest = subjects.values().cloned().reduce(Choice::later)?;
        let revoked_by: Vec<String> = subjects
            .iter()
            .filter(|(_, c)| !c.granted)
            .map(|(s, _)| s.clone())
            .collect();
        let disagree = !revoked_by.is_empty() && revoked_by.len() < subjects.len();
        Some(Standing {
            granted: revoked_by.is_empty(),
            at: latest.at,
            source: latest.source,
            revoked_by: if disagree { revoked_by } else { Vec::new() },
        })
    }

    /// Whether `channel` may be used for `purpose` under a workspace's `policy`, and why — the one rule
    /// every reader of reachability applies (segment conditions, the audience index, messages,
    /// exports, the profile view): a recorded standing decides (granted by every identity that chose,
    /// or not); with none, the channel's policy does (opt-out: reachable, opt-in: not).
    pub fn reaches(&self, channel: &str, purpose: &str, policy: &ConsentPolicy) -> Option<Basis> {
        match self.standing(channel, purpose) {
            Some(s) => s.granted.then_some(Basis::Granted),
            None => (policy.of(channel, purpose) == Policy::OptOut).then_some(Basis::OptOutPolicy),
        }
    }

    /// The channels the profile may be reached on for `purpose` under a workspace's policy, each with
    /// why ([`Consents::reaches`]).
    pub fn reachable_by(
        &self,
        purpose: &str,
        policy: &ConsentPolicy,
    ) -> Vec<(&'static str, Basis)> {
        CHANNELS
            .into_iter()
            .filter_map(|c| Some((c, self.reaches(c, purpose, policy)?)))
            .collect()
    }

    /// Every recorded standing, by channel then purpose, for the profile view.
    pub fn view(&self) -> BTreeMap<String, BTreeMap<String, Standing>> {
        let mut out: BTreeMap<String, BTreeMap<String, Standing>> = BTreeMap::new();
        for k in self.0.keys() {
            let Some((channel, purpose)) = k.split_once(':') else {
                continue;
            };
            if let Some(s) = self.standing(channel, purpose) {
                out.entry(channel.to_owned())
                    .or_default()
                    .insert(purpose.to_owned(), s);
            }
        }
        out
    }
}

/// What silence means on a channel for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Usable only after a grant (PIPL's separate consent; GDPR consent).
    #[default]
    OptIn,
    /// Usable until revoked (GDPR's soft opt-in for existing customers, service messages).
    OptOut,
}

impl Policy {
    pub fn parse(raw: &str) -> Option<Policy> {
        match raw {
            "opt_in" => Some(Policy::OptIn),
            "opt_out" => Some(Policy::OptOut),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::OptIn => "opt_in",
            Policy::OptOut => "opt_out",
        }
    }
}

/// Why a channel is reachable: a grant of every identity that chose, or nobody chose and the channel
/// is opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    Granted,
    OptOutPolicy,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Granted => "granted",
            Basis::OptOutPolicy => "opt_out_policy",
        }
    }
}

/// A workspace's consent policy: a default, and the channels (`sms`) or channels for one purpose
/// (`email:service`) that differ from it; the most specific entry wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentPolicy {
    default: Policy,
    entries: BTreeMap<String, Policy>,
}

impl ConsentPolicy {
    /// From a default and `channel` / `channel:purpose` entries; an unknown channel, purpose or policy
    /// is refused with a sentence naming it.
    pub fn new(default: Policy, entries: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut parsed = BTreeMap::new();
        for (k, v) in entries {
            let (channel, purpose) = match k.split_once(':') {
                Some((c, p)) => (c, Some(p)),
                None => (k.as_str(), None),
            };
            if !CHANNELS.contains(&channel) {
                return Err(format!(
                    "consent policy: unknown channel {channel:?} (one of {})",
                    CHANNELS.join(", ")
                ));
            }
            if purpose.is_some_and(|p| !PURPOSES.contains(&p)) {
                return Err(format!(
                    "consent policy: unknown purpose in {k:?} (one of {})",
                    PURPOSES.join(", ")
                ));
            }
            let policy = Policy::parse(v)
                .ok_or_else(|| format!("consent policy {k:?}: {v:?} is not opt_in or opt_out"))?;
            parsed.insert(k.clone(), policy);
        }
        Ok(Self {
            default,
            entries: parsed,
        })
    }

    /// The policy as the log records it (`set_consent_policy`): `{"default": "opt_in", "policy":
    /// {"email:marketing": "opt_out"}}`.
    pub fn to_json(&self) -> Value {
        let entries: serde_json::Map<String, Value> = self
            .entries
            .iter()
            .map(|(k, p)| (k.clone(), Value::from(p.as_str())))
            .collect();
        serde_json::json!({"default": self.default.as_str(), "policy": entries})
    }

    /// Reads [`ConsentPolicy::to_json`]'s form back; what is wrong, in a sentence, otherwise.
    pub fn parse(v: &Value) -> Result<ConsentPolicy, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| "a consent policy must be an object".to_owned())?;
        if let Some(k) = obj.keys().find(|k| *k != "default" && *k != "policy") {
            return Err(format!(
                "consent policy: unknown key {k:?}; expected default or policy"
            ));
        }
        let default = match obj.get("default") {
            None => Policy::default(),
            Some(raw) => raw
                .as_str()
                .and_then(Policy::parse)
                .ok_or_else(|| format!("consent default {raw} is not opt_in or opt_out"))?,
        };
        let mut entries = BTreeMap::new();
        if let Some(raw) = obj.get("policy") {
            let map = raw
                .as_object()
                .ok_or_else(|| "consent policy: policy must be an object".to_owned())?;
            for (k, v) in map {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("consent policy {k:?}: {v} is not opt_in or opt_out"))?;
                entries.insert(k.clone(), v.to_owned());
            }
        }
        ConsentPolicy::new(default, &entries)
    }

    /// The policy of `channel` for `purpose`.
    pub fn of(&self, channel: &str, purpose: &str) -> Policy {
        self.entries
            .get(&key(channel, purpose))
            .or_else(|| self.entries.get(channel))
            .copied()
            .unwrap_or(self.default)
    }
}

/// The (channel, purpose) pairs a category of `categoryPreferences` names: `sms` (every purpose),
/// `marketing` (every channel), or `sms:marketing` / `sms_marketing`; `None` for a category that is
/// neither (other tools' categories, kept out).
pub fn pairs_of(category: &str) -> Option<Vec<(&'static str, &'static str)>> {
    let c = category
        .trim()
        .to_ascii_lowercase()
        .replace(['_', '-', ' ', '.'], ":");
    let channel = |s: &str| CHANNELS.into_iter().find(|c| *c == s);
    let purpose = |s: &str| PURPOSES.into_iter().find(|p| *p == s);
    if let Some((a, b)) = c.split_once(':') {
        return Some(vec![(channel(a)?, purpose(b)?)]);
    }
    if let Some(ch) = channel(&c) {
        return Some(PURPOSES.into_iter().map(|p| (ch, p)).collect());
    }
    purpose(&c).map(|p| CHANNELS.into_iter().map(|ch| (ch, p)).collect())
}

/// The choices a message states: `context.consent.categoryPreferences` (`{"sms:marketing": false}`),
/// each with the pairs its category names. Values that are not booleans are ignored.
pub fn choices_of<J: crate::json::JsonRead>(
    payload: &J,
) -> Vec<(&'static str, &'static str, bool)> {
    let Some(prefs) = crate::json::at(payload, &["context", "consent", "categoryPreferences"])
        .and_then(crate::json::JsonRead::members)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (category, granted) in prefs {
        let (Some(granted), Some(pairs)) = (granted.as_bool(), pairs_of(category)) else {
            continue;
        };
        out.extend(pairs.into_iter().map(|(c, p)| (c, p, granted)));
    }
    out
}

/// The source a message's choices are recorded with.
pub fn source_of<J: crate::json::JsonRead>(payload: &J, fallback: &str) -> String {
    crate::json::at(payload, &["context", "consent", "source"])
        .or_else(|| crate::json::at(payload, &["properties", "source"]))
        .and_then(crate::json::JsonRead::as_str)
        .map(|s| s.chars().take(200).collect())
        .unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_opt_out_channel_is_reachable_until_revoked_and_says_why() {
        // Given a workspace where e-mail for service, and push, are opt-out; everything else opt-in.
        let entries: BTreeMap<String, String> = [("email:service", "opt_out"), ("push", "opt_out")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let policy = ConsentPolicy::new(Policy::OptIn, &entries).unwrap();
        assert_eq!(policy.of("email", "service"), Policy::OptOut);
        assert_eq!(policy.of("email", "marketing"), Policy::OptIn);
        assert_eq!(policy.of("push", "analytics"), Policy::OptOut);
        // And a customer who granted SMS and revoked push.
        let mut consents = Consents::default();
        let choice = |granted| Choice {
            granted,
            at: at(1),
            source: "app".into(),
            message_id: "m".into(),
        };
        consents.record("sms", "service", "user_id:u", choice(true));
        consents.record("push", "service", "user_id:u", choice(false));
        // Then for service: SMS by the grant, e-mail by the policy, push not (revoked), the rest not.
        assert_eq!(
            consents.reachable_by("service", &policy),
            [("sms", Basis::Granted), ("email", Basis::OptOutPolicy)]
        );
        // For marketing nobody said anything: only the opt-out push.
        assert_eq!(
            consents.reachable_by("marketing", &policy),
            [("push", Basis::OptOutPolicy)]
        );
        // The default policy is today's opt-in.
        assert_eq!(
            consents.reachable_by("service", &ConsentPolicy::default()),
            [("sms", Basis::Granted)]
        );
        // The log's form reads back the same, and a wrong one is refused with a sentence.
        assert_eq!(ConsentPolicy::parse(&policy.to_json()), Ok(policy.clone()));
        assert_eq!(
            ConsentPolicy::parse(&json!({})),
            Ok(ConsentPolicy::default())
        );
        for bad in [
            json!([]),
            json!({"default": "never"}),
            json!({"policy": {"sms": true}}),
            json!({"policy": {"fax": "opt_out"}}),
            json!({"defaults": "opt_in"}),
        ] {
            assert!(ConsentPolicy::parse(&bad).is_err(), "{bad}");
        }
        let everything = ConsentPolicy::new(Policy::OptOut, &BTreeMap::new()).unwrap();
        assert_eq!(consents.reachable_by("service", &everything).len(), 4);
        for bad in [
            ("fax", "opt_out"),
            ("sms:spam", "opt_out"),
            ("sms", "maybe"),
        ] {
            let entries = BTreeMap::from([(bad.0.to_owned(), bad.1.to_owned())]);
            assert!(
                ConsentPolicy::new(Policy::OptIn, &entries).is_err(),
                "{bad:?}"
            );
        }
    }

    fn at(minute: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-06-01T10:{minute:02}:00Z"))
            .unwrap()
            .to_utc()
    }

    fn choice(granted: bool, minute: u32, id: &str) -> Choice {
        Choice {
            granted,
            at: at(minute),
            source: "crm".into(),
            message_id: id.into(),
        }
    }

    #[test]
    fn categories_name_channels_purposes_or_both() {
        assert_eq!(pairs_of("sms:marketing"), Some(vec![("sms", "marketing")]));
        assert_eq!(pairs_of("SMS_Marketing"), Some(vec![("sms", "marketing")]));
        assert_eq!(pairs_of("sms").unwrap().len(), 3);
        assert_eq!(pairs_of("analytics").unwrap().len(), 5);
        assert_eq!(pairs_of("Advertising"), None);
        assert_eq!(pairs_of("sms:ads"), None);
        let payload = json!({"context": {"consent": {"categoryPreferences":
            {"sms:marketing": false, "email": true, "Advertising": true, "push": "yes"}}}});
        let got = choices_of(&payload);
        assert_eq!(got.len(), 4);
        assert!(got.contains(&("sms", "marketing", false)));
        assert!(got.contains(&("email", "service", true)));
    }

    #[test]
    fn the_latest_choice_of_an_identity_holds_and_opt_in_is_needed() {
        let mut c = Consents::default();
        let opt_in = ConsentPolicy::default();
        assert_eq!(
            c.reaches("sms", "marketing", &opt_in),
            None,
            "nothing said: not reachable"
        );
        c.record("sms", "marketing", "user_id:u1", choice(true, 1, "a"));
        c.record("sms", "marketing", "user_id:u1", choice(false, 5, "b"));
        c.record("sms", "marketing", "user_id:u1", choice(true, 3, "c"));
        assert!(
            c.reaches("sms", "marketing", &opt_in).is_none(),
            "the revoke at :05 is the latest"
        );
        c.record("email", "marketing", "user_id:u1", choice(true, 2, "d"));
        assert_eq!(
            c.reachable_by("marketing", &opt_in),
            [("email", Basis::Granted)]
        );
        assert!(c.reachable_by("service", &opt_in).is_empty());
    }

    #[test]
    fn a_merge_is_conservative_and_says_so() {
        let mut a = Consents::default();
        a.record("sms", "marketing", "user_id:u1", choice(true, 9, "a"));
        let mut b = Consents::default();
        b.record("sms", "marketing", "user_id:u2", choice(false, 1, "b"));
        let mut merged = a.clone();
        merged.absorb(b.clone());
        let standing = merged.standing("sms", "marketing").unwrap();
        assert!(
            !standing.granted,
            "a revoke on either side wins, even an older one"
        );
        assert_eq!(standing.revoked_by, vec!["user_id:u2".to_owned()]);
        // Order-independent: b absorbing a is the same.
        let mut other = b;
        other.absorb(a);
        assert_eq!(other, merged);
    }

    proptest::proptest! {
        /// Folding choices in any order or grouping gives the same consents.
        #[test]
        fn folding_is_order_independent(
            choices in proptest::collection::vec((0usize..5, 0usize..3, 0usize..3, proptest::bool::ANY, 0u32..50), 0..30),
            cut in 0usize..30,
        ) {
            let marks: Vec<(&str, &str, String, Choice)> = choices.iter().enumerate()
                .map(|(i, (c, p, s, g, m))| (CHANNELS[*c], PURPOSES[*p], format!("s{s}"), choice(*g, *m, &format!("m{i}"))))
                .collect();
            let mut forward = Consents::default();
            for (c, p, s, ch) in &marks { forward.record(c, p, s, ch.clone()); }
            let mut backward = Consents::default();
            for (c, p, s, ch) in marks.iter().rev() { backward.record(c, p, s, ch.clone()); }
            let cut = cut.min(marks.len());
            let (mut left, mut right) = (Consents::default(), Consents::default());
            for (c, p, s, ch) in &marks[..cut] { left.record(c, p, s, ch.clone()); }
            for (c, p, s, ch) in &marks[cut..] { right.record(c, p, s, ch.clone()); }
            left.absorb(right);
            proptest::prop_assert_eq!(&forward, &backward);
            proptest::prop_assert_eq!(&forward, &left);
        }
    }
}
