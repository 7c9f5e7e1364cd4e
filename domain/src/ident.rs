//! Identifiers and their normalisation: workspace ids, emails, phones, and the identifier types a lookup names.

use std::fmt;

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

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
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
}

/// A phone number as digits with the country code. Numbers written with `+` or `00` keep their country
/// code; an 11-digit number starting with `1` is a mainland China mobile and gets `86`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let trimmed = raw.trim();
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        if trimmed
            .chars()
            .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
        {
            return Err(IdentError(format!("{raw:?} is not a phone number")));
        }
        let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if trimmed.starts_with("00") {
            digits.drain(..2);
        }
        if !international && digits.len() == 11 && digits.starts_with('1') {
            digits.insert_str(0, "86");
        }
        if (6..=15).contains(&digits.len()) {
            Ok(Self(digits))
        } else {
            Err(IdentError(format!(
                "{raw:?} is not a phone number (6-15 digits expected)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
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
    fn phones_become_digits_with_country_code() {
        assert_eq!(
            Phone::parse("138 0013 8000").unwrap().as_str(),
            "8613800138000"
        );
        assert_eq!(
            Phone::parse("+86 138-0013-8000").unwrap().as_str(),
            "8613800138000"
        );
        assert_eq!(
            Phone::parse("0044 20 7946 0958").unwrap().as_str(),
            "442079460958"
        );
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("12").is_err());
    }

    #[test]
    fn workspace_ids_are_restricted() {
        assert!(WorkspaceId::parse("shop_a").is_ok());
        assert!(WorkspaceId::parse("Shop A").is_err());
        assert!(WorkspaceId::parse("").is_err());
    }
}
