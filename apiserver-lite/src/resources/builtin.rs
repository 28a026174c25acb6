//! The built-in resources, as kube-apiserver 1.33 lists them in discovery (those this server
//! serves).

use super::{Registry, Resource, Subresource};

const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

struct Def {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    sub: &'static [&'static str],
}

const fn def(group: &'static str, plural: &'static str, kind: &'static str, namespaced: bool, short: &'static [&'static str], all: bool, sub: &'static [&'static str]) -> Def {
    Def { group, plural, kind, namespaced, short, all, sub }
}

const DEFS: &[Def] = &[
    def("", "bindings", "Binding", true, &[], false, &[]),
    def("", "configmaps", "ConfigMap", true, &["cm"], false, &[]),
    def("", "endpoints", "Endpoints", true, &["ep"], false, &[]),
    def("", "events", "Event", true, &["ev"], false, &[]),
    def("", "namespaces", "Namespace", false, &["ns"], false, &["status", "finalize"]),
    def("", "nodes", "Node", false, &["no"], false, &["status", "proxy"]),
    def("", "persistentvolumeclaims", "PersistentVolumeClaim", true, &["pvc"], false, &["status"]),
    def("", "persistentvolumes", "PersistentVolume", false, &["pv"], false, &["status"]),
    def("", "pods", "Pod", true, &["po"], true, &["attach", "binding", "eviction", "exec", "log", "portforward", "proxy", "status"]),
    def("", "secrets", "Secret", true, &[], false, &[]),
    def("", "serviceaccounts", "ServiceAccount", true, &["sa"], false, &["token"]),
    def("", "services", "Service", true, &["svc"], true, &["proxy", "status"]),
    def("apps", "controllerrevisions", "ControllerRevision", true, &[], false, &[]),
    def("apps", "daemonsets", "DaemonSet", true, &["ds"], true, &["status"]),
    def("apps", "deployments", "Deployment", true, &["deploy"], true, &["scale", "status"]),
    def("apps", "replicasets", "ReplicaSet", true, &["rs"], true, &["scale", "status"]),
    def("apps", "statefulsets", "StatefulSet", true, &["sts"], true, &["scale", "status"]),
    def("batch", "cronjobs", "CronJob", true, &["cj"], true, &["status"]),
    def("batch", "jobs", "Job", true, &[], true, &["status"]),
    def("certificates.k8s.io", "certificatesigningrequests", "CertificateSigningRequest", false, &["csr"], false, &["approval", "status"]),
    def("coordination.k8s.io", "leases", "Lease", true, &[], false, &[]),
    def("discovery.k8s.io", "endpointslices", "EndpointSlice", true, &[], false, &[]),
    def("events.k8s.io", "events", "Event", true, &["ev"], false, &[]),
];

fn verbs(plural: &str) -> Vec<String> {
    match plural {
        "bindings" => strings(&["create"]),
        _ => strings(ALL_VERBS),
    }
}

fn subresource(group: &str, plural: &str, kind: &str, name: &str) -> Subresource {
    let (kind, sub_group, sub_version, verbs): (&str, &str, &str, &[&str]) = match name {
        "status" | "approval" => (kind, group, "v1", &["get", "patch", "update"]),
        "scale" => ("Scale", "autoscaling", "v1", &["get", "patch", "update"]),
        "finalize" => (kind, group, "v1", &["update"]),
        "binding" => ("Binding", "", "v1", &["create"]),
        "eviction" => ("Eviction", "policy", "v1", &["create"]),
        "token" => ("TokenRequest", "authentication.k8s.io", "v1", &["create"]),
        "log" => ("Pod", "", "v1", &["get"]),
        "attach" | "exec" | "portforward" => (if plural == "pods" { "PodAttachOptions" } else { kind }, "", "v1", &["create", "get"]),
        "proxy" => (if plural == "pods" { "PodProxyOptions" } else if plural == "nodes" { "NodeProxyOptions" } else { "ServiceProxyOptions" }, "", "v1", &["create", "delete", "get", "patch", "update"]),
        other => unreachable!("unknown built-in subresource {other}"),
    };
    let kind = match name {
        "exec" => "PodExecOptions",
        "portforward" => "PodPortForwardOptions",
        _ => kind,
    };
    Subresource { name: name.into(), kind: kind.into(), group: sub_group.into(), version: sub_version.into(), verbs: strings(verbs) }
}

fn singular(kind: &str) -> String {
    kind.to_lowercase()
}

/// The registry of built-in resources.
pub fn builtin() -> Registry {
    Registry::new(
        DEFS.iter()
            .map(|d| Resource {
                group: d.group.into(),
                version: "v1".into(),
                plural: d.plural.into(),
                singular: singular(d.kind),
                kind: d.kind.into(),
                namespaced: d.namespaced,
                short_names: strings(d.short),
                categories: if d.all { strings(&["all"]) } else { Vec::new() },
                verbs: verbs(d.plural),
                subresources: d.sub.iter().map(|s| subresource(d.group, d.plural, d.kind, s)).collect(),
                stored_as: (d.group == "events.k8s.io").then(|| (String::new(), "events".to_string())),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_keys() {
        let r = builtin();
        let pods = r.get("", "v1", "pods").unwrap();
        assert_eq!(pods.key("default".into(), "web"), "/registry/core/pods/default/web");
        assert_eq!(pods.collection_path(Some("kube-system")), "/api/v1/namespaces/kube-system/pods");
        let deploy = r.by_kind("apps", "v1", "Deployment").unwrap();
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        assert_eq!(deploy.subresource("scale").unwrap().kind, "Scale");
        let nodes = r.get("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/core/nodes/n1");
        assert_eq!(r.groups()[0], ("".to_string(), vec!["v1".to_string()]));
        let new_events = r.get("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(new_events.key(Some("d"), "e"), r.get("", "v1", "events").unwrap().key(Some("d"), "e"));
        assert!(r.groups().iter().any(|(g, _)| g == "apps"));
    }
}
