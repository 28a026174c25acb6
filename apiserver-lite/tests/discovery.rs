//! The real kubectl against discovery and OpenAPI v3 as this crate serves them, over plain
//! http on loopback. Each test runs its own server, which logs every request kubectl makes so
//! the tests can also check that nothing kubectl asked for went unanswered.
//!
//! Needs `kubectl` on PATH (the dispatcher picks 1.33 from our `/version`); without it the
//! tests say so and skip.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use apiserver_lite::resources::builtin;
use apiserver_lite::{discovery, openapi};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;

#[derive(Clone, Debug)]
struct Logged {
    method: String,
    uri: String,
    status: u16,
    request_type: String,
    content_type: String,
}

type Log = Arc<Mutex<Vec<Logged>>>;

async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let request_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let response = next.run(request).await;
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    log.lock().unwrap().push(Logged { method, uri, status: response.status().as_u16(), request_type, content_type });
    response
}

/// Stands in for the resource handlers in the create test: echoes the pod back and records
/// the query kubectl sent.
async fn create_pod(body: Bytes) -> Response {
    (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The pod `kubectl apply` finds already there, as it last applied it.
async fn existing_pod() -> Response {
    let applied = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{},"name":"p","namespace":"default"},"spec":{"containers":[{"image":"busybox","name":"c"}]}}"#;
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "5", "uid": "3c0e8f4e-0000-4000-8000-000000000001",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    axum::Json(pod).into_response()
}

struct TestServer {
    url: String,
    log: Log,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Hides the aggregated forms from the server, as an old client that only asks for
/// `application/json` would: kubectl then walks `/api/v1`, `/apis/<group>/<version>`.
async fn legacy_accept(mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/api" || path == "/apis" {
        request.headers_mut().insert(header::ACCEPT, header::HeaderValue::from_static("application/json"));
    }
    next.run(request).await
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::start_with("33", false)
    }

    /// A server reporting Kubernetes 1.`minor` (the kubectl dispatcher runs the matching
    /// kubectl), answering `/api` and `/apis` only in legacy form if `legacy_only`.
    fn start_with(minor: &'static str, legacy_only: bool) -> TestServer {
        let registry = Arc::new(builtin());
        let log: Log = Arc::default();
        let mut app = Router::new()
            .merge(discovery::router(registry.clone()))
            .merge(openapi::router(registry))
            .route("/version", get(move || async move { axum::Json(serde_json::json!({"major": "1", "minor": minor, "gitVersion": format!("v1.{minor}.0"), "platform": "linux/amd64"})) }))
            .route("/api/v1/namespaces/{namespace}/pods", post(create_pod))
            .route("/api/v1/namespaces/{namespace}/pods/{name}", get(existing_pod).patch(existing_pod));
        if legacy_only {
            app = app.layer(middleware::from_fn(legacy_accept));
        }
        let app = app.layer(middleware::from_fn_with_state(log.clone(), record));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                axum::serve(listener, app).with_graceful_shutdown(async { rx.await.ok(); }).await.unwrap();
            })
        });
        TestServer { url, log, shutdown: Some(tx), thread: Some(thread) }
    }

    fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    /// Runs kubectl against this server with a fresh cache and an empty kubeconfig.
    fn kubectl(&self, args: &[&str]) -> Output {
        let dir = tempfile::tempdir().unwrap();
        self.kubectl_cached(args, dir.path())
    }

    /// Runs kubectl with its caches in `dir` (kept between calls).
    fn kubectl_cached(&self, args: &[&str], dir: &Path) -> Output {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, "").unwrap();
        let cache = dir.join("cache");
        Command::new("timeout")
            .arg("120")
            .arg("kubectl")
            .args(["--server", &self.url, "--cache-dir", cache.to_str().unwrap()])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(dir)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        self.expect_ok(args, self.kubectl(args))
    }

    fn expect_ok(&self, args: &[&str], out: Output) -> String {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "kubectl {args:?} failed: {}\nstdout: {stdout}\nrequests: {:#?}", String::from_utf8_lossy(&out.stderr), self.requests());
        stdout
    }

    /// Every request kubectl made got an answer (no 404 or 406), and the v2 document was not
    /// needed.
    fn assert_all_answered(&self) {
        let requests = self.requests();
        let failed: Vec<&Logged> = requests.iter().filter(|r| r.status >= 400).collect();
        assert!(failed.is_empty(), "unanswered requests: {failed:#?}");
        assert!(!requests.iter().any(|r| r.uri.starts_with("/openapi/v2")), "kubectl fell back to OpenAPI v2: {requests:#?}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn have_kubectl() -> bool {
    let found = std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| Path::new(&p).join("kubectl").is_file()));
    if !found {
        eprintln!("SKIPPED: kubectl is not on PATH");
    }
    found
}

/// The columns of `kubectl api-resources` for one resource name.
fn api_resource_row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|cols| cols.first() == Some(&name)).unwrap_or_else(|| panic!("{name} not listed:\n{table}"))
}

#[test]
fn api_resources_lists_pods_and_deployments_from_aggregated_discovery() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let table = server.kubectl_ok(&["api-resources"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(api_resource_row(&table, "pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(api_resource_row(&table, "deployments"), ["deployments", "deploy", "apps/v1", "true", "Deployment"]);
    assert_eq!(api_resource_row(&table, "nodes"), ["nodes", "no", "v1", "false", "Node"]);
    assert_eq!(api_resource_row(&table, "leases"), ["leases", "coordination.k8s.io/v1", "true", "Lease"]);
    assert!(!table.contains("pods/status"), "subresources are not resources:\n{table}");

    // kubectl took the aggregated answer (so it never had to walk the group versions).
    let requests = server.requests();
    let apis = requests.iter().find(|r| r.uri.starts_with("/apis?") || r.uri == "/apis").expect("kubectl asked for /apis");
    assert!(apis.content_type.contains("as=APIGroupDiscoveryList"), "{apis:?}");
    assert!(!requests.iter().any(|r| r.uri.starts_with("/apis/apps/v1")), "legacy per-group discovery was used: {requests:#?}");
    server.assert_all_answered();

    let wide = server.kubectl_ok(&["api-resources", "--api-group=apps", "-o", "wide"]);
    let row = api_resource_row(&wide, "deployments");
    assert_eq!(row[5..], ["create,delete,deletecollection,get,list,patch,update,watch", "all"], "{wide}");
}

/// kubectl 1.29 knows only the v2beta1 aggregated form; the same answer in that version works.
#[test]
fn older_kubectl_gets_aggregated_v2beta1() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start_with("29", false);
    let table = server.kubectl_ok(&["api-resources"]);
    assert_eq!(api_resource_row(&table, "statefulsets"), ["statefulsets", "sts", "apps/v1", "true", "StatefulSet"]);
    let requests = server.requests();
    let apis = requests.iter().find(|r| r.uri.starts_with("/apis?") || r.uri == "/apis").expect("kubectl asked for /apis");
    assert!(apis.content_type.contains("v=v2beta1"), "{apis:?}");
    server.assert_all_answered();
}

/// The legacy documents, as a client that does not ask for aggregated discovery reads them.
#[test]
fn legacy_discovery_serves_the_same_resources() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start_with("33", true);
    let table = server.kubectl_ok(&["api-resources"]);
    assert_eq!(api_resource_row(&table, "pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(api_resource_row(&table, "cronjobs"), ["cronjobs", "cj", "batch/v1", "true", "CronJob"]);
    let requests = server.requests();
    for path in ["/api/v1", "/apis/apps/v1", "/apis/batch/v1"] {
        assert!(requests.iter().any(|r| r.uri.split('?').next() == Some(path) && r.status == 200), "{path} not fetched: {requests:#?}");
    }
    server.assert_all_answered();
}

/// A second kubectl with the same cache reuses the hash-addressed documents it already has.
#[test]
fn cached_openapi_documents_are_not_downloaded_again() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let args = ["explain", "deployment.spec.replicas"];
    let first = server.expect_ok(&args, server.kubectl_cached(&args, dir.path()));
    let second = server.expect_ok(&args, server.kubectl_cached(&args, dir.path()));
    assert_eq!(first, second);
    let fetched = server.requests().iter().filter(|r| r.uri.starts_with("/openapi/v3/apis/apps/v1") && r.status == 200).count();
    assert_eq!(fetched, 1, "{:#?}", server.requests());
    server.assert_all_answered();
}

#[test]
fn api_versions_lists_every_group_version() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let out = server.kubectl_ok(&["api-versions"]);
    let versions: Vec<&str> = out.lines().collect();
    for gv in ["v1", "apps/v1", "batch/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1", "events.k8s.io/v1"] {
        assert!(versions.contains(&gv), "{gv} missing from {versions:?}");
    }
    server.assert_all_answered();
}

#[test]
fn explain_prints_field_descriptions_from_openapi_v3() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let out = server.kubectl_ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: containers <[]Container>"), "{out}");
    assert!(out.contains("List of containers belonging to the pod."), "{out}");
    assert!(out.contains("A single application container that you want to run within a pod."), "{out}");
    assert!(out.contains("imagePullPolicy\t<string>"), "{out}");
    assert!(out.contains("name\t<string> -required-"), "{out}");

    let out = server.kubectl_ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("FIELD: strategy <DeploymentStrategy>"), "{out}");
    assert!(out.contains("The deployment strategy to use to replace existing pods with new ones."), "{out}");
    assert!(out.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{out}");

    let out = server.kubectl_ok(&["explain", "svc", "--recursive"]);
    assert!(out.contains("KIND:       Service"), "{out}");
    assert!(out.contains("spec\t<ServiceSpec>"), "{out}");
    assert!(out.contains("    clusterIP\t<string>"), "{out}");
    assert!(out.contains("      port\t<integer> -required-"), "{out}");
    // metadata is not shown as required (k8s-openapi's own schema says it is).
    assert!(out.contains("metadata\t<ObjectMeta>\n"), "{out}");

    let requests = server.requests();
    let doc = requests.iter().find(|r| r.uri.starts_with("/openapi/v3/apis/apps/v1?hash=")).expect("kubectl fetched the apps/v1 document by hash");
    assert_eq!(doc.status, 200);
    server.assert_all_answered();
}

#[test]
fn raw_openapi_v3_index_parses() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let out = server.kubectl_ok(&["get", "--raw", "/openapi/v3"]);
    let index: serde_json::Value = serde_json::from_str(&out).expect("the index is JSON");
    let url = index["paths"]["api/v1"]["serverRelativeURL"].as_str().unwrap();
    assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
    let doc = server.kubectl_ok(&["get", "--raw", url]);
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["openapi"], "3.0.0");
    server.assert_all_answered();
}

/// kubectl 1.33 only falls back to client-side validation (which needs OpenAPI v2 as
/// protobuf) when the v3 document lacks a `fieldValidation` parameter on the kind's PATCH.
#[test]
fn create_uses_server_side_field_validation_without_openapi_v2() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n").unwrap();
    let out = server.kubectl_ok(&["create", "-f", manifest.to_str().unwrap(), "-n", "default"]);
    assert!(out.contains("pod/p created"), "{out}");
    let requests = server.requests();
    let create = requests.iter().find(|r| r.method == "POST").expect("kubectl posted the pod");
    assert!(create.uri.contains("fieldValidation=Strict"), "{create:?}");

    let out = server.kubectl_ok(&["create", "-f", manifest.to_str().unwrap(), "-n", "default", "--dry-run=server", "--validate=warn"]);
    assert!(out.contains("pod/p created (server dry run)"), "{out}");
    let requests = server.requests();
    let dry = requests.iter().filter(|r| r.method == "POST").nth(1).expect("kubectl posted the pod again");
    assert!(dry.uri.contains("dryRun=All") && dry.uri.contains("fieldValidation=Warn"), "{dry:?}");
    server.assert_all_answered();
}

/// A `/proc/self/status` memory figure in KiB: `VmRSS`, or `RssAnon` (its heap part; the rest
/// is this debug binary's code and read-only data, which the kernel can drop and share).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

const PROBE_ENV: &str = "APISERVER_LITE_MEMORY_PROBE";

/// Run by `memory_held_by_documents` in a process of its own (other tests would blur the
/// numbers): builds everything discovery and OpenAPI hold and prints the resident memory.
#[test]
fn memory_probe() {
    if std::env::var_os(PROBE_ENV).is_none() {
        return;
    }
    let (before, anon_before) = (status_kib("VmRSS"), status_kib("RssAnon"));
    let registry = Arc::new(builtin());
    let size = openapi::Documents::build(&registry).size();
    let routers = (discovery::router(registry.clone()), openapi::router(registry.clone()));
    // The unknown-field index is built on first use.
    assert!(openapi::validate_fields("", "v1", "Pod", &serde_json::json!({"spec": {}})).is_empty());
    println!("PROBE documents={size} rss_before={before} rss_after={} anon_before={anon_before} anon_after={}", status_kib("VmRSS"), status_kib("RssAnon"));
    drop(routers);
}

/// Client-side apply of a change: kubectl computes a strategic merge patch (from its compiled-in
/// types; it does not ask for OpenAPI v2) and sends it with server-side validation.
#[test]
fn apply_patches_with_server_side_field_validation() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n").unwrap();
    let out = server.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap(), "-n", "default"]);
    assert!(out.contains("pod/p configured"), "{out}");
    let requests = server.requests();
    let patch = requests.iter().find(|r| r.method == "PATCH").unwrap_or_else(|| panic!("no PATCH: {requests:#?}"));
    assert!(patch.uri.contains("fieldValidation=Strict"), "{patch:?}");
    assert_eq!(patch.request_type, "application/strategic-merge-patch+json");
    server.assert_all_answered();
}

/// What the server holds for discovery and OpenAPI: document sizes and the resident memory of
/// a process holding them (a debug build, so an upper bound).
#[test]
fn memory_held_by_documents() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_probe", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "probe failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.find("PROBE ").map(|at| &l[at..])).unwrap_or_else(|| panic!("no probe output: {stdout}"));
    println!("{line}");
    let field = |name: &str| -> u64 { line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap() };
    assert!(field("documents") < 4 * 1024 * 1024, "{line}");
    assert!(field("rss_after") < 40 * 1024, "discovery and OpenAPI alone should leave room under 50 MB: {line}");
    assert!(field("anon_after") - field("anon_before") < 8 * 1024, "heap held for discovery and OpenAPI: {line}");
}
