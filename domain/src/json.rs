//! Reading into a parsed message without allocating: [`at`] walks object keys, where
//! `serde_json::Value::pointer` parses its pointer text (and allocates a string per step) on every call —
//! which, on the engine's hot path, cost more than the lookups themselves.

use serde_json::Value;

/// The value at `path` (object keys, outermost first), if every step is an object holding the key.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))
}

#[cfg(test)]
mod tests {
    use super::at;
    use serde_json::json;

    #[test]
    fn walks_object_keys_like_a_json_pointer() {
        let v = json!({"context": {"library": {"name": "analytics.js"}, "list": [1]}, "a/b": 1});
        for (path, pointer) in [
            (&["context", "library", "name"][..], "/context/library/name"),
            (&["context", "library"][..], "/context/library"),
            (&["context", "missing"][..], "/context/missing"),
            (
                &["context", "library", "name", "deeper"][..],
                "/context/library/name/deeper",
            ),
            (&["a/b"][..], "/a~1b"),
            (&[][..], ""),
        ] {
            assert_eq!(at(&v, path), v.pointer(pointer), "{path:?}");
        }
        // Unlike a pointer, a step never indexes into an array.
        assert_eq!(at(&v, &["context", "list", "0"]), None);
    }
}
