//! The Node this kubelet registers and the status it reports, built from the configuration,
//! the machine's facts and the runtime's version: pure, so every field is unit-tested.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::machine::MachineFacts;

/// What the kubelet says it is: a semver the tools accept, marked as ours.
pub const KUBELET_VERSION: &str = "v1.33.0-kubelet-rs";
/// The pods a node takes unless configured (upstream `--max-pods`).
pub const DEFAULT_MAX_PODS: u32 = 110;
/// The hard eviction threshold on memory, kept out of allocatable (upstream default
/// `memory.available<100Mi`).
pub const EVICTION_HARD_MEMORY_BYTES: u64 = 100 << 20;
/// The hard eviction threshold on the node's filesystem (`nodefs.available<10%`).
pub const EVICTION_HARD_NODEFS_PERCENT: u64 = 10;
/// How many images the status lists, as upstream's `--node-status-max-images` default.
pub const MAX_IMAGES: usize = 50;

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_BETA_OS: &str = "beta.kubernetes.io/os";
pub const LABEL_BETA_ARCH: &str = "beta.kubernetes.io/arch";

/// Resources kept from pods (system-reserved plus kube-reserved, summed by the caller or
/// given separately and added here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub pids: u64,
}

impl Reserved {
    pub fn plus(self, o: Reserved) -> Reserved {
        Reserved {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
            ephemeral_storage_bytes: self.ephemeral_storage_bytes + o.ephemeral_storage_bytes,
            pids: self.pids + o.pids,
        }
    }
}

/// The kubelet's configuration as far as the Node object goes.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// The Node's name (`--hostname-override` or the lowercased hostname).
    pub name: String,
    /// `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`: set at registration only, afterwards they are the user's.
    pub taints: Vec<Taint>,
    /// spec.podCIDRs, when this node is given them rather than the controller.
    pub pod_cidrs: Vec<String>,
    /// `--node-ip`: the InternalIP; else the first non-loopback IPv4 of the machine.
    pub node_ip: Option<IpAddr>,
    /// The port of the kubelet's API (status.daemonEndpoints.kubeletEndpoint).
    pub kubelet_port: u16,
    pub max_pods: u32,
    pub system_reserved: Reserved,
    pub kube_reserved: Reserved,
}

impl NodeConfig {
    pub fn new(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            pod_cidrs: Vec::new(),
            node_ip: None,
            kubelet_port: 10250,
            max_pods: DEFAULT_MAX_PODS,
            system_reserved: Reserved::default(),
            kube_reserved: Reserved::default(),
        }
    }
}

/// `amd64`/`arm64`... as Go names the architecture this binary was built for.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The labels the kubelet owns: hostname, os and arch (and their beta forms), then the
/// configured ones (which may not override those).
pub fn labels(config: &NodeConfig) -> BTreeMap<String, String> {
    let mut labels = config.labels.clone();
    // As the kubelet: the hostname is the override when one is given, and the node's name
    // is the (lowercased) hostname otherwise, so the name is the label's value either way.
    let host = config.name.as_str();
    for (k, v) in [(LABEL_HOSTNAME, host), (LABEL_OS, "linux"), (LABEL_ARCH, go_arch()), (LABEL_BETA_OS, "linux"), (LABEL_BETA_ARCH, go_arch())] {
        labels.insert(k.to_string(), v.to_string());
    }
    labels
}

/// The Node to create at registration, with its first status.
pub fn node(config: &NodeConfig, status: NodeStatus) -> Node {
    Node {
        metadata: ObjectMeta { name: Some(config.name.clone()), labels: Some(labels(config)), ..Default::default() },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            pod_cidr: config.pod_cidrs.first().cloned(),
            pod_cidrs: (!config.pod_cidrs.is_empty()).then(|| config.pod_cidrs.clone()),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// Everything the status holds but the conditions (computed in `conditions`).
pub fn status(config: &NodeConfig, facts: &MachineFacts, runtime_version: &str, images: &[ContainerImage], conditions: Vec<NodeCondition>) -> NodeStatus {
    let capacity = capacity(config, facts);
    let allocatable = allocatable(config, facts);
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(addresses(config, facts)),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: config.kubelet_port as i32 }) }),
        node_info: Some(NodeSystemInfo {
            machine_id: facts.machine_id.clone(),
            system_uuid: facts.system_uuid.clone(),
            boot_id: facts.boot_id.clone(),
            kernel_version: facts.kernel_version.clone(),
            os_image: facts.os_image.clone(),
            container_runtime_version: runtime_version.to_string(),
            kubelet_version: KUBELET_VERSION.to_string(),
            kube_proxy_version: KUBELET_VERSION.to_string(),
            operating_system: "linux".to_string(),
            architecture: go_arch().to_string(),
            ..Default::default()
        }),
        images: (!images.is_empty()).then(|| top_images(images)),
        ..Default::default()
    }
}

/// The largest images first, at most [`MAX_IMAGES`], as upstream lists them.
fn top_images(images: &[ContainerImage]) -> Vec<ContainerImage> {
    let mut images = images.to_vec();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes.unwrap_or(0)));
    images.truncate(MAX_IMAGES);
    images
}

/// InternalIP (configured, else the machine's first) and Hostname.
pub fn addresses(config: &NodeConfig, facts: &MachineFacts) -> Vec<NodeAddress> {
    let mut out = Vec::new();
    if let Some(ip) = config.node_ip.or_else(|| facts.addresses.first().copied()) {
        out.push(NodeAddress { type_: "InternalIP".into(), address: ip.to_string() });
    }
    out.push(NodeAddress { type_: "Hostname".into(), address: config.name.clone() });
    out
}

fn capacity(config: &NodeConfig, facts: &MachineFacts) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.num_cpus.to_string())),
        ("memory".to_string(), Quantity(bytes(facts.memory_bytes))),
        ("ephemeral-storage".to_string(), Quantity(bytes(facts.fs_capacity_bytes))),
        ("pods".to_string(), Quantity(config.max_pods.to_string())),
        ("hugepages-2Mi".to_string(), Quantity("0".into())),
        ("hugepages-1Gi".to_string(), Quantity("0".into())),
    ])
}

/// Capacity less what is reserved and the hard eviction thresholds, never below zero.
fn allocatable(config: &NodeConfig, facts: &MachineFacts) -> BTreeMap<String, Quantity> {
    let reserved = config.system_reserved.plus(config.kube_reserved);
    let cpu = (facts.num_cpus as u64 * 1000).saturating_sub(reserved.cpu_millis);
    let memory = facts.memory_bytes.saturating_sub(reserved.memory_bytes + EVICTION_HARD_MEMORY_BYTES);
    let nodefs_threshold = facts.fs_capacity_bytes * EVICTION_HARD_NODEFS_PERCENT / 100;
    let storage = facts.fs_capacity_bytes.saturating_sub(reserved.ephemeral_storage_bytes + nodefs_threshold);
    let mut a = capacity(config, facts);
    a.insert("cpu".into(), Quantity(millis(cpu)));
    a.insert("memory".into(), Quantity(bytes(memory)));
    a.insert("ephemeral-storage".into(), Quantity(bytes(storage)));
    a
}

/// CPU in the shortest form: whole cores as `4`, else millicores `3500m`.
pub fn millis(m: u64) -> String {
    if m.is_multiple_of(1000) { (m / 1000).to_string() } else { format!("{m}m") }
}

/// Bytes in the binary suffix that divides them (`8Gi`, `8130084Ki`), else plain.
pub fn bytes(b: u64) -> String {
    for (shift, suffix) in [(40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if b != 0 && b.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", b >> shift);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::node::machine::FakeMachine;

    fn facts() -> MachineFacts {
        FakeMachine::typical().facts
    }

    #[test]
    fn quantities_are_in_kubernetes_form() {
        assert_eq!(bytes(8 << 30), "8Gi");
        assert_eq!(bytes(8130084 * 1024), "8130084Ki");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(0), "0");
        assert_eq!(millis(4000), "4");
        assert_eq!(millis(3500), "3500m");
    }

    #[test]
    fn the_registered_node_carries_labels_taints_and_cidrs() {
        let mut config = NodeConfig::new("node-a");
        config.labels.insert("role".into(), "edge".into());
        config.labels.insert(LABEL_OS.into(), "windows".into());
        config.taints.push(Taint { key: "dedicated".into(), value: Some("x".into()), effect: "NoSchedule".into(), time_added: None });
        config.pod_cidrs = vec!["10.244.1.0/24".into()];
        let node = node(&config, NodeStatus::default());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["role"], "edge");
        assert_eq!(labels[LABEL_OS], "linux", "the kubelet's own labels win");
        assert_eq!(labels[LABEL_HOSTNAME], "node-a");
        assert_eq!(labels[LABEL_ARCH], go_arch());
        assert_eq!(labels[LABEL_BETA_ARCH], go_arch());
        let spec = node.spec.unwrap();
        assert_eq!(spec.taints.unwrap()[0].key, "dedicated");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.244.1.0/24"));
        assert_eq!(spec.pod_cidrs.unwrap().len(), 1);
    }

    #[test]
    fn allocatable_is_capacity_less_reserved_and_eviction() {
        let mut config = NodeConfig::new("node-a");
        config.system_reserved = Reserved { cpu_millis: 500, memory_bytes: 1 << 30, ..Default::default() };
        config.kube_reserved = Reserved { memory_bytes: 0, ephemeral_storage_bytes: 1 << 30, ..Default::default() };
        let s = status(&config, &facts(), "containerd://1.6.20", &[], vec![]);
        let cap = s.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, "8Gi");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["hugepages-2Mi"].0, "0");
        let alloc = s.allocatable.unwrap();
        assert_eq!(alloc["cpu"].0, "3500m");
        assert_eq!(alloc["memory"].0, bytes((7 << 30) - (100 << 20)));
        assert_eq!(alloc["ephemeral-storage"].0, bytes((100 << 30) - (10 << 30) - (1 << 30)));
        let info = s.node_info.unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.kubelet_version, KUBELET_VERSION);
        assert_eq!(info.boot_id, "b-id");
        assert_eq!(info.operating_system, "linux");
        assert_eq!(s.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 10250);
        assert!(s.images.is_none());
    }

    #[test]
    fn the_internal_ip_is_configured_or_the_first_address() {
        let mut config = NodeConfig::new("node-a");
        let a = addresses(&config, &facts());
        assert_eq!((a[0].type_.as_str(), a[0].address.as_str()), ("InternalIP", "10.0.0.5"));
        assert_eq!((a[1].type_.as_str(), a[1].address.as_str()), ("Hostname", "node-a"));
        config.node_ip = Some("192.168.1.9".parse().unwrap());
        assert_eq!(addresses(&config, &facts())[0].address, "192.168.1.9");
    }

    #[test]
    fn images_are_the_largest_fifty() {
        let images: Vec<ContainerImage> = (0..60).map(|i| ContainerImage { names: Some(vec![format!("img{i}")]), size_bytes: Some(i) }).collect();
        let s = status(&NodeConfig::new("n"), &facts(), "x", &images, vec![]);
        let listed = s.images.unwrap();
        assert_eq!(listed.len(), MAX_IMAGES);
        assert_eq!(listed[0].size_bytes, Some(59));
    }
}
