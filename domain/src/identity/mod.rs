//! OneID identity resolution, pure and synchronous: the rules per identifier type, the decisions as events,
//! the graph those events build, and the resolution that decides them for one incoming event.

pub mod commands;
pub mod events;
pub mod extract;
pub mod graph;
pub mod resolve;
pub mod rules;

#[cfg(test)]
mod commands_tests;
#[cfg(test)]
mod tests;

pub use commands::{
    apply_rules_diff, manual_merge, rules_diff, split, CommandError, MergePlan, OperatorCommand,
    RulesDiff, SplitPlan,
};
pub use events::{Identifier, IdentityEvent, ProfileId, RejectReason, IDENTITY_EVENT_VERSION};
pub use extract::identifiers_of;
pub use graph::{IdentityGraph, Profile};
pub use resolve::{decide, decide_batch, resolve, resolve_normalised, Resolution};
pub use rules::{IdentifierRule, IdentityRules};
