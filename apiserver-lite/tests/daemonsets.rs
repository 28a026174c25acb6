//! The DaemonSet controller with the real scheduler against the server's router (in process,
//! three Node objects, the test acting as the kubelet by writing pod status and finishing
//! deleted pods), and with the real kubectl against the real binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use apiserver_lite::controllers::{in_process_client, CONTROLLER_MANAGER_USER, SCHEDULER_USER};
use common::{event_messages_until, eventually, wait_for, Kubectl, ServerProcess, TestServer};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "default";

/// A server with the scheduler and the DaemonSet controller running, a kubelet stand-in, and
/// a client for the test.
async fn cluster() -> (TestServer, Client) {
    let s = TestServer::new().await;
    tokio::spawn(apiserver_lite::scheduler::run(in_process_client(s.app.clone(), SCHEDULER_USER)));
    tokio::spawn(apiserver_lite::controllers::daemonset::run(in_process_client(s.app.clone(), CONTROLLER_MANAGER_USER)));
    let client = in_process_client(s.app.clone(), "test-kubelet");
    tokio::spawn(kubelet(client.clone()));
    (s, client)
}

/// What the kubelets of all nodes would do: a bound pod starts and becomes Ready (unless its
/// image is tagged `held`: the test marks those itself), a deleted one stops and goes.
async fn kubelet(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items.iter().filter(|p| node_of(p).is_some()) {
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = pods.delete(&p.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                } else if !is_ready(p) && phase(p) != "Failed" && !image(p).ends_with(":held") {
                    mark_ready(&client, p).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Node object as a kubelet would register it: labels, taints, allocatable, Ready.
async fn node(s: &TestServer, name: &str, labels: Value, taints: Value) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}});
    let (code, created) = s.post("/api/v1/nodes", body).await;
    assert!(code.is_success(), "create node {name}: {code} {created}");
    let mut n = created;
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    n["status"] = json!({"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}]});
    let (code, body) = s.put(&format!("/api/v1/nodes/{name}/status"), n).await;
    assert!(code.is_success(), "node {name} status: {code} {body}");
}

async fn three_nodes(s: &TestServer) {
    for n in ["n1", "n2", "n3"] {
        node(s, n, json!({}), json!([])).await;
    }
}

fn daemonset(name: &str, image: &str, pod_spec: Value, strategy: Value) -> DaemonSet {
    let mut spec = json!({"containers": [{"name": "agent", "image": image}]});
    for (k, v) in pod_spec.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "updateStrategy": strategy, "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }))
    .unwrap()
}

async fn create(client: &Client, ds: DaemonSet) {
    Api::<DaemonSet>::namespaced(client.clone(), NS).create(&PostParams::default(), &ds).await.unwrap();
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

async fn mark_ready(client: &Client, pod: &Pod) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
    ]}});
    let _ = pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status)).await;
}

/// The pods of `app` not being deleted.
async fn live_pods(client: &Client, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Node -> images of the live, bound, Ready pods of `app` on it.
async fn placement(client: &Client, app: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in live_pods(client, app).await {
        if let Some(n) = node_of(&p).filter(|_| is_ready(&p)) {
            out.entry(n).or_default().push(image(&p));
        }
    }
    out
}

/// Wait until exactly `nodes` each run one Ready pod of `app` with `image` and nothing
/// else of it is left.
async fn placed_on(client: &Client, app: &str, nodes: &[&str], image: &str) {
    let want: BTreeMap<String, Vec<String>> = nodes.iter().map(|n| (n.to_string(), vec![image.to_string()])).collect();
    eventually(&format!("{app} on {nodes:?}"), 20, || async {
        let have = placement(client, app).await;
        let all = live_pods(client, app).await.len();
        if have == want && all == nodes.len() { Ok(()) } else { Err(format!("{have:?} ({all} live pods)")) }
    })
    .await;
}

async fn get_ds(client: &Client, name: &str) -> DaemonSet {
    Api::<DaemonSet>::namespaced(client.clone(), NS).get(name).await.unwrap()
}

/// (desired, current, ready, available, updated, misscheduled, unavailable)
fn counts(ds: &DaemonSet) -> (i32, i32, i32, i32, i32, i32, i32) {
    let s = ds.status.clone().unwrap_or_default();
    (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.number_available.unwrap_or(0), s.updated_number_scheduled.unwrap_or(0), s.number_misscheduled, s.number_unavailable.unwrap_or(0))
}

async fn status_is(client: &Client, name: &str, want: (i32, i32, i32, i32, i32, i32, i32)) -> DaemonSet {
    eventually(&format!("{name} status {want:?}"), 20, || async {
        let ds = get_ds(client, name).await;
        let observed = ds.status.as_ref().and_then(|s| s.observed_generation) == ds.metadata.generation;
        if counts(&ds) == want && observed { Ok(ds) } else { Err(format!("{:?} {:?}", ds.status, ds.metadata.generation)) }
    })
    .await
}

async fn revisions(client: &Client, app: &str) -> Vec<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let mut revs = api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
    revs.sort_by_key(|r| r.revision);
    revs
}

async fn set_image(client: &Client, name: &str, image: &str) {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

async fn patch_node(client: &Client, name: &str, patch: Value) {
    Api::<Node>::all(client.clone()).patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_node_pinned_by_affinity_and_bound_by_the_scheduler() {
    let (s, client) = cluster().await;
    three_nodes(&s).await;
    create(&client, daemonset("agent", "agent:1", json!({}), json!({"type": "RollingUpdate"}))).await;
    placed_on(&client, "agent", &["n1", "n2", "n3"], "agent:1").await;
    let ds = status_is(&client, "agent", (3, 3, 3, 3, 3, 0, 0)).await;

    let revs = revisions(&client, "agent").await;
    assert_eq!(revs.len(), 1);
    let hash = revs[0].labels()["controller-revision-hash"].clone();
    assert_eq!((revs[0].name_any(), revs[0].revision), (format!("agent-{hash}"), 1));
    assert_eq!(revs[0].owner_references()[0].uid, ds.uid().unwrap());
    let data = &revs[0].data.as_ref().unwrap().0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "agent:1");

    for p in live_pods(&client, "agent").await {
        let node = node_of(&p).unwrap();
        let spec = p.spec.as_ref().unwrap();
        let terms = serde_json::to_value(&spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap().required_during_scheduling_ignored_during_execution).unwrap();
        assert_eq!(terms, json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}), "{}", p.name_any());
        assert_eq!(p.labels()["controller-revision-hash"], hash);
        assert_eq!(p.labels()["pod-template-generation"], "1");
        assert!(p.name_any().starts_with("agent-"));
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("DaemonSet", Some(true)));
        let tolerations: Vec<(String, String)> = spec.tolerations.iter().flatten().map(|t| (t.key.clone().unwrap_or_default(), t.effect.clone().unwrap_or_default())).collect();
        for want in [("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unschedulable", "NoSchedule"), ("node.kubernetes.io/disk-pressure", "NoSchedule")] {
            assert!(tolerations.contains(&(want.0.to_string(), want.1.to_string())), "{tolerations:?}");
        }
        assert!(!tolerations.iter().any(|t| t.0 == "node.kubernetes.io/network-unavailable"), "only for host networking");
        assert!(spec.tolerations.iter().flatten().all(|t| t.toleration_seconds.is_none()));
    }
    let created = event_messages_until(&client, "SuccessfulCreate", |m| m.len() >= 3).await;
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(created.iter().all(|m| m.starts_with("Created pod: agent-")), "{created:?}");

    // A failed pod is deleted and replaced on its node.
    let victim = live_pods(&client, "agent").await.into_iter().find(|p| node_of(p).as_deref() == Some("n2")).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.patch_status(&victim.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed", "conditions": []}}))).await.unwrap();
    eventually("a replacement on n2", 20, || async {
        let on_n2: Vec<String> = live_pods(&client, "agent").await.iter().filter(|p| node_of(p).as_deref() == Some("n2") && is_ready(p)).map(|p| p.name_any()).collect();
        if on_n2.len() == 1 && on_n2[0] != victim.name_any() { Ok(()) } else { Err(format!("{on_n2:?}")) }
    })
    .await;
    event_messages_until(&client, "FailedDaemonPod", |m| m.contains(&format!("Found failed daemon pod default/{} on node n2, will try to kill it", victim.name_any()))).await;
    event_messages_until(&client, "SuccessfulDelete", |m| m.contains(&format!("Deleted pod: {}", victim.name_any()))).await;

    // A second pod on a node (here one the test makes) is surplus.
    let mut extra = victim.clone();
    extra.metadata = kube::core::ObjectMeta { name: Some("agent-extra".into()), labels: victim.metadata.labels.clone(), owner_references: victim.metadata.owner_references.clone(), ..Default::default() };
    extra.status = None;
    pods.create(&PostParams::default(), &extra).await.unwrap();
    eventually("the surplus pod on n2 to go", 20, || async {
        let on_n2 = live_pods(&client, "agent").await.iter().filter(|p| node_of(p).as_deref() == Some("n2")).count();
        if on_n2 == 1 { Ok(()) } else { Err(format!("{on_n2} pods on n2")) }
    })
    .await;
    placed_on(&client, "agent", &["n1", "n2", "n3"], "agent:1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selectors_and_taints_limit_the_nodes() {
    let (s, client) = cluster().await;
    node(&s, "n1", json!({"disk": "ssd"}), json!([])).await;
    node(&s, "n2", json!({"disk": "ssd"}), json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])).await;
    node(&s, "n3", json!({}), json!([])).await;
    create(&client, daemonset("ssd", "agent:1", json!({"nodeSelector": {"disk": "ssd"}}), json!({"type": "RollingUpdate"}))).await;
    create(&client, daemonset("everywhere", "agent:1", json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}), json!({"type": "RollingUpdate"}))).await;
    create(&client, daemonset("plain", "agent:1", json!({}), json!({"type": "RollingUpdate"}))).await;
    placed_on(&client, "ssd", &["n1"], "agent:1").await;
    placed_on(&client, "everywhere", &["n1", "n2", "n3"], "agent:1").await;
    placed_on(&client, "plain", &["n1", "n3"], "agent:1").await;
    status_is(&client, "ssd", (1, 1, 1, 1, 1, 0, 0)).await;
    status_is(&client, "plain", (2, 2, 2, 2, 2, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_coming_changing_and_going_gain_and_lose_pods() {
    let (s, client) = cluster().await;
    node(&s, "n1", json!({"role": "agent"}), json!([])).await;
    node(&s, "n2", json!({"role": "agent"}), json!([])).await;
    node(&s, "n3", json!({}), json!([])).await;
    create(&client, daemonset("agent", "agent:1", json!({"nodeSelector": {"role": "agent"}}), json!({"type": "RollingUpdate"}))).await;
    placed_on(&client, "agent", &["n1", "n2"], "agent:1").await;

    // A node labelled later, and a new node, get a pod.
    patch_node(&client, "n3", json!({"metadata": {"labels": {"role": "agent"}}})).await;
    node(&s, "n4", json!({"role": "agent"}), json!([])).await;
    placed_on(&client, "agent", &["n1", "n2", "n3", "n4"], "agent:1").await;
    status_is(&client, "agent", (4, 4, 4, 4, 4, 0, 0)).await;

    // A node that loses the label loses the pod; a deleted node's pod goes too.
    patch_node(&client, "n1", json!({"metadata": {"labels": {"role": null}}})).await;
    let (code, body) = s.delete("/api/v1/nodes/n2").await;
    assert!(code.is_success(), "{body}");
    placed_on(&client, "agent", &["n3", "n4"], "agent:1").await;

    // A NoExecute taint the pod does not tolerate evicts it; NoSchedule keeps it.
    patch_node(&client, "n3", json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoSchedule"}]}})).await;
    patch_node(&client, "n4", json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}})).await;
    placed_on(&client, "agent", &["n3"], "agent:1").await;
    // n3 keeps its pod but no longer "should run" one: upstream counts it misscheduled.
    status_is(&client, "agent", (0, 0, 0, 0, 0, 1, 0)).await;
    let deleted = event_messages_until(&client, "SuccessfulDelete", |m| m.len() >= 3).await;
    assert_eq!(deleted.len(), 3, "{deleted:?}");
}

/// Wait for the nodes of `app` to run `image` as given (node -> ready images), checking
/// meanwhile that never more than `max_unavailable` of `nodes` lack a Ready pod.
async fn never_more_than_unavailable(client: &Client, app: &str, nodes: &[&str], max_unavailable: usize, until: impl Fn(&BTreeMap<String, Vec<String>>) -> bool) {
    eventually("the rollout step", 20, || async {
        let have = placement(client, app).await;
        let missing = nodes.iter().filter(|n| !have.contains_key(**n)).count();
        assert!(missing <= max_unavailable, "{missing} nodes without a ready pod: {have:?}");
        if until(&have) { Ok(()) } else { Err(format!("{have:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_pods_within_max_unavailable() {
    let (s, client) = cluster().await;
    three_nodes(&s).await;
    let nodes = ["n1", "n2", "n3"];
    let mut ds = daemonset("agent", "agent:1", json!({}), json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
    ds.spec.as_mut().unwrap().revision_history_limit = Some(1);
    create(&client, ds).await;
    placed_on(&client, "agent", &nodes, "agent:1").await;

    // The new pods do not become Ready on their own: one node at a time is replaced, and the
    // next only once the test marks the new pod Ready.
    set_image(&client, "agent", "agent2:held").await;
    for round in 1..=3 {
        let new_pod = eventually("one new pod", 20, || async {
            let new: Vec<Pod> = live_pods(&client, "agent").await.into_iter().filter(|p| image(p) == "agent2:held" && !is_ready(p)).collect();
            if new.len() == 1 && node_of(&new[0]).is_some() { Ok(new[0].clone()) } else { Err(format!("{} new not ready", new.len())) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let have = placement(&client, "agent").await;
        let old = have.values().flatten().filter(|i| *i == "agent:1").count();
        assert_eq!(old, 3 - round, "round {round}: {have:?}");
        let not_ready = live_pods(&client, "agent").await.iter().filter(|p| !is_ready(p)).count();
        assert_eq!(not_ready, 1, "round {round}: only one node is replaced at a time");
        mark_ready(&client, &new_pod).await;
    }
    placed_on(&client, "agent", &nodes, "agent2:held").await;
    let ds = status_is(&client, "agent", (3, 3, 3, 3, 3, 0, 0)).await;
    assert_eq!(ds.metadata.generation, Some(2));
    let revs = revisions(&client, "agent").await;
    assert_eq!(revs.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2]);
    for p in live_pods(&client, "agent").await {
        assert_eq!(p.labels()["controller-revision-hash"], revs[1].labels()["controller-revision-hash"]);
        assert_eq!(p.labels()["pod-template-generation"], "2");
    }

    // With maxSurge the new pod starts beside the old one, which stays until it is Ready.
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, "template": {"spec": {"containers": [{"name": "agent", "image": "agent:3"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
    never_more_than_unavailable(&client, "agent", &nodes, 0, |have| have.values().all(|images| images == &["agent:3".to_string()])).await;
    status_is(&client, "agent", (3, 3, 3, 3, 3, 0, 0)).await;
    // revisionHistoryLimit 1: of the old revisions only the newest is kept.
    eventually("revision 1 to go", 20, || async {
        let revs: Vec<i64> = revisions(&client, "agent").await.iter().map(|r| r.revision).collect();
        if revs == [2, 3] { Ok(()) } else { Err(format!("{revs:?}")) }
    })
    .await;

    // OnDelete: a new template waits until pods are deleted.
    let patch = json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}, "template": {"spec": {"containers": [{"name": "agent", "image": "agent:4"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap_or_else(|e| panic!("{e}"));
    let ds = status_is(&client, "agent", (3, 3, 3, 3, 0, 0, 3 - 3)).await;
    assert_eq!(ds.spec.as_ref().unwrap().update_strategy.as_ref().unwrap().type_.as_deref(), Some("OnDelete"));
    let on_n1 = live_pods(&client, "agent").await.into_iter().find(|p| node_of(p).as_deref() == Some("n1")).unwrap();
    Api::<Pod>::namespaced(client.clone(), NS).delete(&on_n1.name_any(), &DeleteParams::default()).await.unwrap();
    eventually("n1 on agent:4", 20, || async {
        let have = placement(&client, "agent").await;
        let images: BTreeSet<String> = have.values().flatten().cloned().collect();
        if have.get("n1") == Some(&vec!["agent:4".to_string()]) && images.contains("agent:3") { Ok(()) } else { Err(format!("{have:?}")) }
    })
    .await;
}

// --- the real kubectl against the real binary ---

/// A kubelet stand-in: marks bound pods Running and Ready, and finishes pods being deleted
/// (as a kubelet does once their containers are gone).
fn test_kubelet(kubeconfig: &std::path::Path) -> common::KubeletStandIn {
    common::KubeletStandIn::start(kubeconfig, |client| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items.iter().filter(|p| node_of(p).is_some()) {
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = pods.delete(&p.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                } else if !is_ready(p) {
                    mark_ready(&client, p).await;
                }
            }
        }
    })
}

const NODES: &str = "
apiVersion: v1
kind: Node
metadata: {name: worker-1, labels: {kubernetes.io/hostname: worker-1}}
---
apiVersion: v1
kind: Node
metadata: {name: worker-2, labels: {kubernetes.io/hostname: worker-2}}
---
apiVersion: v1
kind: Node
metadata: {name: worker-3, labels: {kubernetes.io/hostname: worker-3}}
";

const DAEMONSET: &str = "
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: logs}
spec:
  selector: {matchLabels: {app: logs}}
  template:
    metadata: {labels: {app: logs}}
    spec:
      containers:
      - {name: fluentd, image: fluentd:v1}
";

#[test]
fn kubectl_applies_rolls_out_undoes_and_deletes_a_daemonset() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    k.apply(NODES);
    let status = r#"{"status":{"capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready"}]}}"#;
    for n in ["worker-1", "worker-2", "worker-3"] {
        k.ok(&["patch", "node", n, "--subresource=status", "--type=merge", "-p", status]);
    }
    let _kubelet = test_kubelet(&server.kubeconfig());

    assert!(k.apply(DAEMONSET).contains("daemonset.apps/logs created"));
    wait_for("3 ready", 30, || {
        let out = k.ok(&["get", "ds", "logs", "--no-headers"]);
        let cells: Vec<&str> = out.split_whitespace().collect();
        if cells.get(1..6) == Some(&["3", "3", "3", "3", "3"][..]) { Ok(()) } else { Err(out) }
    });
    let out = k.ok(&["get", "ds"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"], "{out}");
    let wide = k.ok(&["get", "pods", "-l", "app=logs", "-o", "wide", "--no-headers"]);
    let nodes: BTreeSet<&str> = wide.lines().filter_map(|l| l.split_whitespace().nth(6)).collect();
    assert_eq!(nodes, ["worker-1", "worker-2", "worker-3"].into(), "{wide}");

    k.ok(&["set", "image", "ds/logs", "fluentd=fluentd:v2"]);
    let status = k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(status.contains("daemon set \"logs\" successfully rolled out"), "{status}");
    wait_for("pods on v2", 20, || {
        let images = k.ok(&["get", "pods", "-l", "app=logs", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        if images.split_whitespace().count() == 3 && images.split_whitespace().all(|i| i == "fluentd:v2") { Ok(()) } else { Err(images) }
    });

    let history = k.ok(&["rollout", "history", "ds/logs"]);
    let revisions: Vec<&str> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let rev1 = k.ok(&["rollout", "history", "ds/logs", "--revision=1"]);
    assert!(rev1.contains("fluentd:v1"), "{rev1}");

    let undo = k.ok(&["rollout", "undo", "ds/logs"]);
    assert!(undo.contains("daemonset.apps/logs rolled back"), "{undo}");
    assert_eq!(k.ok(&["get", "ds", "logs", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "fluentd:v1");
    let status = k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    wait_for("pods back on v1", 20, || {
        let images = k.ok(&["get", "pods", "-l", "app=logs", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        if images.split_whitespace().count() == 3 && images.split_whitespace().all(|i| i == "fluentd:v1") { Ok(()) } else { Err(images) }
    });
    let history = k.ok(&["rollout", "history", "ds/logs"]);
    let revisions: Vec<&str> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "the undone-to template is the newest revision again: {history}");
    let again = k.ok(&["rollout", "undo", "ds/logs", "--to-revision=3"]);
    assert!(again.contains("skipped rollback (current template already matches revision 3)"), "{again}");

    let pods_before = k.ok(&["get", "pods", "-l", "app=logs", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert!(k.ok(&["rollout", "restart", "ds/logs"]).contains("daemonset.apps/logs restarted"));
    let status = k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    wait_for("three new pods", 20, || {
        let pods = k.ok(&["get", "pods", "-l", "app=logs", "-o", "jsonpath={.items[*].metadata.name}"]);
        let fresh = pods.split_whitespace().filter(|p| !pods_before.split_whitespace().any(|b| b == *p)).count();
        if fresh == 3 && pods.split_whitespace().count() == 3 { Ok(()) } else { Err(pods) }
    });

    assert!(k.ok(&["delete", "ds", "logs"]).contains("daemonset.apps \"logs\" deleted"));
    wait_for("the pods and revisions to go", 30, || {
        let pods = k.ok(&["get", "pods", "-l", "app=logs", "--no-headers"]);
        let revs = k.ok(&["get", "controllerrevisions", "-l", "app=logs", "--no-headers"]);
        if pods.trim().is_empty() && revs.trim().is_empty() { Ok(()) } else { Err(format!("{pods}{revs}")) }
    });
}
