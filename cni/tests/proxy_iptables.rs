//! Root test of the service proxy's iptables backend on the real kernel, everything inside
//! namespaces the test makes (`krs-pi<pid>-*`): a node with a bridge (10.244.0.1/24, pod
//! network 10.244.0.0/16) and a default route out a veth, two pods answering their
//! name on 8080, and a client pod. The backend acts in the node (`ip netns exec`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cni::firewall::Protocol;
use cni::proxy::iptables::Iptables;
use cni::proxy::{Backend, BackendOptions, Endpoint, ProxyState, ServicePort, ServicePortName};

const SERVER: &str = "import socket,sys
s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',8080));s.listen(64)
while True:
  c,a=s.accept();c.sendall(sys.argv[1].encode());c.close()";

/// Connects `n` times; prints what each connection read, or `ERR <kind>`.
const CLIENT: &str = "import socket,sys
for _ in range(int(sys.argv[3])):
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2);print(s.recv(100).decode().strip());s.close()
  except Exception as e:
    print('ERR',type(e).__name__)";

/// A named namespace, deleted on drop (with its links and rules).
struct Netns(String);

impl Netns {
    fn new(role: &str) -> Netns {
        let name = format!("krs-pi{}-{role}", std::process::id());
        // A namespace left by a killed earlier run of this pid.
        let _ = Command::new("ip").args(["netns", "delete", &name]).stderr(Stdio::null()).status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.0]).args(argv).stdin(Stdio::null()).output().expect("ip netns exec")
    }

    fn run(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(out.status.success(), "{argv:?} in {}: {}", self.0, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&self, argv: &[&str]) -> Child {
        Command::new("ip").args(["netns", "exec", &self.0]).args(argv).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().expect("run");
    assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Field order: servers go before the namespaces.
struct Cluster {
    _servers: Vec<Server>,
    node: Netns,
    client: Netns,
    _pods: Vec<Netns>,
}

impl Cluster {
    fn new() -> Cluster {
        let node = Netns::new("node");
        node.run(&["ip", "link", "add", "br0", "type", "bridge"]);
        node.run(&["ip", "addr", "add", "10.244.0.1/24", "dev", "br0"]);
        node.run(&["ip", "link", "set", "br0", "up"]);
        // A default route, as a real node has: traffic to a service without endpoints is
        // then refused by our rule rather than unroutable.
        node.run(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
        node.run(&["ip", "link", "set", "up1", "up"]);
        node.run(&["ip", "addr", "add", "192.168.99.1/24", "dev", "up0"]);
        node.run(&["ip", "link", "set", "up0", "up"]);
        node.run(&["ip", "route", "add", "default", "via", "192.168.99.2"]);
        for (key, value) in [("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1")] {
            node.run(&["sh", "-c", &format!("echo {value} > /proc/sys/{key}")]);
        }
        let mut pods = Vec::new();
        let mut servers = Vec::new();
        for (i, role) in ["pod1", "pod2", "client"].into_iter().enumerate() {
            let pod = Netns::new(role);
            let host_if = format!("veth{i}");
            node.run(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pod.0]);
            node.run(&["ip", "link", "set", &host_if, "master", "br0", "up"]);
            pod.run(&["ip", "addr", "add", &format!("10.244.0.{}/24", i + 2), "dev", "eth0"]);
            pod.run(&["ip", "link", "set", "eth0", "up"]);
            pod.run(&["ip", "route", "add", "default", "via", "10.244.0.1"]);
            if role != "client" {
                servers.push(Server(pod.spawn(&["python3", "-c", SERVER, role])));
            }
            pods.push(pod);
        }
        let client = pods.pop().unwrap();
        let c = Cluster { _servers: servers, node, client, _pods: pods };
        let deadline = Instant::now() + Duration::from_secs(10);
        for addr in ["10.244.0.2", "10.244.0.3"] {
            while connect(&c.node, addr, 8080, 1)[0].starts_with("ERR") {
                assert!(Instant::now() < deadline, "pod server at {addr} never answered");
                sleep(Duration::from_millis(100));
            }
        }
        c
    }

    fn saved(&self, table: &str) -> String {
        self.node.run(&["iptables-save", "-t", table])
    }
}

fn connect(from: &Netns, addr: &str, port: u16, times: usize) -> Vec<String> {
    let out = from.exec(&["python3", "-c", CLIENT, addr, &port.to_string(), &times.to_string()]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn answers(from: &Netns, addr: &str, port: u16, times: usize) -> BTreeSet<String> {
    connect(from, addr, port, times).into_iter().collect()
}

fn key(name: &str) -> ServicePortName {
    ServicePortName { namespace: "default".into(), name: name.into(), port: String::new(), protocol: Protocol::Tcp }
}

fn pod(last: u8) -> Endpoint {
    Endpoint { ip: Ipv4Addr::new(10, 244, 0, last), port: 8080, ready: true, serving: true, terminating: false, node: Some("node".into()) }
}

fn service(ip: [u8; 4], node_port: Option<u16>, endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort { cluster_ips: vec![ip.into()], port: 80, node_port, endpoints, ..Default::default() }
}

fn state() -> ProxyState {
    let mut s = ProxyState { node_name: "node".into(), cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()], ..Default::default() };
    s.services.insert(key("web"), service([10, 96, 0, 10], Some(30080), vec![pod(2), pod(3)]));
    s.services.insert(key("empty"), service([10, 96, 0, 12], Some(30081), Vec::new()));
    s.services.insert(key("other"), service([10, 96, 0, 13], None, vec![pod(3)]));
    s
}

fn chains(saved: &str, prefix: &str) -> usize {
    saved.lines().filter(|l| l.starts_with(&format!(":{prefix}"))).count()
}

fn both() -> BTreeSet<String> {
    ["pod1", "pod2"].map(String::from).into()
}

#[test]
#[ignore = "needs root"]
fn iptables_proxy_serves_cluster_ips_and_node_ports_and_cleans_up() {
    test_support::require_root();
    let c = Cluster::new();
    // Someone else's rules in the node, which we must leave alone.
    c.node.run(&["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.9.9.0/24", "-j", "MASQUERADE"]);
    c.node.run(&["iptables", "-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT"]);

    let mut b = Iptables::new(BackendOptions { netns: Some(c.node.0.clone()) });
    let mut s = state();
    assert!(b.sync(&s).unwrap().full);
    assert_eq!(c.node.run(&["sysctl", "-n", "net.ipv4.conf.all.route_localnet"]).trim(), "1");

    assert_eq!(answers(&c.client, "10.96.0.10", 80, 40), both(), "cluster IP from a pod reaches both endpoints");
    assert_eq!(answers(&c.node, "10.96.0.10", 80, 40), both(), "cluster IP from the node");
    assert_eq!(answers(&c.client, "10.244.0.1", 30080, 40), both(), "node port from a pod");
    assert_eq!(answers(&c.node, "10.244.0.1", 30080, 40), both(), "node port from the node");
    assert_eq!(answers(&c.node, "127.0.0.1", 30080, 40), both(), "node port on localhost");
    assert_eq!(answers(&c.client, "10.96.0.13", 80, 3), ["pod2".to_string()].into());
    for (from, addr, port) in [(&c.client, "10.96.0.12", 80), (&c.node, "10.96.0.12", 80), (&c.node, "127.0.0.1", 30081)] {
        assert_eq!(connect(from, addr, port, 1), ["ERR ConnectionRefusedError"], "no endpoints at {addr}:{port}: refused");
    }

    // Incremental: one service's endpoints change, one service goes.
    s.services.get_mut(&key("web")).unwrap().endpoints = vec![pod(2)];
    s.services.remove(&key("other"));
    let before = c.saved("nat");
    let report = b.sync(&s).unwrap();
    assert!(!report.full);
    assert_eq!(report.changed, 2);
    let after = c.saved("nat");
    assert_eq!(chains(&before, "KRS-SVC-") - 1, chains(&after, "KRS-SVC-"), "the removed service's chain is gone");
    assert_eq!(chains(&before, "KRS-SEP-") - 2, chains(&after, "KRS-SEP-"), "and the endpoint chains no longer used");
    assert!(!after.contains("10.96.0.13"));
    assert_eq!(answers(&c.client, "10.96.0.10", 80, 10), ["pod1".to_string()].into());

    // A new backend (a restarted proxy) reconciles what the last one left.
    s.services.insert(key("web"), service([10, 96, 0, 10], Some(30080), vec![pod(3)]));
    let mut restarted = Iptables::new(BackendOptions { netns: Some(c.node.0.clone()) });
    assert!(restarted.sync(&s).unwrap().full);
    assert_eq!(chains(&c.saved("nat"), "KRS-SEP-"), 1, "the old endpoint's chain was removed");
    assert_eq!(answers(&c.node, "127.0.0.1", 30080, 5), ["pod2".to_string()].into());
    let hooks = c.saved("nat").lines().filter(|l| l.contains("-j KRS-SERVICES") && l.starts_with("-A PREROUTING")).count();
    assert_eq!(hooks, 1, "hooks are not added twice");

    restarted.cleanup().unwrap();
    b.cleanup().unwrap();
    for table in ["nat", "filter"] {
        let saved = c.saved(table);
        assert!(!saved.contains("KRS-"), "left in {table}:\n{saved}");
    }
    c.node.run(&["iptables", "-t", "nat", "-C", "POSTROUTING", "-s", "10.9.9.0/24", "-j", "MASQUERADE"]);
    c.node.run(&["iptables", "-t", "filter", "-C", "INPUT", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT"]);
    assert!(connect(&c.client, "10.244.0.1", 30080, 1)[0].starts_with("ERR"), "node port gone");
}
