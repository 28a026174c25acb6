//! The filters, in upstream's order, each saying why a node cannot take the pod in the
//! words of the upstream plugin (the FailedScheduling message counts these reasons).

use k8s_openapi::api::core::v1::Taint;

use super::cache::{NodeInfo, PodInfo};
use super::matching::{node_selection_matches, pod_tolerations, tolerated};
use super::topology::Topology;

/// Why one node was rejected. `unresolvable` rejections (taints, affinity, cordons) are
/// ones evicting pods could not fix, which the preemption part of the message reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reasons: Vec<String>,
    pub unresolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection { reasons: vec![reason.into()], unresolvable: true }
    }
    fn unschedulable(reason: impl Into<String>) -> Rejection {
        Rejection { reasons: vec![reason.into()], unresolvable: false }
    }
}

pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// Every filter, first failure wins.
pub fn run(pod: &PodInfo, node: &NodeInfo, topology: Option<&Topology>) -> Result<(), Rejection> {
    node_unschedulable(pod, node)?;
    taint_toleration(pod, node)?;
    node_affinity(pod, node)?;
    node_ports(pod, node)?;
    resources_fit(pod, node)?;
    if let Some(t) = topology {
        topology_spread(node, t)?;
        inter_pod_affinity(node, t)?;
    }
    Ok(())
}

fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let cordoned = node.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.unschedulable).unwrap_or(false);
    let taint = Taint { key: UNSCHEDULABLE_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() };
    if cordoned && !tolerated(pod_tolerations(&pod.pod), &taint) {
        return Err(Rejection::unresolvable("node(s) were unschedulable"));
    }
    Ok(())
}

fn is_ready(node: &NodeInfo) -> bool {
    node.node.as_ref().and_then(|n| n.status.as_ref()).and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// NoSchedule and NoExecute taints the pod does not tolerate. A node that is not Ready
/// counts as tainted not-ready (what the node lifecycle controller would add), so only pods
/// tolerating that (DaemonSet pods) go there.
fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let tolerations = pod_tolerations(&pod.pod);
    let taints = node.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let untolerated = |t: &Taint| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t);
    let found = taints.iter().find(|t| untolerated(t)).cloned().or_else(|| {
        let not_ready = Taint { key: NOT_READY_TAINT.into(), effect: "NoSchedule".into(), ..Default::default() };
        (!is_ready(node) && !taints.iter().any(|t| t.key == NOT_READY_TAINT) && untolerated(&not_ready)).then_some(not_ready)
    });
    match found {
        Some(t) => Err(Rejection::unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")))),
        None => Ok(()),
    }
}

fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    match &node.node {
        Some(n) if node_selection_matches(&pod.pod, n) => Ok(()),
        _ => Err(Rejection::unresolvable("node(s) didn't match Pod's node affinity/selector")),
    }
}

fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if pod.host_ports.iter().any(|want| node.host_ports.iter().any(|used| want.conflicts(used))) {
        return Err(Rejection::unschedulable("node(s) didn't have free ports for the requested pod ports"));
    }
    Ok(())
}

/// Requests against allocatable minus what placed pods request, reason per short resource
/// in upstream's order (pods, cpu, memory, ephemeral-storage, extended).
fn resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let (want, used, have) = (&pod.requests, &node.requested, &node.allocatable);
    let mut reasons = vec![];
    if used.pods + 1 > have.pods {
        reasons.push("Too many pods".to_string());
    }
    if want.milli_cpu > 0 && used.milli_cpu + want.milli_cpu > have.milli_cpu {
        reasons.push("Insufficient cpu".into());
    }
    if want.memory > 0 && used.memory + want.memory > have.memory {
        reasons.push("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0 && used.ephemeral_storage + want.ephemeral_storage > have.ephemeral_storage {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, v) in &want.scalar {
        if *v > 0 && used.scalar.get(name).copied().unwrap_or(0) + v > have.scalar.get(name).copied().unwrap_or(0) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(Rejection { reasons, unresolvable: false }) }
}

fn topology_spread(node: &NodeInfo, t: &Topology) -> Result<(), Rejection> {
    for s in t.spread.iter().filter(|s| s.hard) {
        let Some(value) = node.labels().and_then(|l| l.get(&s.key)) else {
            return Err(Rejection::unresolvable("node(s) didn't match pod topology spread constraints (missing required label)"));
        };
        let skew = s.counts.get(value).copied().unwrap_or(0) + s.self_match as i64 - s.min;
        if skew > s.max_skew {
            return Err(Rejection::unschedulable("node(s) didn't match pod topology spread constraints"));
        }
    }
    Ok(())
}

fn inter_pod_affinity(node: &NodeInfo, t: &Topology) -> Result<(), Rejection> {
    let labels = node.labels();
    let value = |key: &str| labels.and_then(|l| l.get(key));
    if t.existing_anti.iter().any(|(k, v)| value(k) == Some(v)) {
        return Err(Rejection::unschedulable("node(s) didn't satisfy existing pods anti-affinity rules"));
    }
    if !t.affinity_bypass && t.affinity.iter().any(|d| value(&d.key).is_none_or(|v| !d.counts.contains_key(v))) {
        return Err(Rejection::unresolvable("node(s) didn't match pod affinity rules"));
    }
    if t.anti_affinity.iter().any(|d| value(&d.key).is_some_and(|v| d.counts.contains_key(v))) {
        return Err(Rejection::unschedulable("node(s) didn't match pod anti-affinity rules"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::Cache;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn pod(name: &str, spec: Value) -> Arc<PodInfo> {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]);
        let pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}}, "spec": spec})).unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    fn cache_with_node(node: Value) -> Cache {
        let mut node = node;
        node["metadata"]["name"] = json!("n1");
        node["metadata"]["labels"]["kubernetes.io/hostname"] = json!("n1");
        node["status"]["allocatable"] = json!({"cpu": "1", "memory": "1Gi", "pods": "10"});
        if node["status"]["conditions"].is_null() {
            node["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        }
        let mut c = Cache::default();
        c.set_node(serde_json::from_value(node).unwrap());
        c
    }

    fn check(c: &Cache, p: &PodInfo) -> Result<(), Rejection> {
        let t = Topology::compute(c, p);
        run(p, &c.nodes["n1"], Some(&t))
    }

    #[test]
    fn cordoned_tainted_and_not_ready_nodes() {
        let c = cache_with_node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(check(&c, &pod("a", json!({}))).unwrap_err(), Rejection::unresolvable("node(s) were unschedulable"));
        let c = cache_with_node(json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}));
        assert_eq!(check(&c, &pod("a", json!({}))).unwrap_err().reasons, vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]);
        assert!(check(&c, &pod("a", json!({"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}))).is_ok());
        let c = cache_with_node(json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]}}));
        assert!(check(&c, &pod("a", json!({}))).is_ok(), "PreferNoSchedule only scores");
        let c = cache_with_node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(check(&c, &pod("a", json!({}))).unwrap_err().reasons, vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]);
    }

    #[test]
    fn resources_and_ports() {
        let mut c = cache_with_node(json!({}));
        let mut p = pod("x", json!({}));
        Arc::get_mut(&mut p).unwrap().host_ports.push(crate::scheduler::cache::HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 8080 });
        c.place(p, "n1", false);
        assert!(check(&c, &pod("a", json!({}))).is_ok(), "500m of 1 cpu is free");
        c.place(pod("y", json!({})), "n1", false);
        let err = check(&c, &pod("a", json!({}))).unwrap_err();
        assert_eq!(err, Rejection::unschedulable("Insufficient cpu"));
        let mut c = cache_with_node(json!({}));
        let mut p = pod("x", json!({}));
        Arc::get_mut(&mut p).unwrap().host_ports.push(crate::scheduler::cache::HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 8080 });
        c.place(p.clone(), "n1", false);
        let mut q = pod("q", json!({}));
        Arc::get_mut(&mut q).unwrap().host_ports = p.host_ports.clone();
        assert_eq!(check(&c, &q).unwrap_err().reasons, vec!["node(s) didn't have free ports for the requested pod ports"]);
    }

    #[test]
    fn anti_affinity_and_spread_on_hostname() {
        let mut c = cache_with_node(json!({}));
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        assert!(check(&c, &pod("a", anti.clone())).is_ok());
        c.place(pod("a", anti.clone()), "n1", false);
        assert_eq!(check(&c, &pod("b", anti)).unwrap_err().reasons, vec!["node(s) didn't satisfy existing pods anti-affinity rules"]);
        let mut c = cache_with_node(json!({}));
        c.place(pod("plain", json!({})), "n1", false);
        let aff = |app: &str| json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}});
        assert!(check(&c, &pod("c", aff("web"))).is_ok(), "a web pod is on n1");
        let with_labels = |name: &str, app: &str, spec: Value| {
            let mut p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": app}}, "spec": {"containers": []}})).unwrap();
            p.spec.as_mut().unwrap().affinity = serde_json::from_value(spec["affinity"].clone()).unwrap();
            PodInfo::new(Arc::new(p))
        };
        assert_eq!(check(&c, &with_labels("e", "api", aff("db"))).unwrap_err().reasons, vec!["node(s) didn't match pod affinity rules"]);
        assert!(check(&c, &with_labels("f", "db", aff("db"))).is_ok(), "the first pod of a group that wants its own kind may go anywhere");
        let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let c = cache_with_node(json!({}));
        assert_eq!(check(&c, &pod("d", spread)).unwrap_err().reasons, vec!["node(s) didn't match pod topology spread constraints (missing required label)"]);
    }
}
