//! The REST semantics, at the HTTP level, in-process: create/get/update with optimistic
//! concurrency, status and scale subresources, lists with selectors and consistent paging,
//! watch from a resource version with selectors and 410 Expired, graceful deletion and
//! finalizers, namespace lifecycle, service allocation, binding, every patch type.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestServer, next_event, pod};
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn bootstrap_makes_the_system_namespaces_and_the_kubernetes_service() {
    let s = TestServer::new().await;
    let (code, list) = s.get("/api/v1/namespaces").await;
    assert_eq!(code, StatusCode::OK);
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&ns), "{names:?}");
    }
    assert_eq!(list["items"][0]["status"]["phase"], "Active");
    assert_eq!(list["items"][0]["metadata"]["labels"]["kubernetes.io/metadata.name"], list["items"][0]["metadata"]["name"]);
    let (_, svc) = s.get("/api/v1/namespaces/default/services/kubernetes").await;
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    // Service proxies find the server through the service's EndpointSlice.
    let (code, slice) = s.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes").await;
    assert_eq!(code, StatusCode::OK, "{slice}");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1", "{slice}");
    assert_eq!(slice["ports"][0]["port"], 6443, "{slice}");
    // A second bootstrap (a restart) changes nothing.
    let before = s.get("/api/v1/namespaces/default").await.1["metadata"]["resourceVersion"].clone();
    apiserver_lite::server::bootstrap(&s.api, ("127.0.0.1".parse().unwrap(), 6443)).await.unwrap();
    assert_eq!(s.get("/api/v1/namespaces/default").await.1["metadata"]["resourceVersion"], before);
}

#[tokio::test]
async fn create_get_update_with_optimistic_concurrency() {
    let s = TestServer::new().await;
    let (code, created) = s.post(PODS, pod("web", json!({"app": "web"}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let rv = meta["resourceVersion"].as_str().unwrap().to_string();

    let (code, got) = s.get(&format!("{PODS}/web")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);

    let (code, dup) = s.post(PODS, pod("web", json!({}))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!((dup["reason"].as_str(), dup["message"].as_str()), (Some("AlreadyExists"), Some("pods \"web\" already exists")));

    // Update at the current version: a new version; uid and creation time kept.
    let mut changed = got.clone();
    changed["metadata"]["labels"]["tier"] = json!("front");
    changed["metadata"]["uid"] = json!("forged");
    changed["status"]["phase"] = json!("Running");
    let (code, updated) = s.put(&format!("{PODS}/web"), changed.clone()).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["tier"], "front");
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(updated["status"]["phase"], "Pending", "the main resource does not write status");
    assert_ne!(updated["metadata"]["resourceVersion"].as_str().unwrap(), rv);

    // The same update again carries a stale version now.
    let (code, stale) = s.put(&format!("{PODS}/web"), changed).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(stale["message"].as_str().unwrap().contains("the object has been modified"), "{stale}");

    // Status through its subresource: only status changes.
    let mut st = updated.clone();
    st["status"]["phase"] = json!("Running");
    st["metadata"]["labels"]["ignored"] = json!("yes");
    let (code, after) = s.put(&format!("{PODS}/web/status"), st).await;
    assert_eq!(code, StatusCode::OK, "{after}");
    assert_eq!(after["status"]["phase"], "Running");
    assert!(after["metadata"]["labels"].get("ignored").is_none());

    // A write that changes nothing makes no new version.
    let (_, same) = s.put(&format!("{PODS}/web"), after.clone()).await;
    assert_eq!(same["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"]);

    let (code, missing) = s.get(&format!("{PODS}/nope")).await;
    assert_eq!((code, missing["reason"].as_str()), (StatusCode::NOT_FOUND, Some("NotFound")));
    assert_eq!(missing["message"], "pods \"nope\" not found");
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let s = TestServer::new().await;
    let (code, e) = s.call(Method::POST, PODS, "application/json", "{not json").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("not valid JSON"), "{e}");
    let (code, e) = s.post(PODS, json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "x"}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    let (code, e) = s.post("/api/v1/namespaces/other/pods", json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {"containers": [{"name": "a", "image": "b"}]}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    let (code, e) = s.post("/api/v1/namespaces/nowhere/pods", pod("p", json!({}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["message"], "namespaces \"nowhere\" not found");
    let (code, e) = s.post(PODS, json!({"metadata": {}, "spec": {"containers": [{"name": "a", "image": "b"}]}})).await;
    assert_eq!((code, e["reason"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid")), "{e}");
    let (code, _) = s.get("/api/v1/namespaces/default/widgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, e) = s.get(&format!("{PODS}?labelSelector=a+in+b")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{e}");
    let (code, e) = s.get(&format!("{PODS}?fieldSelector=spec.bogus%3D1")).await;
    assert_eq!((code, e["message"].as_str()), (StatusCode::BAD_REQUEST, Some("field label not supported: spec.bogus")));
}

#[tokio::test]
async fn generate_name_gives_unique_names() {
    let s = TestServer::new().await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..5 {
        let (code, p) = s.post(PODS, json!({"metadata": {"generateName": "job-"}, "spec": {"containers": [{"name": "a", "image": "b"}]}})).await;
        assert_eq!(code, StatusCode::CREATED, "{p}");
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
        names.insert(name);
    }
    assert_eq!(names.len(), 5);
}

#[tokio::test]
async fn lists_select_and_page_through_one_snapshot() {
    let s = TestServer::new().await;
    for i in 0..7 {
        let app = if i % 2 == 0 { "web" } else { "db" };
        assert_eq!(s.post(PODS, pod(&format!("p{i}"), json!({"app": app}))).await.0, StatusCode::CREATED);
    }
    let (_, web) = s.get(&format!("{PODS}?labelSelector=app%3Dweb")).await;
    assert_eq!(web["kind"], "PodList");
    assert_eq!(web["items"].as_array().unwrap().len(), 4);
    let (_, one) = s.get(&format!("{PODS}?fieldSelector=metadata.name%3Dp3")).await;
    assert_eq!(one["items"][0]["metadata"]["name"], "p3");
    let (_, all_ns) = s.get("/api/v1/pods?labelSelector=app%21%3Dweb").await;
    assert_eq!(all_ns["items"].as_array().unwrap().len(), 3);

    // Pages of 3: a write between pages does not show up in the paged list.
    let (_, page1) = s.get(&format!("{PODS}?limit=3")).await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 3);
    let token = page1["metadata"]["continue"].as_str().expect("a continue token").to_string();
    assert_eq!(s.post(PODS, pod("p99", json!({}))).await.0, StatusCode::CREATED);
    let mut seen: Vec<String> = page1["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let (code, page) = s.get(&format!("{PODS}?limit=3&continue={t}")).await;
        assert_eq!(code, StatusCode::OK, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);
        seen.extend(page["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()));
        token = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(seen, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let (code, _) = s.get(&format!("{PODS}?limit=3&continue=garbage")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn watch_replays_from_a_version_follows_selectors_and_expires() {
    let s = TestServer::new().await;
    let (_, first) = s.post(PODS, pod("a", json!({"app": "web"}))).await;
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    // From before `b` existed: b's creation is replayed, then live events.
    assert_eq!(s.post(PODS, pod("b", json!({"app": "web"}))).await.0, StatusCode::CREATED);
    let mut w = s.watch(&format!("{PODS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb&allowWatchBookmarks=true")).await;
    let e = next_event(&mut w).await;
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("b")));
    let (_, b) = s.get(&format!("{PODS}/b")).await;
    let mut relabelled = b.clone();
    relabelled["metadata"]["labels"]["app"] = json!("db");
    assert_eq!(s.put(&format!("{PODS}/b"), relabelled).await.0, StatusCode::OK);
    let e = next_event(&mut w).await;
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("b")), "leaving the selection");
    assert_eq!(s.delete(&format!("{PODS}/a")).await.0, StatusCode::OK);
    let e = next_event(&mut w).await;
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("DELETED"), Some("a")));
    // Bookmarks come when allowed.
    let bm = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let e = w.recv().await.unwrap();
            if e["type"] == "BOOKMARK" {
                return e;
            }
        }
    })
    .await
    .expect("a bookmark");
    assert_eq!(bm["object"]["kind"], "Pod");

    // Without a version: the current state as ADDED first.
    let mut w = s.watch(&format!("{PODS}?watch=true")).await;
    let e = next_event(&mut w).await;
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some("b")));

    // History compacted away: one ERROR event with 410 Expired.
    let current = s.api.store.current_revision().await.unwrap();
    s.api.store.compact(current).await.unwrap();
    let mut w = s.watch(&format!("{PODS}?watch=true&resourceVersion={rv}")).await;
    let e = next_event(&mut w).await;
    assert_eq!(e["type"], "ERROR", "{e}");
    assert_eq!((e["object"]["code"].as_i64(), e["object"]["reason"].as_str()), (Some(410), Some("Expired")));
}

#[tokio::test]
async fn deletion_is_graceful_for_running_pods_and_waits_for_finalizers() {
    let s = TestServer::new().await;
    // Unscheduled: gone at once.
    s.post(PODS, pod("idle", json!({}))).await;
    let (code, gone) = s.delete(&format!("{PODS}/idle")).await;
    assert_eq!((code, gone["metadata"]["name"].as_str()), (StatusCode::OK, Some("idle")));
    assert_eq!(s.get(&format!("{PODS}/idle")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete(&format!("{PODS}/idle")).await.0, StatusCode::NOT_FOUND);

    // On a node: marked, then removed by the kubelet's grace-0 delete.
    let mut running = pod("busy", json!({}));
    running["spec"]["nodeName"] = json!("node-1");
    s.post(PODS, running).await;
    let (code, marked) = s.delete(&format!("{PODS}/busy")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(s.get(&format!("{PODS}/busy")).await.0, StatusCode::OK);
    let (code, _) = s.call(Method::DELETE, &format!("{PODS}/busy"), "application/json", r#"{"gracePeriodSeconds":0}"#).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.get(&format!("{PODS}/busy")).await.0, StatusCode::NOT_FOUND);

    // Finalizers hold an object until the last one is removed.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/keep"]}, "data": {"a": "1"}});
    s.post("/api/v1/namespaces/default/configmaps", cm).await;
    let (_, marked) = s.delete("/api/v1/namespaces/default/configmaps/held").await;
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (_, mut held) = s.get("/api/v1/namespaces/default/configmaps/held").await;
    held["metadata"]["finalizers"] = json!([]);
    assert_eq!(s.put("/api/v1/namespaces/default/configmaps/held", held).await.0, StatusCode::OK);
    assert_eq!(s.get("/api/v1/namespaces/default/configmaps/held").await.0, StatusCode::NOT_FOUND);

    // A precondition on the uid.
    s.post("/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "c"}})).await;
    let (code, e) = s.call(Method::DELETE, "/api/v1/namespaces/default/configmaps/c", "application/json", r#"{"preconditions":{"uid":"other"}}"#).await;
    assert_eq!(code, StatusCode::CONFLICT, "{e}");
}

#[tokio::test]
async fn deletecollection_removes_what_the_selector_picks() {
    let s = TestServer::new().await;
    for (n, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        s.post(PODS, pod(n, json!({"app": app}))).await;
    }
    let (code, _) = s.delete(&format!("{PODS}?labelSelector=app%3Dweb")).await;
    assert_eq!(code, StatusCode::OK);
    let (_, left) = s.get(PODS).await;
    let names: Vec<&str> = left["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["c"]);
}

#[tokio::test]
async fn terminating_namespaces_take_no_new_content() {
    let s = TestServer::new().await;
    s.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}})).await;
    let (code, ns) = s.delete("/api/v1/namespaces/team").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, e) = s.post("/api/v1/namespaces/team/pods", pod("p", json!({}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{e}");
    assert!(e["message"].as_str().unwrap().contains("because it is being terminated"));
    // The namespace controller's last step: finalize with no finalizers left.
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!([]);
    let (code, _) = s.put("/api/v1/namespaces/team/finalize", fin).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(s.get("/api/v1/namespaces/team").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports() {
    let s = TestServer::new().await;
    let svc = |name: &str, ty: &str, node_port: Option<u16>| {
        let mut port = json!({"port": 80, "protocol": "TCP", "targetPort": 8080});
        if let Some(n) = node_port {
            port["nodePort"] = json!(n);
        }
        json!({"metadata": {"name": name}, "spec": {"type": ty, "selector": {"app": name}, "ports": [port]}})
    };
    let (code, a) = s.post("/api/v1/namespaces/default/services", svc("a", "NodePort", None)).await;
    assert_eq!(code, StatusCode::CREATED, "{a}");
    let ip: std::net::Ipv4Addr = a["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[0..1], [10]);
    assert_eq!(a["spec"]["clusterIPs"], json!([ip.to_string()]));
    let np = a["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    let (code, e) = s.post("/api/v1/namespaces/default/services", svc("b", "NodePort", Some(np as u16))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["message"].as_str().unwrap().contains("provided port is already allocated"), "{e}");
    let (code, c) = s.post("/api/v1/namespaces/default/services", svc("c", "ClusterIP", None)).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_ne!(c["spec"]["clusterIP"], a["spec"]["clusterIP"]);
    // An update that leaves clusterIP and nodePort out keeps them.
    let mut again = svc("a", "NodePort", None);
    again["metadata"]["resourceVersion"] = a["metadata"]["resourceVersion"].clone();
    let (code, a2) = s.put("/api/v1/namespaces/default/services/a", again).await;
    assert_eq!(code, StatusCode::OK, "{a2}");
    assert_eq!((a2["spec"]["clusterIP"].clone(), a2["spec"]["ports"][0]["nodePort"].as_u64()), (a["spec"]["clusterIP"].clone(), Some(np)));
    let mut taken = svc("d", "ClusterIP", None);
    taken["spec"]["clusterIP"] = json!("10.96.0.1");
    let (code, e) = s.post("/api/v1/namespaces/default/services", taken).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let s = TestServer::new().await;
    s.post(PODS, pod("p", json!({}))).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let (code, st) = s.post(&format!("{PODS}/p/binding"), binding.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{st}");
    let (_, p) = s.get(&format!("{PODS}/p")).await;
    assert_eq!(p["spec"]["nodeName"], "node-1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, e) = s.post(&format!("{PODS}/p/binding"), binding).await;
    assert_eq!(code, StatusCode::CONFLICT, "{e}");
    // The older `bindings` resource does the same.
    s.post(PODS, pod("q", json!({}))).await;
    let (code, _) = s.post("/api/v1/namespaces/default/bindings", json!({"metadata": {"name": "q"}, "target": {"kind": "Node", "name": "node-2"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(s.get(&format!("{PODS}/q")).await.1["spec"]["nodeName"], "node-2");
}

fn deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    })
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let s = TestServer::new().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let (code, d) = s.post(deploys, deployment(2)).await;
    assert_eq!(code, StatusCode::CREATED, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);
    let (_, scale) = s.get(&format!("{deploys}/web/scale")).await;
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(2)));
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, scaled) = s.patch(&format!("{deploys}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": 5}})).await;
    assert_eq!(code, StatusCode::OK, "{scaled}");
    let (_, d) = s.get(&format!("{deploys}/web")).await;
    assert_eq!((d["spec"]["replicas"].as_i64(), d["metadata"]["generation"].as_i64()), (Some(5), Some(2)));
    let (code, _) = s.patch(&format!("{deploys}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": -1}})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_patch_type() {
    let s = TestServer::new().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    s.post(deploys, deployment(1)).await;
    let path = format!("{deploys}/web");
    let (code, d) = s.patch(&path, "application/merge-patch+json", json!({"metadata": {"labels": {"team": "a"}}})).await;
    assert_eq!(code, StatusCode::OK, "{d}");
    assert_eq!(d["metadata"]["labels"]["team"], "a");
    let (code, d) = s.patch(&path, "application/json-patch+json", json!([{"op": "replace", "path": "/spec/replicas", "value": 3}])).await;
    assert_eq!((code, d["spec"]["replicas"].as_i64()), (StatusCode::OK, Some(3)));
    let (code, e) = s.patch(&path, "application/json-patch+json", json!([{"op": "test", "path": "/spec/replicas", "value": 9}])).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Strategic: a container merged by name, the other kept.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
    let (code, d) = s.patch(&path, "application/strategic-merge-patch+json", smp).await;
    assert_eq!(code, StatusCode::OK, "{d}");
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A stale resourceVersion in the patch is a conflict.
    let (code, _) = s.patch(&path, "application/merge-patch+json", json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    let (code, _) = s.patch(&path, "text/plain", json!({})).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn events_are_one_collection_through_both_apis() {
    let s = TestServer::new().await;
    let core = json!({"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Pulled", "message": "pulled the image", "type": "Normal", "source": {"component": "kubelet"}, "count": 1});
    let (code, e) = s.post("/api/v1/namespaces/default/events", core).await;
    assert_eq!(code, StatusCode::CREATED, "{e}");
    let (code, new) = s.get("/apis/events.k8s.io/v1/namespaces/default/events/p.1").await;
    assert_eq!(code, StatusCode::OK, "{new}");
    assert_eq!((new["apiVersion"].as_str(), new["note"].as_str(), new["regarding"]["name"].as_str()), (Some("events.k8s.io/v1"), Some("pulled the image"), Some("p")));
    assert_eq!(new["deprecatedSource"]["component"], "kubelet");
    let written = json!({"metadata": {"name": "p.2"}, "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "note": "started", "type": "Normal", "action": "Start", "reportingController": "kubelet", "reportingInstance": "node-1", "eventTime": "2026-12-02T10:00:00.000000Z"});
    let (code, e) = s.post("/apis/events.k8s.io/v1/namespaces/default/events", written).await;
    assert_eq!(code, StatusCode::CREATED, "{e}");
    let (_, list) = s.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dp").await;
    let messages: Vec<&str> = list["items"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["pulled the image", "started"]);
}
