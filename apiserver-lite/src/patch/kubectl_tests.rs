//! End to end: the real `kubectl apply` (client-side, so a three-way strategic merge patch,
//! then server-side) against a stub API server on loopback that serves one Deployment,
//! applies each PATCH with [`super::apply_patch`] or [`super::server_side_apply`] and records
//! field ownership with [`super::record_update`], as the real handlers are meant to. Proves
//! the patches kubectl 1.33 computes do what it means, and that kubectl reads the managed
//! fields this module writes (its client-side to server-side apply upgrade parses them).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::{PatchType, apply_patch, parse_apply_body, record_update, server_side_apply};

const NOW: &str = "2026-01-01T00:00:00Z";

#[derive(Default)]
struct Stub {
    object: Option<Value>,
    /// Every PATCH: content type and body.
    patches: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Stub>>;

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
               "message": "deployments.apps \"web\" not found", "details": {"name": "web", "group": "apps", "kind": "deployments"}}),
    )
}

fn router(state: Shared) -> Router {
    let deployment_path = "/apis/apps/v1/namespaces/default/deployments/web";
    Router::new()
        .route("/version", get(|| async { json_response(StatusCode::OK, json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})) }))
        .route("/api", get(|| async { json_response(StatusCode::OK, json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }))
        .route(
            "/apis",
            get(|| async {
                let gv = json!({"groupVersion": "apps/v1", "version": "v1"});
                json_response(StatusCode::OK, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "apps", "versions": [gv], "preferredVersion": gv}]}))
            }),
        )
        .route("/api/v1", get(|| async { json_response(StatusCode::OK, json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []})) }))
        .route(
            "/apis/apps/v1",
            get(|| async {
                json_response(
                    StatusCode::OK,
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [{
                        "name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["deploy"]
                    }]}),
                )
            }),
        )
        .route(
            deployment_path,
            get(|State(s): State<Shared>| async move {
                match s.lock().unwrap().object.clone() {
                    Some(o) => json_response(StatusCode::OK, o),
                    None => not_found(),
                }
            })
            .patch(|State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, headers: HeaderMap, body: Bytes| async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                let manager = q.get("fieldManager").cloned().unwrap_or_default();
                let mut s = s.lock().unwrap();
                s.patches.push((content_type.clone(), serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let current = s.object.clone();
                let result = match PatchType::from_content_type(&content_type) {
                    Some(PatchType::Apply) => parse_apply_body(&body)
                        .and_then(|cfg| server_side_apply(current.as_ref(), &cfg, &manager, q.get("force").is_some_and(|f| f == "true"), NOW))
                        .map_err(|e| (e.code(), e.reason(), e.to_string())),
                    Some(t) => match &current {
                        None => return not_found(),
                        Some(c) => apply_patch(t, "apps", "Deployment", c, &body)
                            .map(|patched| record_update(c, &patched, &manager, NOW))
                            .map_err(|e| (e.code(), e.reason(), e.to_string())),
                    },
                    None => Err((415, "UnsupportedMediaType", content_type.clone())),
                };
                match result {
                    Ok(patched) => {
                        s.object = Some(patched.clone());
                        json_response(StatusCode::OK, patched)
                    }
                    Err((code, reason, message)) => json_response(
                        StatusCode::from_u16(code).unwrap(),
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message}),
                    ),
                }
            }),
        )
        .route(
            "/apis/apps/v1/namespaces/default/deployments",
            axum::routing::post(|State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, body: Bytes| async move {
                let mut object: Value = serde_json::from_slice(&body).unwrap();
                object["metadata"]["namespace"] = json!("default");
                object["metadata"]["resourceVersion"] = json!("1");
                let object = record_update(&Value::Null, &object, q.get("fieldManager").map(String::as_str).unwrap_or(""), NOW);
                s.lock().unwrap().object = Some(object.clone());
                json_response(StatusCode::CREATED, object)
            }),
        )
        .with_state(state)
}

fn kubectl(server: &str, cache: &Path, args: &[&str]) -> String {
    let (ok, output) = kubectl_result(server, cache, args);
    assert!(ok, "kubectl {args:?} failed: {output}");
    output
}

/// Whether kubectl succeeded, and its stdout and stderr.
fn kubectl_result(server: &str, cache: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .args(["--server", server, "--cache-dir"])
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .env("KUBECONFIG", cache.join("no-kubeconfig"))
        .output()
        .expect("run kubectl");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn deployment_yaml(containers: &str, labels: &str, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  labels:\n{labels}\nspec:\n  replicas: 2\n{strategy}  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n{containers}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_patches_do_what_they_mean() {
    if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
        eprintln!("SKIPPED kubectl_apply_patches_do_what_they_mean: no kubectl on PATH");
        return;
    }
    let state = Shared::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(axum::serve(listener, router(state.clone())).into_future());
    let dir = tempfile::tempdir().unwrap();

    let web = |image: &str, env: &str| format!("      - name: web\n        image: {image}\n{env}");
    let sidecar = "      - name: sidecar\n        image: busybox:1.36\n";
    let rolling = "  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 1\n";
    let recreate = "  strategy:\n    type: Recreate\n";
    let steps: Vec<(&str, String)> = vec![
        ("create", deployment_yaml(&format!("{}{sidecar}", web("nginx:1.26", "")), "    app: web\n    tier: front\n", rolling)),
        ("image", deployment_yaml(&format!("{}{sidecar}", web("nginx:1.27", "")), "    app: web\n    tier: front\n", rolling)),
        ("env", deployment_yaml(&format!("{}{sidecar}", web("nginx:1.27", "        env:\n        - name: A\n          value: \"1\"\n")), "    app: web\n    tier: front\n", rolling)),
        ("remove", deployment_yaml(&web("nginx:1.27", "        env:\n        - name: A\n          value: \"1\"\n"), "    app: web\n", recreate)),
    ];

    let mut checks = Vec::new();
    for (name, yaml) in steps {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let (server, cache, file) = (server.clone(), dir.path().join(format!("cache-{name}")), file.clone());
        tokio::task::spawn_blocking(move || kubectl(&server, &cache, &["apply", "--validate=false", "-f", file.to_str().unwrap()])).await.unwrap();
        checks.push((name, state.lock().unwrap().object.clone().unwrap()));
    }
    let created = &checks[0].1;
    let csa = created["metadata"]["managedFields"][0].clone();
    assert_eq!((csa["manager"].as_str(), csa["operation"].as_str()), (Some("kubectl-client-side-apply"), Some("Update")), "{created}");

    // Another writer takes the replicas; a server-side apply changing them conflicts, and
    // forcing takes them back.
    let run = |args: Vec<String>, cache: &str| {
        let (server, cache) = (server.clone(), dir.path().join(cache));
        tokio::task::spawn_blocking(move || kubectl_result(&server, &cache, &args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (ok, out) = run(args(&["patch", "deployment", "web", "-n", "default", "--type", "merge", "-p", r#"{"spec":{"replicas":5}}"#, "--field-manager", "scaler"]), "c5").await.unwrap();
    assert!(ok, "{out}");
    let ssa = dir.path().join("ssa.yaml");
    std::fs::write(&ssa, deployment_yaml(&web("nginx:1.27", ""), "    app: web\n", recreate).replace("replicas: 2", "replicas: 3")).unwrap();
    let ssa = ssa.to_str().unwrap().to_string();
    let (ok, out) = run(args(&["apply", "--validate=false", "--server-side", "-f", &ssa]), "c6").await.unwrap();
    assert!(!ok && out.contains(r#"conflict with "scaler" using apps/v1: .spec.replicas"#), "{out}");
    let (ok, out) = run(args(&["apply", "--validate=false", "--server-side", "--force-conflicts", "-f", &ssa]), "c7").await.unwrap();
    assert!(ok, "{out}");
    serve.abort();
    let forced = state.lock().unwrap().object.clone().unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let managers: Vec<(String, String)> = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string()))
        .collect();
    assert!(managers.contains(&("kubectl".into(), "Apply".into())), "{forced}");
    let apply_entry = forced["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["operation"] == "Apply").unwrap();
    assert_eq!(apply_entry["fieldsV1"]["f:spec"]["f:replicas"], json!({}), "{forced}");
    // kubectl moved the client-side apply's fields to its apply entry (parsing our FieldsV1),
    // so the env the server-side configuration leaves out goes.
    assert_eq!(forced["spec"]["template"]["spec"]["containers"], json!([{"image": "nginx:1.27", "name": "web"}]), "{forced}");
    assert!(!managers.contains(&("kubectl-client-side-apply".into(), "Update".into())), "{forced}");

    let containers = |o: &Value| o["spec"]["template"]["spec"]["containers"].clone();
    let (_, image) = &checks[1];
    assert_eq!(containers(image), json!([{"name": "web", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox:1.36"}]));
    let (_, env) = &checks[2];
    assert_eq!(containers(env)[0]["env"], json!([{"name": "A", "value": "1"}]));
    let (_, removed) = &checks[3];
    assert_eq!(containers(removed), json!([{"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}]));
    assert_eq!(removed["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(removed["spec"]["strategy"], json!({"type": "Recreate"}));

    let patches = state.lock().unwrap().patches.clone();
    let smp: Vec<&(String, Value)> = patches.iter().take(3).collect();
    for (content_type, _) in smp {
        assert_eq!(content_type, "application/strategic-merge-patch+json");
    }
    // What kubectl sent for the removal: the directives this module implements.
    let removal = &patches[2].1;
    let pod_spec = &removal["spec"]["template"]["spec"];
    assert_eq!(pod_spec["$setElementOrder/containers"], json!([{"name": "web"}]), "{removal}");
    assert!(pod_spec["containers"].as_array().unwrap().contains(&json!({"$patch": "delete", "name": "sidecar"})), "{removal}");
    assert_eq!(removal["metadata"]["labels"], json!({"tier": null}), "{removal}");
    assert!(removal["spec"]["strategy"]["$retainKeys"].is_array(), "{removal}");
}
