//! A StatefulSet pod's identity, as upstream gives it: the name `<set>-<ordinal>`, the labels
//! that carry name, index and revision, hostname and subdomain, and the claims
//! `<template>-<set>-<ordinal>` mounted under the template's name.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The set name and ordinal a pod name `<set>-<ordinal>` carries; None without an ordinal.
/// The parent is everything before the last dash, as upstream's greedy `(.*)-([0-9]+)$`.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).map(|(_, o)| o)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

pub fn claim_name(template: &PersistentVolumeClaim, set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{}-{ordinal}", template.name_any(), set.name_any())
}

pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).is_some_and(|(parent, _)| parent == set.name_any())
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The first ordinal (spec.ordinals.start, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// Whether `ordinal` is one the set wants now: start <= ordinal < start + replicas.
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    ordinal >= start_ordinal(set) && ordinal < start_ordinal(set) + replicas(set)
}

pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or("")
}

/// Name, namespace and the pod-name label agree with the set (upstream's identityMatches).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = pod.name_any();
    let Some((parent, ordinal)) = parent_and_ordinal(&name) else { return false };
    parent == set.name_any()
        && name == pod_name(set, ordinal)
        && pod.metadata.namespace == set.metadata.namespace
        && pod.labels().get(POD_NAME_LABEL) == Some(&name)
}

/// Every claim template is mounted, under its name, from the pod's own claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal(pod) else { return false };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    templates(set).iter().all(|t| {
        volumes.into_iter().flatten().any(|v| v.name == t.name_any() && v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim_name(t, set, ordinal)))
    })
}

pub fn templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or(&[])
}

/// The claims of the pod at `ordinal`, in template order: the template named for the pod, in
/// the set's namespace, with the selector's matchLabels added to its labels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let match_labels = set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    templates(set)
        .iter()
        .map(|t| {
            let mut claim = t.clone();
            claim.metadata.name = Some(claim_name(t, set, ordinal));
            claim.metadata.namespace = set.metadata.namespace.clone();
            let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(match_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

/// Set the identity labels (upstream's updateIdentity; hostname and subdomain are immutable,
/// so only a new pod gets them).
pub fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let ordinal = ordinal(pod).unwrap_or(0);
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The pod `set` (with the template of some revision) makes at `ordinal`: the template's
/// labels, annotations and spec, the set as controller, its identity and claims mounted.
pub fn new_pod(set: &StatefulSet, ordinal: i32) -> Pod {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(set, ordinal)),
            generate_name: Some(format!("{}-", set.name_any())),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    update_identity(set, &mut pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name(set, ordinal));
    if let Some(service) = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    mount_claims(set, &mut pod, ordinal);
    pod
}

/// Claim volumes first (replacing any of the same name), then the pod's other volumes.
fn mount_claims(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let names: Vec<String> = templates(set).iter().map(|t| t.name_any()).collect();
    let mut volumes: Vec<Volume> = templates(set)
        .iter()
        .map(|t| Volume {
            name: t.name_any(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim_name(t, set, ordinal), read_only: Some(false) }),
            ..Default::default()
        })
        .collect();
    volumes.extend(spec.volumes.take().unwrap_or_default().into_iter().filter(|v| !names.contains(&v.name)));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// The pod at `ordinal` from the current revision if a rolling update keeps that ordinal back
/// (below the partition), else from the update revision; labelled with its revision. Upstream's
/// operator precedence is kept: a partition applies even if the strategy type is not
/// RollingUpdate (validation forbids that combination anyway).
pub fn new_versioned_pod(current: &StatefulSet, update: &StatefulSet, current_revision: &str, update_revision: &str, ordinal: i32) -> Pod {
    let strategy = current.spec.as_ref().and_then(|s| s.update_strategy.clone()).unwrap_or_default();
    let rolling = strategy.type_.as_deref() == Some("RollingUpdate");
    let current_replicas = current.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
    let start = start_ordinal(current);
    let keep_current = match &strategy.rolling_update {
        None => rolling && ordinal < start + current_replicas,
        Some(r) => ordinal < start + r.partition.unwrap_or(0),
    };
    let (set, revision) = if keep_current { (current, current_revision) } else { (update, update_revision) };
    let mut pod = new_pod(set, ordinal);
    pod.metadata.labels.get_or_insert_with(BTreeMap::new).insert(REVISION_LABEL.into(), revision.to_string());
    pod
}

/// This set as the controller of what it makes.
pub fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.name_any(),
        uid: set.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn set(spec: serde_json::Value) -> StatefulSet {
        let mut base = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 1},
            "spec": {"replicas": 3, "serviceName": "nginx", "podManagementPolicy": "OrderedReady",
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
        });
        for (k, v) in spec.as_object().unwrap() {
            base["spec"][k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn names_and_ordinals_parse_as_upstream() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-db-12"), Some(("my-db", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-abc12"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        let s = set(json!({}));
        let mut stray = Pod::default();
        stray.metadata.name = Some("webx-1".into());
        assert!(!is_member_of(&s, &stray));
        stray.metadata.name = Some("web-7".into());
        assert!(is_member_of(&s, &stray));
    }

    #[test]
    fn a_new_pod_carries_its_identity_and_claims() {
        let s = set(json!({"volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}], "volumes": [{"name": "www", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}}}));
        let pod = new_versioned_pod(&s, &s, "web-1", "web-2", 2);
        assert_eq!(pod.name_any(), "web-2");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let labels = pod.labels();
        assert_eq!((labels[POD_NAME_LABEL].as_str(), labels[POD_INDEX_LABEL].as_str(), labels[REVISION_LABEL].as_str(), labels["app"].as_str()), ("web-2", "2", "web-2", "web"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("nginx")));
        let volumes: Vec<(String, Option<String>)> = spec.volumes.as_ref().unwrap().iter().map(|v| (v.name.clone(), v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))).collect();
        assert_eq!(volumes, [("www".to_string(), Some("www-web-2".to_string())), ("cfg".to_string(), None)]);
        assert!(identity_matches(&s, &pod) && storage_matches(&s, &pod));
        let owner = &pod.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("StatefulSet", "set-uid", Some(true)));
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].name_any(), "www-web-2");
        assert_eq!(claims[0].labels()["app"], "web");
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_on_the_current_revision() {
        let current = set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        let update = set(json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}}}));
        let image = |p: &Pod| p.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
        let low = new_versioned_pod(&current, &update, "old", "new", 1);
        let high = new_versioned_pod(&current, &update, "old", "new", 2);
        assert_eq!((revision_of(&low), image(&low).as_str()), ("old", "nginx:1.27"));
        assert_eq!((revision_of(&high), image(&high).as_str()), ("new", "nginx:1.28"));
        let on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert_eq!(revision_of(&new_versioned_pod(&on_delete, &update, "old", "new", 0)), "new");
    }
}
