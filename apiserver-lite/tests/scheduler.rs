//! The scheduler against the real API in process (fake Node objects with capacity and a
//! Ready condition; the test is the only "kubelet"), and once with the real kubectl against
//! the binary, which runs the scheduler itself.

mod common;

use std::time::{Duration, Instant};

use apiserver_lite::controllers::{in_process_client, SCHEDULER_USER};
use common::{Kubectl, ServerProcess, TestServer};
use serde_json::{json, Value};

/// A server with the scheduler running on it (the task ends with the test's runtime).
async fn cluster() -> TestServer {
    let s = TestServer::new().await;
    tokio::spawn(apiserver_lite::scheduler::run(in_process_client(s.app.clone(), SCHEDULER_USER)));
    s
}

struct NodeSpec {
    cpu: &'static str,
    labels: Value,
    taints: Value,
    unschedulable: bool,
    ready: bool,
}

impl Default for NodeSpec {
    fn default() -> Self {
        NodeSpec { cpu: "4", labels: json!({}), taints: json!([]), unschedulable: false, ready: true }
    }
}

/// A Node object as a kubelet would register it: labels, capacity = allocatable, Ready.
async fn node(s: &TestServer, name: &str, spec: NodeSpec) {
    let mut labels = spec.labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": spec.taints, "unschedulable": spec.unschedulable},
    });
    let (code, created) = s.post("/api/v1/nodes", body).await;
    assert!(code.is_success(), "create node {name}: {code} {created}");
    let mut n = created;
    let resources = json!({"cpu": spec.cpu, "memory": "8Gi", "ephemeral-storage": "50Gi", "pods": "110"});
    n["status"] = json!({
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": if spec.ready { "True" } else { "False" }, "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
    });
    let (code, body) = s.put(&format!("/api/v1/nodes/{name}/status"), n).await;
    assert!(code.is_success(), "node {name} status: {code} {body}");
}

async fn pod(s: &TestServer, name: &str, cpu: &str, extra_spec: Value, labels: Value) {
    let mut spec = json!({"containers": [{"name": "app", "image": "busybox:1.36", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    for (k, v) in extra_spec.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec});
    let (code, body) = s.post("/api/v1/namespaces/default/pods", body).await;
    assert!(code.is_success(), "create pod {name}: {code} {body}");
}

async fn get_pod(s: &TestServer, name: &str) -> Value {
    s.get(&format!("/api/v1/namespaces/default/pods/{name}")).await.1
}

/// Poll until `check` gives Some, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node_of(s: &TestServer, name: &str) -> String {
    eventually(&format!("{name} to be bound"), || async { get_pod(s, name).await["spec"]["nodeName"].as_str().map(str::to_string) }).await
}

/// Wait until the pod is marked unschedulable with exactly `expected` (an earlier attempt,
/// made before the scheduler's node watch caught up, may have said something else) and is
/// still not bound.
async fn assert_unschedulable(s: &TestServer, name: &str, expected: &str) {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = get_pod(s, name).await;
        let cond = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned()).unwrap_or(Value::Null);
        if cond["status"] == "False" && cond["message"] == expected {
            assert_eq!(cond["reason"], "Unschedulable", "{cond}");
            assert!(p["spec"]["nodeName"].is_null(), "{p}");
            return;
        }
        last = if cond.is_null() { last } else { cond };
        assert!(Instant::now() < deadline, "{name} not marked unschedulable with\n{expected}\nlast condition: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until `want` of the pods are bound; their nodes (sorted) and the others.
async fn bound_and_rest(s: &TestServer, names: &[String], want: usize) -> (Vec<String>, Vec<String>) {
    eventually(&format!("{want} of {names:?} bound"), || async {
        let mut nodes = vec![];
        let mut rest = vec![];
        for n in names {
            match get_pod(s, n).await["spec"]["nodeName"].as_str() {
                Some(node) => nodes.push(node.to_string()),
                None => rest.push(n.clone()),
            }
        }
        nodes.sort();
        (nodes.len() == want).then_some((nodes, rest))
    })
    .await
}

async fn events_of(s: &TestServer, pod: &str) -> Vec<Value> {
    let (_, list) = s.get(&format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{pod}")).await;
    list["items"].as_array().cloned().unwrap_or_default()
}

async fn event_with_reason(s: &TestServer, pod: &str, reason: &str) -> Value {
    eventually(&format!("a {reason} event for {pod}"), || async { events_of(s, pod).await.into_iter().find(|e| e["reason"] == reason) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_spread_over_nodes_and_get_a_scheduled_event() {
    let s = cluster().await;
    for n in ["n1", "n2", "n3"] {
        node(&s, n, NodeSpec::default()).await;
    }
    for i in 0..6 {
        pod(&s, &format!("p{i}"), "500m", json!({}), json!({"app": "web"})).await;
    }
    let mut per_node = std::collections::BTreeMap::new();
    for i in 0..6 {
        *per_node.entry(node_of(&s, &format!("p{i}")).await).or_insert(0) += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "least-allocated scoring spreads equal pods: {per_node:?}");
    let node = node_of(&s, "p0").await;
    let e = event_with_reason(&s, "p0", "Scheduled").await;
    assert_eq!(e["message"], format!("Successfully assigned default/p0 to {node}"));
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["source"]["component"], "default-scheduler");
    let scheduled = get_pod(&s, "p0").await["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
    assert!(scheduled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_nowhere_waits_then_takes_a_bigger_node() {
    let s = cluster().await;
    node(&s, "small-1", NodeSpec { cpu: "1", ..Default::default() }).await;
    node(&s, "small-2", NodeSpec { cpu: "1", ..Default::default() }).await;
    node(&s, "control-plane", NodeSpec { cpu: "8", taints: json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]), ..Default::default() }).await;
    pod(&s, "big", "2", json!({}), json!({})).await;
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod..";
    assert_unschedulable(&s, "big", expected).await;
    let e = eventually("the FailedScheduling event", || async { events_of(&s, "big").await.into_iter().find(|e| e["reason"] == "FailedScheduling" && e["message"] == expected) }).await;
    assert_eq!(e["type"], "Warning");
    // No busy loop: with nothing changed the pod is not retried (one event, count 1).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed: Vec<Value> = events_of(&s, "big").await.into_iter().filter(|e| e["reason"] == "FailedScheduling" && e["message"] == expected).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["count"], 1, "{failed:?}");

    node(&s, "large", NodeSpec { cpu: "4", ..Default::default() }).await;
    assert_eq!(node_of(&s, "big").await, "large", "a new node retries the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pod_makes_room_for_a_waiting_one() {
    let s = cluster().await;
    node(&s, "only", NodeSpec { cpu: "1", ..Default::default() }).await;
    pod(&s, "first", "800m", json!({}), json!({})).await;
    assert_eq!(node_of(&s, "first").await, "only");
    pod(&s, "second", "800m", json!({}), json!({})).await;
    assert_unschedulable(&s, "second", "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..").await;
    let (code, _) = s.delete("/api/v1/namespaces/default/pods/first?gracePeriodSeconds=0").await;
    assert!(code.is_success());
    assert_eq!(node_of(&s, "second").await, "only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_node_affinity() {
    let s = cluster().await;
    node(&s, "ssd", NodeSpec { labels: json!({"disk": "ssd", "zone": "a", "cores": "16"}), ..Default::default() }).await;
    node(&s, "hdd", NodeSpec { labels: json!({"disk": "hdd", "zone": "b", "cores": "4"}), ..Default::default() }).await;
    pod(&s, "selector", "100m", json!({"nodeSelector": {"disk": "ssd"}}), json!({})).await;
    let required = |exprs: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [exprs]}}}});
    pod(&s, "in-zone-b", "100m", required(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})), json!({})).await;
    pod(&s, "not-in-a", "100m", required(json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})), json!({})).await;
    pod(&s, "many-cores", "100m", required(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]})), json!({})).await;
    pod(&s, "by-name", "100m", required(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["hdd"]}]})), json!({})).await;
    let preferred = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}}]}}});
    pod(&s, "prefers-hdd", "100m", preferred, json!({})).await;
    pod(&s, "nowhere", "100m", json!({"nodeSelector": {"gpu": "yes"}}), json!({})).await;
    assert_eq!(node_of(&s, "selector").await, "ssd");
    assert_eq!(node_of(&s, "in-zone-b").await, "hdd");
    assert_eq!(node_of(&s, "not-in-a").await, "hdd");
    assert_eq!(node_of(&s, "many-cores").await, "ssd");
    assert_eq!(node_of(&s, "by-name").await, "hdd");
    assert_eq!(node_of(&s, "prefers-hdd").await, "hdd");
    assert_unschedulable(&s, "nowhere", "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_keep_pods_away_unless_tolerated() {
    let s = cluster().await;
    node(&s, "gpu", NodeSpec { labels: json!({"kind": "gpu"}), taints: json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), ..Default::default() }).await;
    node(&s, "evicting", NodeSpec { taints: json!([{"key": "maintenance", "effect": "NoExecute"}]), ..Default::default() }).await;
    node(&s, "plain", NodeSpec::default()).await;
    for i in 0..3 {
        pod(&s, &format!("p{i}"), "100m", json!({}), json!({})).await;
    }
    for i in 0..3 {
        assert_eq!(node_of(&s, &format!("p{i}")).await, "plain");
    }
    let tolerations = json!({"nodeSelector": {"kind": "gpu"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]});
    pod(&s, "trainer", "100m", tolerations, json!({})).await;
    assert_eq!(node_of(&s, "trainer").await, "gpu");
    // Not Ready is the not-ready taint: only a pod tolerating it goes there.
    node(&s, "booting", NodeSpec { ready: false, labels: json!({"kind": "new"}), ..Default::default() }).await;
    pod(&s, "waits", "100m", json!({"nodeSelector": {"kind": "new"}}), json!({})).await;
    // Taints are checked before node selection, as upstream orders its filters.
    assert_unschedulable(&s, "waits", "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {maintenance: }, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling..").await;
    pod(&s, "daemon", "100m", json!({"nodeSelector": {"kind": "new"}, "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}), json!({})).await;
    assert_eq!(node_of(&s, "daemon").await, "booting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_conflict() {
    let s = cluster().await;
    node(&s, "n1", NodeSpec::default()).await;
    node(&s, "n2", NodeSpec::default()).await;
    let port = json!({"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    for i in 0..3 {
        pod(&s, &format!("web{i}"), "100m", port.clone(), json!({})).await;
    }
    let names: Vec<String> = (0..3).map(|i| format!("web{i}")).collect();
    let (bound, pending) = bound_and_rest(&s, &names, 2).await;
    assert_eq!(bound, vec!["n1", "n2"], "one 8080 per node");
    assert_eq!(pending.len(), 1);
    assert_unschedulable(&s, &pending[0], "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod..").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_is_skipped() {
    let s = cluster().await;
    node(&s, "cordoned", NodeSpec { unschedulable: true, ..Default::default() }).await;
    node(&s, "open", NodeSpec::default()).await;
    for i in 0..4 {
        pod(&s, &format!("p{i}"), "100m", json!({}), json!({})).await;
    }
    for i in 0..4 {
        assert_eq!(node_of(&s, &format!("p{i}")).await, "open");
    }
    pod(&s, "pinned", "100m", json!({"nodeSelector": {"kubernetes.io/hostname": "cordoned"}}), json!({})).await;
    assert_unschedulable(&s, "pinned", "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_on_hostname_puts_replicas_apart() {
    let s = cluster().await;
    for n in ["n1", "n2", "n3"] {
        node(&s, n, NodeSpec::default()).await;
    }
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    for i in 0..4 {
        pod(&s, &format!("db{i}"), "10m", anti.clone(), json!({"app": "db"})).await;
    }
    let names: Vec<String> = (0..4).map(|i| format!("db{i}")).collect();
    let (nodes, pending) = bound_and_rest(&s, &names, 3).await;
    assert_eq!(nodes, vec!["n1", "n2", "n3"], "one replica per host");
    assert_unschedulable(&s, &pending[0], "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..").await;
    // Pod affinity: a cache pod goes where a db pod is.
    let with_db = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    pod(&s, "cache", "10m", with_db, json!({"app": "cache"})).await;
    assert!(nodes.contains(&node_of(&s, "cache").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_on_hostname() {
    let s = cluster().await;
    node(&s, "n1", NodeSpec::default()).await;
    node(&s, "n2", NodeSpec::default()).await;
    // n1 already holds two of the app's pods, placed by hand.
    for i in 0..2 {
        pod(&s, &format!("old{i}"), "10m", json!({"nodeName": "n1"}), json!({"app": "spread"})).await;
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..2 {
        pod(&s, &format!("new{i}"), "10m", spread.clone(), json!({"app": "spread"})).await;
        assert_eq!(node_of(&s, &format!("new{i}")).await, "n2", "n1 would be skewed by more than 1");
    }
}

const NODES: &str = "apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels:
    kubernetes.io/hostname: worker-1
status:
  capacity: {cpu: \"2\", memory: 4Gi, pods: \"110\"}
  allocatable: {cpu: \"2\", memory: 4Gi, pods: \"110\"}
  conditions:
  - {type: Ready, status: \"True\", reason: KubeletReady, message: ready}
";

const PODS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web-1
spec:
  containers:
  - {name: web, image: nginx, resources: {requests: {cpu: 500m}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-2
spec:
  containers:
  - {name: web, image: nginx, resources: {requests: {cpu: 500m}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: huge
spec:
  containers:
  - {name: web, image: nginx, resources: {requests: {cpu: \"16\"}}}
";

#[test]
fn kubectl_shows_where_pods_went_and_why_one_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    k.apply(NODES);
    // Status is the kubelet's to write; kubectl apply does not send it for an existing
    // subresource, so make sure the node is Ready with its allocatable.
    let node = k.ok(&["get", "node", "worker-1", "-o", "json"]);
    let node: Value = serde_json::from_str(&node).unwrap();
    if node["status"]["allocatable"]["cpu"] != "2" {
        let status = r#"{"status":{"capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#;
        k.ok(&["patch", "node", "worker-1", "--subresource=status", "--type=merge", "-p", status]);
    }
    k.apply(PODS);
    let deadline = Instant::now() + Duration::from_secs(25);
    let out = loop {
        let out = k.ok(&["get", "pods", "-o", "wide"]);
        let placed = out.lines().filter(|l| l.starts_with("web-") && l.contains("worker-1")).count();
        if placed == 2 {
            break out;
        }
        assert!(Instant::now() < deadline, "pods not placed: {out}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let huge = out.lines().find(|l| l.starts_with("huge")).unwrap();
    assert!(huge.contains("Pending") && huge.contains("<none>"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let d = k.ok(&["describe", "pod", "huge"]);
        if d.contains("FailedScheduling") {
            assert!(d.contains("default-scheduler"), "{d}");
            assert!(d.contains("0/1 nodes are available: 1 Insufficient cpu."), "{d}");
            break;
        }
        assert!(Instant::now() < deadline, "no FailedScheduling event: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let d = k.ok(&["describe", "pod", "web-1"]);
    assert!(d.contains("Successfully assigned default/web-1 to worker-1"), "{d}");
}

/// scheduler_perf's SchedulingBasic, in process on the SQLite store: fake nodes (4 cpu,
/// 32Gi, 110 pods) and pods asking 100m/500Mi, all created before the scheduler starts;
/// the rate is pods bound per second from the first binding to the last, as seen by a
/// watch. Run by `bench/scheduler.sh` (release build); sizes from SCHED_BENCH_NODES and
/// SCHED_BENCH_PODS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: bench/scheduler.sh runs it"]
async fn scheduling_basic_throughput() {
    // The root test run includes ignored tests; a benchmark runs only when asked for.
    if std::env::var_os("SCHED_BENCH").is_none() {
        eprintln!("scheduling_basic_throughput: SKIPPED (a benchmark: bench/scheduler.sh runs it with SCHED_BENCH=1)");
        return;
    }
    use futures_util::StreamExt;
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (nodes, pods) = (env("SCHED_BENCH_NODES", 5000), env("SCHED_BENCH_PODS", 10000));
    let s = TestServer::new().await;
    let started = Instant::now();
    futures_util::stream::iter(0..nodes)
        .map(|i| {
            let s = &s;
            async move {
                let name = format!("node-{i:05}");
                let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
                let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                    "status": {"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True"}]}});
                let (code, created) = s.post("/api/v1/nodes", body).await;
                assert!(code.is_success(), "{created}");
                if created["status"]["allocatable"].is_null() {
                    let mut n = created;
                    n["status"] = json!({"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True"}]});
                    let (code, body) = s.put(&format!("/api/v1/nodes/{name}/status"), n).await;
                    assert!(code.is_success(), "{body}");
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    futures_util::stream::iter(0..pods)
        .map(|i| {
            let s = &s;
            async move {
                let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i:05}")},
                    "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}});
                let (code, created) = s.post("/api/v1/namespaces/default/pods", body).await;
                assert!(code.is_success(), "{created}");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let (_, list) = s.get("/api/v1/pods?limit=1").await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    eprintln!("created {nodes} nodes and {pods} pods in {:.1} s", started.elapsed().as_secs_f64());

    let mut watch = s.watch(&format!("/api/v1/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=false")).await;
    tokio::spawn(apiserver_lite::scheduler::run(in_process_client(s.app.clone(), SCHEDULER_USER)));
    let mut bound = std::collections::HashSet::new();
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while bound.len() < pods {
        let e = tokio::time::timeout_at(deadline.into(), watch.recv()).await.expect("all pods bound within 10 minutes").expect("the watch is open");
        let name = e["object"]["spec"]["nodeName"].as_str().and(e["object"]["metadata"]["name"].as_str());
        if name.is_some_and(|n| bound.insert(n.to_string())) && first.is_none() {
            first = Some(Instant::now());
        }
    }
    let elapsed = first.unwrap().elapsed().as_secs_f64();
    println!("SchedulingBasic: {pods} pods on {nodes} nodes bound in {elapsed:.2} s: {:.0} pods/s", (pods - 1) as f64 / elapsed);
    // Scheduled events queue behind the bindings: say when the last one is written too.
    loop {
        let (_, events) = s.get("/api/v1/namespaces/default/events?fieldSelector=reason%3DScheduled").await;
        let written = events["items"].as_array().map(Vec::len).unwrap_or(0);
        if written >= pods {
            break;
        }
        assert!(Instant::now() < deadline, "only {written} Scheduled events written");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let with_events = first.unwrap().elapsed().as_secs_f64();
    println!("SchedulingBasic: all {pods} Scheduled events written {with_events:.2} s after the first binding: {:.0} pods/s with events", pods as f64 / with_events);
    let (_, n) = s.get("/api/v1/nodes/node-00000").await;
    assert!(n["metadata"]["name"].is_string());
}
