//! The batch's own tests: the message of a track event as its subscribers read it.

use super::*;

#[test]
fn an_event_message_reads_as_the_json_object_of_its_fields() {
    let text = r#"{"total": 12.5, "products": [{"sku": "a\u00e9"}], "b": null, "a": "x"}"#;
    let properties: Value = serde_json::from_str(text).unwrap();
    let parsed = Json::parse(text).unwrap();
    for (properties, expected) in [(Some(&parsed), properties), (None, Value::Null)] {
        let message = EventMessage {
            event: "Order Completed",
            message_id: "m1",
            profile_id: "p_1",
            properties,
            timestamp: "2026-12-03T10:00:00.000Z".into(),
            kind: "event",
            workspace: "w",
        };
        let object = serde_json::json!({
            "type": "event",
            "workspace": "w",
            "profile_id": "p_1",
            "event": "Order Completed",
            "message_id": "m1",
            "timestamp": "2026-12-03T10:00:00.000Z",
            "properties": expected,
        });
        assert_eq!(serde_json::to_string(&message).unwrap(), object.to_string());
    }
}
