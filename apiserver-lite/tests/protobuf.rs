//! kubectl is the oracle for `protobuf::decode`: for each `kubectl create ...` / `kubectl run`
//! below, the protobuf body kubectl POSTs is decoded and compared with the JSON kubectl prints
//! for the same command with `--dry-run=client -o json` (which is the same Go object, written
//! by Go's encoding/json).
//!
//! Each test serves a stand-in on plain http loopback: `/version` (1.33, so the dispatcher runs
//! kubectl 1.33), discovery and OpenAPI from this crate, and a catch-all that records POST
//! bodies and answers 201 with the decoded object. Needs `kubectl` on PATH; without it the tests
//! say so and skip.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use apiserver_lite::resources::builtin;
use apiserver_lite::{discovery, openapi, protobuf};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use tokio::sync::oneshot;

#[derive(Clone, Debug)]
struct Posted {
    uri: String,
    content_type: String,
    body: Vec<u8>,
}

type Posts = Arc<Mutex<Vec<Posted>>>;

/// Records a create and answers it as a server would: 201 with the object (here the decoded
/// body, or the error when it does not decode, which fails the test's own decode too).
async fn record_post(
    posts: Posts,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::GET {
        return match canned(uri.path()) {
            Some(object) => axum::Json(object).into_response(),
            None => (StatusCode::NOT_FOUND, format!("no {uri} here")).into_response(),
        };
    }
    if method != Method::POST {
        return (StatusCode::NOT_FOUND, format!("no {method} {uri} here")).into_response();
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    posts.lock().unwrap().push(Posted {
        uri: uri.to_string(),
        content_type: content_type.clone(),
        body: body.to_vec(),
    });
    if content_type.starts_with("application/json") {
        return (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    match protobuf::decode(&body) {
        Ok(object) => (StatusCode::CREATED, axum::Json(object)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The objects that commands building on an existing one (`autoscale`, `create job --from`)
/// read first.
fn canned(path: &str) -> Option<Value> {
    let object = match path {
        "/apis/apps/v1/namespaces/default/deployments/web" => serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "7d8e1c1a-0000-4000-8000-000000000001", "resourceVersion": "1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
        }),
        "/apis/batch/v1/namespaces/default/cronjobs/c" => serde_json::json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "c", "namespace": "default", "uid": "7d8e1c1a-0000-4000-8000-000000000002", "resourceVersion": "1"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "args": ["date"]}]}}}}},
        }),
        _ => return None,
    };
    Some(object)
}

struct TestServer {
    url: String,
    posts: Posts,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        let registry = Arc::new(builtin());
        let posts: Posts = Arc::default();
        let version = serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"});
        let app = Router::new()
            .merge(discovery::router(registry.clone()))
            .merge(openapi::router(registry))
            .route("/version", get(move || async move { axum::Json(version) }))
            .fallback({
                let posts = posts.clone();
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    record_post(posts.clone(), method, uri, headers, body)
                }
            });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        rx.await.ok();
                    })
                    .await
                    .unwrap();
            })
        });
        TestServer {
            url,
            posts,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// Runs kubectl against this server with a fresh cache dir and an empty kubeconfig.
    fn kubectl(&self, args: &[&str]) -> Output {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "").unwrap();
        let cache = dir.path().join("cache");
        Command::new("timeout")
            .arg("120")
            .arg("kubectl")
            .args([
                "--server",
                &self.url,
                "--cache-dir",
                cache.to_str().unwrap(),
            ])
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .current_dir(dir.path())
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nstdout: {stdout}\nposts: {:?}",
            String::from_utf8_lossy(&out.stderr),
            self.posts.lock().unwrap()
        );
        stdout
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
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|p| Path::new(&p).join("kubectl").is_file())
    });
    if !found {
        eprintln!("SKIPPED: kubectl is not on PATH");
    }
    found
}

/// Runs `kubectl <args>` for real and with `--dry-run=client -o json`, and checks that the
/// protobuf body of the real run decodes to exactly the dry-run's JSON. Returns the decoded
/// object for further checks.
fn decodes_like_dry_run(args: &[&str], path: &str) -> Value {
    let server = TestServer::start();
    // The flags go before a `--` that starts the container's command.
    let flags_at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut dry_run = args.to_vec();
    dry_run.splice(flags_at..flags_at, ["--dry-run=client", "-o", "json"]);
    let expected: Value =
        serde_json::from_str(&server.kubectl_ok(&dry_run)).expect("dry-run prints JSON");
    assert!(
        server.posts.lock().unwrap().is_empty(),
        "a client-side dry run posts nothing"
    );

    server.kubectl_ok(args);
    let posts = server.posts.lock().unwrap().clone();
    let [post] = posts.as_slice() else {
        panic!("expected one POST, got {posts:?}")
    };
    assert_eq!(post.uri.split('?').next(), Some(path));
    assert_eq!(
        post.content_type,
        protobuf::CONTENT_TYPE,
        "kubectl sends this kind as protobuf"
    );
    assert!(post.body.starts_with(protobuf::MAGIC));

    let decoded = protobuf::decode(&post.body).unwrap_or_else(|e| panic!("decode {args:?}: {e}"));
    assert_eq!(
        decoded,
        expected,
        "decoded protobuf (left) differs from kubectl's dry-run JSON (right):\n{}\n{}",
        serde_json::to_string_pretty(&decoded).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
    decoded
}

#[test]
fn create_configmap() {
    if !have_kubectl() {
        return;
    }
    let cm = decodes_like_dry_run(
        &[
            "create",
            "configmap",
            "x",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "2"}));
}

#[test]
fn create_secret_generic() {
    if !have_kubectl() {
        return;
    }
    let secret = decodes_like_dry_run(
        &["create", "secret", "generic", "s", "--from-literal=p=x"],
        "/api/v1/namespaces/default/secrets",
    );
    assert_eq!(secret["data"]["p"], "eA==", "bytes come out as base64");
}

#[test]
fn create_deployment() {
    if !have_kubectl() {
        return;
    }
    let deployment = decodes_like_dry_run(
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ],
        "/apis/apps/v1/namespaces/default/deployments",
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
}

#[test]
fn create_service_clusterip() {
    if !have_kubectl() {
        return;
    }
    let service = decodes_like_dry_run(
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        "/api/v1/namespaces/default/services",
    );
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"], 8080,
        "IntOrString as a number"
    );
}

#[test]
fn create_namespace() {
    if !have_kubectl() {
        return;
    }
    decodes_like_dry_run(&["create", "namespace", "team"], "/api/v1/namespaces");
}

#[test]
fn create_job() {
    if !have_kubectl() {
        return;
    }
    let job = decodes_like_dry_run(
        &[
            "create",
            "job",
            "j",
            "--image=busybox",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
        "/apis/batch/v1/namespaces/default/jobs",
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
}

#[test]
fn create_cronjob() {
    if !have_kubectl() {
        return;
    }
    let cronjob = decodes_like_dry_run(
        &[
            "create",
            "cronjob",
            "c",
            "--image=busybox",
            "--schedule=*/1 * * * *",
        ],
        "/apis/batch/v1/namespaces/default/cronjobs",
    );
    assert_eq!(cronjob["spec"]["schedule"], "*/1 * * * *");
}

#[test]
fn create_serviceaccount() {
    if !have_kubectl() {
        return;
    }
    decodes_like_dry_run(
        &["create", "serviceaccount", "sa"],
        "/api/v1/namespaces/default/serviceaccounts",
    );
}

/// `kubectl run` builds its pod with the unstructured client: the body is JSON, so the server
/// must keep accepting JSON creates alongside protobuf ones.
#[test]
fn run_pod_posts_json_not_protobuf() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let args = [
        "run",
        "p",
        "--image=nginx",
        "--port=80",
        "--labels=app=p",
        "--env=A=1",
    ];
    let mut dry_run = args.to_vec();
    dry_run.extend(["--dry-run=client", "-o", "json"]);
    let expected: Value = serde_json::from_str(&server.kubectl_ok(&dry_run)).unwrap();
    server.kubectl_ok(&args);
    let posts = server.posts.lock().unwrap().clone();
    let [post] = posts.as_slice() else {
        panic!("expected one POST, got {posts:?}")
    };
    assert_eq!(post.content_type, "application/json");
    let body: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body, expected);
    assert!(matches!(
        protobuf::decode(&post.body),
        Err(protobuf::ProtobufError::BadMagic { .. })
    ));
}

#[test]
fn create_role() {
    if !have_kubectl() {
        return;
    }
    let role = decodes_like_dry_run(
        &["create", "role", "r", "--verb=get,list", "--resource=pods"],
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
    );
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
}

#[test]
fn create_ingress() {
    if !have_kubectl() {
        return;
    }
    let ingress = decodes_like_dry_run(
        &[
            "create",
            "ingress",
            "ing",
            "--rule=foo.com/bar=svc1:8080,tls=my-cert",
        ],
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
    );
    // IngressRule embeds IngressRuleValue inline: `http` sits beside `host`.
    assert_eq!(ingress["spec"]["rules"][0]["host"], "foo.com");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        8080
    );
}

#[test]
fn create_poddisruptionbudget() {
    if !have_kubectl() {
        return;
    }
    let pdb = decodes_like_dry_run(
        &[
            "create",
            "poddisruptionbudget",
            "pdb",
            "--selector=app=web",
            "--min-available=50%",
        ],
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
    );
    assert_eq!(
        pdb["spec"]["minAvailable"], "50%",
        "IntOrString as a string"
    );
}

#[test]
fn create_quota() {
    if !have_kubectl() {
        return;
    }
    let quota = decodes_like_dry_run(
        &["create", "quota", "q", "--hard=cpu=1,memory=1G,pods=2"],
        "/api/v1/namespaces/default/resourcequotas",
    );
    assert_eq!(
        quota["spec"]["hard"],
        serde_json::json!({"cpu": "1", "memory": "1G", "pods": "2"}),
        "quantities as strings"
    );
}

#[test]
fn create_priorityclass() {
    if !have_kubectl() {
        return;
    }
    let class = decodes_like_dry_run(
        &[
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=hi",
        ],
        "/apis/scheduling.k8s.io/v1/priorityclasses",
    );
    assert_eq!(class["value"], 1000);
}

#[test]
fn create_secret_docker_registry() {
    if !have_kubectl() {
        return;
    }
    let secret = decodes_like_dry_run(
        &[
            "create",
            "secret",
            "docker-registry",
            "d",
            "--docker-server=r.io",
            "--docker-username=u",
            "--docker-password=p",
        ],
        "/api/v1/namespaces/default/secrets",
    );
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
}

/// The committed schema table is what its generator makes from the crates in the cargo
/// registry (so a hand edit or a stale table shows up). Skips, saying so, where python3 or the
/// crates' sources are not there.
#[test]
fn schema_table_matches_its_generator() {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let registry = home.join(".cargo/registry/src");
    let has_crate = |name: &str| {
        std::fs::read_dir(&registry)
            .map(|dirs| dirs.flatten().any(|d| d.path().join(name).is_dir()))
            .unwrap_or(false)
    };
    if !has_crate("k8s-pb-0.9.0") || !has_crate("k8s-openapi-0.29.0") {
        eprintln!(
            "SKIPPED: k8s-pb 0.9.0 or k8s-openapi 0.29.0 sources are not under {}",
            registry.display()
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match Command::new("python3")
        .arg(root.join("scripts/gen_protobuf_schema.py"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("SKIPPED: cannot run python3: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root.join("src/protobuf/schema.txt")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "src/protobuf/schema.txt is not what scripts/gen_protobuf_schema.py generates: regenerate it"
    );
}

/// A job made from a cron job: the owner reference (with its pointer bools set to true) and
/// the annotation come from the object kubectl read first.
#[test]
fn create_job_from_cronjob() {
    if !have_kubectl() {
        return;
    }
    let job = decodes_like_dry_run(
        &["create", "job", "j", "--from=cronjob/c"],
        "/apis/batch/v1/namespaces/default/jobs",
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        job["spec"]["backoffLimit"], 0,
        "an explicit zero in a pointer field stays"
    );
}

/// `kubectl autoscale` builds an autoscaling/v2 HPA. Its dry-run also prints
/// `status.currentMetrics: null`: Go writes a nil slice as null when the field lacks
/// `omitempty`, and neither protobuf nor the schema table tells that apart from an absent
/// list, so the decoder leaves the field out; that one key is removed before comparing.
#[test]
fn autoscale_deployment() {
    if !have_kubectl() {
        return;
    }
    let server = TestServer::start();
    let args = [
        "autoscale",
        "deployment",
        "web",
        "--max=3",
        "--cpu-percent=50",
    ];
    let mut dry_run = args.to_vec();
    dry_run.extend(["--dry-run=client", "-o", "json"]);
    let mut expected: Value = serde_json::from_str(&server.kubectl_ok(&dry_run)).unwrap();
    let status = expected["status"]
        .as_object_mut()
        .expect("dry-run prints a status");
    assert_eq!(status.remove("currentMetrics"), Some(Value::Null));

    server.kubectl_ok(&args);
    let posts = server.posts.lock().unwrap().clone();
    let [post] = posts.as_slice() else {
        panic!("expected one POST, got {posts:?}")
    };
    assert_eq!(post.content_type, protobuf::CONTENT_TYPE);
    let decoded = protobuf::decode(&post.body).unwrap();
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );
}
