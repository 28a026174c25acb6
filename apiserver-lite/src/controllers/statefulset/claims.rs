//! persistentVolumeClaimRetentionPolicy through owner references, as upstream does it: the
//! garbage collector deletes a claim whose controller is gone, so
//!
//! - whenDeleted=Delete makes the set the controller of the claims of pods it wants;
//! - whenScaled=Delete makes a pod scaled away the controller of its claims (the claim goes
//!   with the pod);
//! - Retain leaves claims without such references.
//!
//! A claim controlled by something else, or referring to an earlier object of the same name
//! (another uid), is left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use super::identity::{self, claims_for, controller_ref};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub delete_when_scaled: bool,
    pub delete_when_deleted: bool,
}

/// The set's policy; anything but "Delete" counts as Retain, as upstream treats unknown values.
pub fn policy(set: &StatefulSet) -> Policy {
    let p = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.clone()).unwrap_or_default();
    Policy { delete_when_scaled: p.when_scaled.as_deref() == Some("Delete"), delete_when_deleted: p.when_deleted.as_deref() == Some("Delete") }
}

/// An owner as the claim logic sees it: the set or a pod (a pod not created yet has no uid).
struct Owner<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: String,
    uid: String,
}

fn set_owner(set: &StatefulSet) -> Owner<'static> {
    Owner { api_version: "apps/v1", kind: "StatefulSet", name: set.name_any(), uid: set.uid().unwrap_or_default() }
}

fn pod_owner(pod: &Pod) -> Owner<'static> {
    Owner { api_version: "v1", kind: "Pod", name: pod.name_any(), uid: pod.uid().unwrap_or_default() }
}

fn matches_ref(r: &OwnerReference, o: &Owner) -> bool {
    r.api_version == o.api_version && r.kind == o.kind && r.name == o.name
}

fn has_owner_ref(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    claim.owner_references().iter().any(|r| r.uid == o.uid)
}

/// A reference to an object of this kind and name but another uid: left by an earlier one.
fn has_stale_owner_ref(claim: &PersistentVolumeClaim, o: &Owner) -> bool {
    claim.owner_references().iter().find(|r| matches_ref(r, o)).is_some_and(|r| r.uid != o.uid)
}

fn has_unexpected_controller(claim: &PersistentVolumeClaim, policy: Policy, set: &Owner, pod: &Owner) -> bool {
    if !policy.delete_when_scaled && !policy.delete_when_deleted {
        return false;
    }
    claim.owner_references().iter().any(|r| {
        if matches_ref(r, set) {
            r.uid != set.uid
        } else if matches_ref(r, pod) {
            r.uid != pod.uid
        } else {
            r.controller == Some(true)
        }
    })
}

fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &Owner, pod: &Owner) -> bool {
    claim.owner_references().iter().any(|r| (r.uid == set.uid || r.uid == pod.uid) && r.controller != Some(true))
}

fn scaled_down(set: &StatefulSet, pod: &Pod) -> bool {
    !identity::ordinal(pod).is_some_and(|o| identity::in_range(set, o))
}

/// Whether the claim's owner references agree with the policy (upstream's isClaimOwnerUpToDate).
pub fn up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    let (s, p) = (set_owner(set), pod_owner(pod));
    if has_stale_owner_ref(claim, &s) || has_stale_owner_ref(claim, &p) {
        return true;
    }
    let policy = policy(set);
    if has_unexpected_controller(claim, policy, &s, &p) {
        return !(has_owner_ref(claim, &s) || has_owner_ref(claim, &p));
    }
    if has_non_controller_owner(claim, &s, &p) {
        return false;
    }
    let (want_set, want_pod) = wanted_refs(policy, scaled_down(set, pod));
    has_owner_ref(claim, &s) == want_set && has_owner_ref(claim, &p) == want_pod
}

/// Which of set and pod should control the claim.
fn wanted_refs(policy: Policy, scaled_down: bool) -> (bool, bool) {
    match (policy.delete_when_scaled, policy.delete_when_deleted) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    }
}

/// Rewrite the claim's references to the set and pod as the policy wants them.
pub fn update_owner_refs(claim: &mut PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) {
    let (s, p) = (set_owner(set), pod_owner(pod));
    let policy = policy(set);
    let unexpected = has_unexpected_controller(claim, policy, &s, &p);
    let mut refs: Vec<OwnerReference> = claim.owner_references().iter().filter(|r| !matches_ref(r, &s) && !matches_ref(r, &p)).cloned().collect();
    if !unexpected {
        let (want_set, want_pod) = wanted_refs(policy, scaled_down(set, pod));
        if want_set {
            refs.push(controller_ref(set));
        }
        if want_pod {
            refs.push(OwnerReference { api_version: "v1".into(), kind: "Pod".into(), name: p.name.clone(), uid: p.uid.clone(), controller: Some(true), block_owner_deletion: Some(true) });
        }
    }
    claim.metadata.owner_references = (!refs.is_empty()).then_some(refs);
}

/// The pod's existing claims whose references need rewriting, rewritten.
pub fn updates_for(set: &StatefulSet, pod: &Pod, existing: &BTreeMap<String, PersistentVolumeClaim>) -> Vec<PersistentVolumeClaim> {
    let Some(ordinal) = identity::ordinal(pod) else { return vec![] };
    claims_for(set, ordinal)
        .iter()
        .filter_map(|c| existing.get(&c.name_any()))
        .filter(|c| c.metadata.deletion_timestamp.is_none() && !up_to_date(c, set, pod))
        .map(|c| {
            let mut c = c.clone();
            update_owner_refs(&mut c, set, pod);
            c
        })
        .collect()
}

/// With whenScaled=Delete, a claim still referring to an earlier pod of this name is about to
/// be collected: the new pod must wait for it rather than mount it (upstream's PodClaimIsStale).
pub fn is_stale(set: &StatefulSet, pod: &Pod, existing: &BTreeMap<String, PersistentVolumeClaim>) -> bool {
    if !policy(set).delete_when_scaled {
        return false;
    }
    let Some(ordinal) = identity::ordinal(pod) else { return false };
    let owner = pod_owner(pod);
    claims_for(set, ordinal).iter().filter_map(|c| existing.get(&c.name_any())).any(|c| has_stale_owner_ref(c, &owner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::set;
    use serde_json::json;

    fn pod(name: &str, uid: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": uid}})).unwrap()
    }

    fn claim(refs: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "www-web-2", "ownerReferences": refs}})).unwrap()
    }

    fn with_policy(scaled: &str, deleted: &str) -> StatefulSet {
        set(json!({"persistentVolumeClaimRetentionPolicy": {"whenScaled": scaled, "whenDeleted": deleted},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {}}]}))
    }

    fn owner_kinds(c: &PersistentVolumeClaim) -> Vec<String> {
        c.owner_references().iter().map(|r| format!("{}/{}", r.kind, r.name)).collect()
    }

    #[test]
    fn retain_wants_no_references_and_delete_on_deletion_wants_the_set() {
        let retain = with_policy("Retain", "Retain");
        let p = pod("web-2", "pod-uid");
        let mut c = claim(json!([]));
        assert!(up_to_date(&c, &retain, &p));
        let delete = with_policy("Retain", "Delete");
        assert!(!up_to_date(&c, &delete, &p));
        update_owner_refs(&mut c, &delete, &p);
        assert_eq!(owner_kinds(&c), ["StatefulSet/web"]);
        assert_eq!(c.owner_references()[0].controller, Some(true));
        assert!(up_to_date(&c, &delete, &p));
        // Back to Retain: the reference goes.
        assert!(!up_to_date(&c, &retain, &p));
        update_owner_refs(&mut c, &retain, &p);
        assert!(c.metadata.owner_references.is_none());
    }

    #[test]
    fn delete_on_scale_down_hands_a_condemned_pods_claim_to_the_pod() {
        let mut s = with_policy("Delete", "Delete");
        s.spec.as_mut().unwrap().replicas = Some(2);
        let condemned = pod("web-2", "pod-uid");
        let mut c = claim(json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid", "controller": true}]));
        assert!(!up_to_date(&c, &s, &condemned));
        update_owner_refs(&mut c, &s, &condemned);
        assert_eq!(owner_kinds(&c), ["Pod/web-2"]);
        assert_eq!(c.owner_references()[0].uid, "pod-uid");
        // A new web-2 (no uid yet) finds the claim stale until it is collected.
        let mut existing = BTreeMap::new();
        existing.insert("www-web-2".to_string(), c);
        assert!(is_stale(&s, &pod("web-2", ""), &existing));
        assert!(!is_stale(&with_policy("Retain", "Delete"), &pod("web-2", ""), &existing));
    }

    #[test]
    fn a_claim_controlled_by_someone_else_is_left_alone() {
        let s = with_policy("Retain", "Delete");
        let c = claim(json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "other", "controller": true}]));
        assert!(up_to_date(&c, &s, &pod("web-2", "pod-uid")));
    }
}
