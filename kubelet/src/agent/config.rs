//! What the agent is told at start: who it is, where the API server and the CRI runtime
//! are, where its files go, and the cluster settings it passes on to pods.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name (`--hostname-override`; default the host name, lowercased).
    pub node_name: String,
    /// The address the node reports (InternalIP); default the first non-loopback IPv4.
    pub node_ip: Option<IpAddr>,
    /// The kubeconfig to reach the API server with.
    pub kubeconfig: PathBuf,
    /// The CRI runtime's socket.
    pub cri_socket: PathBuf,
    /// The agent's own files: `pods/<uid>/volumes`, `pki/`.
    pub root_dir: PathBuf,
    /// Where container logs go: `<dir>/<ns>_<name>_<uid>/<container>/<n>.log`.
    pub pod_log_dir: PathBuf,
    /// Static pod manifests (`--pod-manifest-path`), if any.
    pub manifest_dir: Option<PathBuf>,
    /// The kubelet API (logs, exec, ...): address, serving certificate and key, and the CA
    /// whose client certificates it accepts.
    pub server: ServerConfig,
    /// The node's cgroup root; pods go to `<root>/kubepods[/<qos>]/pod<uid>`.
    pub cgroup_root: String,
    /// Pod CIDR given to the node (spec.podCIDR), if this node owns one.
    pub pod_cidr: Option<String>,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub host_resolv_conf: PathBuf,
    /// Labels added to the Node at registration (`--node-labels`).
    pub node_labels: Vec<(String, String)>,
    /// How often each pod is synced even when nothing seems to change.
    pub resync_period: Duration,
    /// The local-path provisioner: a kubeconfig allowed to create PersistentVolumes (a node's
    /// own may not) and the folder their data goes to. `None`: no provisioner.
    pub local_path: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub address: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: PathBuf,
}

impl AgentConfig {
    /// The upstream defaults for everything but the identity and the files.
    pub fn new(node_name: String, kubeconfig: PathBuf, cri_socket: PathBuf, root_dir: PathBuf, server: ServerConfig) -> AgentConfig {
        AgentConfig {
            node_name,
            node_ip: None,
            kubeconfig,
            cri_socket,
            pod_log_dir: PathBuf::from("/var/log/pods"),
            root_dir,
            manifest_dir: None,
            server,
            cgroup_root: "/".to_string(),
            pod_cidr: None,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            node_labels: Vec::new(),
            resync_period: Duration::from_secs(10),
            local_path: None,
        }
    }
}

/// The host name as a node name: lowercase, as the kubelet does.
pub fn default_node_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into()).to_lowercase()
}
