//! Network namespaces for the network tests: named `krs-t<pid>-<n>` (bind-mounted under
//! `/run/netns` by `ip netns add`, so `ip netns exec` works on them), deleted on drop, which
//! also deletes every link, address, route and nftables table inside them.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    /// A new, empty namespace with `lo` up.
    pub fn new() -> TestNetns {
        let name = format!("krs-t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        ip(&["netns", "add", &name]);
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The bind-mounted namespace file (what `CNI_NETNS` names).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip <args>` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// Spawns a long-running command inside the namespace (a server); the caller kills it.
    pub fn spawn(&self, argv: &[&str]) -> std::process::Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in netns")
    }
}

/// A "node" namespace with an `eth0` at `node_ip`/24 whose peer `eth0` in a second namespace
/// (the network beyond it) has `gateway_ip`/24, the node's default route (cluster IPs are
/// routed by it before a service proxy's DNAT picks a pod). Returns (node, beyond).
pub fn node_with_uplink(node_ip: &str, gateway_ip: &str) -> (TestNetns, TestNetns) {
    let node = TestNetns::new();
    let beyond = TestNetns::new();
    node.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &beyond.name]);
    node.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", "eth0"]);
    node.ip(&["link", "set", "eth0", "up"]);
    node.ip(&["route", "add", "default", "via", gateway_ip]);
    beyond.ip(&["addr", "add", &format!("{gateway_ip}/24"), "dev", "eth0"]);
    beyond.ip(&["link", "set", "eth0", "up"]);
    (node, beyond)
}

impl Default for TestNetns {
    fn default() -> TestNetns {
        TestNetns::new()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// `ip <args>` in the host namespace; panics with its stderr on failure.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
