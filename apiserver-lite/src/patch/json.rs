//! JSON patch (RFC 6902, a list of operations) and JSON merge patch (RFC 7386, an object
//! whose nulls delete), both schema-free.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum JsonPatchError {
    #[error("invalid JSON patch: {0}")]
    Malformed(serde_json::Error),
    /// An operation could not apply: a `test` that did not match, a path that is missing.
    #[error("JSON patch operation {operation} ({op} {path}) failed: {reason}")]
    Failed { operation: usize, op: &'static str, path: String, reason: String },
    #[error("invalid JSON merge patch: {0}")]
    MalformedMerge(serde_json::Error),
}

/// Applies an RFC 6902 patch; all operations apply or none.
pub fn apply_json_patch(original: &Value, patch: &[u8]) -> Result<Value, JsonPatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch).map_err(JsonPatchError::Malformed)?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| {
        let op = match ops.0.get(e.operation) {
            Some(json_patch::PatchOperation::Add(_)) => "add",
            Some(json_patch::PatchOperation::Remove(_)) => "remove",
            Some(json_patch::PatchOperation::Replace(_)) => "replace",
            Some(json_patch::PatchOperation::Move(_)) => "move",
            Some(json_patch::PatchOperation::Copy(_)) => "copy",
            Some(json_patch::PatchOperation::Test(_)) => "test",
            None => "operation",
        };
        JsonPatchError::Failed { operation: e.operation, op, path: e.path.to_string(), reason: e.kind.to_string() }
    })?;
    Ok(doc)
}

/// Applies an RFC 7386 merge patch: objects merge, nulls delete, everything else replaces.
pub fn apply_merge_patch(original: &Value, patch: &[u8]) -> Result<Value, JsonPatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(JsonPatchError::MalformedMerge)?;
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_replaces_adds_and_removes() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let patch = br#"[
            {"op": "replace", "path": "/spec/containers/0/image", "value": "y"},
            {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/a"}
        ]"#;
        let out = apply_json_patch(&pod, patch).unwrap();
        assert_eq!(out, json!({"metadata": {"name": "p", "labels": {"b": "2"}}, "spec": {"containers": [{"name": "c", "image": "y"}]}}));
    }

    #[test]
    fn json_patch_failing_test_names_the_operation_and_path() {
        let doc = json!({"spec": {"replicas": 1}});
        let patch = br#"[{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "test", "path": "/spec/replicas", "value": 3}]"#;
        match apply_json_patch(&doc, patch) {
            Err(JsonPatchError::Failed { operation, op, path, .. }) => {
                assert_eq!((operation, op, path.as_str()), (1, "test", "/spec/replicas"));
            }
            other => panic!("expected a failed test, got {other:?}"),
        }
    }

    #[test]
    fn json_patch_on_a_missing_path_fails() {
        let doc = json!({"spec": {}});
        let err = apply_json_patch(&doc, br#"[{"op": "remove", "path": "/spec/missing"}]"#).unwrap_err();
        assert!(matches!(err, JsonPatchError::Failed { operation: 0, op: "remove", .. }), "{err}");
        assert!(err.to_string().contains("/spec/missing"), "{err}");
    }

    #[test]
    fn json_patch_that_is_not_a_list_of_operations_is_malformed() {
        let err = apply_json_patch(&json!({}), br#"{"op": "add"}"#).unwrap_err();
        assert!(matches!(err, JsonPatchError::Malformed(_)), "{err}");
        let err = apply_json_patch(&json!({}), br#"[{"op": "frobnicate", "path": "/a"}]"#).unwrap_err();
        assert!(matches!(err, JsonPatchError::Malformed(_)), "{err}");
    }

    #[test]
    fn merge_patch_merges_objects_replaces_lists_and_deletes_nulls() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [{"port": 80}, {"port": 81}]}});
        let patch = br#"{"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"ports": [{"port": 90}]}}"#;
        let out = apply_merge_patch(&doc, patch).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [{"port": 90}]}}));
    }

    #[test]
    fn merge_patch_that_is_not_json_is_malformed() {
        assert!(matches!(apply_merge_patch(&json!({}), b"{nope"), Err(JsonPatchError::MalformedMerge(_))));
    }
}
