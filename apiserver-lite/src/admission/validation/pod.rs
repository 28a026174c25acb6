//! Pods and pod templates: containers, ports, resources, volumes and mounts, the policies,
//! and on update the few fields a pod may change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::names::{self, NameRule};
use super::{FieldError, Path};
use crate::admission::quantity::Quantity;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// What is wrong with a port number.
pub(super) fn port_number(port: i64) -> Option<String> {
    (!(1..=65535).contains(&port)).then(|| "must be between 1 and 65535, inclusive".to_string())
}

pub(super) fn pod(pod: &Pod, old: Option<&Pod>, errs: &mut Vec<FieldError>) {
    names::object_meta(&pod.metadata, NameRule::Subdomain, errs);
    let spec_path = Path::new("spec");
    match &pod.spec {
        Some(spec) => {
            pod_spec(spec, &spec_path, errs);
            // Templates may carry odd images (some tools use " " as a placeholder); pods may not.
            let init = spec.init_containers.as_deref().unwrap_or_default();
            for (key, list) in [("initContainers", init), ("containers", spec.containers.as_slice())] {
                for (i, c) in list.iter().enumerate() {
                    let image = c.image.as_deref().unwrap_or_default();
                    if image.trim() != image {
                        errs.push(FieldError::invalid(spec_path.child(key).index(i).child("image"), image, "must not have leading or trailing whitespace"));
                    }
                }
            }
        }
        None => errs.push(FieldError::required(spec_path.child("containers"), "")),
    }
    if let (Some(old), Some(new_spec)) = (old, &pod.spec) {
        pod_update(new_spec, old.spec.as_ref(), errs);
    }
}

/// The pod template of a workload: its labels and its pod spec.
pub(super) fn pod_template(template: &PodTemplateSpec, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(meta) = &template.metadata {
        if let Some(labels) = &meta.labels {
            names::validate_labels(labels, &path.child("metadata").child("labels"), errs);
        }
        if let Some(annotations) = &meta.annotations {
            names::validate_annotations(annotations, &path.child("metadata").child("annotations"), errs);
        }
    }
    match &template.spec {
        Some(spec) => pod_spec(spec, &path.child("spec"), errs),
        None => errs.push(FieldError::required(path.child("spec").child("containers"), "")),
    }
}

/// Everything a pod spec must satisfy, wherever it appears. Expects defaulted input, as the
/// server defaults before it validates: an empty restart or DNS policy is an error.
pub(super) fn pod_spec(spec: &PodSpec, path: &Path, errs: &mut Vec<FieldError>) {
    let volumes = volumes(spec, &path.child("volumes"), errs);
    if spec.containers.is_empty() {
        errs.push(FieldError::required(path.child("containers"), ""));
    }
    let mut names_seen = BTreeSet::new();
    let init = spec.init_containers.as_deref().unwrap_or_default();
    for (key, list) in [("initContainers", init), ("containers", spec.containers.as_slice())] {
        for (i, c) in list.iter().enumerate() {
            container(c, &path.child(key).index(i), &volumes, &mut names_seen, errs);
        }
    }
    match spec.restart_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(path.child("restartPolicy"), "")),
        p if !RESTART_POLICIES.contains(&p) => errs.push(FieldError::not_supported(path.child("restartPolicy"), p, RESTART_POLICIES)),
        _ => {}
    }
    match spec.dns_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(path.child("dnsPolicy"), "")),
        "None" if spec.dns_config.is_none() => errs.push(FieldError::required(path.child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None")),
        p if !DNS_POLICIES.contains(&p) => errs.push(FieldError::not_supported(path.child("dnsPolicy"), p, DNS_POLICIES)),
        _ => {}
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&deadline) {
            errs.push(FieldError::invalid(path.child("activeDeadlineSeconds"), deadline, "must be between 1 and 2147483647, inclusive"));
        }
    if let Some(selector) = &spec.node_selector {
        names::validate_labels(selector, &path.child("nodeSelector"), errs);
    }
    if let Some(sa) = spec.service_account_name.as_deref().filter(|s| !s.is_empty()) {
        for msg in names::dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(path.child("serviceAccountName"), sa, msg));
        }
    }
}

/// Volume names must be unique labels and each volume must have exactly one source.
/// Returns the names, for the mounts to be checked against.
fn volumes(spec: &PodSpec, path: &Path, errs: &mut Vec<FieldError>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, v) in spec.volumes.as_deref().unwrap_or_default().iter().enumerate() {
        let p = path.index(i);
        if v.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            for msg in names::dns1123_label(&v.name) {
                errs.push(FieldError::invalid(p.child("name"), &v.name, msg));
            }
            if !seen.insert(v.name.clone()) {
                errs.push(FieldError::duplicate(p.child("name"), &v.name));
            }
        }
        let sources = serde_json::to_value(v).ok().and_then(|j| j.as_object().map(|m| m.keys().filter(|k| *k != "name").count())).unwrap_or(0);
        if sources == 0 {
            errs.push(FieldError::required(p, "must specify a volume type"));
        } else if sources > 1 {
            errs.push(FieldError::forbidden(p, "may not specify more than 1 volume type"));
        }
    }
    seen
}

fn container(c: &Container, path: &Path, volumes: &BTreeSet<String>, names_seen: &mut BTreeSet<String>, errs: &mut Vec<FieldError>) {
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        for msg in names::dns1123_label(&c.name) {
            errs.push(FieldError::invalid(path.child("name"), &c.name, msg));
        }
        if !names_seen.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(path.child("name"), &c.name));
        }
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    if let Some(p) = c.image_pull_policy.as_deref()
        && !PULL_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(path.child("imagePullPolicy"), p, PULL_POLICIES));
        }
    if let Some(p) = c.termination_message_policy.as_deref()
        && !TERMINATION_MESSAGE_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(path.child("terminationMessagePolicy"), p, TERMINATION_MESSAGE_POLICIES));
        }
    let mut port_names = BTreeSet::new();
    for (i, port) in c.ports.as_deref().unwrap_or_default().iter().enumerate() {
        let p = path.child("ports").index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = names::iana_svc_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(FieldError::invalid(p.child("name"), name, msg));
                }
            } else if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else if let Some(msg) = port_number(port.container_port.into()) {
            errs.push(FieldError::invalid(p.child("containerPort"), port.container_port, msg));
        }
        if let Some(host_port) = port.host_port.filter(|h| *h != 0)
            && let Some(msg) = port_number(host_port.into()) {
                errs.push(FieldError::invalid(p.child("hostPort"), host_port, msg));
            }
        match port.protocol.as_deref().unwrap_or_default() {
            "" => errs.push(FieldError::required(p.child("protocol"), "")),
            proto if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(p.child("protocol"), proto, PROTOCOLS)),
            _ => {}
        }
    }
    for (i, m) in c.volume_mounts.as_deref().unwrap_or_default().iter().enumerate() {
        let p = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else if !volumes.contains(&m.name) {
            errs.push(FieldError::not_found(p.child("name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
    }
    if let Some(r) = &c.resources {
        resources(r.requests.as_ref(), r.limits.as_ref(), &path.child("resources"), errs);
    }
}

/// Quantities must parse and not be negative; a request may not exceed its limit.
fn resources(requests: Option<&BTreeMap<String, ApiQuantity>>, limits: Option<&BTreeMap<String, ApiQuantity>>, path: &Path, errs: &mut Vec<FieldError>) {
    let mut parse = |map: Option<&BTreeMap<String, ApiQuantity>>, key: &str| -> BTreeMap<String, (Quantity, String)> {
        let mut out = BTreeMap::new();
        for (name, q) in map.into_iter().flatten() {
            let p = path.child(key).key(name);
            match Quantity::parse(&q.0) {
                None => errs.push(FieldError::invalid(p, &q.0, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")),
                Some(v) if v.value() < 0.0 => errs.push(FieldError::invalid(p, &q.0, "must be greater than or equal to 0")),
                Some(v) => {
                    out.insert(name.clone(), (v, q.0.clone()));
                }
            }
        }
        out
    };
    let limits = parse(limits, "limits");
    let requests = parse(requests, "requests");
    for (name, (request, text)) in &requests {
        if let Some((limit, limit_text)) = limits.get(name)
            && request.compare(*limit).is_gt() {
                errs.push(FieldError::invalid(path.child("requests"), text, format!("must be less than or equal to {name} limit of {limit_text}")));
            }
    }
}

/// A pod's spec is fixed once created but for images, the deadline, added tolerations and
/// the grace period: put the allowed changes back and anything still different is refused.
fn pod_update(new: &PodSpec, old: Option<&PodSpec>, errs: &mut Vec<FieldError>) {
    let Some(old) = old else { return };
    let mut mutated = new.clone();
    let restore_images = |mutated: &mut Vec<Container>, old: &[Container]| {
        if mutated.len() == old.len() {
            for (m, o) in mutated.iter_mut().zip(old) {
                m.image = o.image.clone();
            }
        }
    };
    restore_images(&mut mutated.containers, &old.containers);
    if let (Some(m), Some(o)) = (mutated.init_containers.as_mut(), old.init_containers.as_deref()) {
        restore_images(m, o);
    }
    mutated.active_deadline_seconds = old.active_deadline_seconds;
    mutated.termination_grace_period_seconds = old.termination_grace_period_seconds;
    let old_tolerations = old.tolerations.as_deref().unwrap_or_default();
    let new_tolerations = mutated.tolerations.as_deref().unwrap_or_default();
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        mutated.tolerations = old.tolerations.clone();
    }
    if &mutated != old {
        errs.push(FieldError::forbidden(Path::new("spec"), POD_UPDATE_MSG));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_numbers() {
        assert!(port_number(80).is_none());
        assert!(port_number(65535).is_none());
        assert_eq!(port_number(70000).unwrap(), "must be between 1 and 65535, inclusive");
        assert!(port_number(0).is_some());
    }
}
