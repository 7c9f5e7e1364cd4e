//! Authentication: Segment write keys (HTTP Basic user name or `writeKey` in the body) for ingestion,
//! Bearer tokens with scopes for everything else. Every credential belongs to exactly one workspace, and
//! every query is scoped to it. A token's call is counted against its workspace's API budget
//! (`limits`) once the token is known, and reported to the audit middleware (`audit`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::EventStore;
use cdp_domain::workspace::{hash_secret, Credential, CredentialKind, Scope};

use crate::audit_slot::AuditSlot;
use crate::error::ApiError;
use crate::AppState;

/// The caller of a query or admin endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    pub workspace: WorkspaceId,
    credential: Credential,
    /// Where the audit middleware learns who called and which scope the call needed.
    audit: Option<AuditSlot>,
}

impl Principal {
    /// Who gave a command, for the record: the credential's kind and the start of its hash.
    pub fn actor(&self) -> String {
        let hash = &self.credential.secret_hash;
        format!(
            "{}:{}",
            self.credential.kind.as_str(),
            &hash[..hash.len().min(12)]
        )
    }

    /// Fails with 403 unless the token carries `scope` (admin implies write implies read).
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if let Some(slot) = &self.audit {
            slot.required(scope);
        }
        if self.credential.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token lacks the {} scope",
                scope.as_str()
            )))
        }
    }

    /// Names what the call acts on, for the audit log, when the path does not (a merge's profiles).
    pub fn audit_target(&self, target: &str) {
        if let Some(slot) = &self.audit {
            slot.target(target);
        }
    }
}

impl AppState {
    /// Looks a secret up through the credential cache.
    pub async fn credential(&self, secret: &str) -> Result<Option<Credential>, ApiError> {
        let hash = hash_secret(secret);
        if let Some(hit) = self.credentials.get(&hash) {
            return Ok(hit);
        }
        let found = self.store.find_credential(&hash).await?;
        self.credentials.insert(hash, found.clone());
        Ok(found)
    }

    /// The workspace a write key belongs to.
    pub async fn workspace_for_write_key(
        &self,
        key: Option<&str>,
    ) -> Result<WorkspaceId, ApiError> {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(ApiError::Unauthorized {
                message: "a write key is required: HTTP Basic with the write key as user name, \
                          or writeKey in the body"
                    .into(),
                basic: true,
            });
        };
        match self.credential(key).await? {
            // Parsed once per request, as a token's workspace is: every credential's workspace was
            // parsed when it was provisioned.
            Some(c) if c.kind == CredentialKind::WriteKey => WorkspaceId::parse(&c.workspace)
                .map_err(|e| {
                    ApiError::Internal(format!("a credential names an invalid workspace: {e}"))
                }),
            _ => Err(ApiError::Unauthorized {
                message: "unknown write key".into(),
                basic: true,
            }),
        }
    }
}

/// The write key from `Authorization: Basic base64(key:)`, if the header is there.
pub fn basic_write_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    Some(user.to_owned())
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let unauthorized = |message: &str| ApiError::Unauthorized {
            message: message.into(),
            basic: false,
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("a Bearer token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be 'Bearer <token>'"))?;
        let credential = match state.credential(token).await? {
            Some(credential) if credential.kind == CredentialKind::Token => credential,
            _ => return Err(unauthorized("unknown token")),
        };
        // Every credential's workspace was parsed when it was provisioned (configuration, bootstrap).
        let workspace = WorkspaceId::parse(&credential.workspace).map_err(|e| {
            ApiError::Internal(format!("a credential names an invalid workspace: {e}"))
        })?;
        state.limits.api.take(&workspace, 1)?;
        let principal = Principal {
            workspace,
            credential,
            audit: parts.extensions.get::<AuditSlot>().cloned(),
        };
        if let Some(slot) = &principal.audit {
            slot.authenticated(&principal.workspace, principal.actor());
        }
        Ok(principal)
    }
}
