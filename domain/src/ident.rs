//! Identifiers and their normalisation: workspace ids, emails, phones, and the identifier types a lookup names.

use std::fmt;

mod phone;

pub use phone::{Phone, PhoneRegion};

/// Why a raw identifier value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentError(pub String);

/// A workspace id: 1–64 characters of `a-z`, `0-9`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdentError(format!(
                "workspace id {raw:?} must be 1-64 characters of a-z, 0-9, '_' and '-'"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Read as the text it is (SQL binds, keys, messages): a `&WorkspaceId` goes where a `&str` is taken.
impl std::ops::Deref for WorkspaceId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Local parts that say "no address" rather than name a mailbox.
pub const PLACEHOLDER_EMAIL_LOCAL_PARTS: [&str; 8] = [
    "none", "noemail", "no-email", "no_email", "null", "na", "n/a", "unknown",
];

impl Email {
    /// An address as ingestion takes it: [`Email::parse`], with a domain that has a dot and no empty
    /// label (`ann@shop` is refused), and a local part that is not a placeholder (`none@…`, `noemail@…`).
    pub fn parse_strict(raw: &str) -> Result<Self, InvalidIdentifier> {
        let not_an_email = || InvalidIdentifier::new("not_an_email", "not an e-mail address");
        let email = Self::parse(raw).map_err(|_| not_an_email())?;
        let (local, domain) = email.0.split_once('@').ok_or_else(not_an_email)?;
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(InvalidIdentifier::new(
                "not_an_email",
                "not an e-mail address: the domain needs a dot (name@shop.cn)",
            ));
        }
        if PLACEHOLDER_EMAIL_LOCAL_PARTS.contains(&local) {
            return Err(InvalidIdentifier::new(
                "placeholder",
                "a placeholder, not a customer's address",
            ));
        }
        Ok(email)
    }

    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let value = raw.trim().to_lowercase();
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !value.chars().any(|c| c.is_whitespace() || c.is_control())
                    && value.len() <= 254
            }
            None => false,
        };
        if valid {
            Ok(Self(value))
        } else {
            Err(IdentError(format!("{raw:?} is not an email address")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why a phone or e-mail value is no usable identifier: a stable `code` (`not_a_phone`, `placeholder`,
/// `no_area_code`, `invalid_number`, `not_an_email`) and a sentence that never repeats the value, so that
/// a data-quality finding carries no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidIdentifier {
    pub code: &'static str,
    pub reason: String,
}

impl InvalidIdentifier {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The identifier types a profile can be looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentifierType {
    UserId,
    AnonymousId,
    Email,
    Phone,
}

impl IdentifierType {
    pub const ALL: [IdentifierType; 4] = [
        IdentifierType::UserId,
        IdentifierType::AnonymousId,
        IdentifierType::Email,
        IdentifierType::Phone,
    ];

    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                IdentError(format!(
                    "unknown identifier type {raw:?}; expected one of user_id, anonymous_id, email, phone"
                ))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::UserId => "user_id",
            IdentifierType::AnonymousId => "anonymous_id",
            IdentifierType::Email => "email",
            IdentifierType::Phone => "phone",
        }
    }

    /// Normalises a raw value of this type the way ingestion does, so lookups find what was stored.
    pub fn normalise(self, raw: &str) -> Result<String, IdentError> {
        match self {
            IdentifierType::Email => Email::parse(raw).map(|e| e.0),
            IdentifierType::Phone => Phone::parse(raw).map(|p| p.0),
            IdentifierType::UserId | IdentifierType::AnonymousId => {
                let v = raw.trim();
                if v.is_empty() {
                    Err(IdentError("identifier value is empty".into()))
                } else {
                    Ok(v.to_owned())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("a@b@c").is_err());
        assert!(Email::parse("@x.com").is_err());
    }

    #[test]
    fn strict_emails_need_a_dotted_domain_and_a_real_mailbox() {
        assert_eq!(
            Email::parse_strict(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        assert_eq!(
            Email::parse_strict("ann@shop").unwrap_err().code,
            "not_an_email"
        );
        assert_eq!(
            Email::parse_strict("ann@shop..cn").unwrap_err().code,
            "not_an_email"
        );
        assert_eq!(Email::parse_strict("N/A").unwrap_err().code, "not_an_email");
        assert_eq!(
            Email::parse_strict("none@shop.cn").unwrap_err().code,
            "placeholder"
        );
        assert_eq!(
            Email::parse_strict("NoEmail@x.com").unwrap_err().code,
            "placeholder"
        );
    }

    #[test]
    fn workspace_ids_are_restricted() {
        assert!(WorkspaceId::parse("shop_a").is_ok());
        assert!(WorkspaceId::parse("Shop A").is_err());
        assert!(WorkspaceId::parse("").is_err());
    }
}
