//! Defaulting: the fields kube-apiserver 1.33 fills in when an object is written (its
//! pkg/apis/*/v1/defaults.go, plus what a few always-on admission plugins and create
//! strategies add), so `kubectl get -o yaml` shows what a real cluster would.
//!
//! Works on the JSON as sent, so fields this server does not know survive. Not here: what
//! needs other objects or allocators (service account, cluster IPs, node ports), and the
//! Job selector, which needs the object's uid (see [`apply`]).

mod pod;

use serde_json::{json, Map, Value};

pub use pod::image_pull_policy;

/// Fills in the defaults of an object of `group`/`kind` in place. Unknown kinds, objects
/// that are not JSON objects and objects with a field of the wrong type are left alone.
/// Idempotent: defaulting a defaulted
/// object changes nothing.
///
/// A Job's selector and pod labels are generated (as upstream does at create) only when
/// `metadata.uid` is already set, so call this after assigning the uid.
pub fn apply(group: &str, kind: &str, object: &mut Value) {
    // A field of the wrong type is validation's to report; defaulting around it could only
    // hide or overwrite it.
    if !crate::admission::validation::type_errors(group, kind, object).is_empty() {
        return;
    }
    crate::admission::quantity::normalize(object);
    let Some(obj) = object.as_object_mut() else { return };
    match (group, kind) {
        ("", "Pod") => pod::pod(obj),
        ("", "PodTemplate") => template(obj, "/template"),
        ("", "ReplicationController") => {
            set_default(entry_object(obj, "spec"), "replicas", json!(1));
            template(obj, "/spec/template");
        }
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => {
            set_default(entry_object(obj, "spec"), "replicas", json!(1));
            template(obj, "/spec/template");
        }
        ("apps", "StatefulSet") => statefulset(obj),
        ("apps", "DaemonSet") => daemonset(obj),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cronjob(obj),
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => secret(obj),
        ("", "Node") => node(obj),
        ("", "PersistentVolume") => {
            let spec = entry_object(obj, "spec");
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
            set_default(entry_object(obj, "status"), "phase", json!("Pending"));
        }
        ("", "PersistentVolumeClaim") => pvc(obj),
        ("", "Endpoints") => {
            for subset in obj.get_mut("subsets").and_then(Value::as_array_mut).into_iter().flatten() {
                for port in subset.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(port) = port.as_object_mut() {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in obj.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(port) = port.as_object_mut() {
                    set_default(port, "name", json!(""));
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        _ => {}
    }
}

/// Sets `key` when it is absent or null.
pub(crate) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}

/// The object under `key`, created when absent or not an object. [`apply`] runs only on
/// objects whose fields have the right types, so this replaces nothing but null.
pub(crate) fn entry_object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("made an object above")
}

/// Defaults the PodSpec of the pod template at `pointer` (`/spec/template`), if there is one.
fn template(obj: &mut Map<String, Value>, pointer: &str) {
    let mut root = Value::Object(std::mem::take(obj));
    if let Some(spec) = root.pointer_mut(&format!("{pointer}/spec")).and_then(Value::as_object_mut) {
        pod::spec(spec);
    }
    if let Value::Object(m) = root {
        *obj = m;
    }
}

fn deployment(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    set_default(spec, "replicas", json!(1));
    let strategy = entry_object(spec, "strategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let rolling = entry_object(strategy, "rollingUpdate");
        set_default(rolling, "maxUnavailable", json!("25%"));
        set_default(rolling, "maxSurge", json!("25%"));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    template(obj, "/spec/template");
}

fn statefulset(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = entry_object(spec, "updateStrategy");
    if strategy.get("type").is_none_or(Value::is_null) {
        strategy.insert("type".into(), json!("RollingUpdate"));
        set_default(strategy, "rollingUpdate", json!({}));
    }
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
        && let Some(rolling) = strategy.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
            set_default(rolling, "partition", json!(0));
        }
    let retention = entry_object(spec, "persistentVolumeClaimRetentionPolicy");
    set_default(retention, "whenDeleted", json!("Retain"));
    set_default(retention, "whenScaled", json!("Retain"));
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    for claim in spec.get_mut("volumeClaimTemplates").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(claim) = claim.as_object_mut() {
            pvc(claim);
        }
    }
    template(obj, "/spec/template");
}

fn daemonset(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    let strategy = entry_object(spec, "updateStrategy");
    set_default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let rolling = entry_object(strategy, "rollingUpdate");
        set_default(rolling, "maxUnavailable", json!(1));
        set_default(rolling, "maxSurge", json!(0));
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    template(obj, "/spec/template");
}

fn job(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    let unset = |spec: &Map<String, Value>, k: &str| spec.get(k).is_none_or(Value::is_null);
    // A non-parallel job may leave both unset; then both are 1.
    if unset(spec, "completions") && unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    if unset(spec, "backoffLimit") {
        let limit = if unset(spec, "backoffLimitPerIndex") { json!(6) } else { json!(i32::MAX) };
        spec.insert("backoffLimit".into(), limit);
    }
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let has_failure_policy = !unset(spec, "podFailurePolicy");
    for rule in spec.get_mut("podFailurePolicy").and_then(|p| p.get_mut("rules")).and_then(Value::as_array_mut).into_iter().flatten() {
        for pattern in rule.get_mut("onPodConditions").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(p) = pattern.as_object_mut() {
                set_default(p, "status", json!("True"));
            }
        }
    }
    set_default(spec, "podReplacementPolicy", json!(if has_failure_policy { "Failed" } else { "TerminatingOrFailed" }));
    job_selector(obj);
    // A job without labels of its own takes its pods'.
    let template_labels = obj.get("spec").and_then(|s| s.pointer("/template/metadata/labels")).filter(|l| l.as_object().is_some_and(|m| !m.is_empty())).cloned();
    if let Some(labels) = template_labels {
        let meta = entry_object(obj, "metadata");
        if meta.get("labels").and_then(Value::as_object).is_none_or(Map::is_empty) {
            meta.insert("labels".into(), labels);
        }
    }
    template(obj, "/spec/template");
}

/// Unless the user manages the selector, a Job selects its pods by its own uid, and its pod
/// template carries that uid and the job's name as labels (both the current and the legacy
/// label keys).
fn job_selector(obj: &mut Map<String, Value>) {
    let manual = obj.get("spec").and_then(|s| s.get("manualSelector")).and_then(Value::as_bool) == Some(true);
    let uid = obj.get("metadata").and_then(|m| m.get("uid")).and_then(Value::as_str).map(str::to_string);
    let name = obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
    let (false, Some(uid)) = (manual, uid) else { return };
    let spec = entry_object(obj, "spec");
    if spec.get("selector").is_none_or(Value::is_null) {
        spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    }
    let template = entry_object(spec, "template");
    let labels = entry_object(entry_object(template, "metadata"), "labels");
    for (k, v) in [("batch.kubernetes.io/controller-uid", &uid), ("batch.kubernetes.io/job-name", &name), ("controller-uid", &uid), ("job-name", &name)] {
        labels.entry(k).or_insert_with(|| json!(v));
    }
}

fn cronjob(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    template(obj, "/spec/jobTemplate/spec/template");
}

fn service(obj: &mut Map<String, Value>) {
    let spec = entry_object(obj, "spec");
    set_default(spec, "sessionAffinity", json!("None"));
    match spec.get("sessionAffinity").and_then(Value::as_str) {
        Some("None") => {
            spec.remove("sessionAffinityConfig");
        }
        Some("ClientIP") => {
            let client_ip = entry_object(entry_object(spec, "sessionAffinityConfig"), "clientIP");
            set_default(client_ip, "timeoutSeconds", json!(10800));
        }
        _ => {}
    }
    set_default(spec, "type", json!("ClusterIP"));
    for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(port) = port.as_object_mut() else { continue };
        set_default(port, "protocol", json!("TCP"));
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if unset
            && let Some(p) = port.get("port").filter(|p| p.is_number()).cloned() {
                port.insert("targetPort".into(), p);
            }
    }
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if kind == "NodePort" || kind == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if kind != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        // What the IP allocator of a single-stack IPv4 cluster settles on.
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    let status = entry_object(obj, "status");
    set_default(status, "loadBalancer", json!({}));
}

fn namespace(obj: &mut Map<String, Value>) {
    // Namespaces carry their own name as a label so selectors can pick them by name.
    let name = obj.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default().to_string();
    if !name.is_empty() {
        let labels = entry_object(entry_object(obj, "metadata"), "labels");
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let spec = entry_object(obj, "spec");
    set_default(spec, "finalizers", json!(["kubernetes"]));
    set_default(entry_object(obj, "status"), "phase", json!("Active"));
}

/// `stringData` is write-only: its entries are merged into `data` (base64, winning over
/// `data`) and the field is dropped, as the API converts it on the way in.
fn secret(obj: &mut Map<String, Value>) {
    use base64::Engine as _;
    set_default(obj, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = obj.remove("stringData") else { return };
    let data = entry_object(obj, "data");
    for (k, v) in string_data {
        let text = v.as_str().unwrap_or_default();
        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

fn node(obj: &mut Map<String, Value>) {
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else { return };
    if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
        set_default(status, "allocatable", capacity);
    }
}

fn pvc(obj: &mut Map<String, Value>) {
    set_default(entry_object(obj, "spec"), "volumeMode", json!("Filesystem"));
    set_default(entry_object(obj, "status"), "phase", json!("Pending"));
}

#[cfg(test)]
mod tests;
