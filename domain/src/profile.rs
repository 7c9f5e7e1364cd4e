//! The 360° profile: what a customer's events add up to — identifiers with first and last seen, traits
//! merged across sources, event counts by type, event name and channel, first and last seen, the latest
//! events. Pure and order-independent: the document of a set of events is the same whatever order they
//! are applied in and however they are grouped ([`ProfileDoc::absorb`] of two documents equals applying
//! both sets of events to one), which is what makes merges cheap and splits exact.
//!
//! Trait fold: the channel earlier in the workspace's `source_priority` wins, then the later event
//! time, then the greater message id. Every trait value remembers the event, channel and time that set it.

use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::DefinedTrait;
use crate::computed::TraitState;
use crate::consent::{Choice, Consents};
use crate::event::NewEvent;
use crate::identity::{Identifier, IdentityRules};
use crate::json::JsonRead;
use crate::message::MessageKind;
use crate::vecmap::VecMap;

/// How many recent events the 360 view shows (read from `event_profiles`, not kept in the document).
pub const RECENT_EVENTS: usize = 50;

/// The channel of a message: `context.channel`, else the top-level `channel` (RudderStack), else
/// `context.library.name`, else `unknown`.
pub fn channel_of<J: JsonRead>(payload: &J) -> String {
    fn named<J: JsonRead>(v: Option<&J>) -> Option<&str> {
        v.and_then(JsonRead::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    named(crate::json::at(payload, &["context", "channel"]))
        .or_else(|| named(payload.get("channel")))
        .or_else(|| named(crate::json::at(payload, &["context", "library", "name"])))
        .unwrap_or("unknown")
        .to_owned()
}

/// A trait value and what set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitValue {
    #[serde(with = "crate::codec::json")]
    pub value: Value,
    /// The event time of the message that set it.
    #[serde(with = "crate::codec::time")]
    pub set_at: DateTime<Utc>,
    pub message_id: String,
    pub channel: String,
    /// `identify`, `track`, …
    pub kind: String,
}

/// When an identifier was first and last carried by the profile's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    #[serde(with = "crate::codec::time")]
    pub first: DateTime<Utc>,
    #[serde(with = "crate::codec::time")]
    pub last: DateTime<Utc>,
}

impl Seen {
    fn widen(&mut self, other: Seen) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// One line of the recent events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    pub channel: String,
    #[serde(with = "crate::codec::time")]
    pub timestamp: DateTime<Utc>,
    #[serde(with = "crate::codec::time")]
    pub received_at: DateTime<Utc>,
    /// A track event's facets as stored text (`crate::audience::facets`), written with the summary
    /// for the audience index; not read back into the 360 view.
    #[serde(skip)]
    pub facets: Option<String>,
}

impl EventSummary {
    /// The summary of a customer event whose channel is `channel` (a track event's with its facets).
    pub fn of<J: JsonRead>(event: &NewEvent, payload: &J) -> EventSummary {
        Self::in_channel(event, payload, channel_of(payload))
    }

    /// [`EventSummary::of`] with the channel already found.
    pub fn in_channel<J: JsonRead>(event: &NewEvent, payload: &J, channel: String) -> EventSummary {
        EventSummary {
            message_id: event.message_id.clone(),
            kind: event.kind.as_str().into(),
            name: event.name.clone(),
            channel,
            timestamp: event.event_time,
            received_at: event.received_at,
            facets: (event.kind == MessageKind::Track)
                .then(|| crate::audience::facets::facets_text(payload)),
        }
    }

    /// Newest first: by event time, then message id, both descending.
    pub fn newest_first(a: &EventSummary, b: &EventSummary) -> Ordering {
        (b.timestamp, &b.message_id).cmp(&(a.timestamp, &a.message_id))
    }
}

static NO_TRAITS: BTreeMap<String, DefinedTrait> = BTreeMap::new();

/// How events fold into a document: the order in which trait values win (the workspace's channel
/// priority) and the computed traits in force.
#[derive(Debug, Clone, Copy)]
pub struct FoldRules<'a> {
    /// Channels, strongest first; a channel not named ranks after all named ones.
    pub source_priority: &'a [String],
    /// Every computed trait folded into profiles (`Catalog::folded`).
    pub traits: &'a BTreeMap<String, DefinedTrait>,
}

impl FoldRules<'_> {
    pub const NONE: FoldRules<'static> = FoldRules {
        source_priority: &[],
        traits: &NO_TRAITS,
    };

    fn key<'v>(&self, v: &'v TraitValue) -> (Reverse<usize>, DateTime<Utc>, &'v str) {
        let rank = self
            .source_priority
            .iter()
            .position(|c| *c == v.channel)
            .unwrap_or(usize::MAX);
        (Reverse(rank), v.set_at, &v.message_id)
    }

    /// Whether `candidate` beats `current`.
    pub fn wins(&self, candidate: &TraitValue, current: &TraitValue) -> bool {
        self.key(candidate) > self.key(current)
    }
}

/// The state of one computed trait in a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputedEntry {
    /// The version of the definition the state was folded under.
    #[serde(rename = "v")]
    pub version: i64,
    /// Whether every event of the profile is folded in. A trait defined (or changed) after the profile's
    /// first event starts incomplete until the backfill re-folds it from the log.
    #[serde(rename = "c")]
    pub complete: bool,
    /// The event time of the latest event that counted.
    #[serde(rename = "at", default, with = "crate::codec::opt_time")]
    pub last_event_at: Option<DateTime<Utc>>,
    #[serde(rename = "s")]
    pub state: TraitState,
}

impl ComputedEntry {
    fn empty(version: i64, complete: bool) -> ComputedEntry {
        ComputedEntry {
            version,
            complete,
            last_event_at: None,
            state: TraitState::default(),
        }
    }
}

/// A computed trait's value as the profile shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedValue {
    pub value: Value,
    /// False while the backfill has not folded the profile's earlier events in yet.
    pub complete: bool,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// The document of one live profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileDoc {
    /// The identifiers the identity graph links to the profile, in the order they were linked.
    pub linked: Vec<Identifier>,
    /// Every identifier the profile's events carried, by type and value.
    pub seen: VecMap<String, VecMap<String, Seen>>,
    pub traits: VecMap<String, TraitValue>,
    pub events: u64,
    pub counts_by_type: VecMap<String, u64>,
    /// Track messages by event name.
    pub counts_by_event: VecMap<String, u64>,
    pub counts_by_channel: VecMap<String, u64>,
    #[serde(with = "crate::codec::opt_time")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(with = "crate::codec::opt_time")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Computed traits by name.
    #[serde(default)]
    pub computed: VecMap<String, ComputedEntry>,
    /// Consent by channel and purpose, as the profile's messages stated it (`crate::consent`).
    #[serde(default)]
    pub consent: Consents,
}

/// Why a stored profile state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredDocError {
    #[error(transparent)]
    Binary(#[from] crate::codec::CodecError),
    #[error("the JSON document does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the row holds neither a state nor a document")]
    Missing,
}

impl ProfileDoc {
    /// The document in its stored binary form ([`crate::codec`]).
    pub fn to_state(&self) -> Vec<u8> {
        crate::codec::encode(self).expect("a profile document always serialises")
    }

    /// The document of a stored row: its binary `state`, else the JSON `doc` earlier versions wrote.
    pub fn from_stored(state: Option<&[u8]>, doc: Option<&str>) -> Result<Self, StoredDocError> {
        match (state, doc) {
            (Some(bytes), _) => Ok(crate::codec::decode(bytes)?),
            (None, Some(json)) => Ok(serde_json::from_str(json)?),
            (None, None) => Err(StoredDocError::Missing),
        }
    }

    /// Folds one customer event in. `carried` are the normalised identifiers it carries.
    pub fn apply<J: JsonRead>(
        &mut self,
        event: &NewEvent,
        payload: &J,
        carried: &[Identifier],
        fold: FoldRules<'_>,
    ) {
        self.apply_in_channel(event, payload, carried, fold, &channel_of(payload));
    }

    /// [`ProfileDoc::apply`] with the event's channel already found ([`channel_of`]).
    pub fn apply_in_channel<J: JsonRead>(
        &mut self,
        event: &NewEvent,
        payload: &J,
        carried: &[Identifier],
        fold: FoldRules<'_>,
        channel: &str,
    ) {
        let time = event.event_time;
        self.fold_computed(event, payload, fold);
        self.events += 1;
        bump(&mut self.counts_by_type, event.kind.as_str(), 1);
        bump(&mut self.counts_by_channel, channel, 1);
        if event.kind == MessageKind::Track {
            if let Some(name) = &event.name {
                bump(&mut self.counts_by_event, name, 1);
            }
        }
        self.first_seen = Some(self.first_seen.map_or(time, |t| t.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |t| t.max(time)));
        let choices = crate::consent::choices_of(payload);
        if !choices.is_empty() {
            // The identity that chose: the message's user id, else its anonymous id.
            let subject = match (&event.user_id, &event.anonymous_id) {
                (Some(u), _) => format!("user_id:{u}"),
                (None, Some(a)) => format!("anonymous_id:{a}"),
                (None, None) => "unknown".to_owned(),
            };
            let source = crate::consent::source_of(payload, channel);
            for (c, p, granted) in choices {
                self.consent.record(
                    c,
                    p,
                    &subject,
                    Choice {
                        granted,
                        at: time,
                        source: source.clone(),
                        message_id: event.message_id.clone(),
                    },
                );
            }
        }
        // `traits` after `context.traits`: within one message the explicit traits win.
        for traits in [
            crate::json::at(payload, &["context", "traits"]),
            payload.get("traits"),
        ] {
            let Some(traits) = traits.and_then(JsonRead::members) else {
                continue;
            };
            for (key, value) in traits {
                let candidate = TraitValue {
                    value: value.to_value(),
                    set_at: time,
                    message_id: event.message_id.clone(),
                    channel: channel.to_owned(),
                    kind: event.kind.as_str().to_owned(),
                };
                self.offer_trait(key, candidate, fold, true);
            }
        }
        for id in carried {
            self.see(
                id,
                Seen {
                    first: time,
                    last: time,
                },
            );
        }
    }

    /// Drops the state of computed traits no longer defined (a deleted trait, tag or segment).
    pub fn prune_computed(&mut self, traits: &BTreeMap<String, DefinedTrait>) {
        self.computed.retain(|name, _| traits.contains_key(name));
    }

    /// Folds the event into every computed trait (before it is counted in `events`).
    fn fold_computed<J: JsonRead>(&mut self, event: &NewEvent, payload: &J, fold: FoldRules<'_>) {
        let fresh = self.events == 0;
        for (name, defined) in fold.traits {
            let entry = match self.computed.get_mut(name) {
                Some(e) if e.version == defined.version => e,
                _ => {
                    // Defined (or changed) after this profile's first event: its earlier events are
                    // folded in by the backfill.
                    self.computed
                        .insert(name.clone(), ComputedEntry::empty(defined.version, fresh));
                    self.computed.get_mut(name).expect("just inserted")
                }
            };
            let name = event.name.as_deref();
            if defined
                .def
                .matches(event.kind, name, payload, event.event_time)
            {
                entry.state.apply(
                    &defined.def,
                    event.kind,
                    name,
                    payload,
                    event.event_time,
                    &event.message_id,
                );
                entry.last_event_at = entry.last_event_at.max(Some(event.event_time));
            }
        }
        // Every trait of the catalog has its entry now: more entries are of traits no longer
        // defined (a deleted trait, tag or segment), dropped.
        if self.computed.len() > fold.traits.len() {
            self.prune_computed(fold.traits);
        }
    }

    /// Re-folds the computed traits that are not complete from all of the profile's events (the
    /// backfill); `events` must be every event of the profile.
    pub fn backfill_computed<J: JsonRead>(
        &mut self,
        events: &[OwnedEvent<'_, J>],
        fold: FoldRules<'_>,
    ) {
        let mut fresh = ProfileDoc::default();
        let pending: BTreeMap<String, DefinedTrait> = fold
            .traits
            .iter()
            .filter(|(name, d)| {
                self.computed
                    .get(*name)
                    .is_none_or(|e| !e.complete || e.version != d.version)
            })
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect();
        if pending.is_empty() {
            return;
        }
        let only = FoldRules {
            source_priority: fold.source_priority,
            traits: &pending,
        };
        for e in events {
            fresh.fold_computed(e.event, e.payload, only);
            fresh.events += 1;
        }
        for (name, d) in &pending {
            let entry = fresh
                .computed
                .remove(name)
                .unwrap_or_else(|| ComputedEntry::empty(d.version, true));
            self.computed.insert(name.clone(), entry);
        }
    }

    /// The names of the computed traits not yet complete in this document.
    pub fn incomplete_computed(&self, traits: &BTreeMap<String, DefinedTrait>) -> Vec<String> {
        traits
            .iter()
            .filter(|(name, d)| {
                self.events > 0
                    && self
                        .computed
                        .get(*name)
                        .is_none_or(|e| !e.complete || e.version != d.version)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The value of each computed trait in force at `now`.
    pub fn computed_values(
        &self,
        traits: &BTreeMap<String, DefinedTrait>,
        now: DateTime<Utc>,
    ) -> BTreeMap<String, ComputedValue> {
        traits
            .iter()
            .map(|(name, d)| {
                let entry = self.computed.get(name).filter(|e| e.version == d.version);
                let value = match entry {
                    Some(e) => e.state.value_at(&d.def, now),
                    None => TraitState::default().value_at(&d.def, now),
                };
                let complete = self.events == 0 || entry.is_some_and(|e| e.complete);
                (
                    name.clone(),
                    ComputedValue {
                        value,
                        complete,
                        last_event_at: entry.and_then(|e| e.last_event_at),
                    },
                )
            })
            .collect()
    }

    /// The earliest time after `now` at which a computed value changes without a new event (a window
    /// moving past the oldest events in it).
    pub fn next_computed_change(
        &self,
        traits: &BTreeMap<String, DefinedTrait>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        traits
            .iter()
            .filter_map(|(name, d)| {
                let e = self.computed.get(name).filter(|e| e.version == d.version)?;
                e.state.next_change(&d.def, now)
            })
            .min()
    }

    /// Joins `other` into this document, as a merge of the two profiles does.
    pub fn absorb(&mut self, other: ProfileDoc, fold: FoldRules<'_>) {
        self.absorb_computed(&other, fold);
        for id in other.linked {
            if !self.linked.contains(&id) {
                self.linked.push(id);
            }
        }
        for (id_type, values) in other.seen {
            for (value, seen) in values {
                self.see(&Identifier::new(&id_type, &value), seen);
            }
        }
        for (key, value) in other.traits {
            self.offer_trait(&key, value, fold, false);
        }
        self.events += other.events;
        for (from, into) in [
            (other.counts_by_type, &mut self.counts_by_type),
            (other.counts_by_event, &mut self.counts_by_event),
            (other.counts_by_channel, &mut self.counts_by_channel),
        ] {
            for (k, n) in from {
                bump(into, &k, n);
            }
        }
        self.first_seen = min_opt(self.first_seen, other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.consent.absorb(other.consent);
    }

    fn absorb_computed(&mut self, other: &ProfileDoc, fold: FoldRules<'_>) {
        let side = |doc: &ProfileDoc, name: &str, version: i64| match doc.computed.get(name) {
            Some(e) if e.version == version => e.clone(),
            // A document with no events is complete for every trait; one with events lacks this
            // trait's earlier events.
            _ => ComputedEntry::empty(version, doc.events == 0),
        };
        let mut joined = VecMap::new();
        for (name, d) in fold.traits {
            let mut mine = side(self, name, d.version);
            let theirs = side(other, name, d.version);
            mine.state.absorb(&d.def, theirs.state);
            mine.complete = mine.complete && theirs.complete;
            mine.last_event_at = mine.last_event_at.max(theirs.last_event_at);
            joined.insert(name.clone(), mine);
        }
        self.computed = joined;
    }

    fn offer_trait(
        &mut self,
        key: &str,
        candidate: TraitValue,
        fold: FoldRules<'_>,
        same_message_replaces: bool,
    ) {
        let take = match self.traits.get(key) {
            None => true,
            Some(current) => {
                fold.wins(&candidate, current)
                    || (same_message_replaces && current.message_id == candidate.message_id)
            }
        };
        if take {
            match self.traits.get_mut(key) {
                Some(current) => *current = candidate,
                None => {
                    self.traits.insert(key.to_owned(), candidate);
                }
            }
        }
    }

    fn see(&mut self, id: &Identifier, seen: Seen) {
        // Most events carry identifiers the profile has seen: widened in place, no key copied.
        if let Some(known) = self
            .seen
            .get_mut(id.id_type.as_str())
            .and_then(|values| values.get_mut(id.value.as_str()))
        {
            known.widen(seen);
            return;
        }
        self.seen
            .entry(id.id_type.clone())
            .or_default()
            .entry(id.value.clone())
            .and_modify(|s| s.widen(seen))
            .or_insert(seen);
    }
}

/// One event of a profile, ready to fold: the event, its parsed payload and the identifiers it carries.
#[derive(Debug, Clone)]
pub struct OwnedEvent<'a, J = Value> {
    pub event: &'a NewEvent,
    pub payload: &'a J,
    pub carried: &'a [Identifier],
}

/// The two documents of a split: `moved` identifiers leave a profile whose identifiers are `linked` and
/// whose events are `events`. An event follows its strongest identifier (by the rules' priority) among
/// those of the profile: it leaves when that one leaves. A member's order that also carried a shared cookie
/// stays with the member's user id when the cookie is split off; the cookie's anonymous browsing leaves.
/// Returns the document that stays, the new profile's, and for each event whether it moved.
pub fn split_docs<J: JsonRead>(
    linked: &[Identifier],
    moved: &[Identifier],
    events: &[OwnedEvent<'_, J>],
    rules: &IdentityRules,
    fold: FoldRules<'_>,
) -> (ProfileDoc, ProfileDoc, Vec<bool>) {
    let mut stays = ProfileDoc {
        linked: linked
            .iter()
            .filter(|i| !moved.contains(i))
            .cloned()
            .collect(),
        ..ProfileDoc::default()
    };
    let mut leaves = ProfileDoc {
        linked: linked
            .iter()
            .filter(|i| moved.contains(i))
            .cloned()
            .collect(),
        ..ProfileDoc::default()
    };
    let mut went = Vec::with_capacity(events.len());
    for e in events {
        let strongest = e
            .carried
            .iter()
            .enumerate()
            .filter(|(_, i)| linked.contains(i))
            .min_by_key(|(n, i)| (rules.priority(&i.id_type), *n))
            .map(|(_, i)| i);
        let goes = strongest.is_some_and(|i| moved.contains(i));
        let doc = if goes { &mut leaves } else { &mut stays };
        doc.apply(e.event, e.payload, e.carried, fold);
        went.push(goes);
    }
    (stays, leaves, went)
}

fn bump(counts: &mut VecMap<String, u64>, key: &str, n: u64) {
    match counts.get_mut(key) {
        Some(c) => *c += n,
        None => {
            counts.insert(key.to_owned(), n);
        }
    }
}

fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
