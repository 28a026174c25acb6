//! Merge metadata of the built-in kinds: for each API type, the fields whose patch behaviour
//! is not the default (maps merged, lists replaced). Strategic merge patch reads the patch
//! strategy and merge key; server-side apply reads the list type and list-map keys.
//!
//! The entries come from the `patchStrategy`/`patchMergeKey` struct tags and the
//! `+listType`/`+listMapKey` markers of the upstream Go types (k8s.io/api, 1.33). Fields that
//! are absent here have no strategy: their objects merge key by key and their lists are atomic.
//! Only the paths that lead to such fields are listed, so an unlisted struct field simply
//! has no type below it.

/// How a strategic merge patch combines a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Lists are merged: lists of objects by the merge key, lists of scalars as sets.
    Merge,
    /// An object whose keys absent from the patch's `$retainKeys` are cleared (union types).
    RetainKeys,
    /// A list merged by key whose items are each retain-keys objects (`volumes`).
    MergeRetainKeys,
}

impl Strategy {
    pub fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }
}

/// One field with merge metadata.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The JSON name.
    pub name: &'static str,
    /// The type of the field's value, or of its items for a list (a key of [`TYPES`]), when
    /// something below it has metadata.
    pub ty: Option<&'static str>,
    pub strategy: Option<Strategy>,
    /// `patchMergeKey`: the item field lists of objects are merged by.
    pub merge_key: Option<&'static str>,
    /// `+listType=map` keys (server-side apply's identity of an item); empty otherwise.
    pub list_map_keys: &'static [&'static str],
    /// `+listType=set`: a list of scalars treated as a set.
    pub set: bool,
}

/// A nested object (no list behaviour) of type `ty`.
const fn object(name: &'static str, ty: &'static str) -> Field {
    Field { name, ty: Some(ty), strategy: None, merge_key: None, list_map_keys: &[], set: false }
}

/// A list of objects merged by `key`, each of type `ty` (`ty` may have no entries).
const fn merge_list(name: &'static str, ty: &'static str, key: &'static str, map_keys: &'static [&'static str]) -> Field {
    Field { name, ty: Some(ty), strategy: Some(Strategy::Merge), merge_key: Some(key), list_map_keys: map_keys, set: false }
}

/// A list of scalars merged as a set.
const fn merge_set(name: &'static str) -> Field {
    Field { name, ty: None, strategy: Some(Strategy::Merge), merge_key: None, list_map_keys: &[], set: true }
}

/// A list-map without a patch strategy (server-side apply merges it, strategic merge patch
/// replaces it).
const fn list_map(name: &'static str, keys: &'static [&'static str]) -> Field {
    Field { name, ty: None, strategy: None, merge_key: None, list_map_keys: keys, set: false }
}

const fn with_strategy(mut f: Field, strategy: Strategy) -> Field {
    f.strategy = Some(strategy);
    f
}

/// `metadata` of every object, custom resources' too.
pub const METADATA: Field = object("metadata", "ObjectMeta");

/// Every type with metadata below it, by Go type name.
pub const TYPES: &[(&str, &[Field])] = &[
    ("ObjectMeta", &[merge_set("finalizers"), merge_list("ownerReferences", "OwnerReference", "uid", &["uid"])]),
    // Workloads.
    ("Pod", &[object("metadata", "ObjectMeta"), object("spec", "PodSpec"), object("status", "PodStatus")]),
    ("PodTemplateSpec", &[object("metadata", "ObjectMeta"), object("spec", "PodSpec")]),
    (
        "PodSpec",
        &[
            with_strategy(merge_list("volumes", "Volume", "name", &["name"]), Strategy::MergeRetainKeys),
            merge_list("initContainers", "Container", "name", &["name"]),
            merge_list("containers", "Container", "name", &["name"]),
            merge_list("ephemeralContainers", "Container", "name", &["name"]),
            merge_list("imagePullSecrets", "LocalObjectReference", "name", &["name"]),
            merge_list("hostAliases", "HostAlias", "ip", &["ip"]),
            merge_list("topologySpreadConstraints", "TopologySpreadConstraint", "topologyKey", &["topologyKey", "whenUnsatisfiable"]),
            merge_list("schedulingGates", "PodSchedulingGate", "name", &["name"]),
            with_strategy(merge_list("resourceClaims", "PodResourceClaim", "name", &["name"]), Strategy::MergeRetainKeys),
        ],
    ),
    (
        "Container",
        &[
            merge_list("ports", "ContainerPort", "containerPort", &["containerPort", "protocol"]),
            merge_list("env", "EnvVar", "name", &["name"]),
            merge_list("volumeMounts", "VolumeMount", "mountPath", &["mountPath"]),
            merge_list("volumeDevices", "VolumeDevice", "devicePath", &["devicePath"]),
            object("resources", "ResourceRequirements"),
        ],
    ),
    ("ResourceRequirements", &[list_map("claims", &["name"])]),
    (
        "PodStatus",
        &[
            merge_list("conditions", "PodCondition", "type", &["type"]),
            merge_list("podIPs", "PodIP", "ip", &["ip"]),
            merge_list("hostIPs", "HostIP", "ip", &["ip"]),
            with_strategy(merge_list("resourceClaimStatuses", "PodResourceClaimStatus", "name", &["name"]), Strategy::MergeRetainKeys),
        ],
    ),
    ("Deployment", &[object("metadata", "ObjectMeta"), object("spec", "DeploymentSpec"), object("status", "DeploymentStatus")]),
    (
        "DeploymentSpec",
        &[object("template", "PodTemplateSpec"), with_strategy(object("strategy", "DeploymentStrategy"), Strategy::RetainKeys)],
    ),
    ("DeploymentStatus", &[merge_list("conditions", "DeploymentCondition", "type", &["type"])]),
    ("ReplicaSet", &[object("metadata", "ObjectMeta"), object("spec", "ReplicaSetSpec"), object("status", "ReplicaSetStatus")]),
    ("ReplicaSetSpec", &[object("template", "PodTemplateSpec")]),
    ("ReplicaSetStatus", &[merge_list("conditions", "ReplicaSetCondition", "type", &["type"])]),
    ("StatefulSet", &[object("metadata", "ObjectMeta"), object("spec", "StatefulSetSpec"), object("status", "StatefulSetStatus")]),
    ("StatefulSetSpec", &[object("template", "PodTemplateSpec")]),
    ("StatefulSetStatus", &[merge_list("conditions", "StatefulSetCondition", "type", &["type"])]),
    ("DaemonSet", &[object("metadata", "ObjectMeta"), object("spec", "DaemonSetSpec"), object("status", "DaemonSetStatus")]),
    ("DaemonSetSpec", &[object("template", "PodTemplateSpec")]),
    ("DaemonSetStatus", &[merge_list("conditions", "DaemonSetCondition", "type", &["type"])]),
    ("Job", &[object("metadata", "ObjectMeta"), object("spec", "JobSpec"), object("status", "JobStatus")]),
    ("JobSpec", &[object("template", "PodTemplateSpec")]),
    ("JobStatus", &[merge_list("conditions", "JobCondition", "type", &[])]),
    ("CronJob", &[object("metadata", "ObjectMeta"), object("spec", "CronJobSpec")]),
    ("CronJobSpec", &[object("jobTemplate", "JobTemplateSpec")]),
    ("JobTemplateSpec", &[object("metadata", "ObjectMeta"), object("spec", "JobSpec")]),
    ("ControllerRevision", &[object("metadata", "ObjectMeta")]),
    // Services and networking.
    ("Service", &[object("metadata", "ObjectMeta"), object("spec", "ServiceSpec"), object("status", "ServiceStatus")]),
    ("ServiceSpec", &[merge_list("ports", "ServicePort", "port", &["port", "protocol"])]),
    ("ServiceStatus", &[merge_list("conditions", "Condition", "type", &["type"])]),
    ("Endpoints", &[object("metadata", "ObjectMeta")]),
    ("EndpointSlice", &[object("metadata", "ObjectMeta")]),
    // Configuration and identity.
    ("ConfigMap", &[object("metadata", "ObjectMeta")]),
    ("Secret", &[object("metadata", "ObjectMeta")]),
    ("ServiceAccount", &[object("metadata", "ObjectMeta"), merge_list("secrets", "ObjectReference", "name", &["name"])]),
    // Cluster.
    ("Namespace", &[object("metadata", "ObjectMeta"), object("status", "NamespaceStatus")]),
    ("NamespaceStatus", &[merge_list("conditions", "NamespaceCondition", "type", &["type"])]),
    ("Node", &[object("metadata", "ObjectMeta"), object("spec", "NodeSpec"), object("status", "NodeStatus")]),
    ("NodeSpec", &[with_strategy(Field { set: true, ..list_map("podCIDRs", &[]) }, Strategy::Merge)]),
    (
        "NodeStatus",
        &[merge_list("conditions", "NodeCondition", "type", &["type"]), merge_list("addresses", "NodeAddress", "type", &["type"])],
    ),
    ("Event", &[object("metadata", "ObjectMeta")]),
    ("Binding", &[object("metadata", "ObjectMeta")]),
    ("Lease", &[object("metadata", "ObjectMeta")]),
    ("CertificateSigningRequest", &[object("metadata", "ObjectMeta"), object("status", "CertificateSigningRequestStatus")]),
    ("CertificateSigningRequestStatus", &[list_map("conditions", &["type"])]),
    // Storage.
    ("PersistentVolume", &[object("metadata", "ObjectMeta")]),
    ("PersistentVolumeClaim", &[object("metadata", "ObjectMeta"), object("status", "PersistentVolumeClaimStatus")]),
    ("PersistentVolumeClaimStatus", &[merge_list("conditions", "PersistentVolumeClaimCondition", "type", &["type"])]),
];

/// The built-in kinds with merge metadata, by API group and kind, and their root type.
const KINDS: &[(&str, &str, &str)] = &[
    ("", "Pod", "Pod"),
    ("", "Service", "Service"),
    ("", "Endpoints", "Endpoints"),
    ("", "ConfigMap", "ConfigMap"),
    ("", "Secret", "Secret"),
    ("", "Namespace", "Namespace"),
    ("", "Node", "Node"),
    ("", "Event", "Event"),
    ("", "ServiceAccount", "ServiceAccount"),
    ("", "PersistentVolume", "PersistentVolume"),
    ("", "PersistentVolumeClaim", "PersistentVolumeClaim"),
    ("", "Binding", "Binding"),
    ("apps", "Deployment", "Deployment"),
    ("apps", "ReplicaSet", "ReplicaSet"),
    ("apps", "StatefulSet", "StatefulSet"),
    ("apps", "DaemonSet", "DaemonSet"),
    ("apps", "ControllerRevision", "ControllerRevision"),
    ("batch", "Job", "Job"),
    ("batch", "CronJob", "CronJob"),
    ("coordination.k8s.io", "Lease", "Lease"),
    ("certificates.k8s.io", "CertificateSigningRequest", "CertificateSigningRequest"),
    ("discovery.k8s.io", "EndpointSlice", "EndpointSlice"),
    ("events.k8s.io", "Event", "Event"),
];

/// The root type of a built-in kind, `None` for kinds without Go struct metadata (custom
/// resources), on which kube-apiserver refuses strategic merge patches.
pub fn root_type(group: &str, kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, _, ty)| *ty)
}

/// The metadata of field `name` of type `ty`.
pub fn field(ty: Option<&str>, name: &str) -> Option<&'static Field> {
    let ty = ty?;
    let (_, fields) = TYPES.iter().find(|(t, _)| *t == ty)?;
    fields.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_kind_has_a_root_type_with_metadata() {
        for r in crate::resources::builtin().iter() {
            let ty = root_type(&r.group, &r.kind).unwrap_or_else(|| panic!("no merge metadata for {}/{}", r.group, r.kind));
            assert!(field(Some(ty), "metadata").is_some(), "{ty} lacks metadata");
        }
    }

    #[test]
    fn every_referenced_type_is_either_listed_or_a_leaf() {
        // A typo in a type name would silently drop the metadata below it: every type that
        // a field names must have an entry unless nothing below it has metadata.
        let leaves = [
            "OwnerReference", "Volume", "LocalObjectReference", "HostAlias", "TopologySpreadConstraint", "PodSchedulingGate",
            "PodResourceClaim", "ContainerPort", "EnvVar", "VolumeMount", "VolumeDevice", "PodCondition", "PodIP", "HostIP",
            "PodResourceClaimStatus", "DeploymentStrategy", "DeploymentCondition", "ReplicaSetCondition", "StatefulSetCondition",
            "DaemonSetCondition", "JobCondition", "ServicePort", "Condition", "ObjectReference", "NamespaceCondition",
            "NodeCondition", "NodeAddress", "PersistentVolumeClaimCondition",
        ];
        for (ty, fields) in TYPES {
            for f in fields.iter() {
                if let Some(child) = f.ty {
                    let listed = TYPES.iter().any(|(t, _)| *t == child);
                    assert!(listed || leaves.contains(&child), "{ty}.{} names unknown type {child}", f.name);
                }
            }
        }
    }

    #[test]
    fn pod_spec_containers_merge_by_name() {
        let f = field(Some("PodSpec"), "containers").unwrap();
        assert_eq!(f.strategy, Some(Strategy::Merge));
        assert_eq!(f.merge_key, Some("name"));
        assert_eq!(field(Some("Container"), "ports").unwrap().merge_key, Some("containerPort"));
        assert!(field(Some("ObjectMeta"), "finalizers").unwrap().set);
        assert!(field(Some("PodSpec"), "tolerations").is_none());
    }
}
