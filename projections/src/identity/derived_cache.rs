//! What derive last wrote for each profile (tags, segments, spend, due time), held between batches in
//! the compact binary form of the engine's state, so that a batch compares against it without reading
//! the tables.

use cdp_domain::codec;
use cdp_domain::fastmap::FastMap;
use cdp_domain::tags::TagValue;
use cdp_domain::vecmap::VecMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Membership, ProfileTag};
use crate::profiles::ProfileKey;

/// What derive last stored for a profile: its tags, its segments, and the spend and due time it wrote
/// (`None`: not known to have been written by this resolver).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub tags: VecMap<String, ProfileTag>,
    pub members: VecMap<String, Membership>,
    pub spend: Option<f64>,
    pub due: Option<Option<f64>>,
}

/// Profiles' [`Derived`] kept in memory by the resolver between batches (bounded; the tables are read
/// for a profile not held). Valid while the resolver's token holds, like its documents.
///
/// Each is held encoded ([`codec::encode`] of a [`Held`]): a profile with a tag and a segment holds
/// ~100 bytes this way, against ~500 in maps of strings and JSON values (`cdp bench --scenario memory`,
/// BENCHMARKS.md). Encoding and decoding a touched profile's entry costs about a microsecond.
#[derive(Debug, Default)]
pub struct DerivedCache {
    held: FastMap<ProfileKey, Box<[u8]>>,
}

impl DerivedCache {
    /// Takes a profile's entry out, if it is held. An entry that does not decode (it never fails: this
    /// cache encoded it) is as good as not held: the tables are read instead.
    pub(super) fn take(&mut self, key: &ProfileKey) -> Option<Derived> {
        let bytes = self.held.remove(key)?;
        codec::decode::<Held>(&bytes).ok().map(Derived::from)
    }

    pub(super) fn put_back(&mut self, entries: impl Iterator<Item = (ProfileKey, Derived)>) {
        self.held.extend(entries.filter_map(|(key, derived)| {
            let bytes = codec::encode(&Held::from(derived)).ok()?;
            Some((key, bytes.into_boxed_slice()))
        }));
    }

    /// Whether more than `bound` profiles are held.
    pub fn over(&self, bound: usize) -> bool {
        self.held.len() > bound
    }

    /// Past `bound`, drops everything (read from the tables when next needed): only when every batch
    /// prepared is committed.
    pub fn trim(&mut self, bound: usize) {
        if self.over(bound) {
            self.held.clear();
        }
    }

    /// Forgets everything (a batch changed definitions, which may rewrite many profiles' rows).
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

/// [`Derived`] as it is held: lists instead of maps (a tag's and a segment's name once, not as key and
/// field), JSON values as their text.
#[derive(Serialize, Deserialize)]
struct Held {
    tags: Vec<HeldTag>,
    members: Vec<(String, i64, Option<String>)>,
    spend: Option<f64>,
    due: Option<Option<f64>>,
}

#[derive(Serialize, Deserialize)]
struct HeldTag {
    tag: String,
    #[serde(with = "codec::json")]
    value: Value,
    #[serde(with = "codec::json")]
    detail: Value,
    manual: bool,
    changed_at: i64,
    caused_by: Option<String>,
}

impl From<Derived> for Held {
    fn from(d: Derived) -> Self {
        Held {
            tags: d
                .tags
                .into_iter()
                .map(|(_, t)| HeldTag {
                    tag: t.tag,
                    value: t.value.value,
                    detail: t.value.detail,
                    manual: t.manual,
                    changed_at: t.changed_at,
                    caused_by: t.caused_by,
                })
                .collect(),
            members: d
                .members
                .into_iter()
                .map(|(_, m)| (m.segment, m.since, m.caused_by))
                .collect(),
            spend: d.spend,
            due: d.due,
        }
    }
}

impl From<Held> for Derived {
    fn from(h: Held) -> Self {
        Derived {
            tags: h
                .tags
                .into_iter()
                .map(|t| {
                    let tag = ProfileTag {
                        tag: t.tag,
                        value: TagValue {
                            value: t.value,
                            detail: t.detail,
                        },
                        manual: t.manual,
                        changed_at: t.changed_at,
                        caused_by: t.caused_by,
                    };
                    (tag.tag.clone(), tag)
                })
                .collect(),
            members: h
                .members
                .into_iter()
                .map(|(segment, since, caused_by)| {
                    let m = Membership {
                        segment,
                        since,
                        caused_by,
                    };
                    (m.segment.clone(), m)
                })
                .collect(),
            spend: h.spend,
            due: h.due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::identity::ProfileId;
    use serde_json::json;

    #[test]
    fn an_entry_comes_back_as_it_was_put() {
        let tag = ProfileTag {
            tag: "rfm".into(),
            value: TagValue {
                value: json!("champions"),
                detail: json!({"r": 5, "m": 1234.5}),
            },
            manual: false,
            changed_at: 1_700_000_000_123,
            caused_by: Some("m-1".into()),
        };
        let vip = ProfileTag {
            tag: "vip".into(),
            value: TagValue::plain(json!(true)),
            manual: true,
            changed_at: 5,
            caused_by: None,
        };
        let member = Membership {
            segment: "buyers".into(),
            since: 42,
            caused_by: Some("m-2".into()),
        };
        let derived = Derived {
            tags: [(tag.tag.clone(), tag), (vip.tag.clone(), vip)]
                .into_iter()
                .collect(),
            members: [(member.segment.clone(), member)].into_iter().collect(),
            spend: Some(99.5),
            due: Some(None),
        };
        let key = ("ws".to_owned(), ProfileId::parse("p1").unwrap());
        let mut cache = DerivedCache::default();
        cache.put_back([(key.clone(), derived.clone())].into_iter());
        assert!(!cache.over(1) && cache.over(0));
        assert_eq!(cache.take(&key), Some(derived));
        assert_eq!(cache.take(&key), None, "taken out");
        cache.put_back([(key.clone(), Derived::default())].into_iter());
        assert_eq!(cache.take(&key), Some(Derived::default()));
    }
}
