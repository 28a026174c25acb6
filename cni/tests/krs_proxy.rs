//! `krs-proxy` as a process of its own (root): against a real apiserver-lite in a network
//! namespace, a Service and its EndpointSlice become rules in the proxy's nftables table,
//! the cluster DNS answers for the service, and SIGTERM removes the table.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::bins::workspace_bin;
use test_support::kubectl::Kubectl;
use test_support::netns::TestNetns;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_in(ns: &TestNetns, argv: &[&str], log: &std::path::Path) -> Killed {
    let file = std::fs::File::create(log).unwrap();
    let child = Command::new("ip").args(["netns", "exec", &ns.name]).args(argv).stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file).spawn().unwrap();
    Killed(child)
}

fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool, log: impl Fn() -> String) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, and wait for the process to end.
fn stop(mut p: Killed, log: &dyn Fn() -> String) {
    unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    while p.0.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "krs-proxy did not stop on SIGTERM\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root"]
fn krs_proxy_programs_services_from_the_api_server_and_serves_their_names() {
    test_support::require_root();
    let apiserver = workspace_bin("apiserver-lite", "apiserver-lite");
    let proxy = workspace_bin("cni", "krs-proxy");
    let ns = TestNetns::new();
    // The node's address, on a veth pair inside the namespace (no dummy module here).
    ns.ip(&["link", "add", "krs-v0", "type", "veth", "peer", "name", "krs-v1"]);
    ns.ip(&["addr", "add", "192.168.78.1/24", "dev", "krs-v0"]);
    ns.ip(&["link", "set", "krs-v0", "up"]);
    ns.ip(&["link", "set", "krs-v1", "up"]);
    let dir = tempfile::Builder::new().prefix("krs-test-proxy.").tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = spawn_in(&ns, &[apiserver.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:6443"], &dir.path().join("apiserver.log"));
    let admin = data.join("admin.kubeconfig");
    let server_log = || std::fs::read_to_string(dir.path().join("apiserver.log")).unwrap_or_default();
    wait_for("apiserver-lite's admin kubeconfig", Duration::from_secs(60), || admin.exists(), server_log);
    // The host reaches the server through the namespace: kubectl runs inside it.
    let kubectl = Kubectl::new(&admin);
    let in_ns = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "kubectl", "--kubeconfig", admin.to_str().unwrap(), "--cache-dir", kubectl.cache.path().to_str().unwrap()]).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    wait_for("the API server to answer", Duration::from_secs(60), || in_ns(&["get", "ns", "default"], None).status.success(), server_log);
    let objects = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: NodePort\n  ports: [{name: http, port: 80, nodePort: 30080}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n- addresses: [10.244.0.7]\n  conditions: {ready: true}\n";
    let applied = in_ns(&["apply", "-f", "-"], Some(objects));
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let ip = String::from_utf8_lossy(&in_ns(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"], None).stdout).trim().to_string();

    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.168.78.2\n").unwrap();
    let table = || String::from_utf8_lossy(&ns.exec(&["nft", "list", "table", "ip", "krs-proxy"]).stdout).into_owned();

    // A DNS address that cannot be served (not the node's) is reported and the proxy runs anyway.
    let first_log = dir.path().join("proxy-bad-dns.log");
    let first = spawn_in(&ns, &[proxy.to_str().unwrap(), "--kubeconfig", admin.to_str().unwrap(), "--cluster-dns-listen", "192.168.99.1:53"], &first_log);
    let first_text = || format!("{}\n{}", std::fs::read_to_string(&first_log).unwrap_or_default(), table());
    wait_for("the rules without DNS", Duration::from_secs(30), || table().contains("dnat to 10.244.0.7:8080"), first_text);
    assert!(first_text().contains("cluster DNS not served on this node") && first_text().contains("192.168.99.1:53"), "{}", first_text());
    stop(first, &first_text);

    let proxy_log = dir.path().join("proxy.log");
    let proxy = spawn_in(
        &ns,
        &[proxy.to_str().unwrap(), "--kubeconfig", admin.to_str().unwrap(), "--hostname-override", "n1", "--cluster-cidr", "10.244.0.0/16", "--cluster-dns-listen", "192.168.78.1:53", "--resolv-conf", resolv.to_str().unwrap()],
        &proxy_log,
    );
    let log = || format!("{}\n{}", std::fs::read_to_string(&proxy_log).unwrap_or_default(), table());
    wait_for("the service's rules", Duration::from_secs(30), || table().contains("dnat to 10.244.0.7:8080") && table().contains(&format!("{ip} . tcp . 80")), log);
    assert!(table().contains("tcp . 30080"), "{}", table());
    // The DNS answers for the service (busybox nslookup inside the namespace).
    let answer = ns.exec(&["busybox", "nslookup", "web.default.svc.cluster.local", "192.168.78.1"]);
    assert!(String::from_utf8_lossy(&answer.stdout).contains(&ip), "{}{}", String::from_utf8_lossy(&answer.stdout), log());

    // A new endpoint reaches the rules; SIGTERM removes the table.
    let more = objects.replace("- addresses: [10.244.0.7]\n  conditions: {ready: true}\n", "- addresses: [10.244.0.7]\n  conditions: {ready: true}\n- addresses: [10.244.0.8]\n  conditions: {ready: true}\n");
    assert!(in_ns(&["apply", "-f", "-"], Some(&more)).status.success());
    wait_for("the second endpoint", Duration::from_secs(20), || table().contains("10.244.0.8:8080"), log);
    stop(proxy, &log);
    assert!(!ns.exec(&["nft", "list", "table", "ip", "krs-proxy"]).status.success(), "the table is removed on SIGTERM\n{}", log());
}
