//! Root tests of the firewall backends and krs-portmap on the real kernel. Every rule is made
//! inside test namespaces (`ip netns exec`), never in the host's own: netns "host" is joined
//! by veths to "pod" (10.22.0.2/24, gateway 10.22.0.1) and "outside" (192.168.77.2/24, host
//! side 192.168.77.1, no route back to the pod subnet, so pod traffic must be masqueraded).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use cni::firewall::{self, Owner, PortForward, PortmapOptions, Protocol};
use test_support::netns::TestNetns;

/// Answers every TCP connection with the peer's address, so tests see the source after NAT.
const SERVER: &str = "import socket,sys
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind((sys.argv[1],int(sys.argv[2])));s.listen(16)
while True:
  c,a=s.accept();c.sendall((a[0]+'\\n').encode());c.close()";

const CLIENT: &str = "import socket,sys
try:
  s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2);print(s.recv(100).decode().strip())
except Exception as e:
  print('ERR',type(e).__name__)";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Field order: servers are killed before the namespaces go.
struct Topology {
    _servers: Vec<Server>,
    host: TestNetns,
    pod: TestNetns,
    outside: TestNetns,
}

fn sysctl(ns: &TestNetns, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let out = ns.exec(&["sh", "-c", &format!("echo {value} > {path}")]);
    assert!(out.status.success(), "{key}: {}", String::from_utf8_lossy(&out.stderr));
}

fn veth(a: &TestNetns, a_if: &str, a_addr: &str, b: &TestNetns, b_if: &str, b_addr: &str) {
    // Created in "a" so no link ever appears in the host's own namespace.
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    a.ip(&["addr", "add", a_addr, "dev", a_if]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["addr", "add", b_addr, "dev", b_if]);
    b.ip(&["link", "set", b_if, "up"]);
}

impl Topology {
    fn new() -> Topology {
        let (host, pod, outside) = (TestNetns::new(), TestNetns::new(), TestNetns::new());
        veth(&host, "hp0", "10.22.0.1/24", &pod, "eth0", "10.22.0.2/24");
        veth(&host, "ho0", "192.168.77.1/24", &outside, "eth0", "192.168.77.2/24");
        pod.ip(&["route", "add", "default", "via", "10.22.0.1"]);
        sysctl(&host, "net.ipv4.ip_forward", "1");
        let mut t = Topology { _servers: Vec::new(), host, pod, outside };
        t.serve_in_pod("0.0.0.0", 80);
        t.wait_for(&t.host, "10.22.0.2", 80);
        t
    }

    /// What krs-portmap sets on the bridge at ADD (here the pod's veth is the "bridge");
    /// the backends alone do not.
    fn route_localnet(&self) {
        sysctl(&self.host, "net.ipv4.conf.hp0.route_localnet", "1");
    }

    fn serve_in_pod(&mut self, addr: &str, port: u16) {
        let child = self.pod.spawn(&["python3", "-c", SERVER, addr, &port.to_string()]);
        self._servers.push(Server(child));
    }

    fn serve_outside(&mut self, port: u16) {
        let child = self.outside.spawn(&["python3", "-c", SERVER, "0.0.0.0", &port.to_string()]);
        self._servers.push(Server(child));
        self.wait_for(&self.host, "192.168.77.2", port);
    }

    fn serve_in_host(&mut self, port: u16) {
        let child = self.host.spawn(&["python3", "-c", SERVER, "0.0.0.0", &port.to_string()]);
        self._servers.push(Server(child));
        self.wait_for(&self.host, "127.0.0.1", port);
    }

    fn wait_for(&self, from: &TestNetns, addr: &str, port: u16) {
        for _ in 0..50 {
            if !connect(from, addr, port).starts_with("ERR") {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        panic!("server at {addr}:{port} never answered");
    }
}

/// Connects from `from` and returns what the server saw as our address, or `ERR <kind>`.
fn connect(from: &TestNetns, addr: &str, port: u16) -> String {
    let out = from.exec(&["python3", "-c", CLIENT, addr, &port.to_string()]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn owner(id: &str) -> Owner {
    Owner { network: "krs".into(), container_id: id.into(), ifname: "eth0".into() }
}

fn forward(host_port: u16) -> PortForward {
    PortForward { host_ip: None, host_port, container_ip: "10.22.0.2".parse().unwrap(), container_port: 80, protocol: Protocol::Tcp }
}

/// The comments on rules in our nftables table inside `ns`.
fn nft_comments(ns: &TestNetns) -> Vec<String> {
    let out = ns.exec(&["nft", "-j", "list", "table", "inet", "krs-cni"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"].as_array().unwrap().iter().filter_map(|i| i["rule"]["comment"].as_str()).map(str::to_string).collect()
}

/// The comments on rules in our iptables chains inside `ns`.
fn iptables_comments(ns: &TestNetns) -> Vec<String> {
    let out = ns.exec(&["iptables", "-t", "nat", "-S"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("-A KRS-CNI-"))
        .filter_map(|l| l.split("--comment ").nth(1))
        .map(|c| c.split_whitespace().next().unwrap().trim_matches('"').to_string())
        .collect()
}

fn hostport_reachable_everywhere(t: &Topology, port: u16) {
    assert_eq!(connect(&t.host, "192.168.77.1", port), "192.168.77.1", "host to its own address");
    assert_eq!(connect(&t.host, "127.0.0.1", port), "10.22.0.1", "host to localhost: masqueraded");
    assert_eq!(connect(&t.outside, "192.168.77.1", port), "192.168.77.2", "from another host");
    assert_eq!(connect(&t.pod, "192.168.77.1", port), "10.22.0.1", "hairpin: masqueraded");
}

fn port_forward_scenario(backend: &str) {
    let t = Topology::new();
    t.route_localnet();
    let fw = firewall::backend_in(Some(backend), Some(&t.host.name)).unwrap();
    assert_eq!(fw.name(), backend);
    assert!(connect(&t.outside, "192.168.77.1", 8080).starts_with("ERR"), "nothing forwarded yet");
    fw.add_port_forwards(&owner("a"), &[forward(8080)], &PortmapOptions::default()).unwrap();
    // Adding again replaces rather than duplicates.
    fw.add_port_forwards(&owner("a"), &[forward(8080)], &PortmapOptions::default()).unwrap();
    fw.check_port_forwards(&owner("a"), &[forward(8080)]).unwrap();
    assert!(fw.check_port_forwards(&owner("a"), &[forward(9999)]).is_err());
    hostport_reachable_everywhere(&t, 8080);
    fw.del_port_forwards(&owner("a")).unwrap();
    fw.del_port_forwards(&owner("a")).unwrap();
    assert!(fw.check_port_forwards(&owner("a"), &[forward(8080)]).is_err());
    for (from, addr) in [(&t.host, "192.168.77.1"), (&t.host, "127.0.0.1"), (&t.outside, "192.168.77.1")] {
        assert!(connect(from, addr, 8080).starts_with("ERR"), "still forwarded after del from {addr}");
    }
}

fn masquerade_scenario(backend: &str) {
    let mut t = Topology::new();
    t.serve_outside(9000);
    t.serve_in_host(9001);
    let fw = firewall::backend_in(Some(backend), Some(&t.host.name)).unwrap();
    assert!(connect(&t.pod, "192.168.77.2", 9000).starts_with("ERR"), "outside has no route back to the pod");
    fw.add_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).unwrap();
    fw.check_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).unwrap();
    assert_eq!(connect(&t.pod, "192.168.77.2", 9000), "192.168.77.1");
    // Inside its own subnet the pod keeps its address.
    assert_eq!(connect(&t.pod, "10.22.0.1", 9001), "10.22.0.2");
    fw.del_masquerade(&owner("a")).unwrap();
    assert!(fw.check_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).is_err());
    assert!(connect(&t.pod, "192.168.77.2", 9000).starts_with("ERR"));
}

#[test]
#[ignore = "needs root"]
fn nftables_port_forward_from_host_localhost_and_outside() {
    test_support::require_root();
    port_forward_scenario("nftables");
}

#[test]
#[ignore = "needs root"]
fn nftables_masquerade() {
    test_support::require_root();
    masquerade_scenario("nftables");
}

#[test]
#[ignore = "needs root"]
fn nftables_owners_do_not_interfere_and_gc_keeps_valid_ones() {
    test_support::require_root();
    let t = Topology::new();
    let fw = firewall::backend_in(Some("nftables"), Some(&t.host.name)).unwrap();
    let opts = PortmapOptions::default();
    fw.add_port_forwards(&owner("a"), &[forward(8080)], &opts).unwrap();
    fw.add_port_forwards(&owner("b"), &[forward(8081)], &opts).unwrap();
    fw.add_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).unwrap();
    let other = Owner { network: "other".into(), ..owner("a") };
    fw.add_port_forwards(&other, &[forward(8082)], &opts).unwrap();
    fw.del_port_forwards(&owner("a")).unwrap();
    assert!(connect(&t.outside, "192.168.77.1", 8080).starts_with("ERR"));
    assert_eq!(connect(&t.outside, "192.168.77.1", 8081), "192.168.77.2");
    fw.check_port_forwards(&owner("b"), &[forward(8081)]).unwrap();
    fw.check_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).unwrap();
    // GC of "krs" keeping only b: a's masquerade goes, b stays, network "other" is untouched.
    fw.gc("krs", &[owner("b")]).unwrap();
    let mut left = nft_comments(&t.host);
    left.sort();
    assert_eq!(left, ["krs-pm:krs:b:eth0"; 3].iter().chain(&["krs-pm:other:a:eth0"; 3]).map(|s| s.to_string()).collect::<Vec<_>>());
    fw.gc("krs", &[]).unwrap();
    fw.gc("other", &[]).unwrap();
    assert_eq!(nft_comments(&t.host), Vec::<String>::new());
    assert!(connect(&t.outside, "192.168.77.1", 8081).starts_with("ERR"));
}

#[test]
#[ignore = "needs root"]
fn nftables_leaves_other_tables_alone() {
    test_support::require_root();
    let t = Topology::new();
    let foreign = "add table inet theirs\nadd chain inet theirs c { type nat hook postrouting priority srcnat; }\nadd rule inet theirs c counter\n";
    let out = t.host.exec(&["sh", "-c", &format!("printf '{foreign}' | nft -f -")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fw = firewall::backend_in(Some("nftables"), Some(&t.host.name)).unwrap();
    fw.add_port_forwards(&owner("a"), &[forward(8080)], &PortmapOptions::default()).unwrap();
    fw.gc("krs", &[]).unwrap();
    let theirs = t.host.exec(&["nft", "list", "table", "inet", "theirs"]);
    assert!(String::from_utf8_lossy(&theirs.stdout).contains("counter"));
}

#[test]
#[ignore = "needs root"]
fn iptables_port_forward_from_host_localhost_and_outside() {
    test_support::require_root();
    port_forward_scenario("iptables");
}

#[test]
#[ignore = "needs root"]
fn iptables_masquerade() {
    test_support::require_root();
    masquerade_scenario("iptables");
}

#[test]
#[ignore = "needs root"]
fn iptables_gc_and_owners() {
    test_support::require_root();
    let t = Topology::new();
    let fw = firewall::backend_in(Some("iptables"), Some(&t.host.name)).unwrap();
    let opts = PortmapOptions::default();
    fw.add_port_forwards(&owner("a"), &[forward(8080)], &opts).unwrap();
    fw.add_port_forwards(&owner("b"), &[forward(8081)], &opts).unwrap();
    fw.add_masquerade(&owner("a"), "10.22.0.2/24".parse().unwrap()).unwrap();
    fw.del_port_forwards(&owner("a")).unwrap();
    assert_eq!(connect(&t.outside, "192.168.77.1", 8081), "192.168.77.2");
    assert!(connect(&t.outside, "192.168.77.1", 8080).starts_with("ERR"));
    fw.gc("krs", &[owner("b")]).unwrap();
    assert_eq!(iptables_comments(&t.host), vec!["krs-pm:krs:b:eth0".to_string(); 3]);
    fw.gc("krs", &[]).unwrap();
    assert_eq!(iptables_comments(&t.host), Vec::<String>::new());
    // Our jump rules are the only additions to the built-in chains.
    let post = t.host.exec(&["iptables", "-t", "nat", "-S", "POSTROUTING"]);
    assert_eq!(String::from_utf8_lossy(&post.stdout).lines().filter(|l| l.starts_with("-A")).count(), 2);
}

#[test]
#[ignore = "needs root"]
fn auto_backend_prefers_nftables() {
    test_support::require_root();
    let ns = TestNetns::new();
    assert_eq!(firewall::backend_in(None, Some(&ns.name)).unwrap().name(), "nftables");
    assert!(firewall::backend(Some("pf")).is_err());
}

/// Runs the krs-portmap binary inside `ns` (so its rules and sysctls land there).
fn portmap(ns: &TestNetns, command: &str, conf: &serde_json::Value) -> (bool, serde_json::Value) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_krs-portmap")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", "/run/netns/pod")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

#[test]
#[ignore = "needs root"]
fn portmap_plugin_add_check_gc_del() {
    test_support::require_root();
    let t = Topology::new();
    let prev = serde_json::json!({
        "interfaces": [{"name": "hp0"}, {"name": "eth0", "sandbox": "/run/netns/pod"}],
        "ips": [{"address": "10.22.0.2/24", "gateway": "10.22.0.1", "interface": 1}]
    });
    let mut conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "krs", "type": "krs-portmap", "backend": "nftables",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": prev
    });
    let (ok, result) = portmap(&t.host, "ADD", &conf);
    assert!(ok, "{result}");
    assert_eq!(result["ips"], prev["ips"], "ADD passes prevResult through");
    let localnet = t.host.exec(&["cat", "/proc/sys/net/ipv4/conf/hp0/route_localnet"]);
    assert_eq!(String::from_utf8_lossy(&localnet.stdout).trim(), "1", "ADD sets route_localnet on the interface to the pod");
    hostport_reachable_everywhere(&t, 8080);
    let (ok, err) = portmap(&t.host, "CHECK", &conf);
    assert!(ok, "{err}");

    conf["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "c1", "ifname": "eth0"}]);
    assert!(portmap(&t.host, "GC", &conf).0);
    assert_eq!(nft_comments(&t.host).len(), 3, "GC keeps a valid attachment");
    conf["cni.dev/valid-attachments"] = serde_json::json!([]);
    assert!(portmap(&t.host, "GC", &conf).0);
    assert_eq!(nft_comments(&t.host), Vec::<String>::new());
    let (ok, err) = portmap(&t.host, "CHECK", &conf);
    assert!(!ok && err["code"] == 100, "{err}");

    assert!(portmap(&t.host, "ADD", &conf).0);
    let obj = conf.as_object_mut().unwrap();
    obj.remove("prevResult");
    obj.remove("cni.dev/valid-attachments");
    let (ok, err) = portmap(&t.host, "DEL", &conf);
    assert!(ok, "DEL works without prevResult: {err}");
    assert_eq!(nft_comments(&t.host), Vec::<String>::new());
    assert!(portmap(&t.host, "DEL", &conf).0, "DEL is idempotent");
    assert!(connect(&t.outside, "192.168.77.1", 8080).starts_with("ERR"));
    let (ok, err) = portmap(&t.host, "ADD", &conf);
    assert!(!ok && err["code"] == 7 && err["msg"].as_str().unwrap().contains("prevResult"), "{err}");
}

/// IPv6 on the same topology: fd00:22::/64 between host and pod, fd00:77::/64 to outside.
fn ipv6_scenario(backend: &str) {
    let mut t = Topology::new();
    for (ns, dev, addr) in [(&t.host, "hp0", "fd00:22::1/64"), (&t.pod, "eth0", "fd00:22::2/64"), (&t.host, "ho0", "fd00:77::1/64"), (&t.outside, "eth0", "fd00:77::2/64")] {
        ns.ip(&["-6", "addr", "add", addr, "dev", dev, "nodad"]);
    }
    t.pod.ip(&["-6", "route", "add", "default", "via", "fd00:22::1"]);
    sysctl(&t.host, "net.ipv6.conf.all.forwarding", "1");
    t.serve_in_pod("::", 81);
    t.wait_for(&t.host, "fd00:22::2", 81);
    let child = t.outside.spawn(&["python3", "-c", SERVER, "::", "9000"]);
    t._servers.push(Server(child));
    t.wait_for(&t.host, "fd00:77::2", 9000);

    let fw = firewall::backend_in(Some(backend), Some(&t.host.name)).unwrap();
    let f = PortForward { host_ip: None, host_port: 8080, container_ip: "fd00:22::2".parse().unwrap(), container_port: 81, protocol: Protocol::Tcp };
    fw.add_port_forwards(&owner("a"), std::slice::from_ref(&f), &PortmapOptions::default()).unwrap();
    fw.check_port_forwards(&owner("a"), std::slice::from_ref(&f)).unwrap();
    assert_eq!(connect(&t.outside, "fd00:77::1", 8080), "fd00:77::2");
    assert_eq!(connect(&t.host, "fd00:77::1", 8080), "fd00:77::1");
    assert_eq!(connect(&t.pod, "fd00:77::1", 8080), "fd00:22::1", "hairpin: masqueraded");

    assert!(connect(&t.pod, "fd00:77::2", 9000).starts_with("ERR"), "outside has no route back to the pod");
    fw.add_masquerade(&owner("a"), "fd00:22::2/64".parse().unwrap()).unwrap();
    fw.check_masquerade(&owner("a"), "fd00:22::2/64".parse().unwrap()).unwrap();
    assert_eq!(connect(&t.pod, "fd00:77::2", 9000), "fd00:77::1");

    fw.gc("krs", &[]).unwrap();
    assert!(connect(&t.outside, "fd00:77::1", 8080).starts_with("ERR"));
    assert!(connect(&t.pod, "fd00:77::2", 9000).starts_with("ERR"));
}

#[test]
#[ignore = "needs root"]
fn nftables_ipv6() {
    test_support::require_root();
    ipv6_scenario("nftables");
}

#[test]
#[ignore = "needs root"]
fn iptables_ipv6() {
    test_support::require_root();
    ipv6_scenario("iptables");
}
