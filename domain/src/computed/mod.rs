//! Computed traits: per-profile aggregates of events (count, sum, … over a window), kept as compact mergeable state.

mod condition;
mod path;

pub use condition::{parse_duration, Comparison, DefinitionError, Op};
pub use path::{Expr, Path};
