//! Columns of nodes, namespaces, configuration, events, leases and volumes, as
//! kube-apiserver 1.33 prints them.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::{age_of, array_at, col, int_at, since, str_at, wide, Column, Row, AGE, NAME};

pub(crate) const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

/// ROLES come from `node-role.kubernetes.io/<role>` label keys and the old
/// `kubernetes.io/role` label's value, sorted and deduplicated.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in node.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && v.as_str().is_some_and(|v| !v.is_empty()) {
            roles.push(v.as_str().unwrap_or_default().to_string());
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() { "<none>".into() } else { roles.join(",") }
}

fn node_address(node: &Value, kind: &str) -> String {
    array_at(node, "/status/addresses").iter().find(|a| str_at(a, "/type") == kind).map(|a| str_at(a, "/address").to_string()).unwrap_or_else(|| "<none>".into())
}

pub(crate) fn node(node: &Value, now: OffsetDateTime) -> Row {
    let mut status = Vec::new();
    if let Some(ready) = array_at(node, "/status/conditions").iter().rev().find(|c| str_at(c, "/type") == "Ready") {
        status.push(if str_at(ready, "/status") == "True" { "Ready" } else { "NotReady" });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let or_unknown = |s: &str| if s.is_empty() { "<unknown>".to_string() } else { s.to_string() };
    Row::new(vec![
        json!(str_at(node, "/metadata/name")),
        json!(status.join(",")),
        json!(node_roles(node)),
        age_of(node, now),
        json!(str_at(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(or_unknown(str_at(node, "/status/nodeInfo/osImage"))),
        json!(or_unknown(str_at(node, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(str_at(node, "/status/nodeInfo/containerRuntimeVersion"))),
    ])
}

pub(crate) const NAMESPACE_COLUMNS: &[Column] = &[NAME, col("Status", "string", "The status of the namespace"), AGE];

pub(crate) fn namespace(ns: &Value, now: OffsetDateTime) -> Row {
    Row::new(vec![json!(str_at(ns, "/metadata/name")), json!(str_at(ns, "/status/phase")), age_of(ns, now)])
}

fn map_len(v: &Value, pointer: &str) -> usize {
    v.pointer(pointer).and_then(Value::as_object).map(Map::len).unwrap_or(0)
}

pub(crate) const CONFIGMAP_COLUMNS: &[Column] = &[NAME, col("Data", "string", "Data contains the configuration data."), AGE];

pub(crate) fn configmap(cm: &Value, now: OffsetDateTime) -> Row {
    Row::new(vec![json!(str_at(cm, "/metadata/name")), json!(map_len(cm, "/data") + map_len(cm, "/binaryData")), age_of(cm, now)])
}

pub(crate) const SECRET_COLUMNS: &[Column] = &[NAME, col("Type", "string", "Used to facilitate programmatic handling of secret data."), col("Data", "string", "Contains the secret data."), AGE];

pub(crate) fn secret(s: &Value, now: OffsetDateTime) -> Row {
    Row::new(vec![json!(str_at(s, "/metadata/name")), json!(str_at(s, "/type")), json!(map_len(s, "/data")), age_of(s, now)])
}

pub(crate) const SERVICEACCOUNT_COLUMNS: &[Column] = &[NAME, col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE];

pub(crate) fn serviceaccount(sa: &Value, now: OffsetDateTime) -> Row {
    Row::new(vec![json!(str_at(sa, "/metadata/name")), json!(array_at(sa, "/secrets").len()), age_of(sa, now)])
}

pub(crate) const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column { priority: 1, ..NAME },
];

fn nonempty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// A core/v1 Event's row. LAST SEEN falls back to the first time, then to `eventTime`, as
/// events written through events.k8s.io carry only that; a series has its own count and time.
pub(crate) fn event(e: &Value, now: OffsetDateTime) -> Row {
    let first_ts = e.get("firstTimestamp").and_then(Value::as_str).or_else(|| e.get("eventTime").and_then(Value::as_str));
    let first = since(first_ts, now);
    let mut last = match e.get("lastTimestamp").and_then(Value::as_str) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(e, "/count");
    if let Some(series) = e.get("series").filter(|s| s.is_object()) {
        last = since(series.get("lastObservedTime").and_then(Value::as_str), now);
        count = int_at(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(e, "/involvedObject/kind").to_lowercase();
    let name = str_at(e, "/involvedObject/name");
    let object = if name.is_empty() { kind } else { format!("{kind}/{name}") };
    let component = nonempty(str_at(e, "/source/component"), str_at(e, "/reportingComponent"));
    let instance = nonempty(str_at(e, "/source/host"), str_at(e, "/reportingInstance"));
    let source = if instance.is_empty() { component.to_string() } else { format!("{component}, {instance}") };
    Row::new(vec![
        json!(last),
        json!(str_at(e, "/type")),
        json!(str_at(e, "/reason")),
        json!(object),
        json!(str_at(e, "/involvedObject/fieldPath")),
        json!(source),
        json!(str_at(e, "/message").trim()),
        json!(first),
        json!(count),
        json!(str_at(e, "/metadata/name")),
    ])
}

/// An events.k8s.io/v1 Event prints as the core Event it converts to.
pub(crate) fn events_k8s_io_event(e: &Value, now: OffsetDateTime) -> Row {
    let mut core = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = e.get(from) {
            core.insert(to.into(), v.clone());
        }
    };
    for (from, to) in [
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("type", "type"),
        ("reason", "reason"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("deprecatedSource", "source"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
    ] {
        copy(from, to);
    }
    event(&Value::Object(core), now)
}

pub(crate) const LEASE_COLUMNS: &[Column] = &[NAME, col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."), AGE];

pub(crate) fn lease(l: &Value, now: OffsetDateTime) -> Row {
    Row::new(vec![json!(str_at(l, "/metadata/name")), json!(str_at(l, "/spec/holderIdentity")), age_of(l, now)])
}

pub(crate) const CSR_COLUMNS: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", "Only requests with this signer name are signed"),
    col("Requestor", "string", "Name of the user that created the request"),
    col("RequestedDuration", "string", "Requested duration of the issued certificate"),
    col("Condition", "string", "Approval and issuance state"),
];

/// CONDITION as upstream prints it: Approved, Denied or Pending, then Failed and Issued.
pub(crate) fn csr(c: &Value, now: OffsetDateTime) -> Row {
    let conditions = array_at(c, "/status/conditions");
    let has = |t: &str| conditions.iter().any(|x| str_at(x, "/type") == t);
    let mut condition = if has("Denied") { "Denied" } else if has("Approved") { "Approved" } else { "Pending" }.to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(c, "/status/certificate").is_empty() {
        condition.push_str(",Issued");
    }
    let duration = match c.pointer("/spec/expirationSeconds").and_then(Value::as_i64) {
        Some(s) => super::age::human_duration(time::Duration::seconds(s)),
        None => "<none>".into(),
    };
    Row::new(vec![json!(str_at(c, "/metadata/name")), age_of(c, now), json!(str_at(c, "/spec/signerName")), json!(str_at(c, "/spec/username")), json!(duration), json!(condition)])
}

/// RWO, ROX, RWX, RWOP in that order, whatever order the object lists them in.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| has(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn storage_class(v: &Value) -> String {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS))
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(v, "/spec/storageClassName"))
        .to_string()
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null())
}

fn volume_mode(v: &Value) -> String {
    v.pointer("/spec/volumeMode").and_then(Value::as_str).unwrap_or("<unset>").to_string()
}

fn quantity(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

pub(crate) const PV_COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "storageClassName is the name of StorageClass to which this persistent volume belongs."),
    col("VolumeAttributesClass", "string", "Name of VolumeAttributesClass to which this persistent volume belongs."),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

pub(crate) fn persistentvolume(pv: &Value, now: OffsetDateTime) -> Row {
    let claim = match pv.pointer("/spec/claimRef").filter(|c| c.is_object()) {
        Some(c) => format!("{}/{}", str_at(c, "/namespace"), str_at(c, "/name")),
        None => String::new(),
    };
    let phase = if deleting(pv) { "Terminating" } else { str_at(pv, "/status/phase") };
    Row::new(vec![
        json!(str_at(pv, "/metadata/name")),
        json!(quantity(pv, "/spec/capacity/storage")),
        json!(access_modes(array_at(pv, "/spec/accessModes"))),
        json!(str_at(pv, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(pv.pointer("/spec/volumeAttributesClassName").and_then(Value::as_str).unwrap_or("<unset>")),
        json!(str_at(pv, "/status/reason")),
        age_of(pv, now),
        json!(volume_mode(pv)),
    ])
}

pub(crate) const PVC_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
    col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
    col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
    col("StorageClass", "string", "storageClassName is the name of the StorageClass required by the claim."),
    col("VolumeAttributesClass", "string", "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
];

/// CAPACITY and ACCESS MODES show only once the claim is bound to a volume.
pub(crate) fn persistentvolumeclaim(pvc: &Value, now: OffsetDateTime) -> Row {
    let phase = if deleting(pvc) { "Terminating" } else { str_at(pvc, "/status/phase") };
    let volume = str_at(pvc, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() { (String::new(), String::new()) } else { (quantity(pvc, "/status/capacity/storage"), access_modes(array_at(pvc, "/status/accessModes"))) };
    let vac = pvc.pointer("/spec/volumeAttributesClassName").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("<unset>");
    Row::new(vec![
        json!(str_at(pvc, "/metadata/name")),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(vac),
        age_of(pvc, now),
        json!(volume_mode(pvc)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-01-01 12:00:00 UTC);

    #[test]
    fn nodes_show_readiness_roles_version_and_wide_info() {
        let mut n = json!({
            "metadata": {"name": "node-1", "creationTimestamp": "2024-12-30T07:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node-1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}}
        });
        assert_eq!(
            node(&n, NOW).cells,
            vec![json!("node-1"), json!("Ready"), json!("control-plane"), json!("2d5h"), json!("v1.33.0"), json!("192.168.1.10"), json!("<none>"), json!("Debian GNU/Linux 12 (bookworm)"), json!("6.1.0-18-amd64"), json!("containerd://1.7.13")]
        );
        n["status"]["conditions"][1]["status"] = json!("Unknown");
        n["spec"] = json!({"unschedulable": true});
        n["metadata"]["labels"] = json!({"kubernetes.io/role": "worker"});
        let c = node(&n, NOW).cells;
        assert_eq!(c[1..3], [json!("NotReady,SchedulingDisabled"), json!("worker")]);
        let bare = json!({"metadata": {"name": "n"}});
        assert_eq!(node(&bare, NOW).cells[1..3], [json!("Unknown"), json!("<none>")]);
        assert_eq!(node(&bare, NOW).cells[7], json!("<unknown>"));
    }

    #[test]
    fn namespaces_configmaps_secrets_serviceaccounts_leases() {
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(namespace(&ns, NOW).cells[..2], [json!("default"), json!("Active")]);
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(configmap(&cm, NOW).cells[1], json!(3));
        let s = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(secret(&s, NOW).cells[..3], [json!("tls"), json!("kubernetes.io/tls"), json!(2)]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(serviceaccount(&sa, NOW).cells[1], json!(0));
        let l = json!({"metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}});
        assert_eq!(lease(&l, NOW).cells[1], json!("node-1"));
    }

    #[test]
    fn events_name_their_object_and_fall_back_on_times() {
        let e = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "type": "Normal", "message": "Successfully pulled image \"nginx\"\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-01-01T11:50:00Z", "lastTimestamp": "2025-01-01T11:59:00Z", "count": 2
        });
        assert_eq!(
            event(&e, NOW).cells,
            vec![json!("60s"), json!("Normal"), json!("Pulled"), json!("pod/web"), json!("spec.containers{app}"), json!("kubelet, node-1"), json!("Successfully pulled image \"nginx\""), json!("10m"), json!(2), json!("web.17a")]
        );
        let new_style = json!({
            "metadata": {"name": "n.1"}, "regarding": {"kind": "Node", "name": "node-1"}, "note": "Starting kubelet.",
            "reason": "Starting", "type": "Normal", "eventTime": "2025-01-01T11:59:30.000000Z", "reportingController": "kubelet", "reportingInstance": "node-1"
        });
        let c = events_k8s_io_event(&new_style, NOW).cells;
        assert_eq!(c[..7], [json!("30s"), json!("Normal"), json!("Starting"), json!("node/node-1"), json!(""), json!("kubelet, node-1"), json!("Starting kubelet.")]);
        assert_eq!(c[8], json!(1));
    }

    #[test]
    fn volumes_and_claims() {
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local", "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            persistentvolume(&pv, NOW).cells,
            vec![json!("pv1"), json!("10Gi"), json!("RWO,RWX"), json!("Retain"), json!("Bound"), json!("default/data"), json!("local"), json!("<unset>"), json!(""), json!("<unknown>"), json!("Filesystem")]
        );
        let mut pvc = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local", "resources": {"requests": {"storage": "1Gi"}}}, "status": {"phase": "Pending"}});
        assert_eq!(persistentvolumeclaim(&pvc, NOW).cells[..6], [json!("data"), json!("Pending"), json!(""), json!(""), json!(""), json!("local")]);
        pvc["spec"]["volumeName"] = json!("pv1");
        pvc["status"] = json!({"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]});
        assert_eq!(persistentvolumeclaim(&pvc, NOW).cells[1..5], [json!("Bound"), json!("pv1"), json!("10Gi"), json!("RWO")]);
    }
}
