//! Services end to end with the real kubectl against `kubelet-rs --apiserver` (root): the
//! node's service proxy sends ClusterIP, NodePort and LoadBalancer traffic to ready pods
//! (from pods, from the node, from an outside namespace), keeps a client on one pod with
//! session affinity, lets a pod reach itself, and forgets a deleted service; the cluster DNS
//! answers service, headless and forwarded names for pods with the resolv.conf Kubernetes
//! gives them.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::Cluster;
use test_support::cluster::{NODE_IP, OUTSIDE_IP};
use test_support::netns::TestNetns;

/// A busybox httpd answering its own name, ready while /tmp/unready is absent.
fn web_pod(cluster: &Cluster, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, 'mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www']\n    ports: [{{name: http, containerPort: 8080}}]\n    readinessProbe: {{exec: {{command: [sh, -c, 'test ! -e /tmp/unready']}}, periodSeconds: 1}}\n",
        cluster.busybox
    )
}

fn client_pod(cluster: &Cluster, name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    command: [sleep, '3600']\n", cluster.busybox)
}

const WEB_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]\n";

/// A shell loop making `n` HTTP requests to `target` (`host port`) with busybox nc (its wget
/// crashes in Debian's static busybox), printing each answer's body or FAILED.
fn requests(target: &str, n: usize) -> String {
    format!(r#"for i in $(seq {n}); do out=$(printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 {target} | tail -n 1); echo "${{out:-FAILED}}"; done"#)
}

/// The answers to `n` requests to `target` made from inside `pod` (one line per answer).
fn from_pod(cluster: &Cluster, pod: &str, target: &str, n: usize) -> Vec<String> {
    let out = cluster.kubectl.run(&["exec", pod, "--", "sh", "-c", &requests(target, n)]);
    out.stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// The answers to `n` requests to `target` made from the namespace `ns` (the host's busybox).
fn from_netns(ns: &TestNetns, target: &str, n: usize) -> Vec<String> {
    let out = ns.exec(&["busybox", "sh", "-c", &requests(target, n)]);
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn distinct(answers: &[String]) -> BTreeSet<&str> {
    answers.iter().map(String::as_str).collect()
}

/// The proxy's table and the node's addresses and routes, for failure messages.
fn rules(cluster: &Cluster) -> String {
    let run = |argv: &[&str]| {
        let o = cluster.node.exec(argv);
        format!("$ {}\n{}{}", argv.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    [run(&["nft", "list", "table", "ip", "krs-proxy"]), run(&["ip", "-br", "addr"]), run(&["ip", "route"]), run(&["conntrack", "-L"])].join("\n")
}

/// The ready endpoints in the EndpointSlices of `service`.
fn ready_endpoints(cluster: &Cluster, service: &str) -> usize {
    let out = cluster.kubectl.run(&["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}"), "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    let endpoints = list["items"].as_array().into_iter().flatten().flat_map(|s| s["endpoints"].as_array().into_iter().flatten());
    endpoints.filter(|e| e["conditions"]["ready"] == serde_json::Value::Bool(true)).count()
}

#[test]
#[ignore = "needs root"]
fn the_service_proxy_sends_cluster_ip_node_port_and_load_balancer_traffic_to_ready_pods() {
    let mut cluster = Cluster::start();
    for name in ["web-a", "web-b"] {
        cluster.kubectl.apply(&web_pod(&cluster, name));
    }
    cluster.kubectl.apply(&client_pod(&cluster, "client"));
    cluster.kubectl.apply(WEB_SERVICE);
    for pod in ["web-a", "web-b", "client"] {
        cluster.wait_phase(pod, "Running", Duration::from_secs(60));
    }
    cluster.wait_for("both web pods ready in the service's endpoints", Duration::from_secs(30), || ready_endpoints(&cluster, "web") == 2);
    let ip = cluster.kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    assert!(octets[0] == 10 && (96..112).contains(&octets[1]), "a cluster IP from 10.96.0.0/12: {ip}");
    let both: BTreeSet<&str> = ["web-a", "web-b"].into();

    // ClusterIP from a pod: both backends answer.
    let start = std::time::Instant::now();
    loop {
        let answers = from_pod(&cluster, "client", &format!("{ip} 80"), 16);
        if distinct(&answers) == both {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "both backends through the cluster IP: {answers:?}\n{}\n{}\n{}", cluster.kubectl.run(&["get", "endpointslices,svc,pods", "-A", "-o", "yaml"]).stdout, rules(&cluster), cluster.log());
    }
    // NodePort: from the node's address, from 127.0.0.1 on the node, from outside.
    for (who, ns, target) in [("the node", &cluster.node, format!("{NODE_IP} 30080")), ("the node's localhost", &cluster.node, "127.0.0.1 30080".to_string()), ("outside", &cluster.outside, format!("{NODE_IP} 30080"))] {
        let answers = from_netns(ns, &target, 12);
        assert_eq!(distinct(&answers), both, "node port from {who} ({target}): {answers:?}\n{}", cluster.log());
    }
    // A pod reaches itself through its service (hairpin).
    let answers = from_pod(&cluster, "web-a", &format!("{ip} 80"), 16);
    assert_eq!(distinct(&answers), both, "hairpin from web-a: {answers:?}");

    // An unready backend gets no traffic.
    cluster.kubectl.ok(&["exec", "web-a", "--", "touch", "/tmp/unready"]);
    cluster.wait_for("web-a to leave the ready endpoints", Duration::from_secs(30), || ready_endpoints(&cluster, "web") == 1);
    cluster.wait_for("only web-b to answer", Duration::from_secs(10), || distinct(&from_pod(&cluster, "client", &format!("{ip} 80"), 12)) == ["web-b"].into());
    cluster.kubectl.ok(&["exec", "web-a", "--", "rm", "/tmp/unready"]);
    cluster.wait_for("web-a back in the ready endpoints", Duration::from_secs(30), || ready_endpoints(&cluster, "web") == 2);

    // Session affinity pins a client to one backend.
    cluster.kubectl.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    cluster.wait_for("one backend for the pinned client", Duration::from_secs(20), || {
        let answers = from_pod(&cluster, "client", &format!("{ip} 80"), 12);
        distinct(&answers).len() == 1 && !answers.contains(&"FAILED".to_string())
    });

    // LoadBalancer: the node's address is the ingress; outside clients reach port 80 there.
    cluster.kubectl.ok(&["patch", "svc", "web", "-p", r#"{"spec":{"type":"LoadBalancer","sessionAffinity":"None"}}"#]);
    cluster.wait_for("the load balancer ingress", Duration::from_secs(20), || cluster.kubectl.run(&["get", "svc", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"]).stdout.trim() == NODE_IP);
    cluster.wait_for("both backends through the load balancer address", Duration::from_secs(20), || distinct(&from_netns(&cluster.outside, &format!("{NODE_IP} 80"), 12)) == both);

    // A deleted service's rules go.
    let table = || String::from_utf8_lossy(&cluster.node.exec(&["nft", "list", "table", "ip", "krs-proxy"]).stdout).into_owned();
    assert!(table().contains("default/web"), "{}", table());
    cluster.kubectl.ok(&["delete", "svc", "web"]);
    cluster.wait_for("the service's rules to go", Duration::from_secs(20), || !table().contains("default/web"));
    assert!(from_pod(&cluster, "client", &format!("{ip} 80"), 1).iter().all(|a| a == "FAILED"));

    // A killed kubelet-rs leaves the rules in place and reconciles them when it is back; a
    // clean stop removes its table.
    cluster.kubectl.apply(WEB_SERVICE);
    let ip = cluster.kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    cluster.wait_for("the service back", Duration::from_secs(20), || distinct(&from_pod(&cluster, "client", &format!("{ip} 80"), 8)) == both);
    cluster.kill9();
    assert_eq!(distinct(&from_netns(&cluster.node, &format!("{ip} 80"), 8)), both, "the rules stay while kubelet-rs is down");
    cluster.spawn();
    cluster.wait_ready();
    assert_eq!(distinct(&from_netns(&cluster.node, &format!("{ip} 80"), 8)), both);
    cluster.stop();
    assert!(!cluster.node.exec(&["nft", "list", "table", "ip", "krs-proxy"]).status.success(), "the table is removed on a clean stop");
}

/// A stand-in upstream resolver in the outside namespace: every A query gets 192.0.2.7.
const FAKE_UPSTREAM: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("OUTSIDE", 53))
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    end += 5
    answer, count = b"", 0
    if q[end - 4:end - 2] == b"\x00\x01":
        answer, count = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 7]), 1
    s.sendto(q[:2] + b"\x81\x80\x00\x01" + count.to_bytes(2, "big") + b"\x00\x00\x00\x00" + q[12:end] + answer, peer)
"#;

struct Upstream(std::process::Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root"]
fn pods_resolve_services_headless_services_and_outside_names_through_the_cluster_dns() {
    let cluster = Cluster::start();
    let _upstream = Upstream(cluster.outside.spawn(&["python3", "-c", &FAKE_UPSTREAM.replace("OUTSIDE", OUTSIDE_IP)]));
    for name in ["web-a", "web-b"] {
        cluster.kubectl.apply(&web_pod(&cluster, name));
    }
    cluster.kubectl.apply(WEB_SERVICE);
    cluster.kubectl.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: web-h\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n");
    for pod in ["web-a", "web-b"] {
        cluster.wait_phase(pod, "Running", Duration::from_secs(60));
    }
    // Both services: the headless one's slices are written apart from web's.
    cluster.wait_for("both web pods ready in both services' endpoints", Duration::from_secs(30), || ready_endpoints(&cluster, "web") == 2 && ready_endpoints(&cluster, "web-h") == 2);
    // Created after the service: it gets the service's variables too.
    cluster.kubectl.apply(&client_pod(&cluster, "client"));
    cluster.wait_phase("client", "Running", Duration::from_secs(60));
    let ip = cluster.kubectl.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let pod_ips: BTreeSet<String> = ["web-a", "web-b"].iter().map(|p| cluster.pod_field(p, "{.status.podIP}")).collect();

    let resolv = cluster.kubectl.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("ndots:5"), "{resolv}");
    let env = cluster.kubectl.ok(&["exec", "client", "--", "env"]);
    assert!(env.contains(&format!("WEB_SERVICE_HOST={ip}")) && env.contains("WEB_SERVICE_PORT=80"), "{env}");

    // The DNS server learns of services and endpoints through its watch, so each answer is
    // awaited (as a client of CoreDNS would retry), failing with what it last gave.
    let web = lookup_until(&cluster, "web.default.svc.cluster.local", "the service's cluster IP", |a, _| a.contains(&ip));
    assert_eq!(addresses(&web), [ip.clone()].into(), "only the cluster IP: {web}");
    lookup_until(&cluster, "web", "the cluster IP through the search path", |a, _| a.contains(&ip));
    lookup_until(&cluster, "web-h.default.svc.cluster.local", &format!("the pods' addresses {pod_ips:?} for a headless service"), |a, _| *a == pod_ips);
    lookup_until(&cluster, "outside.example", "192.0.2.7 from the upstream", |a, _| a.contains("192.0.2.7"));
    lookup_until(&cluster, "nothing.default.svc.cluster.local", "NXDOMAIN", |a, out| a.is_empty() && (out.contains("NXDOMAIN") || out.contains("can't resolve")));
    // And the answer reaches the service.
    let start = std::time::Instant::now();
    loop {
        let answers = from_pod(&cluster, "client", "web 80", 8);
        if answers.len() == 8 && answers.iter().all(|a| a.starts_with("web-")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "8 answers from the web pods through the name web: {answers:?}\n{}", rules(&cluster));
    }
}

/// `nslookup name` in the pod `client`, with its stderr.
fn lookup(cluster: &Cluster, name: &str) -> String {
    let out = cluster.kubectl.run(&["exec", "client", "--", "nslookup", name]);
    format!("{}{}", out.stdout, out.stderr)
}

/// The addresses in nslookup's answer sections (after each "Name:" line).
fn addresses(text: &str) -> BTreeSet<String> {
    text.split("Name:").skip(1).flat_map(|s| s.lines().filter_map(|l| l.trim().strip_prefix("Address:").map(|a| a.split_whitespace().next().unwrap_or("").to_string()))).collect()
}

/// Look `name` up from the pod `client` until `check(addresses, output)` holds, at most 20 s,
/// and return that output. Fails naming `want`, with the last output and the DNS log lines.
fn lookup_until(cluster: &Cluster, name: &str, want: &str, check: impl Fn(&BTreeSet<String>, &str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = lookup(cluster, name);
        if check(&addresses(&out), &out) {
            return out;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let log = cluster.log();
            let dns: Vec<&str> = log.lines().filter(|l| l.contains("DNS") || l.contains("dns")).collect();
            panic!("nslookup {name} did not give {want} in 20 s; last:\n{out}\nDNS log lines:\n{}\n{}", dns.join("\n"), cluster.diagnose());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
