//! The batch's own tests: the message of a track event as its subscribers read it.

use super::*;

#[test]
fn an_event_message_reads_as_the_json_object_of_its_fields() {
    let properties = serde_json::json!({"total": 12.5, "products": [{"sku": "a"}], "b": null});
    let message = EventMessage {
        event: "Order Completed",
        message_id: "m1",
        profile_id: "p_1",
        properties: &properties,
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
        "properties": properties,
    });
    assert_eq!(serde_json::to_string(&message).unwrap(), object.to_string());
}
