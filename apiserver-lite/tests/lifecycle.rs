//! The lifecycle controllers (endpoints, namespace, garbage collector, node lifecycle) on an
//! in-process server, the test acting as the kubelet (it writes pod status, node status and
//! the node's lease); and the real kubectl against the binary, which runs them all.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use apiserver_lite::controllers::{self, CONTROLLER_MANAGER_USER, in_process_client};
use axum::http::StatusCode;
use common::{Kubectl, ServerProcess, TestServer};
use serde_json::{Value, json};

/// Poll `f` until it gives Ok, for at most `secs` seconds; its last Err says what it saw.
async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > Duration::from_secs(secs) => panic!("{what}: not within {secs} s; last seen: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn client(s: &TestServer) -> kube::Client {
    in_process_client(s.app.clone(), CONTROLLER_MANAGER_USER)
}

async fn create(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, v) = s.post(path, body).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {v}");
    v
}

/// What a kubelet writes once the pod runs: phase, IP, container status, Ready.
async fn set_pod_status(s: &TestServer, ns: &str, name: &str, ip: &str, ready: bool) {
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
    let (_, mut pod) = s.get(&path).await;
    let r = if ready { "True" } else { "False" };
    pod["status"] = json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.10",
        "conditions": [{"type": "Ready", "status": r}, {"type": "ContainersReady", "status": r}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "app", "image": "busybox:1.36", "imageID": "", "ready": ready, "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
    });
    let (status, v) = s.put(&format!("{path}/status"), pod).await;
    assert_eq!(status, StatusCode::OK, "pod status: {v}");
}

fn web_pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox:1.36", "ports": [{"name": "http", "containerPort": 8080}]}]},
    })
}

fn ips(addresses: &Value) -> Vec<String> {
    addresses.as_array().map(|a| a.iter().map(|a| a["ip"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_slices_follow_pod_readiness() {
    let s = TestServer::new().await;
    tokio::spawn(controllers::endpoints::run(client(&s)));
    let (_, kubernetes_before) = s.get("/api/v1/namespaces/default/endpoints/kubernetes").await;
    create(&s, "/api/v1/namespaces/default/services", json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})).await;
    // A service without a selector: its endpoints are the user's.
    create(&s, "/api/v1/namespaces/default/services", json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}})).await;
    let manual = create(&s, "/api/v1/namespaces/default/endpoints", json!({"metadata": {"name": "manual"}, "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"port": 80}]}]})).await;
    for name in ["a", "b"] {
        create(&s, "/api/v1/namespaces/default/pods", web_pod(name)).await;
    }
    set_pod_status(&s, "default", "a", "10.1.0.1", true).await;
    set_pod_status(&s, "default", "b", "10.1.0.2", false).await;

    let endpoints = eventually("endpoints with a ready and a not-ready address", 10, || async {
        let (_, e) = s.get("/api/v1/namespaces/default/endpoints/web").await;
        let subset = &e["subsets"][0];
        if ips(&subset["addresses"]) == ["10.1.0.1"] && ips(&subset["notReadyAddresses"]) == ["10.1.0.2"] { Ok(e) } else { Err(e.to_string()) }
    })
    .await;
    let subset = &endpoints["subsets"][0];
    assert_eq!(subset["ports"], json!([{"name": "web", "port": 8080, "protocol": "TCP"}]), "the named targetPort resolves to the container port");
    assert_eq!(subset["addresses"][0]["nodeName"], "n1");
    assert_eq!(subset["addresses"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(subset["addresses"][0]["targetRef"]["name"], "a");

    let slice = eventually("an endpointslice with both pods", 10, || async {
        let (_, l) = s.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb").await;
        let items = l["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 1 && items[0]["endpoints"].as_array().is_some_and(|e| e.len() == 2) { Ok(items[0].clone()) } else { Err(l.to_string()) }
    })
    .await;
    let name = slice["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 5, "{name}");
    assert_eq!(slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["ports"], json!([{"name": "web", "port": 8080, "protocol": "TCP"}]));
    let conditions: Vec<(String, Value)> = slice["endpoints"].as_array().unwrap().iter().map(|e| (e["addresses"][0].as_str().unwrap().to_string(), e["conditions"].clone())).collect();
    assert_eq!(
        conditions,
        vec![
            ("10.1.0.1".to_string(), json!({"ready": true, "serving": true, "terminating": false})),
            ("10.1.0.2".to_string(), json!({"ready": false, "serving": false, "terminating": false})),
        ]
    );

    // b becomes ready, a not: they swap.
    set_pod_status(&s, "default", "b", "10.1.0.2", true).await;
    set_pod_status(&s, "default", "a", "10.1.0.1", false).await;
    eventually("the addresses swap", 10, || async {
        let (_, e) = s.get("/api/v1/namespaces/default/endpoints/web").await;
        let subset = &e["subsets"][0];
        if ips(&subset["addresses"]) == ["10.1.0.2"] && ips(&subset["notReadyAddresses"]) == ["10.1.0.1"] { Ok(e) } else { Err(e.to_string()) }
    })
    .await;
    // A deleted pod leaves.
    s.delete("/api/v1/namespaces/default/pods/a?gracePeriodSeconds=0").await;
    eventually("the deleted pod leaves the endpoints and the slice", 10, || async {
        let (_, e) = s.get("/api/v1/namespaces/default/endpoints/web").await;
        let (_, l) = s.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb").await;
        let gone = e["subsets"][0]["notReadyAddresses"].is_null() && l["items"][0]["endpoints"].as_array().is_some_and(|e| e.len() == 1);
        if gone { Ok(e) } else { Err(format!("{e} {l}")) }
    })
    .await;

    // b, on a node, is deleted gracefully: terminating, it leaves the endpoints and stays in
    // the slice as serving but not ready.
    let (status, _) = s.delete("/api/v1/namespaces/default/pods/b").await;
    assert_eq!(status, StatusCode::OK);
    let (_, b) = s.get("/api/v1/namespaces/default/pods/b").await;
    assert!(b["metadata"]["deletionTimestamp"].is_string(), "{b}");
    eventually("the terminating pod is serving and terminating in the slice, gone from endpoints", 10, || async {
        let (_, e) = s.get("/api/v1/namespaces/default/endpoints/web").await;
        let (_, l) = s.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb").await;
        let terminating = l["items"][0]["endpoints"][0]["conditions"] == json!({"ready": false, "serving": true, "terminating": true});
        if terminating && e["subsets"].is_null() { Ok(e) } else { Err(format!("{e} {l}")) }
    })
    .await;

    let (_, manual_after) = s.get("/api/v1/namespaces/default/endpoints/manual").await;
    assert_eq!(manual_after["subsets"], manual["subsets"], "a selector-less service's endpoints are left alone");
    assert_eq!(manual_after["metadata"]["resourceVersion"], manual["metadata"]["resourceVersion"]);
    let (_, kubernetes_after) = s.get("/api/v1/namespaces/default/endpoints/kubernetes").await;
    assert_eq!(kubernetes_after["metadata"]["resourceVersion"], kubernetes_before["metadata"]["resourceVersion"], "the API server's own endpoints are not touched");
    let (_, l) = s.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dmanual").await;
    assert_eq!(l["items"], json!([]), "no slice for a selector-less service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_removes_its_content_then_the_namespace() {
    let s = TestServer::new().await;
    tokio::spawn(controllers::namespace::run(client(&s)));
    create(&s, "/api/v1/namespaces", json!({"metadata": {"name": "team"}})).await;
    create(&s, "/api/v1/namespaces/team/configmaps", json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).await;
    create(&s, "/api/v1/namespaces/team/secrets", json!({"metadata": {"name": "s"}, "stringData": {"a": "1"}})).await;
    create(&s, "/api/v1/namespaces/team/pods", common::pod("p", json!({"app": "x"}))).await;
    create(&s, "/apis/apps/v1/namespaces/team/deployments", json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})).await;
    let (status, ns) = s.delete("/api/v1/namespaces/team").await;
    assert_eq!(status, StatusCode::OK, "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating");
    eventually("the namespace goes", 15, || async {
        let (status, ns) = s.get("/api/v1/namespaces/team").await;
        if status == StatusCode::NOT_FOUND { Ok(ns) } else { Err(ns.to_string()) }
    })
    .await;
    for path in ["/api/v1/namespaces/team/configmaps", "/api/v1/namespaces/team/secrets", "/api/v1/namespaces/team/pods", "/apis/apps/v1/namespaces/team/deployments"] {
        let (_, l) = s.get(path).await;
        assert_eq!(l["items"], json!([]), "{path}");
    }
    let (_, default) = s.get("/api/v1/namespaces/default").await;
    assert_eq!(default["status"]["phase"], "Active", "other namespaces are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_waits_for_content_with_finalizers() {
    let s = TestServer::new().await;
    tokio::spawn(controllers::namespace::run(client(&s)));
    create(&s, "/api/v1/namespaces", json!({"metadata": {"name": "held"}})).await;
    create(&s, "/api/v1/namespaces/held/configmaps", json!({"metadata": {"name": "c", "finalizers": ["example.com/hold"]}})).await;
    s.delete("/api/v1/namespaces/held").await;
    eventually("the content is being deleted", 10, || async {
        let (_, cm) = s.get("/api/v1/namespaces/held/configmaps/c").await;
        if cm["metadata"]["deletionTimestamp"].is_string() { Ok(cm) } else { Err(cm.to_string()) }
    })
    .await;
    // Several passes of the controller (it requeues every second) later, the namespace is still there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, ns) = s.get("/api/v1/namespaces/held").await;
    assert_eq!(status, StatusCode::OK, "not finalized while content remains: {ns}");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    let (_, mut cm) = s.get("/api/v1/namespaces/held/configmaps/c").await;
    cm["metadata"]["finalizers"] = json!([]);
    s.put("/api/v1/namespaces/held/configmaps/c", cm).await;
    eventually("the namespace goes once its content is gone", 10, || async {
        let (status, ns) = s.get("/api/v1/namespaces/held").await;
        if status == StatusCode::NOT_FOUND { Ok(ns) } else { Err(ns.to_string()) }
    })
    .await;
}

/// An owner (a ConfigMap stands in for a ReplicaSet) and pods it owns.
async fn owner_with_pods(s: &TestServer, owner: &str, pods: &[&str], pod_finalizers: Value) -> String {
    let o = create(s, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": owner}})).await;
    let uid = o["metadata"]["uid"].as_str().unwrap().to_string();
    for p in pods {
        let mut pod = common::pod(p, json!({"owner": owner}));
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
        pod["metadata"]["finalizers"] = pod_finalizers.clone();
        create(s, "/api/v1/namespaces/default/pods", pod).await;
    }
    uid
}

async fn gone(s: &TestServer, path: &str) -> Result<Value, String> {
    let (status, v) = s.get(path).await;
    if status == StatusCode::NOT_FOUND { Ok(v) } else { Err(v.to_string()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_garbage_collector_follows_owner_references() {
    let s = TestServer::new().await;
    tokio::spawn(controllers::garbage_collector::run(client(&s)));

    // Background: the owner goes at once, its dependents after.
    owner_with_pods(&s, "bg", &["bg-1", "bg-2"], json!([])).await;
    let (status, _) = s.delete("/api/v1/namespaces/default/configmaps/bg").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/namespaces/default/configmaps/bg").await.0, StatusCode::NOT_FOUND);
    for p in ["bg-1", "bg-2"] {
        let path = format!("/api/v1/namespaces/default/pods/{p}");
        eventually("a dependent of a deleted owner goes", 10, || gone(&s, &path)).await;
    }

    // Foreground: the owner stays (deletionTimestamp, foregroundDeletion) until its blocking
    // dependent is gone; a finalizer on the dependent holds both.
    owner_with_pods(&s, "fg", &["fg-1"], json!(["example.com/hold"])).await;
    let (status, o) = s.delete("/api/v1/namespaces/default/configmaps/fg?propagationPolicy=Foreground").await;
    assert_eq!(status, StatusCode::OK, "{o}");
    eventually("the dependent is being deleted", 10, || async {
        let (_, p) = s.get("/api/v1/namespaces/default/pods/fg-1").await;
        if p["metadata"]["deletionTimestamp"].is_string() { Ok(p) } else { Err(p.to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, owner) = s.get("/api/v1/namespaces/default/configmaps/fg").await;
    assert_eq!(status, StatusCode::OK, "the owner waits for its dependent");
    assert_eq!(owner["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let (_, mut pod) = s.get("/api/v1/namespaces/default/pods/fg-1").await;
    pod["metadata"]["finalizers"] = json!([]);
    let (status, v) = s.put("/api/v1/namespaces/default/pods/fg-1", pod).await;
    assert!(status.is_success(), "{v}");
    eventually("the dependent goes", 10, || gone(&s, "/api/v1/namespaces/default/pods/fg-1")).await;
    eventually("then the owner", 10, || gone(&s, "/api/v1/namespaces/default/configmaps/fg")).await;

    // Orphan: the owner goes, its dependents stay without the reference.
    owner_with_pods(&s, "or", &["or-1"], json!([])).await;
    s.delete("/api/v1/namespaces/default/configmaps/or?propagationPolicy=Orphan").await;
    // The references go before the finalizer, so once the owner is gone the orphan is free.
    eventually("the orphaning owner goes", 10, || gone(&s, "/api/v1/namespaces/default/configmaps/or")).await;
    let (status, pod) = s.get("/api/v1/namespaces/default/pods/or-1").await;
    assert_eq!(status, StatusCode::OK, "an orphan stays: {pod}");
    assert!(pod["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()), "{pod}");

    // A dependent with one owner left keeps it and loses the dangling reference.
    let keep = create(&s, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "keep"}})).await;
    let mut pod = common::pod("two-owners", json!({}));
    pod["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": keep["metadata"]["uid"]},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "never-was", "uid": "00000000-0000-0000-0000-000000000000"},
    ]);
    create(&s, "/api/v1/namespaces/default/pods", pod).await;
    let pod = eventually("the dangling reference is removed", 10, || async {
        let (_, p) = s.get("/api/v1/namespaces/default/pods/two-owners").await;
        if p["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.len() == 1) { Ok(p) } else { Err(p.to_string()) }
    })
    .await;
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "keep");
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn renew_lease(s: &TestServer, node: &str) {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
    let (status, mut lease) = s.get(&path).await;
    if status == StatusCode::NOT_FOUND {
        create(s, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", json!({"metadata": {"name": node}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now_micro()}})).await;
        return;
    }
    lease["spec"]["renewTime"] = json!(now_micro());
    let (status, v) = s.put(&path, lease).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

fn now_micro() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{}.{:06}Z", t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]")).unwrap(), t.microsecond())
}

async fn set_node_ready(s: &TestServer, node: &str) {
    let path = format!("/api/v1/nodes/{node}");
    let (_, mut n) = s.get(&path).await;
    n["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]);
    let (status, v) = s.put(&format!("{path}/status"), n).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

fn taints(node: &Value) -> Vec<(String, String)> {
    node["spec"]["taints"].as_array().map(|t| t.iter().map(|t| (t["key"].as_str().unwrap().to_string(), t["effect"].as_str().unwrap().to_string())).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_its_lease_is_tainted_and_its_pods_evicted() {
    use apiserver_lite::controllers::node_lifecycle::{NodeLifecycleConfig, run};
    let s = TestServer::new().await;
    create(&s, "/api/v1/nodes", json!({"metadata": {"name": "n1"}})).await;
    set_node_ready(&s, "n1").await;
    renew_lease(&s, "n1").await;
    let mut short = common::pod("short", json!({}));
    short["spec"]["nodeName"] = json!("n1");
    short["spec"]["terminationGracePeriodSeconds"] = json!(0);
    short["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]);
    create(&s, "/api/v1/namespaces/default/pods", short).await;
    let mut long = common::pod("long", json!({}));
    long["spec"]["nodeName"] = json!("n1");
    create(&s, "/api/v1/namespaces/default/pods", long).await;
    set_pod_status(&s, "default", "long", "10.1.0.7", true).await;
    let grace = Duration::from_secs(2);
    tokio::spawn(run(client(&s), NodeLifecycleConfig { grace, monitor_period: Duration::from_millis(200) }));

    // While the lease is renewed the node stays Ready and untainted.
    let start = Instant::now();
    while start.elapsed() < grace + Duration::from_secs(1) {
        renew_lease(&s, "n1").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, n) = s.get("/api/v1/nodes/n1").await;
    assert_eq!(n["status"]["conditions"][0]["status"], "True", "{n}");
    assert!(taints(&n).is_empty(), "{n}");

    // The kubelet goes silent.
    let node = eventually("the node becomes Unknown and unreachable", 10, || async {
        let (_, n) = s.get("/api/v1/nodes/n1").await;
        if taints(&n).len() == 2 { Ok(n) } else { Err(n.to_string()) }
    })
    .await;
    let ready = node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(taints(&node), [("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")].map(|(a, b)| (a.to_string(), b.to_string())));

    eventually("the pod tolerating 2 s is evicted", 10, || gone(&s, "/api/v1/namespaces/default/pods/short")).await;
    let (status, long) = s.get("/api/v1/namespaces/default/pods/long").await;
    assert_eq!(status, StatusCode::OK, "the pod with the default 300 s toleration stays");
    assert!(long["metadata"]["deletionTimestamp"].is_null(), "{long}");
    let ready = long["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["status"], "False", "pods on an unreachable node are not ready");
    let (_, events) = s.get("/api/v1/namespaces/default/events").await;
    let reasons: Vec<(String, String)> = events["items"].as_array().unwrap().iter().map(|e| (e["reason"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())).collect();
    assert!(reasons.contains(&("NodeNotReady".to_string(), "Node n1 status is now: NodeNotReady".to_string())), "{reasons:?}");
    assert!(reasons.iter().any(|(r, m)| r == "TaintManagerEviction" && m == "Marking for deletion Pod default/short"), "{reasons:?}");

    // The kubelet comes back: the taints go.
    set_node_ready(&s, "n1").await;
    renew_lease(&s, "n1").await;
    eventually("the taints are removed", 10, || async {
        let (_, n) = s.get("/api/v1/nodes/n1").await;
        if taints(&n).is_empty() { Ok(n) } else { Err(n.to_string()) }
    })
    .await;
}

/// Poll a kubectl command until its output satisfies `ok`.
fn kubectl_until(k: &Kubectl, args: &[&str], secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let o = k.run(args);
        if o.ok && ok(&o.stdout) {
            return o.stdout;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "kubectl {args:?}: not as expected within {secs} s: {} {}", o.stdout, o.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kubectl_sees_endpoints_and_deletes_a_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    k.apply(
        "apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
data:
  a: \"1\"
---
apiVersion: v1
kind: Pod
metadata:
  name: worker
  namespace: team
spec:
  containers:
  - name: app
    image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: http
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels:
    app: web
spec:
  nodeName: n1
  containers:
  - name: app
    image: nginx:1.27
    ports:
    - name: http
      containerPort: 8080
",
    );
    // As the kubelet would: the pod runs, with an IP, and is ready.
    let status = r#"{"status": {"phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}], "conditions": [{"type": "Ready", "status": "True"}]}}"#;
    k.ok(&["patch", "pod", "web-1", "--subresource=status", "--type=merge", "-p", status]);
    let out = kubectl_until(&k, &["get", "endpoints", "web"], 20, |o| o.contains("10.1.0.5:8080"));
    assert!(out.starts_with("NAME"), "{out}");

    let start = Instant::now();
    let out = k.ok(&["delete", "namespace", "team", "--wait", "--timeout=30s"]);
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let o = k.run(&["get", "namespace", "team"]);
    assert!(!o.ok && o.stderr.contains("NotFound"), "{} {}", o.stdout, o.stderr);
    let o = k.run(&["get", "configmaps,pods", "-n", "team", "-o", "name"]);
    assert!(o.stdout.trim().is_empty(), "the namespace's objects are gone: {}", o.stdout);
}
