//! Evaluation: what a profile's tags (rule, value, RFM, manual) and segments are, and what changed.
//!
//! `evaluate` reads one profile's facts (computed traits at a time, manual tags, RFM cut points, traits)
//! and finds its tags, segments, spend and next due time; `derive` evaluates the profiles a resolver
//! batch touched, diffs them with what is stored, and stages the rows and the outbox messages (tag
//! changes, segment enters and exits). The resolver (`crate::identity`) calls it after its decisions and
//! folds, in the same batch; the rows are written by the audiences and derived stages (`crate::stages`).

pub mod derive;
mod evaluate;

pub(crate) use evaluate::{computed_and_spend, ProfileFacts};
