//! The scheduler's picture of the cluster: every node with the pods placed on it and what
//! they request, kept from the watches, plus the pods the scheduler has assumed onto a node
//! whose binding has not come back yet (counted, so the next pod does not take the same
//! room; forgotten if the binding fails).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};

use super::matching::Labels;
use super::resources::{pod_nonzero, pod_requests, Resources};

/// `namespace/name`.
pub type PodKey = String;

pub fn pod_key(pod: &Pod) -> PodKey {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}

/// A host port a container asks for: (protocol, host IP, port); IP 0.0.0.0 means all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port && self.protocol == other.protocol && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// What the scheduler needs of a pod, computed once.
#[derive(Debug)]
pub struct PodInfo {
    pub key: PodKey,
    pub uid: String,
    pub namespace: String,
    pub labels: Labels,
    pub requests: Resources,
    pub nonzero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    /// Required anti-affinity terms: a placed pod's keep matching pods out of its domain.
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub pod: Arc<Pod>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let required_anti_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
            .unwrap_or_default();
        PodInfo {
            key: pod_key(&pod),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: pod_requests(&spec),
            nonzero: pod_nonzero(&spec),
            host_ports,
            priority: spec.priority.unwrap_or(0),
            required_anti_affinity,
            pod,
        }
    }
}

/// A node and the pods on it.
#[derive(Debug, Default)]
pub struct NodeInfo {
    /// None while pods still name a node that was deleted (its accounting is kept so the
    /// node coming back starts from the truth).
    pub node: Option<Arc<Node>>,
    pub allocatable: Resources,
    pub pods: HashMap<PodKey, Arc<PodInfo>>,
    pub requested: Resources,
    pub nonzero_requested: (i64, i64),
    pub host_ports: Vec<HostPort>,
}

impl NodeInfo {
    pub fn name(&self) -> &str {
        self.node.as_ref().and_then(|n| n.metadata.name.as_deref()).unwrap_or("")
    }

    pub fn labels(&self) -> Option<&Labels> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    fn add(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.nonzero_requested.0 += p.nonzero.0;
        self.nonzero_requested.1 += p.nonzero.1;
        self.host_ports.extend(p.host_ports.iter().cloned());
        self.pods.insert(p.key.clone(), p);
    }

    fn remove(&mut self, key: &str) {
        if let Some(p) = self.pods.remove(key) {
            self.requested.sub(&p.requests);
            self.nonzero_requested.0 -= p.nonzero.0;
            self.nonzero_requested.1 -= p.nonzero.1;
            for hp in &p.host_ports {
                if let Some(i) = self.host_ports.iter().position(|h| h == hp) {
                    self.host_ports.swap_remove(i);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Placement {
    node: String,
    assumed: bool,
}

#[derive(Debug, Default)]
pub struct Cache {
    pub nodes: BTreeMap<String, NodeInfo>,
    placements: HashMap<PodKey, Placement>,
    /// Placed pods with required anti-affinity, checked against every incoming pod.
    pub anti_affinity_pods: HashMap<PodKey, (Arc<PodInfo>, String)>,
    node_count: usize,
}

impl Cache {
    /// Nodes that exist (not only named by pods).
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    pub fn set_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())).map(Resources::from_list).unwrap_or_default();
        let info = self.nodes.entry(name).or_default();
        if info.node.is_none() {
            self.node_count += 1;
        }
        info.node = Some(Arc::new(node));
        info.allocatable = allocatable;
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(info) = self.nodes.get_mut(name) {
            if info.node.take().is_some() {
                self.node_count -= 1;
            }
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, i)| i.node.is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// Place a pod on a node (moving it if it was elsewhere). `assumed` is the scheduler's
    /// own decision before the API confirms it.
    pub fn place(&mut self, pod: Arc<PodInfo>, node: &str, assumed: bool) {
        self.remove_pod(&pod.key);
        if !pod.required_anti_affinity.is_empty() {
            self.anti_affinity_pods.insert(pod.key.clone(), (pod.clone(), node.to_string()));
        }
        self.placements.insert(pod.key.clone(), Placement { node: node.to_string(), assumed });
        self.nodes.entry(node.to_string()).or_default().add(pod);
    }

    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(p) = self.placements.remove(key) else { return false };
        self.anti_affinity_pods.remove(key);
        if let Some(info) = self.nodes.get_mut(&p.node) {
            info.remove(key);
            if info.node.is_none() && info.pods.is_empty() {
                self.nodes.remove(&p.node);
            }
        }
        true
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.placements.get(key).is_some_and(|p| p.assumed)
    }

    pub fn is_placed(&self, key: &str) -> bool {
        self.placements.contains_key(key)
    }

    /// Undo an assumption whose binding failed; a placement the watch confirmed stays.
    pub fn forget(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    pub fn placed_keys(&self) -> Vec<PodKey> {
        self.placements.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, cpu: &str, port: Option<i32>) -> Arc<PodInfo> {
        let ports = port.map(|p| json!([{"containerPort": 80, "hostPort": p}])).unwrap_or(json!([]));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d"}, "spec": {"containers": [{"name": "c", "ports": ports, "resources": {"requests": {"cpu": cpu}}}]}})).unwrap();
        Arc::new(PodInfo::new(Arc::new(pod)))
    }

    #[test]
    fn placing_and_removing_keeps_the_sums() {
        let mut c = Cache::default();
        c.set_node(serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "pods": "10"}}})).unwrap());
        c.place(pod("a", "500m", Some(80)), "n1", true);
        c.place(pod("b", "250m", None), "n1", false);
        let n = &c.nodes["n1"];
        assert_eq!((n.requested.milli_cpu, n.requested.pods, n.host_ports.len()), (750, 2, 1));
        assert_eq!(n.allocatable.milli_cpu, 2000);
        assert!(c.is_assumed("d/a") && !c.is_assumed("d/b"));
        c.forget("d/a");
        c.forget("d/b");
        let n = &c.nodes["n1"];
        assert_eq!((n.requested.milli_cpu, n.requested.pods, n.host_ports.len()), (250, 1, 0), "only the assumed pod is forgotten");
        c.place(pod("b", "250m", None), "n2", false);
        assert_eq!(c.nodes["n1"].requested.milli_cpu, 0, "moving a pod takes it off its old node");
        assert_eq!(c.node_count(), 1, "n2 is only named by a pod");
        c.remove_pod("d/b");
        assert!(!c.nodes.contains_key("n2"));
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, port| HostPort { protocol: "TCP".into(), ip: ip.into(), port };
        assert!(hp("0.0.0.0", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("10.0.0.2", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("0.0.0.0", 81).conflicts(&hp("0.0.0.0", 80)));
        assert!(!HostPort { protocol: "UDP".into(), ..hp("0.0.0.0", 80) }.conflicts(&hp("0.0.0.0", 80)));
    }
}
