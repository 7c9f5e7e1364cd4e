//! Tests of computed traits: definitions, comparisons, paths, each function and window, and the state held to `recompute`.
