//! Patches as kubectl sends them: JSON patch (RFC 6902), JSON merge patch (RFC 7386),
//! Kubernetes' strategic merge patch and server-side apply, plus the field ownership
//! (`metadata.managedFields`) every write records. The handlers pick the kind from the
//! request's Content-Type and turn a [`PatchError`] or [`ApplyError`] into a Status with its
//! `code()` and `reason()`.
//!
//! Server-side apply needs the field manager and the force flag, so it has its own entry
//! point, [`server_side_apply`] (body parsed by [`parse_apply_body`]); every other write
//! goes through [`record_update`].

mod apply;
mod fieldset;
mod json;
pub mod metadata;
mod strategic;

use serde_json::Value;

pub use apply::{ApplyError, Conflict, parse_apply_body, record_update, server_side_apply};
pub use json::JsonPatchError;
pub use strategic::StrategicMergeError;

/// The patch formats a PATCH request can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// The patch type of a Content-Type header, parameters (`; charset=utf-8`) ignored.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// What kube-apiserver says when a patch format does not fit the resource.
pub const UNSUPPORTED_PATCH_MESSAGE: &str = "the body of the request was in an unknown format - accepted media types include: \
     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error(transparent)]
    Json(#[from] JsonPatchError),
    #[error("invalid strategic merge patch: {0}")]
    StrategicMerge(#[from] StrategicMergeError),
    #[error("invalid strategic merge patch: {0}")]
    MalformedStrategicMerge(serde_json::Error),
    /// Strategic merge patch on a kind without Go struct metadata (custom resources).
    #[error("{UNSUPPORTED_PATCH_MESSAGE}")]
    StrategicMergeUnsupported { group: String, kind: String },
    /// Server-side apply needs a field manager and force flag: see `server_side_apply`.
    #[error("server-side apply of {kind} goes through server_side_apply, not apply_patch")]
    ApplyNeedsManager { kind: String },
}

impl PatchError {
    /// The HTTP status of the Status answering this error.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::Json(JsonPatchError::Failed { .. }) => 422,
            PatchError::Json(_) | PatchError::MalformedStrategicMerge(_) => 400,
            PatchError::StrategicMerge(e) if e.is_malformed() => 400,
            PatchError::StrategicMerge(_) => 422,
            PatchError::StrategicMergeUnsupported { .. } => 415,
            PatchError::ApplyNeedsManager { .. } => 500,
        }
    }

    /// The Status `reason` matching [`PatchError::code`].
    pub fn reason(&self) -> &'static str {
        match self.code() {
            400 => "BadRequest",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            _ => "InternalError",
        }
    }
}

/// Applies a JSON, merge or strategic merge patch to `original`, an object of `group`/`kind`.
pub fn apply_patch(patch_type: PatchType, group: &str, kind: &str, original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => Ok(json::apply_json_patch(original, patch)?),
        PatchType::Merge => Ok(json::apply_merge_patch(original, patch)?),
        PatchType::StrategicMerge => {
            let root = metadata::root_type(group, kind)
                .ok_or_else(|| PatchError::StrategicMergeUnsupported { group: group.into(), kind: kind.into() })?;
            let patch: Value = serde_json::from_slice(patch).map_err(PatchError::MalformedStrategicMerge)?;
            Ok(strategic::apply(root, original, &patch)?)
        }
        PatchType::Apply => Err(PatchError::ApplyNeedsManager { kind: kind.into() }),
    }
}

#[cfg(test)]
mod kubectl_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(PatchType::from_content_type("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(PatchType::from_content_type("application/merge-patch+json; charset=utf-8"), Some(PatchType::Merge));
        assert_eq!(PatchType::from_content_type("application/strategic-merge-patch+json"), Some(PatchType::StrategicMerge));
        assert_eq!(PatchType::from_content_type("application/apply-patch+yaml"), Some(PatchType::Apply));
        assert_eq!(PatchType::from_content_type("application/json"), None);
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }

    #[test]
    fn errors_carry_the_http_answer() {
        let pod = json!({"metadata": {"name": "p"}});
        let bad = apply_patch(PatchType::Json, "", "Pod", &pod, b"not json").unwrap_err();
        assert_eq!((bad.code(), bad.reason()), (400, "BadRequest"));
        let failed = apply_patch(PatchType::Json, "", "Pod", &pod, br#"[{"op": "test", "path": "/metadata/name", "value": "q"}]"#).unwrap_err();
        assert_eq!((failed.code(), failed.reason()), (422, "Invalid"));
        assert!(failed.to_string().contains("operation 0") && failed.to_string().contains("/metadata/name"), "{failed}");
        let bad_smp = apply_patch(PatchType::StrategicMerge, "", "Pod", &pod, b"{").unwrap_err();
        assert_eq!(bad_smp.code(), 400);
        let bad_directive = apply_patch(PatchType::StrategicMerge, "", "Pod", &pod, br#"{"$patch": "explode"}"#).unwrap_err();
        assert_eq!(bad_directive.code(), 400);
    }

    #[test]
    fn strategic_merge_on_a_custom_resource_is_unsupported_media_type() {
        let err = apply_patch(PatchType::StrategicMerge, "example.com", "Widget", &json!({}), b"{}").unwrap_err();
        assert_eq!((err.code(), err.reason()), (415, "UnsupportedMediaType"));
        assert_eq!(err.to_string(), UNSUPPORTED_PATCH_MESSAGE);
        // The other formats work on any kind.
        let out = apply_patch(PatchType::Merge, "example.com", "Widget", &json!({"spec": {"a": 1}}), br#"{"spec": {"b": 2}}"#).unwrap();
        assert_eq!(out, json!({"spec": {"a": 1, "b": 2}}));
    }

    #[test]
    fn strategic_merge_patch_merges_containers_by_name() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let patch = br#"{"spec": {"containers": [{"name": "b", "image": "b:2"}]}}"#;
        let out = apply_patch(PatchType::StrategicMerge, "", "Pod", &pod, patch).unwrap();
        assert_eq!(out, json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]}}));
    }
}
