//! Workspaces, credentials and scopes: who may do what in which workspace.

use sha2::{Digest, Sha256};

/// What a credential allows. Write keys ingest; tokens carry scopes for the query and admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// The kind of a stored credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A Segment write key: HTTP Basic user name or `writeKey` in the body; ingestion only.
    WriteKey,
    /// A Bearer token for the query and admin API.
    Token,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::WriteKey => "write_key",
            CredentialKind::Token => "token",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "write_key" => Some(CredentialKind::WriteKey),
            "token" => Some(CredentialKind::Token),
            _ => None,
        }
    }
}

/// A credential as stored: only the SHA-256 of the secret is kept, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret_hash: String,
    pub workspace: String,
    pub kind: CredentialKind,
    pub scopes: Vec<Scope>,
}

impl Credential {
    pub fn new(secret: &str, workspace: &str, kind: CredentialKind, scopes: Vec<Scope>) -> Self {
        Self {
            secret_hash: hash_secret(secret),
            workspace: workspace.to_owned(),
            kind,
            scopes,
        }
    }

    /// Admin implies write and read; write implies read.
    pub fn allows(&self, wanted: Scope) -> bool {
        self.scopes.iter().any(|s| *s >= wanted)
    }

    pub fn scopes_text(&self) -> String {
        self.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn parse_scopes(raw: &str) -> Vec<Scope> {
        raw.split(',').filter_map(Scope::parse).collect()
    }
}

/// The hex SHA-256 of a secret, the form in which credentials are stored and looked up.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_read_but_read_not_admin() {
        let admin = Credential::new("s", "w", CredentialKind::Token, vec![Scope::Admin]);
        let read = Credential::new("s", "w", CredentialKind::Token, vec![Scope::Read]);
        assert!(admin.allows(Scope::Read));
        assert!(read.allows(Scope::Read));
        assert!(!read.allows(Scope::Admin));
        assert_ne!(admin.secret_hash, "s");
    }
}
