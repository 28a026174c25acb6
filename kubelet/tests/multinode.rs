//! A cluster of three nodes on one machine (root; tests/support/src/multinode.rs): the control
//! plane's `kubelet-rs --apiserver` and two workers joining it with a bootstrap token (their client and serving
//! certificates by CSR), each in its own network
//! namespace on one LAN bridge, with the real kubectl. Pods spread over the nodes and reach
//! pods on other nodes by their own addresses (host-gw routes, no NAT); a ClusterIP whose only
//! endpoint is on a third node answers, by name too; a NodePort on one node reaches pods on
//! all; a DaemonSet runs a pod on every node; a node whose kubelet stops goes NotReady and its
//! pods are recreated on the others.

use std::collections::BTreeSet;
use std::time::Duration;

use test_support::multinode::{LAN_PREFIX, MultiNode, MultiNodeOptions};

/// A busybox httpd answering its pod name at `/`, and the client's address at `/cgi-bin/ip`.
const WEB_CMD: &str = "mkdir -p /www/cgi-bin; hostname > /www/index.html; printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip; chmod +x /www/cgi-bin/ip; exec httpd -f -p 8080 -h /www";

fn web_deployment(c: &MultiNode) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 3\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - {{topologyKey: kubernetes.io/hostname, labelSelector: {{matchLabels: {{app: web}}}}}}\n      containers:\n      - name: web\n        image: {}\n        command: [sh, -c, \"{WEB_CMD}\"]\n        ports: [{{containerPort: 8080}}]\n",
        c.busybox
    )
}

fn pod_on(c: &MultiNode, name: &str, node: &str, labels: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, \"{command}\"]\n",
        c.busybox
    )
}

/// `GET path` to `host port` with busybox nc, from inside `pod`: the body's last line, or FAILED.
fn get_from_pod(c: &MultiNode, pod: &str, target: &str, path: &str) -> String {
    let script = format!(r#"out=$(printf "GET {path} HTTP/1.0\r\n\r\n" | nc -w 2 {target} | tail -n 1); echo "${{out:-FAILED}}""#);
    let o = c.kubectl.run(&["exec", pod, "--", "sh", "-c", &script]);
    o.stdout.trim().to_string()
}

/// (pod name, node, pod IP) of the pods labelled `selector` that are Running and not deleted.
fn running(c: &MultiNode, selector: &str) -> Vec<(String, String, String)> {
    let o = c.kubectl.run(&["get", "pods", "-l", selector, "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            (s(&p["metadata"]["name"]), s(&p["spec"]["nodeName"]), s(&p["status"]["podIP"]))
        })
        .collect()
}

fn wait_running(c: &MultiNode, selector: &str, n: usize) -> Vec<(String, String, String)> {
    let mut pods = Vec::new();
    c.wait_for(&format!("{n} running pods {selector}"), Duration::from_secs(120), || {
        pods = running(c, selector);
        pods.len() == n
    });
    pods
}

#[test]
#[ignore = "needs root"]
fn pods_on_three_nodes_reach_each_other_and_services_across_nodes_and_a_daemonset_covers_them() {
    let c = MultiNode::start(MultiNodeOptions::default());
    let names: BTreeSet<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let nodes = c.kubectl.ok(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(nodes.split_whitespace().map(str::to_string).collect::<BTreeSet<_>>(), names, "every node registered");
    // The workers joined with the bootstrap token: each asked for its client certificate as
    // the token's user and for its serving certificate as itself, and got both.
    let csrs = c.kubectl.ok(&["get", "csr", "-o", r#"jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type} {.status.certificate}{"\n"}{end}"#]);
    for worker in names.iter().filter(|n| *n != "krs-cp") {
        let issued = |signer: &str, user: &dyn Fn(&str) -> bool| {
            csrs.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 4 && f[0] == signer && user(f[1]) && f[2] == "Approved" && !f[3].is_empty()
            })
        };
        assert!(issued("kubernetes.io/kubelet-serving", &|u| u == format!("system:node:{worker}")), "{worker}'s serving certificate by CSR:\n{csrs}");
    }
    let clients = csrs.lines().filter(|l| l.starts_with("kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:") && l.contains(" Approved ")).count();
    assert_eq!(clients, names.len() - 1, "one client certificate per worker, asked with the token:\n{csrs}");

    // Pods spread: one web pod per node (required anti-affinity), each from its node's CIDR.
    c.kubectl.apply(&web_deployment(&c));
    c.kubectl.apply(&pod_on(&c, "client", "krs-cp", "role: client", "sleep 3600"));
    let web = wait_running(&c, "app=web", 3);
    assert_eq!(web.iter().map(|(_, node, _)| node.clone()).collect::<BTreeSet<_>>(), names, "one web pod per node: {web:?}");
    for (pod, node, ip) in &web {
        let cidr = &c.node(node).pod_cidr;
        let prefix = cidr.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "{pod} on {node} has {ip}, outside the node's pod CIDR {cidr}");
    }
    let client = wait_running(&c, "role=client", 1);
    let client_ip = client[0].2.clone();

    // From the control plane's node, every web pod answers at its own address, and sees the
    // client's pod address (pod to pod without NAT).
    for (pod, node, ip) in &web {
        let target = format!("{ip} 8080");
        let mut answer = String::new();
        c.wait_for(&format!("{pod} on {node} from the client on krs-cp"), Duration::from_secs(30), || {
            answer = get_from_pod(&c, "client", &target, "/");
            answer == *pod
        });
        // httpd listens on a dual-stack socket: `[::ffff:10.244.0.3]`.
        let seen = get_from_pod(&c, "client", &target, "/cgi-bin/ip");
        let seen = seen.trim_start_matches('[').trim_end_matches(']').trim_start_matches("::ffff:");
        assert_eq!(seen, client_ip, "{pod} on {node} sees the client's own address");
    }

    // A ClusterIP whose only endpoint is on worker2, from the client on the control plane and
    // by name from a pod on worker1 (which asks its own node's DNS server).
    c.kubectl.apply(&pod_on(&c, "only-c", "krs-worker2", "app: only-c", WEB_CMD));
    c.kubectl.apply(&pod_on(&c, "asker", "krs-worker1", "role: asker", "sleep 3600"));
    c.kubectl.apply("apiVersion: v1\nkind: Service\nmetadata: {name: only-c}\nspec:\n  selector: {app: only-c}\n  ports: [{port: 80, targetPort: 8080}]\n");
    wait_running(&c, "app=only-c", 1);
    wait_running(&c, "role=asker", 1);
    let cluster_ip = c.kubectl.ok(&["get", "svc", "only-c", "-o", "jsonpath={.spec.clusterIP}"]);
    c.wait_for("the ClusterIP from krs-cp reaching only-c on krs-worker2", Duration::from_secs(30), || get_from_pod(&c, "client", &format!("{cluster_ip} 80"), "/") == "only-c");
    c.wait_for("only-c.default.svc.cluster.local from krs-worker1", Duration::from_secs(30), || get_from_pod(&c, "asker", "only-c.default.svc.cluster.local 80", "/") == "only-c");

    // A pod going out of the cluster network leaves with its node's address (masquerade):
    // the lan has no route back to pod addresses, so an answer at all says so too.
    let www = c.dir.path().join("lan-www");
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    std::fs::write(www.join("cgi-bin/ip"), "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n").unwrap();
    std::fs::set_permissions(www.join("cgi-bin/ip"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _outside = c.lan_spawn(&["busybox", "httpd", "-f", "-p", "8090", "-h", &www.to_string_lossy()]);
    let mut seen = String::new();
    c.wait_for("a pod on krs-worker1 reaching outside as its node", Duration::from_secs(30), || {
        seen = get_from_pod(&c, "asker", &format!("{LAN_PREFIX}.1 8090"), "/cgi-bin/ip");
        seen.contains('.')
    });
    let seen = seen.trim_start_matches('[').trim_end_matches(']').trim_start_matches("::ffff:");
    assert_eq!(seen, c.node("krs-worker1").ip, "the outside sees the node's address");

    // A NodePort on worker1, from outside the cluster (the lan namespace), reaches the web
    // pods on all three nodes.
    c.kubectl.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080, nodePort: 30081}]\n");
    let want: BTreeSet<String> = web.iter().map(|(pod, _, _)| pod.clone()).collect();
    let mut seen = BTreeSet::new();
    c.wait_for("every web pod through krs-worker1's node port", Duration::from_secs(60), || {
        let script = format!(r#"out=$(printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 {LAN_PREFIX}.11 30081 | tail -n 1); echo "$out""#);
        let o = c.lan_exec(&["busybox", "sh", "-c", &script]);
        let answer = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if want.contains(&answer) {
            seen.insert(answer);
        }
        seen == want
    });

    // A DaemonSet lands on every node.
    c.kubectl.apply(&format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: agent\n        image: {}\n        command: [sleep, '3600']\n",
        c.busybox
    ));
    let agents = wait_running(&c, "app=agent", 3);
    assert_eq!(agents.iter().map(|(_, node, _)| node.clone()).collect::<BTreeSet<_>>(), names, "a DaemonSet pod per node: {agents:?}");
    c.wait_for("the DaemonSet's status", Duration::from_secs(30), || c.kubectl.run(&["get", "ds", "agent", "-o", "jsonpath={.status.desiredNumberScheduled}/{.status.numberReady}"]).stdout.trim() == "3/3");
}

#[test]
#[ignore = "needs root"]
fn a_node_whose_kubelet_stops_goes_not_ready_and_its_pods_are_recreated_on_the_others() {
    let c = MultiNode::start(MultiNodeOptions { workers: 2, node_monitor_grace_period: Duration::from_secs(10) });
    // Both replicas on worker2: the other nodes are cordoned while they are scheduled.
    for node in ["krs-cp", "krs-worker1"] {
        c.kubectl.ok(&["cordon", node]);
    }
    c.kubectl.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: moving}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: moving}}}}\n  template:\n    metadata: {{labels: {{app: moving}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      tolerations:\n      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}\n      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}\n      containers:\n      - name: main\n        image: {}\n        command: [sleep, '3600']\n",
        c.busybox
    ));
    let before = wait_running(&c, "app=moving", 2);
    assert!(before.iter().all(|(_, node, _)| node == "krs-worker2"), "both on krs-worker2 first: {before:?}");
    for node in ["krs-cp", "krs-worker1"] {
        c.kubectl.ok(&["uncordon", node]);
    }

    c.stop_node("krs-worker2");
    c.wait_for("krs-worker2 NotReady (Unknown)", Duration::from_secs(90), || c.node_ready("krs-worker2") == "Unknown");
    let get = c.kubectl.ok(&["get", "node", "krs-worker2"]);
    assert!(get.contains("NotReady"), "kubectl get node shows NotReady:\n{get}");
    let mut after = Vec::new();
    c.wait_for("two replicas running on the other nodes", Duration::from_secs(120), || {
        after = running(&c, "app=moving").into_iter().filter(|(_, node, _)| node != "krs-worker2").collect();
        after.len() == 2
    });
    let old: BTreeSet<&String> = before.iter().map(|(pod, _, _)| pod).collect();
    assert!(after.iter().all(|(pod, _, _)| !old.contains(pod)), "new pods replace the lost ones: {before:?} -> {after:?}");
    let taints = c.kubectl.ok(&["get", "node", "krs-worker2", "-o", "jsonpath={.spec.taints[*].key}"]);
    assert!(taints.contains("node.kubernetes.io/unreachable"), "the lost node is tainted unreachable: {taints}");
}
