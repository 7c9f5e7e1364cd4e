//! Computed traits: per-profile aggregates of events (count, sum, … over a window), kept as compact mergeable state.
