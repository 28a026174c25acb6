//! The node subresources proxied to a kubelet: a stand-in kubelet (`stand_in`) with a
//! serving certificate from the cluster CA, and the API server in front of it, first called
//! in-process (logs, every error case), then as users run it with the real kubectl (logs,
//! logs -f, exec with exit codes, port-forward).

mod common;
mod stand_in;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver_lite::auth::Pki;
use apiserver_lite::handlers::Api;
use apiserver_lite::handlers::node_proxy::{KUBELET_CLIENT_USER, KubeletClient};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use stand_in::StandInKubelet;
use tower::ServiceExt;

fn node(name: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        .as_object()
        .cloned()
        .map(|mut n| {
            n.insert("status".into(), node_status(port));
            Value::Object(n)
        })
        .unwrap()
}

fn node_status(port: u16) -> Value {
    json!({"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "stand-in"}],
           "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}})
}

fn pod(name: &str, node: Option<&str>, containers: &[&str]) -> Value {
    let list: Vec<Value> = containers.iter().map(|c| json!({"name": c, "image": "busybox:1.36"})).collect();
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": list}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

/// The API in-process with a kubelet client from its own PKI, which also signs the
/// stand-in kubelet's serving certificate.
struct InProcess {
    _dir: tempfile::TempDir,
    pki: Pki,
    app: axum::Router,
}

impl InProcess {
    async fn new() -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let store = common::open_store(dir.path()).await;
        let mut api = Api::new(Arc::new(apiserver_lite::resources::builtin()), store);
        api.kubelet = Some(KubeletClient::from_pki(&pki).unwrap());
        let api = Arc::new(api);
        apiserver_lite::server::bootstrap(&api, ("127.0.0.1".parse().unwrap(), 6443)).await.unwrap();
        InProcess { app: apiserver_lite::server::app(api), pki, _dir: dir }
    }

    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> axum::response::Response {
        let req = Request::builder().method(method).uri(path).header("content-type", "application/json");
        let body = body.map(|b| Body::from(b.to_string())).unwrap_or_else(Body::empty);
        self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap()
    }

    /// Status and body as text.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let resp = self.request(method, path, body).await;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn create(&self, path: &str, object: Value) {
        let (status, body) = self.call("POST", path, Some(object)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// A Node pointing at the kubelet on `port`, its status written as a kubelet writes it.
    async fn add_node(&self, name: &str, port: u16) {
        self.create("/api/v1/nodes", node(name, port)).await;
        let (status, current) = self.call("GET", &format!("/api/v1/nodes/{name}"), None).await;
        assert_eq!(status, StatusCode::OK);
        let mut current: Value = serde_json::from_str(&current).unwrap();
        current["status"] = node_status(port);
        let (status, body) = self.call("PUT", &format!("/api/v1/nodes/{name}/status"), Some(current)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn status_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("a Status: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_come_from_the_kubelet_of_the_pods_node() {
    let server = InProcess::new().await;
    // The stand-in starts a runtime of its own, which blocks: off this runtime's workers.
    let kubelet = tokio::task::block_in_place(|| StandInKubelet::start(&server.pki));
    server.add_node("n1", kubelet.port).await;
    server.create("/api/v1/namespaces/default/pods", pod("p", Some("n1"), &["app"])).await;

    let (status, body) = server.call("GET", "/api/v1/namespaces/default/pods/p/log", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "app: starting\napp: listening on :80\napp: ready\n");
    let (status, body) = server.call("GET", "/api/v1/namespaces/default/pods/p/log?tailLines=1&container=app", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "app: ready\n"));
    assert_eq!(kubelet.requests(), ["/containerLogs/default/p/app", "/containerLogs/default/p/app?tailLines=1"]);
    // The API server presents its own client certificate, and nothing else.
    let clients = kubelet.clients.lock().unwrap().clone();
    assert!(!clients.is_empty() && clients.iter().all(|cn| cn == KUBELET_CLIENT_USER), "{clients:?}");

    // follow: the lines arrive as the kubelet writes them, one every 100 ms.
    let resp = server.request("GET", "/api/v1/namespaces/default/pods/p/log?follow=true", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let start = Instant::now();
    let mut text = String::new();
    let mut arrivals = Vec::new();
    while text.matches('\n').count() < 4 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.expect("a streamed line within 5 s").expect("the stream is open").unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
            arrivals.push(start.elapsed());
        }
    }
    assert!(text.starts_with("app: tick 0\napp: tick 1\n"), "{text}");
    assert!(arrivals.len() >= 3 && *arrivals.last().unwrap() >= Duration::from_millis(250), "streamed, not buffered: {arrivals:?}");
    drop(body);
    // The client gone, the proxied stream and its connection to the kubelet go too.
    assert!(tokio::task::block_in_place(|| kubelet.follows_closed()), "the kubelet's log stream outlived its client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_subresource_errors_say_what_is_wrong() {
    let server = InProcess::new().await;
    let kubelet = tokio::task::block_in_place(|| StandInKubelet::start(&server.pki));
    server.add_node("n1", kubelet.port).await;
    let gone_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    server.add_node("down", gone_port).await;
    let pods = "/api/v1/namespaces/default/pods";
    server.create(pods, pod("unscheduled", None, &["app"])).await;
    server.create(pods, pod("two", Some("n1"), &["a", "b"])).await;
    server.create(pods, pod("orphan", Some("ghost"), &["app"])).await;
    server.create(pods, pod("unreachable", Some("down"), &["app"])).await;
    server.create(pods, pod("missing", Some("n1"), &["app"])).await;

    let expect = |code: u16, reason: &str, message: &str, (status, body): (StatusCode, String)| {
        let s = status_of(&body);
        assert_eq!((status.as_u16(), s["code"].as_u64(), s["reason"].as_str()), (code, Some(code as u64), Some(reason)), "{body}");
        assert!(s["message"].as_str().unwrap().contains(message), "wanted {message:?} in {body}");
    };
    expect(404, "NotFound", "pods \"nope\" not found", server.call("GET", &format!("{pods}/nope/log"), None).await);
    expect(400, "BadRequest", "pod unscheduled does not have a host assigned", server.call("GET", &format!("{pods}/unscheduled/log"), None).await);
    expect(400, "BadRequest", "a container name must be specified for pod two, choose one of: [a b]", server.call("GET", &format!("{pods}/two/log"), None).await);
    expect(400, "BadRequest", "container c is not valid for pod two", server.call("GET", &format!("{pods}/two/log?container=c"), None).await);
    expect(404, "NotFound", "nodes \"ghost\" not found", server.call("GET", &format!("{pods}/orphan/log"), None).await);
    expect(
        503,
        "ServiceUnavailable",
        &format!("Get \"https://127.0.0.1:{gone_port}/containerLogs/default/unreachable/app\": dial tcp 127.0.0.1:{gone_port}: Connection refused"),
        server.call("GET", &format!("{pods}/unreachable/log"), None).await,
    );
    // The kubelet's own plain-text errors come back as a Status with its code.
    expect(404, "NotFound", "pod default/missing is not known to this kubelet", server.call("GET", &format!("{pods}/missing/log"), None).await);
    // An exec without an upgrade reaches the kubelet, which refuses it.
    expect(400, "BadRequest", "exec over WebSocket only", server.call("POST", &format!("{pods}/two/exec?container=a&command=ls"), None).await);
    assert!(kubelet.requests().contains(&"/exec/default/two/a?command=ls".to_string()), "{:?}", kubelet.requests());

    // nodes/NAME/proxy/PATH is any path of the kubelet's API.
    let (status, body) = server.call("GET", "/api/v1/nodes/n1/proxy/containerLogs/default/two/b?tailLines=2", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b: listening on :80\nb: ready\n"));
}

/// kubectl against the server binary, the stand-in behind it.
struct Cluster {
    _dir: tempfile::TempDir,
    server: common::ServerProcess,
    kubelet: StandInKubelet,
    kubectl: common::Kubectl,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = common::ServerProcess::start(dir.path(), &[]);
        // The server's CA, loaded from its data dir, signs the stand-in's certificate.
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let kubelet = StandInKubelet::start(&pki);
        let kubectl = common::Kubectl::new(&server.kubeconfig());
        kubectl.apply(&serde_yaml_ng::to_string(&node("n1", kubelet.port)).unwrap());
        let status = json!({"status": node_status(kubelet.port)}).to_string();
        kubectl.ok(&["patch", "node", "n1", "--subresource=status", "--type=merge", "-p", &status]);
        kubectl.apply(&serde_yaml_ng::to_string(&pod("p", Some("n1"), &["app"])).unwrap());
        // kubectl port-forward and attach want a running pod.
        kubectl.ok(&["patch", "pod", "p", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]);
        Cluster { _dir: dir, server, kubelet, kubectl }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("timeout");
        c.arg("60").arg("kubectl").arg("--kubeconfig").arg(self.server.kubeconfig()).arg("--cache-dir").arg(self.kubectl.cache.path()).args(args);
        c
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).stdin(std::process::Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
}

/// A kubectl left running (logs -f, port-forward) under `timeout`, stopped by PID when
/// dropped: SIGTERM, which `timeout` passes on to kubectl (a SIGKILL would orphan it).
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[test]
fn kubectl_logs_and_exec_reach_the_kubelet() {
    let c = Cluster::start();
    let logs = c.kubectl.ok(&["logs", "p"]);
    assert_eq!(logs, "app: starting\napp: listening on :80\napp: ready\n");
    assert_eq!(c.kubectl.ok(&["logs", "p", "--tail=2"]), "app: listening on :80\napp: ready\n");

    // logs -f streams: read a few lines as they come, then stop it.
    let mut follow = Background(c.command(&["logs", "-f", "p"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(follow.0.stdout.take().unwrap()).lines();
    for n in 0..3 {
        let line = lines.next().expect("kubectl logs -f keeps streaming").unwrap();
        assert_eq!(line, format!("app: tick {n}"));
    }
    drop(follow);
    assert!(c.kubelet.follows_closed(), "the kubelet's log stream outlived kubectl logs -f");

    let (code, stdout, stderr) = c.run(&["exec", "p", "--", "echo", "hi", "there"]);
    assert_eq!((code, stdout.as_str()), (0, "hi there\n"), "stderr: {stderr}\nserver log: {}", c.server.log());
    let (code, _, stderr) = c.run(&["exec", "p", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "a nonzero exit code propagates: {stderr}");
    let (code, _, stderr) = c.run(&["exec", "p", "--", "nosuch"]);
    assert_eq!(code, 127, "{stderr}");
    assert!(stderr.contains("nosuch: command not found"), "{stderr}");
    let (code, _, stderr) = c.run(&["exec", "p", "-c", "other", "--", "echo"]);
    assert!(code != 0 && stderr.contains("container other is not valid for pod p"), "{stderr}");
    let exec = c.kubelet.requests().into_iter().find(|r| r.starts_with("/exec/default/p/app?") && r.contains("command=hi")).expect("the exec reached the kubelet");
    assert!(exec.contains("command=echo&command=hi&command=there"), "the command in order: {exec}");
    // kubectl 1.33 execs over WebSocket (v5.channel.k8s.io), passed through as it asked.
    assert!(c.kubelet.upgrades().iter().any(|(path, up)| path == "/exec/default/p/app" && up.eq_ignore_ascii_case("websocket")), "{:?}", c.kubelet.upgrades());
    let clients = c.kubelet.clients.lock().unwrap().clone();
    assert!(!clients.is_empty() && clients.iter().all(|cn| cn == KUBELET_CLIENT_USER), "{clients:?}");

    // stdin goes the other way through the same tunnel.
    let mut out = c.command(&["exec", "-i", "p", "--", "cat"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    out.stdin.take().unwrap().write_all(b"line one\nline two\n").unwrap();
    let out = out.wait_with_output().unwrap();
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()), (Some(0), "line one\nline two\n"), "{}", String::from_utf8_lossy(&out.stderr));

    let (code, stdout, stderr) = c.run(&["attach", "p"]);
    assert_eq!((code, stdout.as_str()), (0, "attached to app\n"), "{stderr}");
}

#[test]
fn kubectl_port_forward_relays_through_the_kubelet() {
    let c = Cluster::start();
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut pf = Background(c.command(&["port-forward", "pod/p", &format!("{local}:80")]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap());
    let mut out = BufReader::new(pf.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains(&format!("Forwarding from 127.0.0.1:{local} -> 80")), "{first}");
    for round in 0..2 {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg = format!("ping {round}\n");
        tcp.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        tcp.read_exact(&mut back).unwrap_or_else(|e| panic!("the echo through kubectl, the API server and the kubelet: {e}\nserver log: {}", c.server.log()));
        assert_eq!(String::from_utf8(back).unwrap(), msg);
    }
    // kubectl tries its WebSocket tunnel first; the stand-in refuses it as older kubelets
    // do, and kubectl falls back to SPDY/3.1: both answers passed through the API server.
    let upgrades = c.kubelet.upgrades();
    assert!(upgrades.iter().any(|(p, up)| p == "/portForward/default/p" && up.eq_ignore_ascii_case("websocket")), "{upgrades:?}");
    assert!(upgrades.iter().any(|(p, up)| p == "/portForward/default/p" && up == "SPDY/3.1"), "{upgrades:?}");
    drop(pf);
}

/// A plain HTTP server on loopback standing in for a pod's; it answers with what it got.
async fn pod_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move { format!("pod got {uri}") });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_and_service_proxies_reach_the_pod_network() {
    let server = InProcess::new().await;
    let port = pod_server().await;
    let pods = "/api/v1/namespaces/default/pods";
    let mut web = pod("web", Some("n1"), &["app"]);
    web["spec"]["containers"][0]["ports"] = json!([{"containerPort": port}]);
    server.create(pods, web).await;
    let (_, current) = server.call("GET", &format!("{pods}/web"), None).await;
    let mut current: Value = serde_json::from_str(&current).unwrap();
    current["status"]["podIP"] = json!("127.0.0.1");
    let (status, body) = server.call("PUT", &format!("{pods}/web/status"), Some(current)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The first container port, or the one named; the query and the path go as they are.
    let (status, body) = server.call("GET", &format!("{pods}/web/proxy/metrics?container=x&a=1"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pod got /metrics?container=x&a=1"));
    let (status, body) = server.call("GET", &format!("{pods}/web:{port}/proxy/"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pod got /"));
    let (status, body) = server.call("GET", &format!("{pods}/http:web:{port}/proxy/x"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pod got /x"));
    let (status, body) = server.call("GET", &format!("{pods}/https:web:{port}/proxy/x"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let services = "/api/v1/namespaces/default/services";
    server.create(services, json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": port}]}})).await;
    // No endpoints yet: nothing to send to.
    let (status, body) = server.call("GET", &format!("{services}/web:http/proxy/"), None).await;
    assert_eq!(status_of(&body)["message"], "no endpoints available for service \"web\"", "{status} {body}");
    server.create("/api/v1/namespaces/default/endpoints", json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}]})).await;
    let (status, body) = server.call("GET", &format!("{services}/web:http/proxy/hello?b=2"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pod got /hello?b=2"));
    let (status, body) = server.call("GET", &format!("{services}/web:80/proxy/by-number"), None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pod got /by-number"));
    let (status, body) = server.call("GET", &format!("{services}/web:nosuch/proxy/"), None).await;
    assert_eq!((status.as_u16(), status_of(&body)["message"].as_str()), (503, Some("no service port \"nosuch\" found for service \"web\"")));
}

#[tokio::test]
async fn without_a_kubelet_client_node_subresources_say_so() {
    let server = common::TestServer::new().await;
    let (status, body) = server.post("/api/v1/namespaces/default/pods", pod("p", Some("n1"), &["app"])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, mut n1) = server.post("/api/v1/nodes", node("n1", 10250)).await;
    n1["status"] = node_status(10250);
    let (status, body) = server.put("/api/v1/nodes/n1/status", n1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get("/api/v1/namespaces/default/pods/p/log").await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no client for kubelets"), "{body}");
}

/// An upgraded connection through the real server: nodes/NAME/proxy to the stand-in's
/// `/raw-echo`, bytes both ways, and the end of one side ends the other.
#[test]
fn upgraded_connections_are_joined_both_ways_until_one_side_closes() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let c = Cluster::start();
    let pki = Pki::load_or_create(c.server.data.as_path(), &[]).unwrap();
    let der = |pem: &str| {
        use base64::Engine;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        CertificateDer::from(base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(pki.ca_cert_pem())).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(rcgen::KeyPair::from_pem(pki.admin_key_pem()).unwrap().serialize_der()));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![der(pki.admin_cert_pem())], key)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", c.server.port)).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let request = format!("GET /api/v1/nodes/n1/proxy/raw-echo HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: Upgrade\r\nUpgrade: raw-echo\r\n\r\n", c.server.port);
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(tls.read(&mut b).await.unwrap(), 1, "the response head ended early: {}", String::from_utf8_lossy(&head));
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.to_ascii_lowercase().contains("upgrade: raw-echo"), "the kubelet's headers: {head}");
        for msg in ["first", "second, longer message"] {
            tls.write_all(msg.as_bytes()).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            tls.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        // Our end of the stream reaches the kubelet, which closes, and so does the tunnel.
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await.expect("the tunnel closes after its client's end");
        assert!(read.is_ok() && rest.is_empty(), "a clean close: {read:?} {rest:?}");
    });
    assert!(c.kubelet.upgrades().contains(&("/raw-echo".to_string(), "raw-echo".to_string())), "{:?}", c.kubelet.upgrades());
}
