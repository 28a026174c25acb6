//! What every pod needs for its API credentials, in process: the root CA publisher keeps
//! `kube-root-ca.crt` in every namespace, and the ServiceAccount admission step gives a new
//! pod its service account and the `kube-api-access-*` volume (or refuses it when the account
//! does not exist).

mod common;

use axum::http::StatusCode;
use common::{Kubectl, ServerProcess, TestServer, eventually};
use serde_json::{Value, json};

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";
const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn start_publisher(s: &TestServer) {
    let client = apiserver_lite::controllers::in_process_client(s.app.clone(), apiserver_lite::controllers::CONTROLLER_MANAGER_USER);
    tokio::spawn(apiserver_lite::controllers::root_ca_publisher::run(client, Some(PEM.to_string())));
}

async fn published(s: &TestServer, ns: &str) -> Value {
    eventually(&format!("kube-root-ca.crt in {ns}"), 10, || async {
        let (code, cm) = s.get(&format!("/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")).await;
        if code == StatusCode::OK && cm["data"] == json!({"ca.crt": PEM}) {
            Ok(cm)
        } else {
            Err(format!("{code}: {cm}"))
        }
    })
    .await
}

#[tokio::test]
async fn every_namespace_gets_the_root_ca_and_keeps_it() {
    let s = TestServer::new().await;
    start_publisher(&s);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        published(&s, ns).await;
    }
    let (code, _) = s.post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let cm = published(&s, "team").await;
    assert!(cm["metadata"]["annotations"]["kubernetes.io/description"].as_str().unwrap().starts_with("Contains a CA bundle"), "{cm}");

    // Deleted: put back.
    let (code, _) = s.delete("/api/v1/namespaces/team/configmaps/kube-root-ca.crt").await;
    assert_eq!(code, StatusCode::OK);
    let again = published(&s, "team").await;
    assert_ne!(again["metadata"]["uid"], cm["metadata"]["uid"]);

    // Changed: reset.
    let mut changed = again.clone();
    changed["data"] = json!({"ca.crt": "not the CA"});
    let (code, body) = s.put("/api/v1/namespaces/team/configmaps/kube-root-ca.crt", changed).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let reset = published(&s, "team").await;
    assert_eq!(reset["metadata"]["uid"], again["metadata"]["uid"]);
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_new_pod_gets_its_service_account_and_token_volume() {
    let s = TestServer::new().await;
    let (code, _) = s.post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, created) = s.post("/api/v1/namespaces/team/pods", pod("web", json!({"containers": [{"name": "app", "image": "busybox"}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    let volume = &created["spec"]["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
    assert_eq!(volume["projected"]["defaultMode"], 420);
    assert_eq!(volume["projected"]["sources"][0]["serviceAccountToken"], json!({"expirationSeconds": 3607, "path": "token"}));
    assert_eq!(volume["projected"]["sources"][1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(created["spec"]["containers"][0]["volumeMounts"], json!([{"name": name, "readOnly": true, "mountPath": MOUNT_PATH}]));
    let (_, stored) = s.get("/api/v1/namespaces/team/pods/web").await;
    assert_eq!(stored["spec"]["volumes"], created["spec"]["volumes"]);

    // The client owns what it sent, not what admission added: applying the same pod again
    // keeps the volume (the spec may not change).
    let applied = pod("applied", json!({"containers": [{"name": "app", "image": "busybox"}]}));
    let path = "/api/v1/namespaces/team/pods/applied?fieldManager=me";
    let (code, first) = s.patch(path, "application/apply-patch+yaml", applied.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    assert!(first["spec"]["volumes"][0]["name"].as_str().unwrap().starts_with("kube-api-access-"));
    let (code, second) = s.patch(path, "application/apply-patch+yaml", applied).await;
    assert_eq!(code, StatusCode::OK, "{second}");
    assert_eq!(second["spec"]["volumes"], first["spec"]["volumes"]);

    // Opting out.
    let (code, off) = s.post("/api/v1/namespaces/team/pods", pod("quiet", json!({"automountServiceAccountToken": false, "containers": [{"name": "app", "image": "busybox"}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "{off}");
    assert!(off["spec"].get("volumes").is_none(), "{off}");
}

#[tokio::test]
async fn a_pod_of_a_missing_service_account_is_refused() {
    let s = TestServer::new().await;
    let (code, status) = s.post("/api/v1/namespaces/default/pods", pod("web", json!({"serviceAccountName": "ghost", "containers": [{"name": "app", "image": "busybox"}]}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["message"], "pods \"web\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found");
    assert_eq!(status["details"], json!({"name": "web", "kind": "pods"}));

    // A generated name is not known yet: the message shows the prefix.
    let generated = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {"serviceAccountName": "ghost", "containers": [{"name": "app", "image": "busybox"}]}});
    let (code, status) = s.post("/api/v1/namespaces/default/pods", generated).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(status["message"].as_str().unwrap().starts_with("pods \"web-\" is forbidden"), "{status}");

    // Once it exists, the pod is admitted.
    let (code, _) = s.post("/api/v1/namespaces/default/serviceaccounts", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ghost"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, created) = s.post("/api/v1/namespaces/default/pods", pod("web", json!({"serviceAccountName": "ghost", "containers": [{"name": "app", "image": "busybox"}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["serviceAccount"], "ghost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_publishes_its_own_ca_and_kubectl_runs_pods_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    let k = Kubectl::new(&server.kubeconfig());
    k.ok(&["create", "namespace", "team"]);
    let (k2, ca2) = (&k, &ca);
    eventually("kube-root-ca.crt in team", 20, || async move {
        let out = k2.run(&["get", "configmap", "-n", "team", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]);
        let got = out.stdout.clone();
        if got.trim() == ca2.trim() { Ok(()) } else { Err(format!("{got} {}", out.stderr)) }
    })
    .await;
    k.ok(&["run", "web", "-n", "team", "--image=busybox:1.36", "--restart=Never"]);
    let mounts = k.ok(&["get", "pod", "web", "-n", "team", "-o", "jsonpath={.spec.containers[0].volumeMounts[0].mountPath} {.spec.volumes[0].projected.sources[1].configMap.name}"]);
    assert_eq!(mounts.trim(), format!("{MOUNT_PATH} kube-root-ca.crt"));
    let refused = k.run(&["run", "ghost", "-n", "team", "--image=busybox:1.36", "--restart=Never", "--overrides={\"spec\": {\"serviceAccountName\": \"ghost\"}}"]);
    let stderr = &refused.stderr;
    assert!(stderr.contains("Error from server (Forbidden): pods \"ghost\" is forbidden: error looking up service account team/ghost: serviceaccount \"ghost\" not found"), "{stderr}");
}
