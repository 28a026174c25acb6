//! The server's routes with fake backends, then over real HTTPS with certificates made
//! here: who is let in, logs served, and an exec upgrade proxied to a fake streaming server
//! that echoes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::auth::{Identity, KUBELET_CLIENT_USER};
use super::backend::{ContainerRef, PodLookup, StreamFlags, StreamingRuntime};
use super::metrics::Metrics;
use super::routes::{Peer, ServerState, router};
use super::stats::{NodeStats, StatsProvider, Summary};

#[derive(Default)]
struct Lookup {
    containers: HashMap<(String, String, String), ContainerRef>,
}

#[async_trait]
impl PodLookup for Lookup {
    async fn container(&self, ns: &str, pod: &str, container: &str) -> Option<ContainerRef> {
        self.containers.get(&(ns.into(), pod.into(), container.into())).cloned()
    }
    async fn sandbox(&self, ns: &str, pod: &str) -> Option<String> {
        (ns == "default" && pod == "web").then(|| "sandbox-1".to_string())
    }
    async fn pods(&self) -> Vec<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        vec![p]
    }
}

/// Hands out URLs of the fake streaming server and records what was asked.
struct Streaming {
    base: String,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl StreamingRuntime for Streaming {
    async fn exec_url(&self, id: &str, command: &[String], flags: StreamFlags) -> Result<String, String> {
        self.asked.lock().unwrap().push(format!("exec {id} {command:?} stdin={} tty={}", flags.stdin, flags.tty));
        Ok(format!("{}/exec/token-1", self.base))
    }
    async fn attach_url(&self, id: &str, _: StreamFlags) -> Result<String, String> {
        self.asked.lock().unwrap().push(format!("attach {id}"));
        Ok(format!("{}/attach/token-2", self.base))
    }
    async fn port_forward_url(&self, sandbox: &str, ports: &[i32]) -> Result<String, String> {
        self.asked.lock().unwrap().push(format!("portforward {sandbox} {ports:?}"));
        Ok(format!("{}/portforward/token-3", self.base))
    }
}

struct Stats;

#[async_trait]
impl StatsProvider for Stats {
    async fn summary(&self) -> Result<Summary, String> {
        Ok(Summary { node: NodeStats { node_name: "node-a".into(), ..Default::default() }, pods: vec![] })
    }
}

const LOG: &str = "2024-01-01T00:00:01Z stdout F one\n2024-01-01T00:00:02Z stdout F two\n2024-01-01T00:00:03Z stdout F three\n";

struct Setup {
    _dir: tempfile::TempDir,
    state: ServerState,
    streaming: Arc<Streaming>,
}

fn setup(streaming_base: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("1.log");
    let previous = dir.path().join("0.log");
    std::fs::write(&log, LOG).unwrap();
    std::fs::write(&previous, "2024-01-01T00:00:00Z stderr F crashed\n").unwrap();
    let mut lookup = Lookup::default();
    let key = |c: &str| ("default".to_string(), "web".to_string(), c.to_string());
    lookup.containers.insert(key("app"), ContainerRef { id: "c-app".into(), log_path: log.clone(), previous_log_path: Some(previous), running: false });
    lookup.containers.insert(key("fresh"), ContainerRef { id: "c-fresh".into(), log_path: log, previous_log_path: None, running: false });
    let streaming = Arc::new(Streaming { base: streaming_base.to_string(), asked: Mutex::new(Vec::new()) });
    let metrics = Arc::new(Metrics::new("node-a"));
    metrics.set_running_pods(1);
    let state = ServerState { lookup: Arc::new(lookup), streaming: streaming.clone(), stats: Arc::new(Stats), metrics };
    Setup { _dir: dir, state, streaming }
}

fn apiserver() -> Peer {
    Peer(Some(Identity { user: KUBELET_CLIENT_USER.into(), groups: vec!["system:masters".into()] }))
}

async fn call(state: &ServerState, peer: Peer, method: &str, uri: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    req.extensions_mut().insert(peer);
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn callers_are_checked_on_every_route() {
    let s = setup("http://127.0.0.1:1");
    assert_eq!(call(&s.state, Peer(None), "GET", "/healthz").await, (StatusCode::UNAUTHORIZED, "Unauthorized".into()));
    let bob = Peer(Some(Identity { user: "bob".into(), groups: vec![] }));
    let (code, body) = call(&s.state, bob, "GET", "/containerLogs/default/web/app").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(body, "Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[proxy])");
    assert_eq!(call(&s.state, apiserver(), "GET", "/healthz").await, (StatusCode::OK, "ok".into()));
    assert_eq!(call(&s.state, apiserver(), "GET", "/nothing").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logs_are_served_with_their_options() {
    let s = setup("http://127.0.0.1:1");
    let st = &s.state;
    assert_eq!(call(st, apiserver(), "GET", "/containerLogs/default/web/app").await, (StatusCode::OK, "one\ntwo\nthree\n".into()));
    assert_eq!(call(st, apiserver(), "GET", "/containerLogs/default/web/app?tailLines=1&timestamps=true").await.1, "2024-01-01T00:00:03Z three\n");
    assert_eq!(call(st, apiserver(), "GET", "/containerLogs/default/web/app?previous=true").await.1, "crashed\n");
    // An exited container's log is not followed: the answer ends.
    assert_eq!(call(st, apiserver(), "GET", "/containerLogs/default/web/app?follow=true&limitBytes=3").await.1, "one");
    let (code, body) = call(st, apiserver(), "GET", "/containerLogs/default/web/fresh?previous=true").await;
    assert_eq!((code, body.as_str()), (StatusCode::BAD_REQUEST, "previous terminated container \"fresh\" in pod \"web\" not found"));
    let (code, body) = call(st, apiserver(), "GET", "/containerLogs/default/web/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(call(st, apiserver(), "GET", "/containerLogs/default/web/app?sinceSeconds=0").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pods_metrics_and_stats() {
    let s = setup("http://127.0.0.1:1");
    let (code, body) = call(&s.state, apiserver(), "GET", "/pods").await;
    assert_eq!(code, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((list["kind"].as_str(), list["items"][0]["metadata"]["name"].as_str()), (Some("PodList"), Some("web")));
    let (_, metrics) = call(&s.state, apiserver(), "GET", "/metrics").await;
    assert!(metrics.contains("kubelet_running_pods 1\n"), "{metrics}");
    let (_, summary) = call(&s.state, apiserver(), "GET", "/stats/summary").await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&summary).unwrap()["node"]["nodeName"], "node-a");
}

#[tokio::test]
async fn streaming_requests_are_checked_before_the_runtime_is_asked() {
    let s = setup("http://127.0.0.1:1");
    assert_eq!(call(&s.state, apiserver(), "POST", "/exec/default/web/app?stdout=true").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&s.state, apiserver(), "POST", "/exec/default/web/app?command=ls").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&s.state, apiserver(), "POST", "/exec/default/web/nope?command=ls&stdout=true").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&s.state, apiserver(), "POST", "/portForward/default/gone").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&s.state, apiserver(), "POST", "/portForward/default/web?port=http").await.0, StatusCode::BAD_REQUEST);
    // Nothing listens at the runtime's URL: a gateway error, not a hang.
    let (code, body) = call(&s.state, apiserver(), "GET", "/attach/default/web/app?stdout=true").await;
    assert_eq!(code, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(s.streaming.asked.lock().unwrap().clone(), ["attach c-app"]);
}

// --- over HTTPS ---

struct Pki {
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), ca_params: params, ca_key: key }
    }

    fn issue(&self, cn: &str, org: Option<&str>, server: bool) -> (String, String) {
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        if let Some(org) = org {
            params.distinguished_name.push(DnType::OrganizationName, org);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        if server {
            params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn client_tls(ca_pem: &str, client: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One request on a fresh TLS connection; the response, its upgraded side served on.
async fn send(port: u16, tls: Arc<rustls::ClientConfig>, req: Request<Full<axum::body::Bytes>>) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls).connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await.map_err(|e| e.to_string())
}

fn get(uri: &str) -> Request<Full<axum::body::Bytes>> {
    Request::get(uri).header("host", "127.0.0.1").body(Full::default()).unwrap()
}

/// A streaming server that answers any request 101 and echoes what follows; the request
/// heads it got go to `heads`.
async fn fake_streaming_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
                tcp.write_all(answer.as_bytes()).await.unwrap();
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, heads)
}

#[tokio::test]
async fn https_with_client_certificates_and_an_upgrade_proxied() {
    let pki = Pki::new("cluster-ca");
    let (server_cert, server_key) = pki.issue("node-a", None, true);
    let tls = super::tls::server_config(server_cert.as_bytes(), server_key.as_bytes(), pki.ca_pem.as_bytes()).unwrap();
    let (stream_port, heads) = fake_streaming_server().await;
    let s = setup(&format!("http://127.0.0.1:{stream_port}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(super::serve::serve_tls(listener, tls, router(s.state.clone())));

    let apiserver = pki.issue(KUBELET_CLIENT_USER, Some("system:masters"), false);
    let bob = pki.issue("bob", Some("developers"), false);
    let stranger = Pki::new("another-ca").issue(KUBELET_CLIENT_USER, Some("system:masters"), false);

    let anonymous = send(port, client_tls(&pki.ca_pem, None), get("/healthz")).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let forbidden = send(port, client_tls(&pki.ca_pem, Some(&bob)), get("/pods")).await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let body = forbidden.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("user=bob"));
    assert!(send(port, client_tls(&pki.ca_pem, Some(&stranger)), get("/healthz")).await.is_err(), "a certificate from another CA is refused");

    let logs = send(port, client_tls(&pki.ca_pem, Some(&apiserver)), get("/containerLogs/default/web/app?tailLines=2")).await.unwrap();
    assert_eq!(logs.status(), StatusCode::OK);
    assert_eq!(logs.into_body().collect().await.unwrap().to_bytes(), "two\nthree\n");

    // exec over SPDY as kubectl asks for it through the API server.
    let req = Request::post("/exec/default/web/app?command=cat&input=1&stdin=true&stdout=true")
        .header("host", "127.0.0.1")
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(Full::default())
        .unwrap();
    let mut resp = send(port, client_tls(&pki.ca_pem, Some(&apiserver)), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");
    assert_eq!(resp.headers()["upgrade"], "SPDY/3.1");
    let mut io = TokioIo::new(hyper::upgrade::on(&mut resp).await.unwrap());
    io.write_all(b"hello through the kubelet").await.unwrap();
    let mut got = vec![0u8; 25];
    tokio::time::timeout(std::time::Duration::from_secs(5), io.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"hello through the kubelet");

    let head = heads.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET /exec/token-1 HTTP/1.1\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: spdy/3.1") && lower.contains("x-stream-protocol-version: v4.channel.k8s.io"), "{head}");
    assert!(lower.contains(&format!("host: 127.0.0.1:{stream_port}")), "{head}");
    assert_eq!(s.streaming.asked.lock().unwrap()[0], "exec c-app [\"cat\"] stdin=true tty=false");
    server.abort();
}

#[tokio::test]
async fn start_binds_both_ports_and_names_bad_files() {
    let pki = Pki::new("cluster-ca");
    let (cert, key) = pki.issue("node-a", None, true);
    let dir = tempfile::tempdir().unwrap();
    let files = super::tls::TlsFiles { cert: dir.path().join("kubelet.crt"), key: dir.path().join("kubelet.key"), client_ca: dir.path().join("ca.crt") };
    let s = setup("http://127.0.0.1:1");
    let err = super::serve::start(s.state.clone(), &files, "127.0.0.1:0".parse().unwrap(), None).await.err().unwrap();
    assert!(err.to_string().contains("kubelet.crt"), "{err}");
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    std::fs::write(&files.client_ca, &pki.ca_pem).unwrap();
    let servers = super::serve::start(s.state.clone(), &files, "127.0.0.1:0".parse().unwrap(), Some("127.0.0.1:0".parse().unwrap())).await.unwrap();
    let mut tcp = tokio::net::TcpStream::connect(servers.healthz_addr.unwrap()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    let resp = send(servers.api_addr.port(), client_tls(&pki.ca_pem, None), get("/healthz")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    servers.abort();
}
