//! The ReplicaSet and Deployment controllers against the server's router (in process, the
//! test acting as the kubelet by writing pod status), and with the real kubectl against the
//! real binary.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{event_messages_until, eventually, wait_for, Kubectl, ServerProcess, TestServer};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "default";

/// A server with the two controllers running on in-process clients, and a client for the test.
async fn cluster() -> (TestServer, Client) {
    let s = TestServer::new().await;
    let cm = apiserver_lite::controllers::in_process_client(s.app.clone(), apiserver_lite::controllers::CONTROLLER_MANAGER_USER);
    tokio::spawn(apiserver_lite::controllers::replicaset::run(cm.clone()));
    tokio::spawn(apiserver_lite::controllers::deployment::run(cm));
    let client = apiserver_lite::controllers::in_process_client(s.app.clone(), "test-kubelet");
    (s, client)
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}},
        }
    }))
    .unwrap()
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
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

async fn active_pods(client: &Client, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items.into_iter().filter(is_active).collect()
}

async fn replica_sets(client: &Client, app: &str) -> Vec<ReplicaSet> {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    rss.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items
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
    for p in active_pods(client, app).await.iter().filter(|p| !is_ready(p)) {
        mark_ready(client, p).await;
    }
}

async fn get_deployment(client: &Client, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), NS).get(name).await.unwrap()
}

fn status_of(d: &Deployment) -> (i32, i32, i32) {
    let s = d.status.clone().unwrap_or_default();
    (s.replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0))
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

/// Wait until the deployment has rolled out completely (every pod updated and available),
/// marking pods Ready as they appear.
async fn rolled_out(client: &Client, name: &str, replicas: i32) -> Deployment {
    eventually("the rollout to finish", 20, || async {
        mark_all_ready(client, name).await;
        let d = get_deployment(client, name).await;
        let complete = status_of(&d) == (replicas, replicas, replicas) && d.status.as_ref().unwrap().observed_generation == d.metadata.generation;
        let progressed = condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable");
        if complete && progressed && active_pods(client, name).await.len() == replicas as usize { Ok(d) } else { Err(format!("{:?} {:?}", d.status, d.metadata.generation)) }
    })
    .await
}

async fn set_image(client: &Client, name: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_of_two_makes_one_replicaset_and_two_pods_and_heals() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1.27", rolling(json!("25%"), json!("25%")))).await.unwrap();
    let d = rolled_out(&client, "web", 2).await;
    let rss = replica_sets(&client, "web").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash);
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(rs.annotations()["deployment.kubernetes.io/desired-replicas"], "2");
    assert_eq!(rs.annotations()["deployment.kubernetes.io/max-replicas"], "3");
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");
    let owner = &rs.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.controller, owner.block_owner_deletion), ("Deployment", Some(true), Some(true)));
    assert_eq!(condition(&d, "Available").unwrap(), ("True".into(), "MinimumReplicasAvailable".into(), "Deployment has minimum availability.".into()));
    assert_eq!(condition(&d, "Progressing").unwrap().2, format!("ReplicaSet \"{}\" has successfully progressed.", rs.name_any()));

    let pods = active_pods(&client, "web").await;
    for p in &pods {
        let suffix = p.name_any().strip_prefix(&format!("{}-", rs.name_any())).map(str::to_string).unwrap_or_default();
        assert_eq!(suffix.len(), 5, "{}", p.name_any());
        assert_eq!(p.labels()["pod-template-hash"], hash);
        assert_eq!(p.owner_references()[0].uid, rs.uid().unwrap());
    }
    event_messages_until(&client, "SuccessfulCreate", |m| m.contains(&format!("Created pod: {}", pods[0].name_any()))).await;
    event_messages_until(&client, "ScalingReplicaSet", |m| m.contains(&format!("Scaled up replica set {} from 0 to 2", rs.name_any()))).await;

    // Self-healing: a deleted pod is replaced.
    let victim = pods[0].name_any();
    Api::<Pod>::namespaced(client.clone(), NS).delete(&victim, &DeleteParams::default()).await.unwrap();
    let healed = eventually("a replacement pod", 10, || async {
        let pods = active_pods(&client, "web").await;
        let names: BTreeSet<String> = pods.iter().map(|p| p.name_any()).collect();
        if pods.len() == 2 && !names.contains(&victim) { Ok(names) } else { Err(format!("{names:?}")) }
    })
    .await;
    assert!(healed.contains(&pods[1].name_any()));
    // A Failed pod is replaced too.
    let failed = active_pods(&client, "web").await[0].clone();
    Api::<Pod>::namespaced(client.clone(), NS).patch_status(&failed.name_any(), &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}}))).await.unwrap();
    eventually("a replacement for the failed pod", 10, || async {
        let pods = active_pods(&client, "web").await;
        if pods.len() == 2 && pods.iter().all(|p| p.name_any() != failed.name_any()) { Ok(()) } else { Err(format!("{}", pods.len())) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_to_five_and_back_to_two() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1.27", rolling(json!(1), json!(0)))).await.unwrap();
    rolled_out(&client, "web", 2).await;
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.unwrap();
    rolled_out(&client, "web", 5).await;
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    rolled_out(&client, "web", 2).await;
    let rs = replica_sets(&client, "web").await;
    assert_eq!(rs.len(), 1, "scaling makes no new replica set");
    let name = rs[0].name_any();
    let want = [format!("Scaled up replica set {name} from 2 to 5"), format!("Scaled down replica set {name} from 5 to 2")];
    event_messages_until(&client, "ScalingReplicaSet", |m| want.iter().all(|w| m.contains(w))).await;
    let deleted = event_messages_until(&client, "SuccessfulDelete", |m| m.len() >= 3).await;
    assert_eq!(deleted.len(), 3, "{deleted:?}");
}

/// Acting as the kubelet one pod at a time, check the rollout's bounds at every step.
async fn roll_checking_bounds(client: &Client, name: &str, replicas: usize, surge: usize, unavailable: usize, new_image: &str) {
    let deadline = Instant::now() + Duration::from_secs(25);
    let (mut max_seen, mut min_ready_seen) = (0, usize::MAX);
    loop {
        let pods = active_pods(client, name).await;
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        max_seen = max_seen.max(pods.len());
        min_ready_seen = min_ready_seen.min(ready);
        assert!(pods.len() <= replicas + surge, "{} pods, more than {replicas} + surge {surge}", pods.len());
        assert!(ready >= replicas - unavailable, "{ready} ready, fewer than {replicas} - maxUnavailable {unavailable}");
        let done = pods.len() == replicas && pods.iter().all(|p| image(p) == new_image && is_ready(p));
        let d = get_deployment(client, name).await;
        if done && status_of(&d) == (replicas as i32, replicas as i32, replicas as i32) {
            break;
        }
        // The kubelet starts one new pod, then looks again.
        if let Some(p) = pods.iter().find(|p| !is_ready(p)) {
            mark_ready(client, p).await;
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {:?}", d.status);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(max_seen > replicas || min_ready_seen < replicas, "the rollout used neither surge nor unavailability");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_max_surge_and_max_unavailable() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("web", 4, "nginx:1.27", rolling(json!(1), json!(1)))).await.unwrap();
    rolled_out(&client, "web", 4).await;
    set_image(&client, "web", "nginx:1.28").await;
    roll_checking_bounds(&client, "web", 4, 1, 1, "nginx:1.28").await;
    let d = rolled_out(&client, "web", 4).await;
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
    let rss = replica_sets(&client, "web").await;
    assert_eq!(rss.len(), 2);
    let old = rss.iter().find(|rs| rs.annotations()["deployment.kubernetes.io/revision"] == "1").unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));

    // Surge only (maxUnavailable 0): never fewer than 4 Ready.
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"strategy": rolling(json!("50%"), json!(0))}}))).await.unwrap();
    set_image(&client, "web", "nginx:1.29").await;
    roll_checking_bounds(&client, "web", 4, 2, 0, "nginx:1.29").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("db", 3, "postgres:16", json!({"type": "Recreate"}))).await.unwrap();
    rolled_out(&client, "db", 3).await;
    set_image(&client, "db", "postgres:17").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pods = active_pods(&client, "db").await;
        let images: BTreeSet<String> = pods.iter().map(image).collect();
        assert!(images.len() <= 1, "old and new pods at once: {images:?}");
        mark_all_ready(&client, "db").await;
        if pods.len() == 3 && images.contains("postgres:17") && get_deployment(&client, "db").await.status.and_then(|s| s.available_replicas) == Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "recreate did not finish: {images:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    event_messages_until(&client, "ScalingReplicaSet", |m| m.iter().any(|m| m.starts_with("Scaled down replica set db-") && m.ends_with("from 3 to 0"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_to_revision_one_reuses_its_replicaset_and_history_is_bounded() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut d = deployment("web", 2, "nginx:1.27", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    d.metadata.annotations = Some([("kubernetes.io/change-cause".to_string(), "first".to_string())].into());
    api.create(&PostParams::default(), &d).await.unwrap();
    rolled_out(&client, "web", 2).await;
    let first = replica_sets(&client, "web").await.remove(0);
    assert_eq!(first.annotations()["kubernetes.io/change-cause"], "first");
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "second"}}}))).await.unwrap();
    set_image(&client, "web", "nginx:1.28").await;
    rolled_out(&client, "web", 2).await;

    // Roll back as kubectl does: the old ReplicaSet's template without the hash label.
    let mut template = first.spec.clone().unwrap().template.unwrap();
    template.metadata.as_mut().unwrap().labels.as_mut().unwrap().remove("pod-template-hash");
    api.patch("web", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(json!([{"op": "replace", "path": "/spec/template", "value": template}])).unwrap())).await.unwrap();
    let d = rolled_out(&client, "web", 2).await;
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "3");
    let rss = replica_sets(&client, "web").await;
    assert_eq!(rss.len(), 2, "no new replica set for a rollback");
    let back = rss.iter().find(|rs| rs.uid() == first.uid()).expect("the first replica set is reused");
    assert_eq!(back.annotations()["deployment.kubernetes.io/revision"], "3");
    assert_eq!(back.annotations()["deployment.kubernetes.io/revision-history"], "1");
    assert!(active_pods(&client, "web").await.iter().all(|p| image(p) == "nginx:1.27"));

    // Two more rollouts with a history limit of 1: one old replica set stays.
    for image in ["nginx:1.29", "nginx:1.30"] {
        set_image(&client, "web", image).await;
        rolled_out(&client, "web", 2).await;
    }
    let left = eventually("old replica sets pruned", 10, || async {
        let rss = replica_sets(&client, "web").await;
        if rss.len() == 2 { Ok(rss) } else { Err(format!("{}", rss.len())) }
    })
    .await;
    let mut revisions: Vec<String> = left.iter().map(|rs| rs.annotations()["deployment.kubernetes.io/revision"].clone()).collect();
    revisions.sort();
    assert_eq!(revisions, ["4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_adopts_matching_orphans_and_releases_pods_it_no_longer_matches() {
    let (_s, client) = cluster().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let orphan: Pod = serde_json::from_value(common::pod("stray", json!({"app": "cache"}))).unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cache"}},
            "template": {"metadata": {"labels": {"app": "cache", "tier": "x"}}, "spec": {"containers": [{"name": "app", "image": "redis:7"}]}}}
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), NS).create(&PostParams::default(), &rs).await.unwrap();
    let owned = eventually("the orphan adopted and one pod added", 10, || async {
        let all = active_pods(&client, "cache").await;
        let owned = all.iter().filter(|p| p.owner_references().iter().any(|r| Some(&r.uid) == rs.uid().as_ref() && r.controller == Some(true))).count();
        if all.len() == 2 && owned == 2 { Ok(all) } else { Err(format!("{} pods, {owned} owned", all.len())) }
    })
    .await;
    assert!(owned.iter().any(|p| p.name_any() == "stray"));
    let status = eventually("status", 10, || async {
        let s = Api::<ReplicaSet>::namespaced(client.clone(), NS).get("cache").await.unwrap().status.unwrap();
        // The orphan lacks the template's tier label.
        if s.replicas == 2 && s.fully_labeled_replicas == Some(1) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));

    // Relabelled out of the selector: released, and replaced.
    pods.patch("stray", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}}))).await.unwrap();
    eventually("the relabelled pod released and replaced", 10, || async {
        let stray = pods.get("stray").await.unwrap();
        let n = active_pods(&client, "cache").await.len();
        if stray.owner_references().is_empty() && n == 2 { Ok(()) } else { Err(format!("{:?} {n}", stray.metadata.owner_references)) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_does_not_roll_until_resumed() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1.27", rolling(json!(1), json!(0)))).await.unwrap();
    rolled_out(&client, "web", 2).await;
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}}))).await.unwrap();
    eventually("the paused condition", 10, || async {
        let d = get_deployment(&client, "web").await;
        match condition(&d, "Progressing") {
            Some(c) if c == ("Unknown".into(), "DeploymentPaused".into(), "Deployment is paused".into()) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    set_image(&client, "web", "nginx:1.28").await;
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.unwrap();
    // Scaling still happens while paused; the template change does not roll.
    eventually("scaled while paused", 10, || async {
        mark_all_ready(&client, "web").await;
        let pods = active_pods(&client, "web").await;
        if pods.len() == 3 { Ok(()) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    assert_eq!(replica_sets(&client, "web").await.len(), 1);
    assert!(active_pods(&client, "web").await.iter().all(|p| image(p) == "nginx:1.27"));
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}}))).await.unwrap();
    rolled_out(&client, "web", 3).await;
    assert!(active_pods(&client, "web").await.iter().all(|p| image(p) == "nginx:1.28"));
}

/// A kubelet stand-in: every pod that is not Ready becomes Ready (but `:broken` images, which
/// never start, as with a real kubelet).
fn test_kubelet(kubeconfig: &std::path::Path) -> common::KubeletStandIn {
    common::KubeletStandIn::start(kubeconfig, |client| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items.iter().filter(|p| is_active(p) && !is_ready(p) && !image(p).ends_with(":broken")) {
                mark_ready(&client, p).await;
            }
        }
    })
}

#[test]
fn kubectl_creates_scales_rolls_out_undoes_restarts_and_pauses_a_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    let _kubelet = test_kubelet(&server.kubeconfig());
    let ready_is = |want: &str| {
        let want = want.to_string();
        let k = &k;
        move || {
            let out = k.run(&["get", "deploy", "web", "--no-headers"]).stdout;
            if out.split_whitespace().nth(1) == Some(want.as_str()) { Ok(()) } else { Err(out) }
        }
    };

    assert!(k.ok(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2"]).contains("deployment.apps/web created"));
    wait_for("2/2 ready", 20, ready_is("2/2"));
    let out = k.ok(&["get", "deploy"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2/2", "2", "2"], "{out}");

    assert!(k.ok(&["scale", "deployment/web", "--replicas=4"]).contains("deployment.apps/web scaled"));
    wait_for("4/4 ready", 20, ready_is("4/4"));
    k.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_for("2/2 ready", 20, ready_is("2/2"));

    k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"]);
    let status = k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "nginx:1.28");
    wait_for("pods on nginx:1.28", 20, || {
        let images = k.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
        if images.split_whitespace().count() == 2 && images.split_whitespace().all(|i| i == "nginx:1.28") { Ok(()) } else { Err(images) }
    });

    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let rev1 = k.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(rev1.contains("nginx:1.27"), "{rev1}");

    assert!(k.ok(&["rollout", "undo", "deployment/web"]).contains("deployment.apps/web rolled back"));
    let status = k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]), "nginx:1.27");
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]), "3");
    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().skip_while(|l| !l.starts_with("REVISION")).skip(1).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    assert!(k.ok(&["rollout", "restart", "deployment/web"]).contains("deployment.apps/web restarted"));
    let status = k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let rss = k.ok(&["get", "rs", "-l", "app=web", "--no-headers"]);
    assert_eq!(rss.lines().count(), 3, "a restart makes a new replica set: {rss}");

    assert!(k.ok(&["rollout", "pause", "deployment/web"]).contains("deployment.apps/web paused"));
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.29"]);
    std::thread::sleep(Duration::from_millis(500));
    let rss = k.ok(&["get", "rs", "-l", "app=web", "--no-headers"]);
    assert_eq!(rss.lines().count(), 3, "a paused deployment does not roll: {rss}");
    assert!(k.ok(&["rollout", "resume", "deployment/web"]).contains("deployment.apps/web resumed"));
    let status = k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(k.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"]).split_whitespace().filter(|i| *i == "nginx:1.29").count(), 2);

    let describe = k.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("ScalingReplicaSet") && describe.contains("Scaled up replica set web-"), "{describe}");
    assert!(describe.contains("NewReplicaSetAvailable"), "{describe}");

    // An image that never becomes Ready: rollout status gives up at the progress deadline.
    k.ok(&["patch", "deployment", "web", "-p", r#"{"spec":{"progressDeadlineSeconds":2}}"#]);
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:broken"]);
    let stuck = k.run(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(!stuck.ok, "{}", stuck.stdout);
    assert!(stuck.stderr.contains("deployment \"web\" exceeded its progress deadline"), "{}\n{}", stuck.stdout, stuck.stderr);
    assert!(stuck.stdout.contains("Waiting for deployment \"web\" rollout to finish"), "{}", stuck.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_makes_no_progress_exceeds_its_deadline() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut d = deployment("web", 2, "nginx:1.27", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    api.create(&PostParams::default(), &d).await.unwrap();
    rolled_out(&client, "web", 2).await;
    // The new image never becomes Ready: no kubelet marks it.
    set_image(&client, "web", "nginx:broken").await;
    let d = eventually("ProgressDeadlineExceeded", 15, || async {
        let d = get_deployment(&client, "web").await;
        match condition(&d, "Progressing") {
            Some(c) if c.1 == "ProgressDeadlineExceeded" => Ok(d),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let new = replica_sets(&client, "web").await.into_iter().find(|rs| rs.annotations()["deployment.kubernetes.io/revision"] == "2").unwrap();
    assert_eq!(condition(&d, "Progressing").unwrap(), ("False".into(), "ProgressDeadlineExceeded".into(), format!("ReplicaSet \"{}\" has timed out progressing.", new.name_any())));
    // Still available: the old pods stay while the new one is not Ready (maxUnavailable 0).
    assert_eq!(condition(&d, "Available").unwrap().0, "True");
    assert_eq!(active_pods(&client, "web").await.iter().filter(|p| is_ready(p)).count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_count_as_available_only_after_min_ready_seconds() {
    let (_s, client) = cluster().await;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "slow"},
        "spec": {"replicas": 1, "minReadySeconds": 2, "selector": {"matchLabels": {"app": "slow"}},
            "template": {"metadata": {"labels": {"app": "slow"}}, "spec": {"containers": [{"name": "app", "image": "redis:7"}]}}}
    }))
    .unwrap();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let pod = eventually("a pod", 10, || async { active_pods(&client, "slow").await.pop().ok_or_else(|| "none".to_string()) }).await;
    mark_ready(&client, &pod).await;
    let ready_at = Instant::now();
    let ready = eventually("ready", 5, || async {
        let s = rss.get("slow").await.unwrap().status.unwrap();
        if s.ready_replicas == Some(1) { Ok(s) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(ready.available_replicas, Some(0), "ready but not yet available");
    eventually("available after minReadySeconds", 10, || async {
        let s = rss.get("slow").await.unwrap().status.unwrap();
        if s.available_replicas == Some(1) { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert!(ready_at.elapsed() >= Duration::from_millis(1500), "available too early: {:?}", ready_at.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_removes_pods_that_are_not_ready_first() {
    let (_s, client) = cluster().await;
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}
    }))
    .unwrap();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    rss.create(&PostParams::default(), &rs).await.unwrap();
    let pods = eventually("3 pods", 10, || async {
        let pods = active_pods(&client, "web").await;
        if pods.len() == 3 { Ok(pods) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    let not_ready = pods[1].name_any();
    for p in pods.iter().filter(|p| p.name_any() != not_ready) {
        mark_ready(&client, p).await;
    }
    rss.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    let left = eventually("2 pods", 10, || async {
        let pods = active_pods(&client, "web").await;
        if pods.len() == 2 { Ok(pods) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    assert!(left.iter().all(|p| p.name_any() != not_ready && is_ready(p)), "the pod that was not Ready goes first");
    // The controller records the event after the delete that the test has just seen.
    event_messages_until(&client, "SuccessfulDelete", |m| m.contains(&format!("Deleted pod: {not_ready}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_mid_rollout_scales_both_replicasets_in_proportion() {
    let (_s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.create(&PostParams::default(), &deployment("web", 10, "nginx:1.27", rolling(json!(3), json!(2)))).await.unwrap();
    rolled_out(&client, "web", 10).await;
    // New pods never become Ready here, so the rollout stalls at old 8 + new 5 (13 = 10 + 3).
    set_image(&client, "web", "nginx:1.28").await;
    let sizes = |rss: &[ReplicaSet]| {
        let mut by_revision: Vec<(String, i32)> = rss.iter().map(|rs| (rs.annotations()["deployment.kubernetes.io/revision"].clone(), rs.spec.as_ref().unwrap().replicas.unwrap())).collect();
        by_revision.sort();
        by_revision.into_iter().map(|(_, n)| n).collect::<Vec<i32>>()
    };
    eventually("the stalled rollout", 10, || async {
        let s = sizes(&replica_sets(&client, "web").await);
        if s == [8, 5] { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    api.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 20}}))).await.unwrap();
    // 23 allowed (20 + 3): 8 * 23 / 13 = 14.2 -> 14, 5 * 23 / 13 = 8.8 -> 9.
    eventually("proportional sizes", 10, || async {
        let s = sizes(&replica_sets(&client, "web").await);
        if s == [14, 9] { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_waits_for_terminating_pods_to_be_gone() {
    let (s, client) = cluster().await;
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let mut d = deployment("db", 1, "postgres:16", json!({"type": "Recreate"}));
    d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().termination_grace_period_seconds = Some(30);
    api.create(&PostParams::default(), &d).await.unwrap();
    rolled_out(&client, "db", 1).await;
    // Put the pod on a node, so deleting it is graceful: it stays, terminating, until the
    // "kubelet" (this test) removes it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let old = active_pods(&client, "db").await.remove(0);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": old.name_any()}, "target": {"kind": "Node", "name": "n1"}});
    let (code, body) = s.post(&format!("/api/v1/namespaces/{NS}/pods/{}/binding", old.name_any()), binding).await;
    assert!(code.is_success(), "{code} {body}");
    set_image(&client, "db", "postgres:17").await;
    let terminating = eventually("the old pod terminating", 10, || async {
        let p = pods.get(&old.name_any()).await.unwrap();
        if p.metadata.deletion_timestamp.is_some() { Ok(p) } else { Err("not yet".to_string()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(active_pods(&client, "db").await.is_empty(), "no new pod while the old one terminates");
    pods.delete(&terminating.name_any(), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let new = eventually("the new pod", 10, || async {
        let p = active_pods(&client, "db").await;
        if p.len() == 1 { Ok(p) } else { Err(format!("{}", p.len())) }
    })
    .await;
    assert_eq!(image(&new[0]), "postgres:17");
}
