//! What a token call's handler learnt about its caller — who authenticated, the strongest scope it
//! asked for, what it acted on — written through the `Principal` extractor (`auth`) and read by the audit
//! middleware (`audit`) once the status is known. A module of its own so that `auth` and `audit`, which
//! both use it, do not import each other.

use std::sync::{Arc, Mutex};

use cdp_domain::ident::WorkspaceId;
use cdp_domain::workspace::Scope;

/// What the handler learnt about the caller, shared between the middleware and the `Principal`
/// extractor (through the request's extensions).
#[derive(Debug, Clone, Default)]
pub struct AuditSlot(Arc<Mutex<Call>>);

/// The slot's content.
#[derive(Debug, Default)]
pub(crate) struct Call {
    pub(crate) workspace: Option<String>,
    pub(crate) actor: String,
    /// The strongest scope the handler asked for.
    pub(crate) required: Option<Scope>,
    /// Set by a handler whose target is in the body (merge, split).
    pub(crate) target: Option<String>,
}

impl AuditSlot {
    fn with<T>(&self, f: impl FnOnce(&mut Call) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A token of `workspace` authenticated the call.
    pub fn authenticated(&self, workspace: &WorkspaceId, actor: String) {
        self.with(|c| {
            c.workspace = Some(workspace.as_str().to_owned());
            c.actor = actor;
        });
    }

    /// The handler demanded `scope`.
    pub fn required(&self, scope: Scope) {
        self.with(|c| c.required = c.required.max(Some(scope)));
    }

    /// The handler named what it acts on (when the path does not).
    pub fn target(&self, target: &str) {
        self.with(|c| c.target = Some(target.to_owned()));
    }

    /// What was learnt, leaving the slot empty (the middleware, after the handler).
    pub(crate) fn take(&self) -> Call {
        self.with(std::mem::take)
    }
}
