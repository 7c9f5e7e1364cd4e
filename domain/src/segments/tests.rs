//! Given/when/then tests of segment definitions: parsing and its errors, evaluation over facts, cycles, and
//! properties of parse over arbitrary JSON.

use serde_json::json;

use super::*;

#[test]
fn a_trait_condition_parses() {
    let def =
        SegmentDef::parse(&json!({"condition": {"trait": "gender", "op": "neq", "value": "male"}}));
    assert!(def.is_ok());
}
