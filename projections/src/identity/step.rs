//! One event of a resolver batch with what was decided for it (`Step`): what `batch` decides, and
//! `partition` and `model` plan and fold. Below all three, so none depends on another for it.

use cdp_domain::catalog::CatalogCommand;
use cdp_domain::event::StoredEvent;
use cdp_domain::identity::{Identifier, IdentityEvent, IdentityRules, ProfileId};
use cdp_domain::json::Json;

/// One event of the batch with what was decided for it (by `super::batch`), as the fold takes it.
pub(super) struct Step<'a> {
    pub(super) event: &'a StoredEvent,
    /// `None` for an operator command: it is not part of any profile. Parsed borrowing the event's
    /// text.
    pub(super) payload: Option<Json<'a>>,
    pub(super) carried: Vec<Identifier>,
    pub(super) target: Option<ProfileId>,
    pub(super) decisions: Vec<IdentityEvent>,
    /// A catalog command that was not refused.
    pub(super) command: Option<CatalogCommand>,
    /// The rules a rules command put in force: the workspace's later events resolve under them.
    pub(super) rules: Option<IdentityRules>,
}

impl<'a> Step<'a> {
    /// A step that belongs to no profile: an erased event's (nothing decided), or an operator
    /// command's with what it decided.
    pub(super) fn apart(
        event: &'a StoredEvent,
        decisions: Vec<IdentityEvent>,
        command: Option<CatalogCommand>,
        rules: Option<IdentityRules>,
    ) -> Step<'a> {
        Step {
            event,
            payload: None,
            carried: Vec::new(),
            target: None,
            decisions,
            command,
            rules,
        }
    }
}
