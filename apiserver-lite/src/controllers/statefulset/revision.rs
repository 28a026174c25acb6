//! ControllerRevisions of a StatefulSet, as upstream stores them: the data is a strategic
//! merge patch `{"spec":{"template":{"$patch":"replace",...}}}` that puts the pod template
//! back (what `kubectl rollout undo` sends), the name is `<set>-<hash>`, the labels are the
//! template's plus `controller.kubernetes.io/hash`, the annotations the set's.
//!
//! The hash is upstream's HashControllerRevision: FNV-1 (32 bit) over the data's JSON and the
//! collision count in decimal, printed in decimal and safe-encoded. Upstream's JSON comes from
//! Go's encoder (empty structs such as `resources: {}` included), which serde does not
//! reproduce byte for byte, so names differ from a real cluster's but are as stable.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use serde_json::{Map, Value, json};

use super::identity::controller_ref;
use crate::controllers::deployment::hash;

pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Names are at most 253 characters; the hash takes up to 10 and a dash.
const MAX_PREFIX: usize = 223;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("revision {name} holds no pod template under spec.template")]
    NoTemplate { name: String },
    #[error("revision {name} holds a pod template that cannot be read: {source}")]
    BadTemplate { name: String, source: serde_json::Error },
}

/// FNV-1 (multiply, then xor), as Go's hash/fnv New32.
pub fn fnv1_32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    h
}

/// Objects with their keys sorted at every level, so the bytes hashed do not depend on the
/// order serde_json (built with preserve_order) met the keys in.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&m[k]))).collect::<Map<String, Value>>())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The data a revision of `set` stores.
pub fn patch_of(set: &StatefulSet) -> Value {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut template = serde_json::to_value(template).expect("a pod template serializes");
    if let Value::Object(m) = &mut template {
        m.insert("$patch".into(), json!("replace"));
    }
    canonical(&json!({"spec": {"template": template}}))
}

pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(&canonical(data)).expect("JSON serializes");
    bytes.extend_from_slice(collision_count.to_string().as_bytes());
    hash::safe_encode(&fnv1_32(&bytes).to_string())
}

pub fn name(parent: &str, hash: &str) -> String {
    let prefix: String = parent.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of `set`'s template, numbered `revision`, named for `collision_count`.
pub fn new_revision(set: &StatefulSet, revision: i64, collision_count: i32) -> ControllerRevision {
    let data = patch_of(set);
    let h = hash(&data, collision_count);
    let mut labels = set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), h.clone());
    let annotations = set.metadata.annotations.clone().unwrap_or_default();
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name(&set.name_any(), &h)),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The same data (what upstream's EqualRevision compares).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let data = |r: &ControllerRevision| r.data.as_ref().map(|d| canonical(&d.0));
    data(a) == data(b)
}

/// `set` with the pod template `revision` stores (upstream's ApplyRevision).
pub fn apply(set: &StatefulSet, revision: &ControllerRevision) -> Result<StatefulSet, Error> {
    let name = revision.name_any();
    let mut template = revision.data.as_ref().and_then(|d| d.0.pointer("/spec/template")).cloned().ok_or_else(|| Error::NoTemplate { name: name.clone() })?;
    if let Value::Object(m) = &mut template {
        m.remove("$patch");
    }
    let template: PodTemplateSpec = serde_json::from_value(template).map_err(|source| Error::BadTemplate { name, source })?;
    let mut out = set.clone();
    out.spec.get_or_insert_with(Default::default).template = template;
    Ok(out)
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.creation_timestamp.as_ref().map(|t| t.0).cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0)))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// One more than the newest (sorted) revision's number, 1 for the first.
pub fn next_number(sorted: &[ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// The revisions to delete to keep `limit` of those no pod and neither the current nor the
/// update revision uses: the oldest.
pub fn to_truncate(sorted: &[ControllerRevision], live: &HashSet<String>, limit: i32) -> Vec<String> {
    let history: Vec<String> = sorted.iter().map(|r| r.name_any()).filter(|n| !live.contains(n)).collect();
    let excess = history.len().saturating_sub(limit.max(0) as usize);
    history.into_iter().take(excess).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::set;

    #[test]
    fn fnv1_matches_the_reference_vectors() {
        assert_eq!(fnv1_32(b""), 0x811c9dc5);
        assert_eq!(fnv1_32(b"a"), 0x050c5d7e);
        assert_eq!(fnv1_32(b"foobar"), 0x31f0b262);
    }

    #[test]
    fn a_revision_stores_the_template_as_a_replace_patch() {
        let s = set(json!({}));
        let r = new_revision(&s, 1, 0);
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(data.as_object().unwrap().len(), 1);
        let h = r.labels()[HASH_LABEL].clone();
        assert_eq!(r.name_any(), format!("web-{h}"));
        assert!(h.bytes().all(|b| b"bcdf456789".contains(&b)), "{h}");
        assert_eq!(r.labels()["app"], "web");
        assert_eq!(r.owner_references()[0].kind, "StatefulSet");
        // Stable, and applying it gives the template back.
        assert_eq!(new_revision(&s, 1, 0).name_any(), r.name_any());
        let other = set(json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}));
        let back = apply(&other, &r).unwrap();
        assert_eq!(back.spec.unwrap().template, s.spec.as_ref().unwrap().template);
        assert!(!equal(&r, &new_revision(&other, 2, 0)));
        assert!(equal(&r, &new_revision(&s, 7, 0)));
    }

    #[test]
    fn the_collision_count_changes_the_name_and_key_order_does_not() {
        let s = set(json!({}));
        assert_ne!(new_revision(&s, 1, 0).name_any(), new_revision(&s, 1, 1).name_any());
        let a = json!({"b": 1, "a": {"d": 2, "c": 3}});
        let b: Value = serde_json::from_str(r#"{"a": {"c": 3, "d": 2}, "b": 1}"#).unwrap();
        assert_eq!(hash(&a, 0), hash(&b, 0));
        assert_eq!(name(&"x".repeat(300), "abc").len(), 223 + 4);
    }

    #[test]
    fn history_keeps_the_newest_unused_revisions() {
        let s = set(json!({}));
        let mut revs: Vec<ControllerRevision> = (1..=5).map(|n| {
            let mut r = new_revision(&s, n, 0);
            r.metadata.name = Some(format!("web-{n}"));
            r
        }).collect();
        revs.reverse();
        sort(&mut revs);
        assert_eq!(next_number(&revs), 6);
        let live: HashSet<String> = ["web-1".to_string(), "web-5".to_string()].into();
        assert_eq!(to_truncate(&revs, &live, 1), ["web-2", "web-3"]);
        assert!(to_truncate(&revs, &live, 10).is_empty());
    }
}
