//! End to end with the real kubectl against the real binary, the scheduler and controllers
//! in it, and a stand-in for two nodes' kubelets: a node whose kubelet goes silent becomes
//! NotReady, its pods are evicted and the Deployment is whole again on the other node; and
//! `kubectl delete deployment` cascades (background, foreground) or orphans as asked.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Kubectl, ServerProcess};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What a kubelet reports for a started pod: Running, Ready, its container running.
async fn mark_ready(client: &Client, pod: &Pod) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let containers: Vec<Value> = pod.spec.as_ref().unwrap().containers.iter().map(|c| json!({
        "name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
        "state": {"running": {"startedAt": now}},
    })).collect();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
    ], "containerStatuses": containers}});
    let _ = pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status)).await;
}

/// Register `name` as a kubelet does: the Node with room for pods, then Ready.
async fn register(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap();
    let mut node = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(_) => nodes.get(name).await.expect("the node"),
    };
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    node.status = Some(serde_json::from_value(json!({
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    })).unwrap());
    nodes.replace_status(name, &PostParams::default(), &node).await.expect("the node's status");
}

/// The node's heartbeat: its Lease in kube-node-lease, renewed (created the first time).
async fn renew_lease(client: &Client, node: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match leases.get_opt(node).await {
        Ok(Some(mut lease)) => {
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
            let _ = leases.replace(node, &PostParams::default(), &lease).await;
        }
        Ok(None) => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": node},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now},
            }))
            .unwrap();
            let _ = leases.create(&PostParams::default(), &lease).await;
        }
        Err(_) => {}
    }
}

/// Stand-ins for the kubelets of a few nodes, on a thread of their own: each registers its
/// Node (Ready, with allocatable), renews its Lease, marks the pods bound to it Ready and
/// removes those being deleted (as a kubelet does once their containers stopped), until
/// silenced. Stops when dropped.
struct FakeNodes {
    stop: Arc<AtomicBool>,
    silenced: Arc<Mutex<HashSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeNodes {
    fn start(kubeconfig: &std::path::Path, names: &[&str]) -> FakeNodes {
        let stop = Arc::new(AtomicBool::new(false));
        let silenced: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (kubeconfig, names): (std::path::PathBuf, Vec<String>) = (kubeconfig.to_path_buf(), names.iter().map(|n| n.to_string()).collect());
        let (flag, quiet) = (stop.clone(), silenced.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let client = apiserver_lite::controllers::kubeconfig_client(&kubeconfig).await.expect("a client from the admin kubeconfig");
                for n in &names {
                    register(&client, n).await;
                }
                while !flag.load(Ordering::Relaxed) {
                    let live: Vec<String> = names.iter().filter(|n| !quiet.lock().unwrap().contains(*n)).cloned().collect();
                    for n in &live {
                        renew_lease(&client, n).await;
                    }
                    let pods: Api<Pod> = Api::all(client.clone());
                    if let Ok(list) = pods.list(&ListParams::default()).await {
                        for p in list.items {
                            let on = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                            if !live.contains(&on) {
                                continue;
                            }
                            if p.metadata.deletion_timestamp.is_some() {
                                let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
                                let _ = api.delete(&p.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                            } else if !is_ready(&p) {
                                mark_ready(&client, &p).await;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
        });
        FakeNodes { stop, silenced, thread: Some(thread) }
    }

    /// The node's kubelet goes silent (as if the machine died).
    fn silence(&self, node: &str) {
        self.silenced.lock().unwrap().insert(node.to_string());
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Deployment whose pods leave an unreachable node after 2 s (instead of the default 300 s).
fn web(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      tolerations:
      - key: node.kubernetes.io/unreachable
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 2
      containers:
      - name: nginx
        image: nginx:1.27
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
"#
    )
}

/// (name, node, ready, terminating) of the Deployment's pods.
fn pods(k: &Kubectl) -> Vec<(String, String, bool, bool)> {
    let list: Value = serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            (p["metadata"]["name"].as_str().unwrap().to_string(), p["spec"]["nodeName"].as_str().unwrap_or("").to_string(), ready, !p["metadata"]["deletionTimestamp"].is_null())
        })
        .collect()
}

fn node_status(k: &Kubectl, node: &str) -> String {
    k.ok(&["get", "nodes", node, "--no-headers"]).split_whitespace().nth(1).unwrap_or("").to_string()
}

fn deployment_ready(k: &Kubectl) -> String {
    k.run(&["get", "deploy", "web", "--no-headers"]).stdout.split_whitespace().nth(1).unwrap_or("").to_string()
}

#[test]
fn a_node_that_stops_heartbeating_loses_its_pods_to_the_other_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--node-monitor-grace-period=3s", "--node-monitor-period=500ms"]);
    let k = Kubectl::new(&server.kubeconfig());
    let nodes = FakeNodes::start(&server.kubeconfig(), &["n1", "n2"]);
    wait_for("both nodes Ready", 20, || {
        let s = (node_status(&k, "n1"), node_status(&k, "n2"));
        if s == ("Ready".into(), "Ready".into()) { Ok(()) } else { Err(format!("{s:?}")) }
    });

    k.apply(&web(4));
    wait_for("4/4 ready", 30, || if deployment_ready(&k) == "4/4" { Ok(()) } else { Err(k.run(&["get", "pods", "-o", "wide"]).stdout) });
    let placed = pods(&k);
    let on = |node: &str| placed.iter().filter(|p| p.1 == node).count();
    assert!(on("n1") >= 1 && on("n2") >= 1, "spread on both nodes: {placed:?}");
    let on_n1: Vec<String> = placed.iter().filter(|p| p.1 == "n1").map(|p| p.0.clone()).collect();

    nodes.silence("n1");
    wait_for("n1 NotReady", 30, || if node_status(&k, "n1") == "NotReady" { Ok(()) } else { Err(k.ok(&["get", "nodes"])) });
    assert_eq!(node_status(&k, "n2"), "Ready");
    let taints = k.ok(&["get", "node", "n1", "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect}{\"\\n\"}{end}"]);
    assert!(taints.lines().any(|t| t == "node.kubernetes.io/unreachable:NoExecute"), "{taints}");

    // Evicted after their 2 s toleration; replaced on n2. The evicted pods stay Terminating
    // (their kubelet is gone and cannot confirm), as upstream, and do not count.
    wait_for("4 ready pods, all on n2", 40, || {
        let now = pods(&k);
        let active: Vec<_> = now.iter().filter(|p| !p.3).collect();
        if active.len() == 4 && active.iter().all(|p| p.1 == "n2" && p.2) && deployment_ready(&k) == "4/4" { Ok(()) } else { Err(format!("{now:?}")) }
    });
    let now = pods(&k);
    for name in &on_n1 {
        assert!(now.iter().all(|p| p.0 != *name || p.3), "{name} was evicted: {now:?}");
    }
    // Events are written after the changes they tell of.
    wait_for("the eviction and NotReady events", 10, || {
        let events = k.ok(&["get", "events", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
        let evicted = events.lines().any(|l| l == format!("TaintManagerEviction: Marking for deletion Pod default/{}", on_n1[0]));
        if evicted && events.lines().any(|l| l == "NodeNotReady: Node n1 status is now: NodeNotReady") { Ok(()) } else { Err(events) }
    });
}

fn nothing_left(k: &Kubectl) -> Result<(), String> {
    let o = k.run(&["get", "rs,pods", "-l", "app=web", "--no-headers"]);
    if o.ok && o.stdout.trim().is_empty() { Ok(()) } else { Err(format!("{}{}", o.stdout, o.stderr)) }
}

#[test]
fn kubectl_delete_deployment_cascades_in_the_background_or_foreground_and_orphans_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    let _nodes = FakeNodes::start(&server.kubeconfig(), &["n1", "n2"]);
    let deployed = || {
        k.apply(&web(2));
        wait_for("2/2 ready", 30, || if deployment_ready(&k) == "2/2" { Ok(()) } else { Err(k.run(&["get", "pods", "-o", "wide"]).stdout) });
        assert_eq!(k.ok(&["get", "rs", "-l", "app=web", "--no-headers"]).lines().count(), 1);
    };

    // Background (kubectl's default): the Deployment goes at once, the garbage collector
    // removes its ReplicaSet and their pods after.
    deployed();
    assert!(k.ok(&["delete", "deployment", "web"]).contains("deployment.apps \"web\" deleted"));
    wait_for("the ReplicaSet and pods gone", 30, || nothing_left(&k));

    // Foreground: the Deployment stays (with the foregroundDeletion finalizer) until its
    // dependents are gone; kubectl waits for it, so nothing is left when it returns.
    deployed();
    assert!(k.ok(&["delete", "deployment", "web", "--cascade=foreground", "--timeout=60s"]).contains("deleted"));
    nothing_left(&k).expect("foreground deletion returns after the dependents are gone");

    // Orphan: the ReplicaSet and its pods stay, no longer owned.
    deployed();
    let rs = k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    let before: HashSet<String> = pods(&k).into_iter().map(|p| p.0).collect();
    assert!(k.ok(&["delete", "deployment", "web", "--cascade=orphan"]).contains("deleted"));
    assert!(!k.run(&["get", "deployment", "web"]).ok);
    wait_for("the ReplicaSet released", 15, || {
        let owners = k.ok(&["get", rs.trim(), "-o", "jsonpath={.metadata.ownerReferences}"]);
        if owners.trim().is_empty() || owners.trim() == "[]" { Ok(()) } else { Err(owners) }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]), rs, "the ReplicaSet stays");
    let after: HashSet<String> = pods(&k).into_iter().filter(|p| !p.3 && p.2).map(|p| p.0).collect();
    assert_eq!(after, before, "its pods stay, running");
}
