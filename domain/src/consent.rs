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
//! consent is opt-in.

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

    /// Whether `channel` may be used for `purpose` (an explicit grant by every identity that chose).
    pub fn allows(&self, channel: &str, purpose: &str) -> bool {
        self.standing(channel, purpose).is_some_and(|s| s.granted)
    }

    /// The channels the profile may be reached on for `purpose`.
    pub fn reachable(&self, purpose: &str) -> Vec<&'static str> {
        CHANNELS
            .into_iter()
            .filter(|c| self.allows(c, purpose))
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
pub fn choices_of(payload: &Value) -> Vec<(&'static str, &'static str, bool)> {
    let Some(prefs) = payload
        .pointer("/context/consent/categoryPreferences")
        .and_then(Value::as_object)
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
pub fn source_of(payload: &Value, fallback: &str) -> String {
    payload
        .pointer("/context/consent/source")
        .or_else(|| payload.pointer("/properties/source"))
        .and_then(Value::as_str)
        .map(|s| s.chars().take(200).collect())
        .unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert!(!c.allows("sms", "marketing"), "nothing said: not reachable");
        c.record("sms", "marketing", "user_id:u1", choice(true, 1, "a"));
        c.record("sms", "marketing", "user_id:u1", choice(false, 5, "b"));
        c.record("sms", "marketing", "user_id:u1", choice(true, 3, "c"));
        assert!(
            !c.allows("sms", "marketing"),
            "the revoke at :05 is the latest"
        );
        c.record("email", "marketing", "user_id:u1", choice(true, 2, "d"));
        assert_eq!(c.reachable("marketing"), vec!["email"]);
        assert!(c.reachable("service").is_empty());
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
