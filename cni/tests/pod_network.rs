//! The plugins end to end, as root, with real network namespaces: the chain
//! krs-bridge -> krs-host-local, then krs-portmap, run by the runtime library exactly as the
//! CRI service runs it.
//!
//! The "node" is a network namespace of its own (its bridge, forwarding and nftables table
//! vanish with it), each pod another, and "outside" a third joined to the node by a veth,
//! standing in for the world beyond the node (it has no route to the pod subnet, so only
//! masquerade lets pods talk to it). The test threads enter the node's namespace to run the
//! plugins, which inherit it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cni::runtime::{Attachment, CniRuntime};
use cni::spec::{CniResult, NetConfList};
use test_support::netns::TestNetns;

/// Debian's containernetworking-plugins, to show ours interoperate with the reference ones.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
const SUBNET: &str = "10.244.7.0/24";
const GATEWAY: &str = "10.244.7.1";
const NODE_OUT: &str = "192.0.2.1";
const OUTSIDE: &str = "192.0.2.2";

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// A server in a namespace answering every TCP connection (and UDP datagram) with
/// `<name> sees <peer ip>`, until dropped.
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Path, name: &str, port: u16) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) = in_ns(ns, move || {
            // [::] takes IPv4 too (as v4-mapped peers), so one socket serves both families.
            let tcp = TcpListener::bind(("::", port)).expect("bind tcp");
            let udp = UdpSocket::bind(("::", port)).expect("bind udp");
            (tcp, udp)
        });
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let (s1, s2) = (stop.clone(), stop.clone());
        let (n1, n2) = (name.to_string(), name.to_string());
        let t1 = std::thread::spawn(move || {
            while !s1.load(Ordering::SeqCst) {
                match tcp.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = writeln!(conn, "{n1} sees {}", peer.ip().to_canonical());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(format!("{n2} sees {}\n", peer.ip().to_canonical()).as_bytes(), peer);
                }
            }
        });
        Server { stop, threads: vec![t1, t2] }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Connects over TCP from namespace `ns` and returns the first line of the answer.
fn tcp_from(ns: &Path, to: &str) -> Result<String, String> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| format!("connect {to}: {e}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        conn.read_to_string(&mut s).map_err(|e| format!("read from {to}: {e}"))?;
        Ok(s.trim().to_string())
    })
}

fn udp_from(ns: &Path, to: &str) -> Result<String, String> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        sock.send_to(b"ping", to).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, _) = sock.recv_from(&mut buf).map_err(|e| format!("no UDP answer from {to}: {e}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })
}

fn ping(ns: &TestNetns, ip: &str) -> bool {
    ns.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip]).status.success()
}

struct Pod {
    ns: TestNetns,
    attachment: Attachment,
    result: CniResult,
}

impl Pod {
    fn ip(&self) -> IpAddr {
        self.result.ips[0].address.addr()
    }
}

/// The node: its namespace, a veth to "outside", the plugins' state in a tempdir, the
/// conflist and the runtime library.
struct Node {
    ns: TestNetns,
    outside: TestNetns,
    dir: tempfile::TempDir,
    list: NetConfList,
    runtime: CniRuntime,
}

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_krs-bridge")).parent().unwrap().to_path_buf()
}

impl Node {
    fn new() -> Node {
        Node::with_version("1.1.0")
    }

    fn with_version(version: &str) -> Node {
        Node::with_plugins(version, ["krs-bridge", "krs-host-local", "krs-portmap"])
    }

    /// A node whose chain is made of the given bridge, IPAM and portmap plugins, found in our
    /// build directory or among Debian's reference plugins (`/usr/lib/cni`).
    fn with_plugins(version: &str, plugins: [&str; 3]) -> Node {
        Node::build(version, plugins, serde_json::json!([[{"subnet": SUBNET}]]))
    }

    fn build(version: &str, [bridge, ipam, portmap]: [&str; 3], ranges: serde_json::Value) -> Node {
        test_support::require_root();
        let ns = TestNetns::new();
        let outside = TestNetns::new();
        ns.ip(&["link", "add", "out0", "type", "veth", "peer", "name", "out1", "netns", &outside.name]);
        ns.ip(&["addr", "add", &format!("{NODE_OUT}/24"), "dev", "out0"]);
        ns.ip(&["link", "set", "out0", "up"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE}/24"), "dev", "out1"]);
        outside.ip(&["link", "set", "out1", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let conflist = serde_json::json!({
            "cniVersion": version,
            "name": "krs-test",
            "plugins": [
                {
                    "type": bridge, "bridge": "cni0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
                    "ipam": {"type": ipam, "ranges": ranges, "dataDir": dir.path().join("ipam")}
                },
                {"type": portmap, "capabilities": {"portMappings": true}}
            ]
        });
        let list = NetConfList::parse(conflist.to_string().as_bytes()).unwrap();
        let runtime = CniRuntime::new(vec![plugin_dir(), PathBuf::from(REFERENCE_PLUGINS)]).with_cache_dir(dir.path().join("cache"));
        Node { ns, outside, dir, list, runtime }
    }

    fn add(&self, name: &str, ports: serde_json::Value) -> Result<Pod, String> {
        let ns = TestNetns::new();
        let attachment = Attachment::for_pod("default", name, &format!("uid-{name}"), &format!("sandbox-{name}"), ns.path())
            .with_capability("portMappings", ports);
        let (runtime, list, a) = (self.runtime.clone(), self.list.clone(), attachment.clone());
        let result = in_ns(&self.ns.path(), move || runtime.add(&list, &a)).map_err(|e| e.to_string())?;
        Ok(Pod { ns, attachment, result })
    }

    fn del(&self, pod: &Pod) -> Result<(), String> {
        let (runtime, list, a) = (self.runtime.clone(), self.list.clone(), pod.attachment.clone());
        in_ns(&self.ns.path(), move || runtime.del(&list, &a)).map_err(|e| e.to_string())
    }

    fn ipam_files(&self) -> Vec<String> {
        let dir = self.dir.path().join("ipam/krs-test");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n != "lock" && !n.starts_with("last_reserved_ip"));
        names.sort();
        names
    }

    fn check(&self, pod: &Pod) -> Result<(), String> {
        let (runtime, list, a) = (self.runtime.clone(), self.list.clone(), pod.attachment.clone());
        in_ns(&self.ns.path(), move || runtime.check(&list, &a)).map_err(|e| e.to_string())
    }

    fn veths(&self) -> Vec<String> {
        let out = self.ns.ip(&["-o", "link", "show", "type", "veth"]);
        out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap().to_string()).filter(|n| n != "out0").collect()
    }

    /// Our nftables rules in the node, as `nft` lists them.
    fn nft_rules(&self) -> Vec<String> {
        let out = self.ns.exec(&["nft", "list", "ruleset"]);
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("comment")).map(|l| l.trim().to_string()).collect()
    }
}

fn no_ports() -> serde_json::Value {
    serde_json::json!([])
}

#[test]
#[ignore = "needs root"]
fn two_pods_reach_each_other_the_node_and_outside_through_masquerade() {
    let node = Node::new();
    let a = node.add("a", no_ports()).unwrap();
    let b = node.add("b", no_ports()).unwrap();
    let subnet: ipnet::IpNet = SUBNET.parse().unwrap();
    assert!(subnet.contains(&a.ip()) && subnet.contains(&b.ip()), "{} {}", a.ip(), b.ip());
    assert_ne!(a.ip(), b.ip());
    assert_eq!(a.result.ips[0].gateway, Some(GATEWAY.parse().unwrap()));
    assert_eq!(a.result.interfaces[2].sandbox.as_deref(), Some(a.ns.path().to_str().unwrap()));

    assert!(ping(&a.ns, &b.ip().to_string()), "pod a cannot ping pod b");
    assert!(ping(&b.ns, &a.ip().to_string()), "pod b cannot ping pod a");
    assert!(ping(&a.ns, GATEWAY), "pod a cannot ping the node's bridge");
    assert!(ping(&node.ns, &a.ip().to_string()), "the node cannot ping pod a");

    let _on_node = Server::start(&node.ns.path(), "node", 9000);
    assert_eq!(tcp_from(&a.ns.path(), &format!("{GATEWAY}:9000")).unwrap(), format!("node sees {}", a.ip()));
    assert_eq!(tcp_from(&a.ns.path(), &format!("{NODE_OUT}:9000")).unwrap(), format!("node sees {}", a.ip()));

    // "outside" has no route back to the pod subnet: the answer arrives only if the node
    // masqueraded the pod's address to its own.
    let _outside = Server::start(&node.outside.path(), "outside", 9001);
    assert_eq!(tcp_from(&a.ns.path(), &format!("{OUTSIDE}:9001")).unwrap(), format!("outside sees {NODE_OUT}"));
    assert_eq!(udp_from(&b.ns.path(), &format!("{OUTSIDE}:9001")).unwrap(), format!("outside sees {NODE_OUT}"));

    node.del(&a).unwrap();
    node.del(&b).unwrap();
}

#[test]
#[ignore = "needs root"]
fn host_ports_reach_the_pod_from_the_node_localhost_outside_and_other_pods() {
    let node = Node::new();
    let ports = serde_json::json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}
    ]);
    let web = node.add("web", ports).unwrap();
    let client = node.add("client", no_ports()).unwrap();
    let _tcp_and_udp = Server::start(&web.ns.path(), "web", 80);
    let _dns = Server::start(&web.ns.path(), "web", 53);
    let expect_from = |who: &str| -> String { format!("web sees {who}") };

    // From outside: the real client address survives (no SNAT needed, replies route back).
    assert_eq!(tcp_from(&node.outside.path(), &format!("{NODE_OUT}:8080")).unwrap(), expect_from(OUTSIDE));
    assert_eq!(udp_from(&node.outside.path(), &format!("{NODE_OUT}:8053")).unwrap(), expect_from(OUTSIDE));
    // From the node itself, by its address and by localhost.
    assert!(tcp_from(&node.ns.path(), &format!("{NODE_OUT}:8080")).unwrap().starts_with("web sees "));
    assert!(tcp_from(&node.ns.path(), "127.0.0.1:8080").unwrap().starts_with("web sees "));
    // From another pod, and from the pod itself (hairpin).
    assert!(tcp_from(&client.ns.path(), &format!("{NODE_OUT}:8080")).unwrap().starts_with("web sees "));
    assert!(tcp_from(&web.ns.path(), &format!("{NODE_OUT}:8080")).unwrap().starts_with("web sees "));

    node.del(&web).unwrap();
    assert!(tcp_from(&node.outside.path(), &format!("{NODE_OUT}:8080")).is_err(), "the hostPort still answers after DEL");
    node.del(&client).unwrap();
}

#[test]
#[ignore = "needs root"]
fn del_removes_every_link_address_rule_and_allocation_and_is_idempotent() {
    let node = Node::new();
    let pod = node.add("p", serde_json::json!([{"hostPort": 8081, "containerPort": 80}])).unwrap();
    assert_eq!(node.ipam_files(), vec![pod.ip().to_string()]);
    assert_eq!(node.veths().len(), 1);
    assert!(!node.nft_rules().is_empty(), "no masquerade or DNAT rules were made");
    assert!(pod.ns.ip(&["-o", "link"]).contains("eth0"));

    node.del(&pod).unwrap();
    assert_eq!(node.ipam_files(), Vec::<String>::new());
    assert_eq!(node.veths(), Vec::<String>::new());
    assert_eq!(node.nft_rules(), Vec::<String>::new());
    assert!(!pod.ns.ip(&["-o", "link"]).contains("eth0"));
    assert!(std::fs::read_dir(node.dir.path().join("cache/results")).map(|d| d.count()).unwrap_or(0) == 0);
    // Again, and with the pod's namespace gone.
    node.del(&pod).unwrap();
    let Pod { ns, attachment, result } = pod;
    drop(ns);
    node.del(&Pod { ns: TestNetns::new(), attachment: Attachment { netns: PathBuf::from("/run/netns/krs-gone"), ..attachment }, result })
        .unwrap();
}

#[test]
#[ignore = "needs root"]
fn fifty_concurrent_add_del_cycles_leave_no_leak_and_no_duplicate() {
    let node = Arc::new(Node::new());
    let adds: Vec<_> = (0..50)
        .map(|i| {
            let node = node.clone();
            std::thread::spawn(move || node.add(&format!("c{i}"), no_ports()))
        })
        .collect();
    let pods: Vec<Pod> = adds.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    let ips: HashSet<IpAddr> = pods.iter().map(Pod::ip).collect();
    assert_eq!(ips.len(), 50, "an address was handed out twice");
    assert_eq!(node.ipam_files().len(), 50);
    assert_eq!(node.veths().len(), 50);
    let pods = Arc::new(pods);
    let dels: Vec<_> = (0..50)
        .map(|i| {
            let (node, pods) = (node.clone(), pods.clone());
            std::thread::spawn(move || node.del(&pods[i]))
        })
        .collect();
    for d in dels {
        d.join().unwrap().unwrap();
    }
    assert_eq!(node.ipam_files(), Vec::<String>::new());
    assert_eq!(node.veths(), Vec::<String>::new());
    assert_eq!(node.nft_rules(), Vec::<String>::new());
}

/// Runs one plugin binary by hand, as a runtime would, and returns (exit ok, stdout JSON).
fn run_plugin(plugin: &str, env: &[(&str, &str)], stdin: &str) -> (bool, serde_json::Value) {
    let mut cmd = std::process::Command::new(plugin_dir().join(plugin));
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").env("CNI_PATH", plugin_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

#[test]
#[ignore = "needs root"]
fn bad_configurations_get_spec_error_codes() {
    let node = Node::new();
    let pod = TestNetns::new();
    let netns = pod.path();
    let env = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "bad1"), ("CNI_NETNS", netns.to_str().unwrap()), ("CNI_IFNAME", "eth0")];
    let ipam = format!(r#""ipam":{{"type":"krs-host-local","dataDir":"{}"#, node.dir.path().join("ipam").display());
    let cases = [
        (r#"{"cniVersion":"0.2.0","name":"n","type":"krs-bridge"}"#.to_string(), 1, "0.2.0"),
        (r#"{"cniVersion":"1.0.0","type":"krs-bridge"}"#.to_string(), 7, "name"),
        (r#"{"cniVersion":"1.0.0","name":"n","type":"krs-bridge","mtu":1}"#.to_string(), 7, "mtu"),
        (format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"krs-bridge",{ipam}","ranges":[[{{"subnet":"10.0.0.0/33"}}]]}}}}"#), 7, "10.0.0.0/33"),
        (format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"krs-bridge",{ipam}"}}}}"#), 7, ""),
        ("{not json".to_string(), 6, ""),
    ];
    for (conf, code, needle) in cases {
        let (ok, out) = in_ns(&node.ns.path(), {
            let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let conf = conf.clone();
            move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                run_plugin("krs-bridge", &env, &conf)
            }
        });
        assert!(!ok, "accepted {conf}");
        assert_eq!(out["code"], code, "{conf} -> {out}");
        assert!(out["msg"].as_str().unwrap().contains(needle), "{conf} -> {out}");
    }
    // Missing environment is code 4; the pod is left untouched by every refusal.
    let (ok, out) = run_plugin("krs-bridge", &[("CNI_COMMAND", "ADD")], r#"{"cniVersion":"1.0.0","name":"n","type":"krs-bridge"}"#);
    assert!(!ok);
    assert_eq!(out["code"], 4);
    assert!(!pod.ip(&["-o", "link"]).contains("eth0"));
    assert_eq!(node.veths(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn check_status_and_gc_through_the_chain() {
    let node = Node::new();
    let a = node.add("a", serde_json::json!([{"hostPort": 8082, "containerPort": 80}])).unwrap();
    let b = node.add("b", serde_json::json!([{"hostPort": 8083, "containerPort": 80}])).unwrap();
    let (runtime, list) = (node.runtime.clone(), node.list.clone());
    in_ns(&node.ns.path(), move || runtime.status(&list)).unwrap();
    node.check(&a).unwrap();
    a.ns.ip(&["link", "del", "eth0"]);
    let err = node.check(&a).unwrap_err();
    assert!(err.contains("krs-bridge") && err.contains("eth0"), "{err}");

    // The runtime lost a's cache entry (say, a crash before it was written): plugin GC alone
    // must release a's address and rules, and keep b's.
    let cache: Vec<_> = std::fs::read_dir(node.dir.path().join("cache/results")).unwrap().flatten().map(|e| e.path()).collect();
    let a_cache = cache.iter().find(|p| p.to_string_lossy().contains("sandbox-a")).expect("a's cache entry");
    std::fs::remove_file(a_cache).unwrap();
    let valid = vec![cni::spec::ValidAttachment { container_id: "sandbox-b".into(), ifname: "eth0".into() }];
    let (runtime, list) = (node.runtime.clone(), node.list.clone());
    in_ns(&node.ns.path(), move || runtime.gc(&list, &valid)).unwrap();
    assert_eq!(node.ipam_files(), vec![b.ip().to_string()]);
    let rules = node.nft_rules().join("\n");
    assert!(!rules.contains("sandbox-a"), "a's rules survived GC:\n{rules}");
    assert!(rules.contains("sandbox-b"), "b's rules were collected:\n{rules}");
    node.check(&b).unwrap();
    node.del(&b).unwrap();
    node.del(&a).unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_0_4_0_network_gets_0_4_0_results_and_works() {
    let node = Node::with_version("0.4.0");
    let a = node.add("a", serde_json::json!([{"hostPort": 8084, "containerPort": 80}])).unwrap();
    let b = node.add("b", no_ports()).unwrap();
    let cached = node.runtime.cached_result("krs-test", "sandbox-a", "eth0").unwrap().expect("cached result");
    assert_eq!(cached.ips, a.result.ips);
    let raw = std::fs::read_to_string(std::fs::read_dir(node.dir.path().join("cache/results")).unwrap().flatten().next().unwrap().path()).unwrap();
    assert!(raw.contains(r#""cniVersion":"0.4.0""#) || raw.contains(r#""cniVersion": "0.4.0""#), "{raw}");
    assert!(ping(&b.ns, &a.ip().to_string()));
    let _web = Server::start(&a.ns.path(), "web", 80);
    assert_eq!(tcp_from(&node.outside.path(), &format!("{NODE_OUT}:8084")).unwrap(), format!("web sees {OUTSIDE}"));
    node.check(&a).unwrap();
    node.del(&a).unwrap();
    node.del(&b).unwrap();
    assert_eq!(node.ipam_files(), Vec::<String>::new());
}

/// Our plugins chained with the reference ones, both ways round: each side reads the other's
/// configuration, results and on-disk state as the spec says.
#[test]
#[ignore = "needs root"]
fn chains_with_the_reference_plugins_both_ways() {
    assert!(
        Path::new(REFERENCE_PLUGINS).join("bridge").exists(),
        "this test needs Debian's reference plugins: apt-get install containernetworking-plugins"
    );
    for plugins in [["bridge", "krs-host-local", "krs-portmap"], ["krs-bridge", "host-local", "portmap"]] {
        let node = Node::with_plugins("1.0.0", plugins);
        let a = node.add("a", serde_json::json!([{"hostPort": 8085, "containerPort": 80, "protocol": "tcp"}])).unwrap_or_else(|e| panic!("{plugins:?}: {e}"));
        let b = node.add("b", no_ports()).unwrap();
        assert_ne!(a.ip(), b.ip(), "{plugins:?}");
        assert!(ping(&b.ns, &a.ip().to_string()), "{plugins:?}: pod b cannot ping pod a");
        let _web = Server::start(&a.ns.path(), "web", 80);
        assert_eq!(tcp_from(&node.outside.path(), &format!("{NODE_OUT}:8085")).unwrap(), format!("web sees {OUTSIDE}"), "{plugins:?}");
        // Masqueraded, the pod's SYN to a closed port outside gets its RST back (refused);
        // unmasqueraded, the RST would have no route to the pod (timeout).
        let refused = tcp_from(&a.ns.path(), &format!("{OUTSIDE}:9")).unwrap_err();
        assert!(refused.contains("refused"), "{plugins:?}: outside not reached through masquerade: {refused}");
        node.del(&a).unwrap();
        node.del(&b).unwrap();
        assert_eq!(node.ipam_files(), Vec::<String>::new(), "{plugins:?}");
        assert_eq!(node.veths(), Vec::<String>::new(), "{plugins:?}");
    }
}

#[test]
#[ignore = "needs root"]
fn dual_stack_pods_reach_each_other_over_ipv4_and_ipv6() {
    let node = Node::build(
        "1.1.0",
        ["krs-bridge", "krs-host-local", "krs-portmap"],
        serde_json::json!([[{"subnet": SUBNET}], [{"subnet": "fd00:10:244:7::/64"}]]),
    );
    let a = node.add("a", no_ports()).unwrap();
    let b = node.add("b", no_ports()).unwrap();
    let v6 = |p: &Pod| p.result.ips.iter().map(|ip| ip.address.addr()).find(IpAddr::is_ipv6).expect("an IPv6 address");
    assert_eq!(a.result.ips.len(), 2);
    assert!(a.result.routes.iter().any(|r| r.dst.to_string() == "::/0"), "{:?}", a.result.routes);
    let _web = Server::start(&a.ns.path(), "web", 80);
    assert_eq!(tcp_from(&b.ns.path(), &format!("[{}]:80", v6(&a))).unwrap(), format!("web sees {}", v6(&b)));
    assert_eq!(tcp_from(&b.ns.path(), &format!("{}:80", a.ip())).unwrap(), format!("web sees {}", b.ip()));
    assert!(tcp_from(&node.ns.path(), &format!("[{}]:80", v6(&a))).is_ok(), "the node cannot reach pod a over IPv6");
    node.del(&a).unwrap();
    node.del(&b).unwrap();
    assert_eq!(node.ipam_files(), Vec::<String>::new());
}
