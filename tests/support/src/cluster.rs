//! A whole `kubelet-rs --apiserver` cluster for end-to-end tests and benchmarks with the
//! real kubectl: the process runs in a "node" network namespace of its own (its bridge, pods
//! and firewall rules never touch the host's network), a loopback registry seeded with the
//! busybox test image appears on the node's loopback at the same address through a relay,
//! and the API server is reached from the host through another relay. The agent drives the
//! built-in CRI service (pods' cgroups under a `krs-test-*` cgroup) or, with
//! [`Runtime::Containerd`], a private containerd in the same namespace. Dropping the cluster
//! stops the process, removes every pod (through a CRI service on the same directories, or
//! by stopping containerd), and unmounts what is left.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};


use crate::bins::workspace_bin;
use crate::containerd::{Containerd, CriOptions};
use crate::cri_service::remove_pods_in;
use crate::kubectl::Kubectl;
use crate::netns::TestNetns;
use crate::registry::{Auth, Registry};
use crate::relay::Relay;
use crate::{CgroupParent, mounts_under, require_root};

/// The CRI runtime the agent drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// The CRI service inside `kubelet-rs` (runtime-rs underneath).
    Builtin,
    /// containerd 1.6 with runc (Debian's), started for the cluster.
    Containerd,
}

/// The node's name.
pub const NODE: &str = "krs-node";
/// Where the API server is reached inside the node namespace (it listens on every address).
const API_ADDR: &str = "127.0.0.1:6443";
/// The node's address, on a link to the [`Cluster::outside`] namespace.
pub const NODE_IP: &str = "192.168.77.1";
/// The outside namespace's address: a client from outside the cluster, and the upstream
/// resolver the node's `resolv.conf` names.
pub const OUTSIDE_IP: &str = "192.168.77.2";

/// How [`Cluster::start_with_options`] starts the cluster; `Options::default()` is [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct Options {
    pub runtime: Runtime,
    /// kubelet-rs's `--hosts-dir` (`<registry>/hosts.toml` mirrors); default: none given.
    pub hosts_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options { runtime: Runtime::Builtin, hosts_dir: None }
    }
}

pub struct Cluster {
    pub registry: Registry,
    /// `127.0.0.1:PORT/library/busybox:1.36` (the same address on the host and on the node).
    pub busybox: String,
    pub kubectl: Kubectl,
    pub node: TestNetns,
    /// Another machine on the node's network (a veth between the two namespaces).
    pub outside: TestNetns,
    pub dir: tempfile::TempDir,
    pub cgroup: CgroupParent,
    pub runtime: Runtime,
    hosts_dir: Option<PathBuf>,
    containerd: Option<Containerd>,
    child: Option<Child>,
    relays: Vec<Relay>,
}

fn kubelet_rs() -> PathBuf {
    workspace_bin("kubelet-rs", "kubelet-rs")
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(Runtime::Builtin)
    }

    pub fn start_with(runtime: Runtime) -> Cluster {
        Cluster::start_with_options(Options { runtime, ..Options::default() })
    }

    pub fn start_with_options(options: Options) -> Cluster {
        let Options { runtime, hosts_dir } = options;
        require_root();
        for bin in ["krs-bridge", "krs-host-local", "krs-portmap"] {
            workspace_bin("cni", bin);
        }
        workspace_bin("runtime-rs", "runtime-rs");
        kubelet_rs();
        let registry = Registry::start(Auth::None);
        registry.push("busybox", "library/busybox:1.36");
        let busybox = registry.reference("library/busybox:1.36");
        let (node, outside) = crate::netns::node_with_uplink(NODE_IP, OUTSIDE_IP);
        let registry_addr: SocketAddr = registry.host.parse().unwrap();
        let relays = vec![Relay::start(Some(&node.path()), registry_addr.port(), None, registry_addr)];
        let dir = tempfile::Builder::new().prefix("krs-test-cluster.").tempdir().unwrap();
        let cgroup = CgroupParent::new();
        cgroup.enable_controllers();
        let kubeconfig = dir.path().join("kubectl.kubeconfig");
        let containerd = (runtime == Runtime::Containerd).then(|| {
            // Our plugins, and containernetworking-plugins' loopback, which CRI always runs.
            let plugins = dir.path().join("containerd-cni-bin");
            std::fs::create_dir_all(&plugins).unwrap();
            for bin in ["krs-bridge", "krs-host-local", "krs-portmap"] {
                std::fs::copy(workspace_bin("cni", bin), plugins.join(bin)).unwrap();
            }
            let loopback = Path::new("/usr/lib/cni/loopback");
            assert!(loopback.exists(), "{} is missing: apt-get install containernetworking-plugins", loopback.display());
            std::fs::copy(loopback, plugins.join("loopback")).unwrap();
            let conf = dir.path().join("containerd-net.d");
            write_network(&conf, &dir.path().join("containerd-ipam"));
            let c = Containerd::start(&CriOptions { cni_bin_dir: plugins, cni_conf_dir: conf, net_ns: Some(node.path()), insecure_registries: vec![registry.host.clone()] });
            c.import_pause_image();
            c
        });
        std::fs::write(dir.path().join("resolv.conf"), format!("nameserver {OUTSIDE_IP}\noptions timeout:1 attempts:1\n")).unwrap();
        let mut cluster = Cluster { registry, busybox, kubectl: Kubectl::new(&kubeconfig), node, outside, dir, cgroup, runtime, hosts_dir, containerd, child: None, relays };
        cluster.spawn();
        let api = Relay::start(None, 0, Some(&cluster.node.path()), API_ADDR.parse().unwrap());
        let admin = std::fs::read_to_string(cluster.data_dir().join("admin.kubeconfig")).unwrap();
        // The admin kubeconfig names the advertised address (the node's); the host reaches
        // the server through the relay.
        std::fs::write(&kubeconfig, admin.replace(&format!("https://{NODE_IP}:6443"), &format!("https://{}", api.addr))).unwrap();
        cluster.relays.push(api);
        if std::env::var_os("KRS_NO_WAIT").is_none() {
            cluster.wait_ready();
        }
        cluster
    }

    /// The `kubelet-rs --apiserver` process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// containerd's pid, with [`Runtime::Containerd`].
    pub fn containerd_pid(&self) -> Option<i32> {
        self.containerd.as_ref().map(|c| c.pid())
    }

    /// The node's static pod folder (`--pod-manifest-path`).
    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubelet-rs.log")).unwrap_or_default()
    }

    /// Start `kubelet-rs --apiserver` and wait for its admin kubeconfig.
    pub fn spawn(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("kubelet-rs.log")).unwrap();
        let admin = self.data_dir().join("admin.kubeconfig");
        let _ = std::fs::remove_file(&admin);
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node.path().display())).arg("--").arg(kubelet_rs());
        match &self.containerd {
            // containerd's pods go below its own cgroup (the root of its cgroup namespace).
            Some(c) => cmd.arg("--container-runtime-endpoint").arg(&c.socket).args(["--cgroup-root", "/"]),
            None => cmd.arg("--cgroup-root").arg(format!("/{}", self.cgroup.name)),
        };
        if let Some(dir) = &self.hosts_dir {
            cmd.arg("--hosts-dir").arg(dir);
        }
        let child = cmd
            .arg("--apiserver")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--pod-log-dir")
            .arg(d.join("logs"))
            .arg("--pod-manifest-path")
            .arg(self.manifests())
            .args(["--apiserver-listen", "0.0.0.0:6443", "--hostname-override", NODE, "--node-ip", NODE_IP])
            .arg("--resolv-conf")
            .arg(d.join("resolv.conf"))
            .arg("--insecure-registry")
            .arg(&self.registry.host)
            .env("KUBELET_RS_LOG", std::env::var("KRS_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while !admin.exists() {
            assert!(start.elapsed() < Duration::from_secs(60), "kubelet-rs --apiserver did not start:\n{}", self.log());
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kubelet-rs --apiserver exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the node to be Ready.
    pub fn wait_ready(&self) {
        self.wait_for("the node to be Ready", Duration::from_secs(90), || {
            let o = self.kubectl.run(&["get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
            o.ok && o.stdout.trim() == "True"
        });
    }

    /// Poll `check` every 250 ms until it holds; panic naming `what` with the log tail after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            if start.elapsed() > limit {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                panic!("timed out after {limit:?} waiting for {what}; kubelet-rs log tail:\n{}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"), self.diagnose());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The cluster's pods (as YAML) and events, for failure messages.
    pub fn diagnose(&self) -> String {
        let pods = self.kubectl.run(&["get", "pods", "-A", "-o", "yaml"]);
        let events = self.kubectl.run(&["get", "events", "-A"]);
        format!("pods:\n{}{}\nevents:\n{}{}", pods.stdout, pods.stderr, events.stdout, events.stderr)
    }

    /// A jsonpath of a pod (empty when the pod is not there).
    pub fn pod_field(&self, pod: &str, jsonpath: &str) -> String {
        let o = self.kubectl.run(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]);
        if o.ok { o.stdout.trim().to_string() } else { String::new() }
    }

    /// Wait until the pod's phase is `phase`.
    pub fn wait_phase(&self, pod: &str, phase: &str, limit: Duration) {
        self.wait_for(&format!("pod {pod} to be {phase}"), limit, || self.pod_field(pod, "{.status.phase}") == phase);
    }

    /// SIGKILL the process (pods and their monitors keep running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (up to 20 s, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::terminate(&mut child, Duration::from_secs(20));
        }
    }

    /// Remove every pod sandbox left, through a `kubelet-rs cri` on the cluster's directories
    /// (containerd's go with containerd).
    fn remove_pods(&self) {
        if self.containerd.is_none() {
            remove_pods_in(&self.node.path(), &self.data_dir(), &self.dir.path().join("state"));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        self.remove_pods();
        if let Some(c) = self.containerd.take() {
            c.shutdown();
        }
        for m in mounts_under(self.dir.path()).iter().rev() {
            if let Ok(path) = std::ffi::CString::new(m.as_str()) {
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// containerd's pod network: our bridge plugin over the same CIDR kubelet-rs would use.
fn write_network(dir: &Path, ipam: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "krs-e2e",
        "plugins": [
            {"type": "krs-bridge", "bridge": "krs0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "dataDir": ipam}},
            {"type": "krs-portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(dir.join("10-krs-e2e.conflist"), conf.to_string()).unwrap();
}
