//! Object metadata the server owns: names, uids, timestamps, resource versions, and the
//! JSON stored for an object.

use serde_json::{Value, json};

use super::status::ApiError;
use crate::resources::Resource;
use crate::storage::{KeyValue, Revision};

/// `2026-12-02T21:50:00Z`, as Kubernetes' metav1.Time.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `prefix` + 5 characters from the alphabet kube-apiserver uses (no vowels, no look-alikes).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).expect("the kernel's random source");
    let suffix: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    format!("{prefix}{suffix}")
}

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

pub fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str().filter(|s| !s.is_empty())
}

pub fn metadata_mut(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("metadata is an object")
}

/// The object of a stored value as `resource` serves it, with `resourceVersion` set from the
/// store's revision.
pub fn decode(resource: &Resource, kv: &KeyValue, revision: Revision) -> Result<Value, ApiError> {
    let object: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    let mut object = super::conversion::to_served(resource, object);
    metadata_mut(&mut object).insert("resourceVersion".into(), json!(revision.to_string()));
    Ok(object)
}

/// The bytes stored for an object of `resource`: everything but the resource version (the
/// store's revision is the version).
pub fn encode(resource: &Resource, object: &Value) -> Vec<u8> {
    let mut object = super::conversion::to_stored(resource, object.clone());
    metadata_mut(&mut object).remove("resourceVersion");
    serde_json::to_vec(&object).expect("JSON values serialize")
}

/// Parse a request body as a JSON object of the resource's kind, filling apiVersion and kind
/// when absent, refusing another kind.
pub fn parse_body(body: &[u8], resource: &Resource, kind: &str, api_version: &str) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !object.is_object() {
        return Err(ApiError::bad_request(format!("the request body must be a JSON object of kind {kind}")));
    }
    match object["kind"].as_str() {
        None | Some("") => object["kind"] = json!(kind),
        Some(k) if k == kind => {}
        Some(k) => return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({kind}) for {}", resource.plural))),
    }
    match object["apiVersion"].as_str() {
        None | Some("") => object["apiVersion"] = json!(api_version),
        Some(v) if v == api_version => {}
        Some(v) => return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({api_version})"))),
    }
    metadata_mut(&mut object);
    Ok(object)
}

/// A resourceVersion string as a revision.
pub fn parse_revision(s: &str) -> Result<Revision, ApiError> {
    s.parse::<Revision>().ok().filter(|r| *r >= 0).ok_or_else(|| ApiError::bad_request(format!("invalid resource version {s:?}: must be a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    #[test]
    fn names_and_stamps() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n[4..].chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        let t = time::macros::datetime!(2026-12-02 21:50:07 UTC);
        assert_eq!(timestamp(t), "2026-12-02T21:50:07Z");
        assert_ne!(new_uid(), new_uid());
    }

    #[test]
    fn bodies_are_checked() {
        let r = builtin();
        let pods = r.get("", "v1", "pods").unwrap();
        let o = parse_body(br#"{"metadata":{"name":"p"}}"#, pods, "Pod", "v1").unwrap();
        assert_eq!((o["kind"].as_str(), o["apiVersion"].as_str()), (Some("Pod"), Some("v1")));
        let e = parse_body(br#"{"kind":"Service","metadata":{}}"#, pods, "Pod", "v1").unwrap_err();
        assert_eq!(e.code, 400);
        assert!(parse_body(b"[1]", pods, "Pod", "v1").is_err());
        let stored = encode(pods, &json!({"metadata": {"name": "p", "resourceVersion": "7"}}));
        let kv = KeyValue { key: "k".into(), value: stored, create_revision: 3, mod_revision: 9 };
        assert_eq!(decode(pods, &kv, 9).unwrap()["metadata"]["resourceVersion"], "9");
    }
}
