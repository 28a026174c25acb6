//! The StatefulSet controller against the server's router (in process, the test acting as the
//! kubelet by writing pod status), and with the real kubectl against the real binary.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{event_messages_until, eventually, wait_for, Kubectl, ServerProcess, TestServer};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "default";

/// A server with the StatefulSet controller (and the garbage collector, which deletes claims
/// per the retention policy) on in-process clients, and a client for the test.
async fn cluster() -> (TestServer, Client) {
    let s = TestServer::new().await;
    let cm = apiserver_lite::controllers::in_process_client(s.app.clone(), apiserver_lite::controllers::CONTROLLER_MANAGER_USER);
    tokio::spawn(apiserver_lite::controllers::statefulset::run(cm.clone()));
    tokio::spawn(apiserver_lite::controllers::garbage_collector::run(cm));
    let client = apiserver_lite::controllers::in_process_client(s.app.clone(), "test-kubelet");
    (s, client)
}

fn statefulset(name: &str, replicas: i32, extra: Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
        }
    });
    for (k, val) in extra.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    p.metadata.deletion_timestamp.is_none() && phase != "Failed" && phase != "Succeeded"
}

fn is_ready(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

async fn pods_of(client: &Client, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut items = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
    items.sort_by_key(|p| p.name_any());
    items
}

async fn names(client: &Client, app: &str) -> Vec<String> {
    pods_of(client, app).await.into_iter().map(|p| p.name_any()).collect()
}

/// What a kubelet reports for a started pod: Running, Ready, its container running.
async fn mark_ready(client: &Client, pod: &Pod) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let containers: Vec<Value> = pod.spec.as_ref().unwrap().containers.iter().map(|c| json!({
        "name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
        "state": {"running": {"startedAt": now}},
    })).collect();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
    ], "containerStatuses": containers}});
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status)).await.expect("the kubelet writes pod status");
}

async fn mark_all_ready(client: &Client, app: &str) {
    for p in pods_of(client, app).await.iter().filter(|p| is_active(p) && !is_ready(p)) {
        mark_ready(client, p).await;
    }
}

async fn get_set(client: &Client, name: &str) -> StatefulSet {
    Api::<StatefulSet>::namespaced(client.clone(), NS).get(name).await.unwrap()
}

async fn revisions(client: &Client, app: &str) -> Vec<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let mut items = api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
    items.sort_by_key(|r| r.revision);
    items
}

/// Marks pods Ready as they appear until the set reports `replicas` ready and updated pods
/// at one revision, for its latest generation.
async fn rolled_out(client: &Client, name: &str, replicas: i32) -> StatefulSet {
    eventually("the set to roll out", 20, || async {
        mark_all_ready(client, name).await;
        let set = get_set(client, name).await;
        let s = set.status.clone().unwrap_or_default();
        let done = s.observed_generation == set.metadata.generation
            && s.replicas == replicas
            && s.ready_replicas == Some(replicas)
            && s.updated_replicas == Some(replicas)
            && s.current_revision.is_some()
            && s.current_revision == s.update_revision;
        if done { Ok(set) } else { Err(format!("{s:?}")) }
    })
    .await
}

/// The names of pods deleted, in order, as a watch reports them.
fn deletions(mut rx: tokio::sync::mpsc::Receiver<Value>) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if e["type"] == "DELETED" {
                out.lock().unwrap().push(e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string());
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_creates_pods_in_order_each_after_the_previous_is_ready() {
    let (_s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("web", 3, json!({}))).await.unwrap();
    for n in 0..3 {
        let want: Vec<String> = (0..=n).map(|i| format!("web-{i}")).collect();
        let pods = eventually(&format!("pod web-{n}"), 10, || async {
            let got = names(&client, "web").await;
            if got == want { Ok(pods_of(&client, "web").await) } else { Err(format!("{got:?}")) }
        })
        .await;
        // Nothing more comes while the newest pod is not Ready.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(names(&client, "web").await, want, "web-{} must wait for web-{n} to be Ready", n + 1);
        mark_ready(&client, pods.last().unwrap()).await;
    }
    let set = rolled_out(&client, "web", 3).await;
    let status = set.status.clone().unwrap();
    assert_eq!((status.available_replicas, status.current_replicas, status.observed_generation), (Some(3), Some(3), Some(1)));

    let revs = revisions(&client, "web").await;
    assert_eq!(revs.len(), 1);
    let rev = &revs[0];
    assert_eq!(status.current_revision.as_deref(), Some(rev.name_any().as_str()));
    assert_eq!(rev.name_any(), format!("web-{}", rev.labels()["controller.kubernetes.io/hash"]));
    assert_eq!(rev.revision, 1);
    assert_eq!(rev.data.as_ref().unwrap().0["spec"]["template"]["$patch"], "replace");
    assert_eq!(rev.owner_references()[0].uid, set.uid().unwrap());

    for (i, p) in pods_of(&client, "web").await.iter().enumerate() {
        let name = format!("web-{i}");
        assert_eq!(p.labels()["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(p.labels()["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(p.labels()["controller-revision-hash"], rev.name_any());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some(name.as_str()), Some("nginx")));
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("StatefulSet", set.uid().unwrap().as_str(), Some(true)));
    }
    event_messages_until(&client, "SuccessfulCreate", |m| m.contains(&"create Pod web-0 in StatefulSet web successful".to_string())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_pod_waits_for_min_ready_seconds() {
    let (_s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("slow", 2, json!({"minReadySeconds": 2}))).await.unwrap();
    let first = eventually("slow-0", 10, || async { pods_of(&client, "slow").await.pop().ok_or_else(|| "none".to_string()) }).await;
    mark_ready(&client, &first).await;
    let ready_at = Instant::now();
    let status = eventually("slow-0 ready", 5, || async {
        let s = get_set(&client, "slow").await.status.unwrap();
        if s.ready_replicas == Some(1) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(status.available_replicas, Some(0), "ready but not yet available");
    eventually("slow-1 after minReadySeconds", 10, || async {
        let got = names(&client, "slow").await;
        if got.len() == 2 { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    assert!(ready_at.elapsed() >= Duration::from_millis(1500), "slow-1 came too early: {:?}", ready_at.elapsed());
    eventually("slow-0 available", 10, || async {
        let s = get_set(&client, "slow").await.status.unwrap();
        if s.available_replicas == Some(1) { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_goes_from_the_highest_ordinal_and_lost_pods_come_back_by_name() {
    let (s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("web", 3, json!({}))).await.unwrap();
    rolled_out(&client, "web", 3).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // web-2 on a node: its deletion is graceful, so it stays terminating until "the kubelet"
    // (this test) removes it; web-1 must wait for that.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web-2"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, body) = s.post(&format!("/api/v1/namespaces/{NS}/pods/web-2/binding"), binding).await;
    assert!(code.is_success(), "{code} {body}");
    let deleted = deletions(s.watch(&format!("/api/v1/namespaces/{NS}/pods?watch=true")).await);
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    eventually("web-2 terminating", 10, || async {
        let p = pods.get("web-2").await.unwrap();
        if p.metadata.deletion_timestamp.is_some() { Ok(()) } else { Err("not yet".to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pods.get("web-1").await.unwrap().metadata.deletion_timestamp.is_none(), "web-1 waits for web-2 to be gone");
    pods.delete("web-2", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    eventually("one pod left", 10, || async {
        let got = names(&client, "web").await;
        if got == ["web-0"] { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    assert_eq!(*deleted.lock().unwrap(), ["web-2", "web-1"]);
    event_messages_until(&client, "SuccessfulDelete", |m| m.contains(&"delete Pod web-1 in StatefulSet web successful".to_string())).await;
    eventually("status of one", 10, || async {
        let s = get_set(&client, "web").await.status.unwrap();
        if s.replicas == 1 && s.ready_replicas == Some(1) { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;

    // A deleted pod comes back under its name.
    let old_uid = pods.get("web-0").await.unwrap().uid();
    pods.delete("web-0", &DeleteParams::default()).await.unwrap();
    let back = eventually("web-0 recreated", 10, || async {
        match pods.get_opt("web-0").await.unwrap() {
            Some(p) if p.uid() != old_uid => Ok(p),
            other => Err(format!("{:?}", other.map(|p| p.uid()))),
        }
    })
    .await;
    mark_ready(&client, &back).await;
    // A failed pod too.
    pods.patch_status("web-0", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}}))).await.unwrap();
    eventually("the failed web-0 replaced", 10, || async {
        match pods.get_opt("web-0").await.unwrap() {
            Some(p) if p.uid() != back.uid() && is_active(&p) => Ok(()),
            other => Err(format!("{:?}", other.map(|p| (p.uid(), p.status)))),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_every_pod_at_once() {
    let (_s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("par", 4, json!({"podManagementPolicy": "Parallel"}))).await.unwrap();
    eventually("four pods, none Ready", 10, || async {
        let got = names(&client, "par").await;
        if got == ["par-0", "par-1", "par-2", "par-3"] { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    assert!(pods_of(&client, "par").await.iter().all(|p| !is_ready(p)));
    // Scaling down deletes all the surplus without waiting either.
    api.patch("par", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    eventually("one pod", 10, || async {
        let got = names(&client, "par").await;
        if got == ["par-0"] { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
}

fn claim_template() -> Value {
    json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
}

async fn claim_names(client: &Client, app: &str) -> BTreeSet<String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items.into_iter().filter(|c| c.metadata.deletion_timestamp.is_none()).map(|c| c.name_any()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_claim_templates_give_each_pod_its_claim_kept_or_deleted_on_scale_down() {
    let (_s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let parallel = json!("Parallel");
    api.create(&PostParams::default(), &statefulset("keep", 2, json!({"podManagementPolicy": parallel, "volumeClaimTemplates": claim_template()}))).await.unwrap();
    let drop_policy = json!({"whenScaled": "Delete", "whenDeleted": "Retain"});
    api.create(&PostParams::default(), &statefulset("drop", 2, json!({"podManagementPolicy": parallel, "volumeClaimTemplates": claim_template(), "persistentVolumeClaimRetentionPolicy": drop_policy}))).await.unwrap();
    for app in ["keep", "drop"] {
        rolled_out(&client, app, 2).await;
        let want: BTreeSet<String> = [format!("www-{app}-0"), format!("www-{app}-1")].into();
        assert_eq!(claim_names(&client, app).await, want);
        for (i, p) in pods_of(&client, app).await.iter().enumerate() {
            let volume = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
            assert_eq!(volume.name, "www");
            assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, format!("www-{app}-{i}"));
        }
    }
    event_messages_until(&client, "SuccessfulCreate", |m| m.contains(&"create Claim www-keep-0 Pod keep-0 in StatefulSet keep success".to_string())).await;

    for app in ["keep", "drop"] {
        api.patch(app, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.unwrap();
    }
    eventually("the dropped claim collected", 15, || async {
        let (keep, drop) = (claim_names(&client, "keep").await, claim_names(&client, "drop").await);
        let pods = (names(&client, "keep").await, names(&client, "drop").await);
        if drop.len() == 1 && pods.0.len() == 1 && pods.1.len() == 1 { Ok(()) } else { Err(format!("{keep:?} {drop:?} {pods:?}")) }
    })
    .await;
    assert_eq!(claim_names(&client, "drop").await, BTreeSet::from(["www-drop-0".to_string()]));
    assert_eq!(claim_names(&client, "keep").await.len(), 2, "Retain keeps the claim of the pod scaled away");
    // Scaling up again reuses the retained claim.
    api.patch("keep", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    rolled_out(&client, "keep", 2).await;
    assert_eq!(claim_names(&client, "keep").await.len(), 2);

    // whenDeleted=Delete: the set controls its claims, so they go with it; Retain keeps them.
    let gone_policy = json!({"whenScaled": "Retain", "whenDeleted": "Delete"});
    api.create(&PostParams::default(), &statefulset("gone", 2, json!({"podManagementPolicy": parallel, "volumeClaimTemplates": claim_template(), "persistentVolumeClaimRetentionPolicy": gone_policy}))).await.unwrap();
    let gone = rolled_out(&client, "gone", 2).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let owner = claims.get("www-gone-0").await.unwrap().owner_references().to_vec();
    assert_eq!((owner.len(), owner[0].uid.clone(), owner[0].controller), (1, gone.uid().unwrap(), Some(true)));
    api.delete("gone", &DeleteParams::default()).await.unwrap();
    api.delete("keep", &DeleteParams::default()).await.unwrap();
    eventually("the set's claims collected", 15, || async {
        let left = claim_names(&client, "gone").await;
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    eventually("the pods collected", 15, || async {
        let left = names(&client, "keep").await;
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    })
    .await;
    assert_eq!(claim_names(&client, "keep").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_updates_a_pod_only_when_it_is_deleted() {
    let (_s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("web", 2, json!({"updateStrategy": {"type": "OnDelete"}}))).await.unwrap();
    let old_rev = rolled_out(&client, "web", 2).await.status.unwrap().current_revision.unwrap();
    set_image(&client, "web", "nginx:1.28").await;
    let status = eventually("the new update revision", 10, || async {
        let set = get_set(&client, "web").await;
        let s = set.status.clone().unwrap();
        if s.observed_generation == set.metadata.generation && s.update_revision.as_deref() != Some(old_rev.as_str()) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pods_of(&client, "web").await.iter().all(|p| image(p) == "nginx:1.27" && is_active(p)), "OnDelete replaces nothing by itself");
    assert_eq!(status.updated_replicas, Some(0));
    Api::<Pod>::namespaced(client.clone(), NS).delete("web-0", &DeleteParams::default()).await.unwrap();
    eventually("web-0 on the new template", 10, || async {
        mark_all_ready(&client, "web").await;
        let images: Vec<String> = pods_of(&client, "web").await.iter().filter(|p| is_active(p)).map(image).collect();
        let s = get_set(&client, "web").await.status.unwrap();
        if images == ["nginx:1.28", "nginx:1.27"] && s.updated_replicas == Some(1) && s.ready_replicas == Some(2) { Ok(()) } else { Err(format!("{images:?} {s:?}")) }
    })
    .await;
}

async fn set_image(client: &Client, name: &str, image: &str) {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_replaces_the_highest_ordinal_first_down_to_the_partition() {
    let (s, client) = cluster().await;
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &statefulset("web", 3, json!({}))).await.unwrap();
    let before = rolled_out(&client, "web", 3).await;
    let old_rev = before.status.unwrap().current_revision.unwrap();
    let deleted = deletions(s.watch(&format!("/api/v1/namespaces/{NS}/pods?watch=true")).await);

    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}}))).await.unwrap();
    set_image(&client, "web", "nginx:1.28").await;
    // web-2 goes first and comes back on the new template; web-1 waits until it is Ready.
    let web2 = eventually("web-2 on the new image", 10, || async {
        let p = pods_of(&client, "web").await.into_iter().find(|p| p.name_any() == "web-2" && is_active(p));
        match p {
            Some(p) if image(&p) == "nginx:1.28" => Ok(p),
            other => Err(format!("{:?}", other.map(|p| image(&p)))),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*deleted.lock().unwrap(), ["web-2"], "web-1 waits for the new web-2 to be Ready");
    let new_rev = web2.labels()["controller-revision-hash"].clone();
    assert_ne!(new_rev, old_rev);
    mark_ready(&client, &web2).await;
    let status = eventually("the partitioned update", 10, || async {
        mark_all_ready(&client, "web").await;
        let s = get_set(&client, "web").await.status.unwrap();
        if s.updated_replicas == Some(2) && s.ready_replicas == Some(3) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(*deleted.lock().unwrap(), ["web-2", "web-1"]);
    assert_eq!((status.current_revision.as_deref(), status.update_revision.as_deref()), (Some(old_rev.as_str()), Some(new_rev.as_str())));
    let images: Vec<String> = pods_of(&client, "web").await.iter().map(image).collect();
    assert_eq!(images, ["nginx:1.27", "nginx:1.28", "nginx:1.28"], "web-0 is below the partition");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deleted.lock().unwrap().len(), 2);

    // Partition 0: web-0 too, and the update revision becomes current.
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))).await.unwrap();
    let done = rolled_out(&client, "web", 3).await.status.unwrap();
    assert_eq!(done.current_revision.as_deref(), Some(new_rev.as_str()));
    assert_eq!(*deleted.lock().unwrap(), ["web-2", "web-1", "web-0"]);
    let revs: Vec<(String, i64)> = revisions(&client, "web").await.iter().map(|r| (r.name_any(), r.revision)).collect();
    assert_eq!(revs, [(old_rev.clone(), 1), (new_rev.clone(), 2)]);
    // revisionHistoryLimit 0 keeps only the revision in use.
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"revisionHistoryLimit": 0}}))).await.unwrap();
    eventually("history trimmed", 10, || async {
        let revs: Vec<String> = revisions(&client, "web").await.iter().map(|r| r.name_any()).collect();
        if revs == [new_rev.clone()] { Ok(()) } else { Err(format!("{revs:?}")) }
    })
    .await;
}

/// A kubelet stand-in: every pod that is not Ready becomes Ready.
fn test_kubelet(kubeconfig: &std::path::Path) -> common::KubeletStandIn {
    common::KubeletStandIn::start(kubeconfig, |client| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items.iter().filter(|p| is_active(p) && !is_ready(p)) {
                mark_ready(&client, p).await;
            }
        }
    })
}

const WEB_YAML: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
  ports:
  - port: 80
    name: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
"#;

fn revision_numbers(history: &str) -> Vec<String> {
    history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn kubectl_applies_scales_rolls_out_and_undoes_a_statefulset() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    let _kubelet = test_kubelet(&server.kubeconfig());
    let ready_is = |want: &str| {
        let want = want.to_string();
        let k = &k;
        move || {
            let out = k.run(&["get", "sts", "web", "--no-headers"]).stdout;
            if out.split_whitespace().nth(1) == Some(want.as_str()) { Ok(()) } else { Err(out) }
        }
    };

    let applied = k.apply(WEB_YAML);
    assert!(applied.contains("statefulset.apps/web created"), "{applied}");
    wait_for("2/2 ready", 30, ready_is("2/2"));
    let out = k.ok(&["get", "sts"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "AGE"], "{out}");
    assert_eq!(k.ok(&["get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].metadata.name}"]), "web-0 web-1");
    assert_eq!(k.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]), "www-web-0 www-web-1");

    assert!(k.ok(&["scale", "statefulset/web", "--replicas=3"]).contains("statefulset.apps/web scaled"));
    wait_for("3/3 ready", 30, ready_is("3/3"));

    k.ok(&["set", "image", "statefulset/web", "nginx=nginx:1.28"]);
    let status = k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(status.contains("partitioned roll out complete: 3 new pods have been updated..."), "{status}");
    let images = k.ok(&["get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    assert_eq!(images, "nginx:1.28 nginx:1.28 nginx:1.28");

    let history = k.ok(&["rollout", "history", "statefulset/web"]);
    assert_eq!(revision_numbers(&history), ["1", "2"], "{history}");
    let rev1 = k.ok(&["rollout", "history", "statefulset/web", "--revision=1"]);
    assert!(rev1.contains("nginx:1.27"), "{rev1}");

    let undo = k.ok(&["rollout", "undo", "statefulset/web"]);
    assert!(undo.contains("statefulset.apps/web rolled back"), "{undo}");
    let status = k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(status.contains("partitioned roll out complete: 3 new pods have been updated..."), "{status}");
    assert_eq!(k.ok(&["get", "sts", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "nginx:1.27");
    wait_for("pods back on nginx:1.27", 30, || {
        let images = k.ok(&["get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        if images == "nginx:1.27 nginx:1.27 nginx:1.27" { Ok(()) } else { Err(images) }
    });
    // The undone-to template is renumbered rather than duplicated.
    let history = k.ok(&["rollout", "history", "statefulset/web"]);
    assert_eq!(revision_numbers(&history), ["2", "3"], "{history}");
    let revs = k.ok(&["get", "controllerrevisions", "--no-headers"]);
    assert_eq!(revs.lines().count(), 2, "{revs}");
    assert_eq!(k.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision}"]), k.ok(&["get", "sts", "web", "-o", "jsonpath={.status.updateRevision}"]));
    assert!(revs.lines().all(|l| l.split_whitespace().nth(1) == Some("statefulset.apps/web")), "{revs}");

    assert!(k.ok(&["rollout", "restart", "statefulset/web"]).contains("statefulset.apps/web restarted"));
    let status = k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(status.contains("partitioned roll out complete: 3 new pods have been updated..."), "{status}");
    assert_eq!(revision_numbers(&k.ok(&["rollout", "history", "statefulset/web"])), ["2", "3", "4"]);
    let hashes = k.ok(&["get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].metadata.labels.controller-revision-hash}"]);
    let current = k.ok(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision}"]);
    assert_eq!(hashes, [current.as_str(); 3].join(" "), "every pod restarted onto the new revision");

    let describe = k.ok(&["describe", "sts", "web"]);
    assert!(describe.contains("SuccessfulCreate") && describe.contains("create Pod web-2 in StatefulSet web successful"), "{describe}");

    assert!(k.ok(&["delete", "sts", "web"]).contains("statefulset.apps \"web\" deleted"));
    wait_for("the pods gone", 30, || {
        let pods = k.ok(&["get", "pods", "-l", "app=nginx", "-o", "name"]);
        if pods.trim().is_empty() { Ok(()) } else { Err(pods) }
    });
    // Retain (the default): the claims stay.
    assert_eq!(k.ok(&["get", "pvc", "-o", "jsonpath={.items[*].metadata.name}"]), "www-web-0 www-web-1 www-web-2");
}
