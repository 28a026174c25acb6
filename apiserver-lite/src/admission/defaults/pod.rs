//! Pod defaults: those kube-apiserver 1.33 applies to every pod spec (pods and the pod
//! templates of workloads), and those only a Pod gets (service links, priority, the
//! not-ready/unreachable tolerations, requests from limits, status.phase and qosClass).

use serde_json::{json, Map, Value};

use super::{entry_object, set_default};
use crate::admission::quantity;

/// Keys of a Volume that name its source; a volume with none of them is an emptyDir.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs", "iscsi", "glusterfs",
    "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap",
    "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi",
    "ephemeral", "image",
];

/// File mode 0644, as volumes of files default to.
const DEFAULT_MODE: i64 = 0o644;

/// Defaults of a PodSpec, wherever it appears.
pub(super) fn spec(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(c) = c.as_object_mut() {
                container(c, host_network);
            }
        }
    }
    for v in spec.get_mut("volumes").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(v) = v.as_object_mut() {
            volume(v);
        }
    }
}

/// Defaults only a Pod object gets (not the templates).
pub(super) fn pod(pod: &mut Map<String, Value>) {
    let spec_map = entry_object(pod, "spec");
    // Requests default to the limits before the spec is defaulted, as upstream orders it.
    for key in ["initContainers", "containers"] {
        for c in spec_map.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
            requests_from_limits(c);
        }
    }
    spec(spec_map);
    set_default(spec_map, "enableServiceLinks", json!(true));
    priority(spec_map);
    default_toleration_seconds(spec_map);
    let qos = qos_class(spec_map);
    let status = entry_object(pod, "status");
    set_default(status, "phase", json!("Pending"));
    set_default(status, "qosClass", json!(qos));
}

fn container(c: &mut Map<String, Value>, host_network: bool) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
    set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set_default(c, "resources", json!({}));
    for port in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(port) = port.as_object_mut() {
            set_default(port, "protocol", json!("TCP"));
            // On the host network the container port is the host port.
            if host_network && port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0
                && let Some(p) = port.get("containerPort").cloned() {
                    port.insert("hostPort".into(), p);
                }
        }
    }
    for env in c.get_mut("env").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(field_ref) = env.pointer_mut("/valueFrom/fieldRef").and_then(Value::as_object_mut) {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.get_mut("lifecycle").and_then(|l| l.get_mut(hook)).and_then(Value::as_object_mut) {
            handler(h);
        }
    }
}

fn handler(h: &mut Map<String, Value>) {
    if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_default(get, "path", json!("/"));
        set_default(get, "scheme", json!("HTTP"));
    }
}

fn volume(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|k| v.get(*k).is_some_and(|s| !s.is_null())) {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            set_default(s, "defaultMode", json!(DEFAULT_MODE));
        }
    }
    if let Some(s) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(s, "type", json!(""));
    }
    if let Some(s) = v.get_mut("iscsi").and_then(Value::as_object_mut) {
        set_default(s, "iscsiInterface", json!("default"));
    }
    if let Some(s) = v.get_mut("ephemeral").and_then(|e| e.pointer_mut("/volumeClaimTemplate/spec")).and_then(Value::as_object_mut) {
        set_default(s, "volumeMode", json!("Filesystem"));
    }
}

fn requests_from_limits(c: &mut Value) {
    let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() else { return };
    let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) else { return };
    let requests = entry_object(resources, "requests");
    for (k, v) in limits {
        requests.entry(k).or_insert(v);
    }
}

/// The pull policy for an image that does not say: `Always` for `:latest` or no tag (and no
/// digest), else `IfNotPresent`. A reference that does not parse counts as untagged-free,
/// so `IfNotPresent`, as upstream ignores the parse error here and lets validation speak.
pub fn image_pull_policy(image: &str) -> &'static str {
    match image_tag(image) {
        Some(tag) if tag == "latest" => "Always",
        _ => "IfNotPresent",
    }
}

/// The tag a reference resolves to: its own, `latest` when it has neither tag nor digest, or
/// None when it has only a digest or is not a valid reference.
fn image_tag(image: &str) -> Option<String> {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if !valid_repository(repo) {
        return None;
    }
    if let Some(t) = tag {
        let ok = !t.is_empty() && t.len() <= 128 && t.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return None;
        }
    }
    if let Some(d) = digest {
        let (algorithm, hex) = d.split_once(':')?;
        if algorithm.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    match (tag, digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".into()),
        (None, Some(_)) => None,
    }
}

/// `[domain/]path`, the path lowercase components joined by `/`.
fn valid_repository(repo: &str) -> bool {
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost" || parts[0].chars().any(|c| c.is_ascii_uppercase())) {
        let domain = parts.remove(0);
        let (host, port) = domain.split_once(':').unwrap_or((domain, "1"));
        if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') || !port.chars().all(|c| c.is_ascii_digit()) || port.is_empty() {
            return false;
        }
    }
    !parts.is_empty() && parts.iter().all(|p| valid_path_component(p))
}

/// `[a-z0-9]+` runs separated by `.`, `_`, `__` or dashes.
fn valid_path_component(p: &str) -> bool {
    let bytes = p.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
    }
    true
}

/// The Priority admission plugin: no class means priority 0; the two system classes have
/// their fixed values. Both come with the default preemption policy.
fn priority(spec: &mut Map<String, Value>) {
    let value = match spec.get("priorityClassName").and_then(Value::as_str).unwrap_or_default() {
        "" => Some(0),
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    };
    if let Some(value) = value {
        set_default(spec, "priority", json!(value));
        set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

/// The DefaultTolerationSeconds admission plugin: tolerate a not-ready or unreachable node
/// for five minutes unless the pod already says how it tolerates those taints.
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !tolerations.is_array() {
        return;
    }
    let list = tolerations.as_array_mut().expect("checked to be an array");
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if list.is_empty() {
        spec.remove("tolerations");
    }
}

/// Guaranteed when every container limits cpu and memory and requests exactly that;
/// BestEffort when nothing requests or limits anything; Burstable otherwise.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"].iter().flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten()).collect();
    let compute = |m: Option<&Value>, name: &str| m.and_then(|m| m.get(name)).and_then(quantity::from_json).filter(|q| q.value() != 0.0);
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let requests = c.pointer("/resources/requests");
        let limits = c.pointer("/resources/limits");
        for name in ["cpu", "memory"] {
            let (r, l) = (compute(requests, name), compute(limits, name));
            any |= r.is_some() || l.is_some();
            match (r, l) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !containers.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, want) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("docker.io/library/nginx", "Always"),
            ("localhost:5000/app", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry.example.com:5000/team/app:v2", "IfNotPresent"),
            ("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
            ("nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "Always"),
            ("<your-docker-image>", "IfNotPresent"),
            ("Nginx", "IfNotPresent"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(image_pull_policy(image), want, "{image}");
        }
    }
}
