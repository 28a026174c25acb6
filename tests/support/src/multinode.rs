//! A cluster of several nodes on one machine, for end-to-end tests with the real kubectl,
//! made by `scripts/multinode.sh` (what users run): a control plane (`kubelet-rs
//! --apiserver`, itself a node) and workers (`kubelet-rs --kubeconfig`, joining with
//! credentials from `apiserver-lite node-kubeconfig`), each in a network namespace of its own
//! with its own address, data, state, cgroup and pod CIDR (`10.244.<i>.0/24`), on one bridge
//! in a `lan` namespace (which also stands for the world outside, at [`LAN_GATEWAY`]);
//! kubelet-rs itself routes between the pod CIDRs (host-gw). The test's names get a prefix of
//! their own, so tests run side by side; the loopback registry is relayed into every node and
//! the API server out to the host.
//!
//! Dropping the cluster stops every node, removes its pods through a CRI service on its
//! directories, then `multinode.sh down` removes the namespaces, cgroups, mounts and state.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::bins::workspace_bin;
use crate::cri_service::remove_pods_in;
use crate::kubectl::Kubectl;
use crate::registry::{Auth, Registry};
use crate::relay::Relay;
use crate::require_root;

/// The nodes' network: node `i` is `192.168.78.<10+i>`.
pub const LAN_PREFIX: &str = "192.168.78";
/// The lan namespace's own address: the nodes' default gateway.
pub const LAN_GATEWAY: &str = "192.168.78.1";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One node as the script made it.
pub struct Node {
    pub name: String,
    /// Its InternalIP on the lan.
    pub ip: String,
    pub pod_cidr: String,
    /// Its network namespace.
    pub netns: String,
    pub dir: PathBuf,
}

impl Node {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kubelet-rs.log")).unwrap_or_default()
    }
}

pub struct MultiNode {
    pub registry: Registry,
    /// `127.0.0.1:PORT/library/busybox:1.36`, the same address on the host and on every node.
    pub busybox: String,
    pub kubectl: Kubectl,
    /// `nodes[0]` is the control plane.
    pub nodes: Vec<Node>,
    /// The names' prefix (`<prefix>-lan` is the lan namespace).
    pub prefix: String,
    pub dir: tempfile::TempDir,
    relays: Vec<Relay>,
}

/// Options of [`MultiNode::start`].
pub struct MultiNodeOptions {
    pub workers: usize,
    /// The control plane's --node-monitor-grace-period.
    pub node_monitor_grace_period: Duration,
}

impl Default for MultiNodeOptions {
    fn default() -> Self {
        MultiNodeOptions { workers: 2, node_monitor_grace_period: Duration::from_secs(50) }
    }
}

impl MultiNode {
    pub fn start(options: MultiNodeOptions) -> MultiNode {
        require_root();
        for bin in ["krs-bridge", "krs-host-local", "krs-portmap"] {
            workspace_bin("cni", bin);
        }
        workspace_bin("runtime-rs", "runtime-rs");
        workspace_bin("apiserver-lite", "apiserver-lite");
        let bin_dir = workspace_bin("kubelet-rs", "kubelet-rs").parent().expect("the binaries' folder").to_path_buf();
        let registry = Registry::start(Auth::None);
        registry.push("busybox", "library/busybox:1.36");
        let busybox = registry.reference("library/busybox:1.36");
        let registry_addr: SocketAddr = registry.host.parse().unwrap();
        let dir = tempfile::Builder::new().prefix("krs-test-multinode.").tempdir().unwrap();
        let prefix = format!("krs-mn{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let grace = format!("{}s", options.node_monitor_grace_period.as_secs());
        let nodes = (0..=options.workers)
            .map(|i| {
                let name = if i == 0 { "krs-cp".to_string() } else { format!("krs-worker{i}") };
                Node { ip: format!("{LAN_PREFIX}.{}", 10 + i), pod_cidr: format!("10.244.{i}.0/24"), netns: format!("{prefix}-{name}"), dir: dir.path().join(&name), name }
            })
            .collect();
        let mut cluster = MultiNode { registry, busybox, kubectl: Kubectl::new(&dir.path().join("kubectl.kubeconfig")), nodes, prefix, dir, relays: Vec::new() };
        let workers = options.workers.to_string();
        let up = cluster.script(&["up", "--workers", &workers, "--bin-dir", &bin_dir.to_string_lossy(), "--no-host-link", "--prefix", &cluster.prefix.clone(), "--", "--insecure-registry", &cluster.registry.host.clone(), "--node-monitor-grace-period", &grace]);
        assert!(up.status.success(), "multinode.sh up failed:\n{}{}\n{}", String::from_utf8_lossy(&up.stdout), String::from_utf8_lossy(&up.stderr), cluster.diagnose());
        for node in &cluster.nodes {
            cluster.relays.push(Relay::start(Some(&node.netns_path()), registry_addr.port(), None, registry_addr));
        }
        let api = Relay::start(None, 0, Some(&cluster.nodes[0].netns_path()), "127.0.0.1:6443".parse().unwrap());
        let admin = std::fs::read_to_string(cluster.dir.path().join("admin.kubeconfig")).unwrap();
        std::fs::write(&cluster.kubectl.kubeconfig, admin.replace(&format!("https://{LAN_PREFIX}.10:6443"), &format!("https://{}", api.addr))).unwrap();
        cluster.relays.push(api);
        for n in 0..cluster.nodes.len() {
            cluster.wait_node_ready(n);
        }
        cluster
    }

    /// `scripts/multinode.sh <args> --dir <the test's dir>`.
    fn script(&self, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("workspace dir").join("scripts/multinode.sh");
        let (cmd, rest) = args.split_first().expect("a command");
        let (opts, extra) = match rest.iter().position(|a| *a == "--") {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, &[][..]),
        };
        Command::new("sh").arg(&script).arg(cmd).args(opts).arg("--dir").arg(self.dir.path()).args(extra).output().expect("run scripts/multinode.sh")
    }

    /// Stop a node's kubelet-rs (SIGTERM; its pods keep running, as with the kubelet).
    pub fn stop_node(&self, name: &str) {
        let out = self.script(&["stop-node", name]);
        assert!(out.status.success(), "multinode.sh stop-node {name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Run `argv` in the lan namespace (a machine outside the cluster, on the nodes' network).
    pub fn lan_exec(&self, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &format!("{}-lan", self.prefix)]).args(argv).output().expect("ip netns exec")
    }

    /// Start a server in the lan namespace; it is killed (by its PID) when the guard drops.
    pub fn lan_spawn(&self, argv: &[&str]) -> crate::KillOnDrop {
        let child = Command::new("ip").args(["netns", "exec", &format!("{}-lan", self.prefix)]).args(argv).stdin(std::process::Stdio::null()).spawn().expect("ip netns exec");
        crate::KillOnDrop(child)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    /// A node's Ready condition status (`True`, `False`, `Unknown`, or empty).
    pub fn node_ready(&self, name: &str) -> String {
        let o = self.kubectl.run(&["get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        if o.ok { o.stdout.trim().to_string() } else { String::new() }
    }

    pub fn wait_node_ready(&self, n: usize) {
        let name = self.nodes[n].name.clone();
        self.wait_for(&format!("node {name} to be Ready"), Duration::from_secs(120), || self.node_ready(&name) == "True");
    }

    /// Poll `check` every 250 ms until it holds; panic naming `what`, with every node's log
    /// tail and the pods, after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}\n{}", self.diagnose());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Every node's log tail, the nodes, pods and events, for failure messages.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let log = node.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!("--- {} log tail:\n{}\n", node.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        for what in [&["get", "nodes", "-o", "wide"][..], &["get", "pods", "-A", "-o", "wide"], &["get", "events", "-A"]] {
            let o = self.kubectl.run(what);
            out.push_str(&format!("--- kubectl {}:\n{}{}\n", what.join(" "), o.stdout, o.stderr));
        }
        out
    }
}

impl Drop for MultiNode {
    fn drop(&mut self) {
        // Workers first: a pod's teardown never needs the control plane, but its kubelet
        // must not restart what is being removed.
        for node in self.nodes.iter().rev() {
            let _ = self.script(&["stop-node", &node.name]);
            remove_pods_in(&node.netns_path(), &node.data_dir(), &node.dir.join("state"));
        }
        self.relays.clear();
        let out = self.script(&["down"]);
        if !out.status.success() {
            eprintln!("multinode.sh down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
