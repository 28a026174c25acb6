//! A DaemonSet's ControllerRevisions, as upstream keeps them: one per pod template, named
//! `<daemonset>-<hash>`, labelled with the template's labels and `controller-revision-hash`,
//! carrying the DaemonSet's annotations, a `revision` number, and as data the strategic merge
//! patch that restores the template (`{"spec":{"template":{"$patch":"replace",...}}}`), which
//! `kubectl rollout undo` applies and `kubectl rollout history` shows.
//!
//! The data is the template's JSON with keys sorted and the fields Go always writes
//! (`metadata.creationTimestamp: null`, a container's `resources: {}`) filled in, so it reads
//! as kubectl's own rendering of the same DaemonSet does.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::placement::HASH_LABEL;
use crate::controllers::deployment::hash;

/// Upstream's ComputeHash: FNV-32a over the template (here its canonical JSON) and, after a
/// name collision, the collision count, printed in decimal and mapped onto the alphabet of
/// generated names.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&sorted(serde_json::to_value(template).expect("a pod template serializes"))).expect("json serializes");
    if let Some(c) = collision_count {
        let mut count = [0u8; 8];
        count[..4].copy_from_slice(&(c as u32).to_le_bytes());
        bytes.extend_from_slice(&count);
    }
    hash::safe_encode(&hash::fnv32a(&bytes).to_string())
}

/// Every object's keys in sorted order (Go's encoding of a map).
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The revision data for the DaemonSet's current template (upstream's getPatch).
pub fn patch_data(ds: &DaemonSet) -> Value {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut template = serde_json::to_value(template).expect("a pod template serializes");
    let obj = template.as_object_mut().expect("a template is an object");
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        for list in ["initContainers", "containers"] {
            for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.entry("resources").or_insert_with(|| json!({}));
                }
            }
        }
    }
    obj.insert("$patch".into(), json!("replace"));
    sorted(json!({"spec": {"template": template}}))
}

/// Whether a revision holds the DaemonSet's current template.
pub fn matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    revision.data.as_ref().is_some_and(|d| d.0 == patch_data(ds))
}

pub fn hash_of(revision: &ControllerRevision) -> Option<&str> {
    revision.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str)
}

pub fn max_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// The revision to create for the current template (upstream's snapshot).
pub fn snapshot(ds: &DaemonSet, hash: &str, revision: i64, owner: OwnerReference) -> ControllerRevision {
    let mut labels = ds.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(patch_data(ds))),
        revision,
    }
}

/// Old revisions beyond `limit` to delete, lowest revision first, sparing those whose hash a
/// live pod still carries (upstream's cleanupHistory).
pub fn to_clean_up(old: &[ControllerRevision], limit: i32, live_hashes: &HashSet<String>) -> Vec<String> {
    let mut to_kill = old.len() as i64 - i64::from(limit.max(0));
    let mut by_revision: Vec<&ControllerRevision> = old.iter().collect();
    by_revision.sort_by_key(|r| r.revision);
    let mut out = vec![];
    for r in by_revision {
        if to_kill <= 0 {
            break;
        }
        if hash_of(r).is_some_and(|h| live_hashes.contains(h)) {
            continue;
        }
        out.push(r.name_any());
        to_kill -= 1;
    }
    out
}

/// Several revisions match the current template (a race or an undo): keep the highest,
/// the others are duplicates to delete.
pub fn dedup(mut current: Vec<ControllerRevision>) -> (ControllerRevision, Vec<ControllerRevision>) {
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let keep = current.remove(0);
    (keep, current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(image: &str) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "annotations": {"kubernetes.io/change-cause": "v1"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": image}], "restartPolicy": "Always"}}},
        }))
        .unwrap()
    }

    #[test]
    fn data_is_a_replace_patch_of_the_template_as_go_writes_it() {
        let data = patch_data(&ds("agent:1"));
        let text = serde_json::to_string(&data).unwrap();
        assert_eq!(
            text,
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"app":"agent"}},"spec":{"containers":[{"image":"agent:1","name":"a","resources":{}}],"restartPolicy":"Always"}}}}"#
        );
    }

    #[test]
    fn snapshots_match_their_template_only() {
        let d = ds("agent:1");
        let hash = compute_hash(&d.spec.as_ref().unwrap().template, None);
        let owner = OwnerReference { api_version: "apps/v1".into(), kind: "DaemonSet".into(), name: "agent".into(), uid: "u".into(), controller: Some(true), block_owner_deletion: Some(true) };
        let rev = snapshot(&d, &hash, 1, owner);
        assert_eq!(rev.name_any(), format!("agent-{hash}"));
        assert_eq!(rev.labels()[HASH_LABEL], hash);
        assert_eq!(rev.labels()["app"], "agent");
        assert_eq!(rev.annotations()["kubernetes.io/change-cause"], "v1");
        assert!(matches(&d, &rev));
        assert!(!matches(&ds("agent:2"), &rev));
        assert_ne!(compute_hash(&d.spec.as_ref().unwrap().template, Some(1)), hash);
    }

    #[test]
    fn cleanup_removes_the_oldest_beyond_the_limit_but_not_live_ones() {
        let rev = |n: i64| ControllerRevision { metadata: ObjectMeta { name: Some(format!("r{n}")), labels: Some([(HASH_LABEL.to_string(), format!("h{n}"))].into()), ..Default::default() }, data: None, revision: n };
        let old = vec![rev(3), rev(1), rev(2), rev(4)];
        assert_eq!(to_clean_up(&old, 2, &HashSet::new()), ["r1", "r2"]);
        assert_eq!(to_clean_up(&old, 2, &["h1".to_string()].into()), ["r2", "r3"]);
        assert!(to_clean_up(&old, 10, &HashSet::new()).is_empty());
        let (keep, dups) = dedup(vec![rev(1), rev(5), rev(3)]);
        assert_eq!((keep.revision, dups.len()), (5, 2));
    }
}
