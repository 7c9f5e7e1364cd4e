//! The columns of a segment export (`GET /v1/segments/{id}/members?fields=…&channel=…`): which ones a
//! `fields` list names — identifiers of any type, traits, computed traits, tags — and each member's row
//! as JSON keys or CSV cells. The members themselves are paged and filtered by consent in
//! `api::segments`, the one place they leave.

use std::collections::BTreeMap;

use cdp_domain::catalog::{Catalog, DefinedTrait};
use cdp_domain::consent::Basis;
use cdp_domain::event::from_millis;
use cdp_domain::identity::IdentityRules;
use cdp_domain::message::{invalid_identifier, rfc3339};
use cdp_domain::profile::ProfileDoc;
use cdp_projections::catalog::ProfileTag;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The columns of an export without `fields`.
pub const DEFAULT_COLUMNS: [&str; 3] = ["profile_id", "since", "caused_by"];

/// The identifier type that holds a channel's address: `sms` and `phone` a phone, `email` an e-mail,
/// `wechat` the WeChat openid, `push` the device id.
pub fn address_type(channel: &str) -> &'static str {
    match channel {
        "email" => "email",
        "wechat" => "wechat_openid",
        "push" => "device_id",
        _ => "phone",
    }
}

/// One column of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// `profile_id`, `since` or `caused_by`: the membership itself.
    Member(&'static str),
    /// The most recently seen value of an identifier type (`identifiers.phone`; phones in E.164).
    Identifier(String),
    Trait(String),
    Computed(String),
    Tag(String),
    /// In a channel's export: why the member may be reached there (`granted`, `opt_out_policy`).
    Consent,
}

impl Column {
    /// The column's name in the CSV header and the NDJSON keys: what the `fields` list said.
    pub fn name(&self) -> String {
        match self {
            Column::Member(name) => (*name).to_owned(),
            Column::Identifier(t) => t.clone(),
            Column::Trait(t) => format!("traits.{t}"),
            Column::Computed(t) => t.clone(),
            Column::Tag(t) => format!("tags.{t}"),
            Column::Consent => "consent".to_owned(),
        }
    }

    /// Whether the column needs the profile's document (not only the membership row).
    pub fn needs_document(&self) -> bool {
        !matches!(self, Column::Member(_) | Column::Tag(_) | Column::Consent)
    }
}

/// The columns a `fields` list names, in its order. A name may be prefixed with its kind
/// (`identifiers.`, `traits.`, `computed_traits.`, `tags.`); a bare name is a membership column, else an
/// identifier type the rules know, else a computed trait, else a tag, else a trait.
pub fn parse_fields(
    raw: &str,
    rules: &IdentityRules,
    catalog: &Catalog,
) -> Result<Vec<Column>, ApiError> {
    let mut columns = Vec::new();
    for field in raw.split(',').map(str::trim) {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_value",
                "fields",
                format!("fields: {field:?} {why}"),
            )
        };
        if field.is_empty() {
            return Err(bad("is empty (fields is a comma-separated list)"));
        }
        let (kind, name) = match field.split_once('.') {
            Some((kind @ ("identifiers" | "traits" | "computed_traits" | "tags"), name)) => {
                (Some(kind), name)
            }
            _ => (None, field),
        };
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
        if !valid {
            return Err(bad("must be a name of 1-64 letters, digits, _ and -"));
        }
        let column = match kind {
            Some("identifiers") => Column::Identifier(name.to_owned()),
            Some("traits") => Column::Trait(name.to_owned()),
            Some("computed_traits") => Column::Computed(name.to_owned()),
            Some(_) => Column::Tag(name.to_owned()),
            None => match DEFAULT_COLUMNS.into_iter().find(|c| *c == name) {
                Some(member) => Column::Member(member),
                None if rules.types.contains_key(name) => Column::Identifier(name.to_owned()),
                None if catalog.traits.contains_key(name) => Column::Computed(name.to_owned()),
                None if catalog.tags.contains_key(name) => Column::Tag(name.to_owned()),
                None => Column::Trait(name.to_owned()),
            },
        };
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    Ok(columns)
}

/// A member of the export: its membership row, and its document and tags when the columns need them.
#[derive(Debug)]
pub struct Member<'a> {
    pub profile: &'a str,
    pub since: i64,
    pub caused_by: Option<&'a str>,
    pub doc: Option<&'a ProfileDoc>,
    pub tags: &'a [ProfileTag],
    /// In a channel's export, the basis on which the member may be reached there.
    pub consent: Option<Basis>,
}

/// The most recently seen value of `id_type` the document holds (phones in E.164).
pub fn address(doc: &ProfileDoc, id_type: &str) -> Option<String> {
    let seen = doc.seen.get(id_type);
    let value = doc
        .linked
        .iter()
        .filter(|id| id.id_type == id_type)
        .max_by_key(|id| seen.and_then(|s| s.get(&id.value)).map(|s| s.last))?
        .value
        .clone();
    Some(if id_type == "phone" {
        format!("+{value}")
    } else {
        value
    })
}

/// The member's value of each column, as JSON.
pub fn row(
    member: &Member<'_>,
    columns: &[Column],
    traits: &BTreeMap<String, DefinedTrait>,
    now: DateTime<Utc>,
) -> Vec<(String, Value)> {
    let computed = member
        .doc
        .filter(|_| columns.iter().any(|c| matches!(c, Column::Computed(_))))
        .map(|doc| doc.computed_values(traits, now))
        .unwrap_or_default();
    columns
        .iter()
        .map(|column| {
            let value = match column {
                Column::Member("profile_id") => Value::String(member.profile.to_owned()),
                Column::Member("since") => Value::String(rfc3339(from_millis(member.since))),
                Column::Member(_) => member
                    .caused_by
                    .map_or(Value::Null, |c| Value::String(c.to_owned())),
                Column::Identifier(t) => member
                    .doc
                    .and_then(|doc| address(doc, t))
                    .map_or(Value::Null, Value::String),
                Column::Trait(t) => {
                    member
                        .doc
                        .and_then(|doc| doc.traits.get(t))
                        .map_or(Value::Null, |v| {
                            // A value kept as an invalid identifier is exported as it was sent.
                            invalid_identifier(&v.value)
                                .map_or_else(|| v.value.clone(), |(raw, _)| raw.clone())
                        })
                }
                Column::Computed(t) => computed.get(t).map_or(Value::Null, |v| v.value.clone()),
                Column::Tag(t) => member
                    .tags
                    .iter()
                    .find(|tag| &tag.tag == t)
                    .map_or(Value::Null, |tag| tag.value.value.clone()),
                Column::Consent => member
                    .consent
                    .map_or(Value::Null, |b| Value::String(b.as_str().to_owned())),
            };
            (column.name(), value)
        })
        .collect()
}

/// A row as a JSON object (JSON items, NDJSON lines).
pub fn json_line(cells: Vec<(String, Value)>) -> Value {
    Value::Object(cells.into_iter().collect::<Map<String, Value>>())
}

/// The CSV header of these columns.
pub fn csv_header(columns: &[Column]) -> String {
    let names: Vec<String> = columns.iter().map(|c| csv_field(&c.name())).collect();
    format!("{}\n", names.join(","))
}

/// A row as a CSV line: strings as they are, numbers and booleans as their JSON text, nothing for
/// null, lists and objects as JSON.
pub fn csv_line(cells: &[(String, Value)]) -> String {
    let fields: Vec<String> = cells
        .iter()
        .map(|(_, v)| match v {
            Value::Null => String::new(),
            Value::String(s) => csv_field(s),
            other => csv_field(&other.to_string()),
        })
        .collect();
    format!("{}\n", fields.join(","))
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::identity::{Identifier, IdentityRules};
    use serde_json::json;

    fn names(columns: &[Column]) -> Vec<String> {
        columns.iter().map(Column::name).collect()
    }

    #[test]
    fn fields_resolve_to_identifiers_computed_traits_tags_and_traits() {
        let rules = IdentityRules::default().declare("wechat_openid");
        let catalog = Catalog::default();
        let columns = parse_fields(
            "profile_id, phone,wechat_openid,identifiers.member_card,name,traits.city,computed_traits.spend,tags.vip",
            &rules,
            &catalog,
        )
        .unwrap();
        assert_eq!(
            columns,
            [
                Column::Member("profile_id"),
                Column::Identifier("phone".into()),
                Column::Identifier("wechat_openid".into()),
                Column::Identifier("member_card".into()),
                Column::Trait("name".into()),
                Column::Trait("city".into()),
                Column::Computed("spend".into()),
                Column::Tag("vip".into()),
            ]
        );
        assert_eq!(
            names(&columns),
            [
                "profile_id",
                "phone",
                "wechat_openid",
                "member_card",
                "traits.name",
                "traits.city",
                "spend",
                "tags.vip"
            ]
        );
        for bad in ["", "a,,b", "traits.", "x y", "tags.a/b"] {
            assert!(parse_fields(bad, &rules, &catalog).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_row_has_the_latest_address_and_the_trait_as_sent() {
        let mut doc = ProfileDoc {
            linked: vec![
                Identifier::new("phone", "8613800138000"),
                Identifier::new("email", "ann@shop.cn"),
            ],
            ..ProfileDoc::default()
        };
        doc.traits.insert(
            "phone".into(),
            cdp_domain::profile::TraitValue {
                value: json!({"value": "N/A", "invalid": "not_a_phone"}),
                set_at: Utc::now(),
                message_id: "m".into(),
                channel: "pos".into(),
                kind: "track".into(),
            },
        );
        let member = Member {
            profile: "p_1",
            since: 0,
            caused_by: None,
            doc: Some(&doc),
            tags: &[],
            consent: None,
        };
        let columns = [
            Column::Member("profile_id"),
            Column::Identifier("phone".into()),
            Column::Trait("phone".into()),
            Column::Identifier("wechat_openid".into()),
            Column::Member("caused_by"),
        ];
        let cells = row(&member, &columns, &BTreeMap::new(), Utc::now());
        assert_eq!(
            json_line(cells.clone()),
            json!({"profile_id": "p_1", "phone": "+8613800138000", "traits.phone": "N/A",
                   "wechat_openid": null, "caused_by": null})
        );
        assert_eq!(csv_line(&cells), "p_1,+8613800138000,N/A,,\n");
        assert_eq!(
            csv_header(&columns),
            "profile_id,phone,traits.phone,wechat_openid,caused_by\n"
        );
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
