//! The TLS serving loop end to end: certificates from `Pki`, a small axum app behind
//! `serve`, reached with reqwest and with the real kubectl (client certificate and token
//! kubeconfigs written by `kubeconfig::write`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver_lite::auth::kubeconfig::{self, Credentials};
use apiserver_lite::auth::{Authenticator, Pki, UserInfo, server_config};
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Who asked for what, over which HTTP version: what the handlers saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    user: UserInfo,
    version: axum::http::Version,
}

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn note(log: &Log, user: &UserInfo, req: &Request) {
    let entry = Seen {
        path: req.uri().path().to_string(),
        user: user.clone(),
        version: req.version(),
    };
    log.lock().unwrap().push(entry);
}

async fn whoami(
    State(log): State<Log>,
    Extension(user): Extension<UserInfo>,
    req: Request,
) -> Json<Value> {
    note(&log, &user, &req);
    Json(json!({"name": user.name, "groups": user.groups}))
}

async fn version(
    State(log): State<Log>,
    Extension(user): Extension<UserInfo>,
    req: Request,
) -> Json<Value> {
    note(&log, &user, &req);
    Json(json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
        "platform": "linux/amd64"
    }))
}

/// Switches protocols and echoes what the client writes, as exec and attach take over
/// their connection.
async fn echo_upgrade(mut req: Request) -> Response {
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut read, &mut write).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "echo")
        .body(Body::empty())
        .unwrap()
}

/// A response that never ends, like a watch.
async fn forever() -> Response {
    let stream = futures_util::stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"first\n")) })
        .chain(futures_util::stream::pending());
    Response::new(Body::from_stream(stream))
}

impl Server {
    async fn start(pki: &Pki, authn: Authenticator) -> Server {
        let seen: Log = Arc::default();
        let app = Router::new()
            .route("/whoami", get(whoami))
            .route("/version", get(version))
            .route("/echo", get(echo_upgrade))
            .route("/forever", get(forever))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = server_config(pki).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(apiserver_lite::auth::serve(
            listener,
            tls,
            Arc::new(authn),
            app,
            shutdown,
        ));
        Server {
            port,
            seen,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    /// Ask the loop to stop and check that it does.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test still stops its server.
        self.task.abort();
    }
}

fn client(ca_pem: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens.csv");
    std::fs::write(&path, "t0ken-for-alice,alice,1001,\"dev,ops\"\n").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_is_reused_and_requests_are_authenticated() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::load_or_create(dir.path(), &[]).unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    assert_eq!(
        first.ca_cert_pem(),
        pki.ca_cert_pem(),
        "the CA survives a restart"
    );
    assert_eq!(first.serving_cert_pem(), pki.serving_cert_pem());

    let authn = Authenticator::new(Some(&token_file(dir.path()))).unwrap();
    let server = Server::start(&pki, authn).await;

    // The admin's client certificate.
    let admin = client(
        pki.ca_cert_pem(),
        Some((pki.admin_cert_pem(), pki.admin_key_pem())),
    );
    let response = admin.get(server.url("/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "kubernetes-admin");
    let groups = body["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("system:masters")), "{body}");
    assert!(groups.contains(&json!("system:authenticated")), "{body}");

    // No credentials: 401 with a Status, but the public endpoints answer anonymously.
    let anonymous = client(pki.ca_cert_pem(), None);
    let response = anonymous.get(server.url("/whoami")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let status: Value = response.json().await.unwrap();
    assert_eq!(
        status,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"Unauthorized","reason":"Unauthorized","code":401})
    );
    let response = anonymous.get(server.url("/version")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        server.seen("/version").last().unwrap().user,
        UserInfo::anonymous()
    );

    // A token from the token file; a wrong one is refused even on a public path.
    let response = anonymous
        .get(server.url("/whoami"))
        .bearer_auth("t0ken-for-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "alice", "groups": ["dev", "ops", "system:authenticated"]})
    );
    let response = anonymous
        .get(server.url("/version"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A kubelet's certificate issued by the same CA.
    let (cert, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes"])
        .unwrap();
    let node = client(pki.ca_cert_pem(), Some((&cert, &key)));
    let body: Value = node
        .get(server.url("/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"name": "system:node:n1", "groups": ["system:nodes", "system:authenticated"]})
    );

    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    let other = Pki::load_or_create(other_dir.path(), &[]).unwrap();
    let server = Server::start(&pki, Authenticator::new(None).unwrap()).await;

    let stranger = client(
        pki.ca_cert_pem(),
        Some((other.admin_cert_pem(), other.admin_key_pem())),
    );
    let result = stranger.get(server.url("/version")).send().await;
    assert!(
        result.is_err(),
        "a foreign client certificate got an HTTP answer: {result:?}"
    );
    assert!(
        server.seen("/version").is_empty(),
        "the request reached the app"
    );

    // The server still serves everyone else.
    let admin = client(
        pki.ca_cert_pem(),
        Some((pki.admin_cert_pem(), pki.admin_key_pem())),
    );
    assert_eq!(
        admin
            .get(server.url("/whoami"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_does_not_block_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    let server = Server::start(&pki, Authenticator::new(None).unwrap()).await;

    // Connects and never says hello.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let admin = client(
        pki.ca_cert_pem(),
        Some((pki.admin_cert_pem(), pki.admin_key_pem())),
    );
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        admin.get(server.url("/whoami")).send(),
    )
    .await
    .expect("a second client is served while the first stalls")
    .unwrap();
    assert_eq!(response.status(), 200);
    // Shutdown does not wait for the stalled handshake.
    server.shutdown().await;
}

/// Run the real kubectl; None (with a message) when it is not installed.
fn kubectl(args: &[&str]) -> Option<std::process::Output> {
    if !Path::new("/usr/bin/kubectl").exists() {
        eprintln!("SKIP: /usr/bin/kubectl is not installed");
        return None;
    }
    let output = std::process::Command::new("timeout")
        .arg("60")
        .arg("/usr/bin/kubectl")
        .args(args)
        .output()
        .expect("run kubectl");
    Some(output)
}

async fn kubectl_version(kubeconfig: &Path) -> Option<Value> {
    let cache = tempfile::tempdir().unwrap();
    let (kubeconfig, cache_dir) = (
        kubeconfig.to_str().unwrap().to_string(),
        cache.path().to_str().unwrap().to_string(),
    );
    let output = tokio::task::spawn_blocking(move || {
        kubectl(&[
            "version",
            "-o",
            "json",
            "--kubeconfig",
            &kubeconfig,
            "--cache-dir",
            &cache_dir,
        ])
    })
    .await
    .unwrap()?;
    assert!(
        output.status.success(),
        "kubectl version failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("kubectl prints JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kubectl_with_client_cert_and_token_kubeconfigs() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    let authn = Authenticator::new(Some(&token_file(dir.path()))).unwrap();
    authn.add_token("minted-by-the-server", UserInfo::new("bob", &["viewers"]));
    let server = Server::start(&pki, authn).await;
    let server_url = format!("https://127.0.0.1:{}", server.port);

    let admin_conf = dir.path().join("admin.conf");
    let creds = Credentials::ClientCert {
        cert_pem: pki.admin_cert_pem().to_string(),
        key_pem: pki.admin_key_pem().to_string(),
    };
    kubeconfig::write(
        &admin_conf,
        "kubelet-rs",
        &server_url,
        pki.ca_cert_pem(),
        "kubernetes-admin",
        creds,
    )
    .unwrap();
    let Some(version) = kubectl_version(&admin_conf).await else {
        return;
    };
    assert_eq!(version["serverVersion"]["minor"], "33", "{version}");
    assert_eq!(
        version["serverVersion"]["gitVersion"], "v1.33.0",
        "{version}"
    );
    // /version is public, so check that kubectl really authenticated, and over HTTP/2.
    let seen = server.seen("/version");
    let by_admin: Vec<_> = seen
        .iter()
        .filter(|s| s.user.name == "kubernetes-admin")
        .collect();
    assert!(
        !by_admin.is_empty(),
        "kubectl did not present the client certificate: {seen:?}"
    );
    assert!(
        by_admin
            .iter()
            .all(|s| s.version == axum::http::Version::HTTP_2),
        "{seen:?}"
    );

    for (token, user) in [
        ("t0ken-for-alice", "alice"),
        ("minted-by-the-server", "bob"),
    ] {
        let conf = dir.path().join(format!("{user}.conf"));
        let creds = Credentials::Token(token.to_string());
        kubeconfig::write(
            &conf,
            "kubelet-rs",
            &server_url,
            pki.ca_cert_pem(),
            user,
            creds,
        )
        .unwrap();
        let version = kubectl_version(&conf).await.unwrap();
        assert_eq!(version["serverVersion"]["minor"], "33", "{version}");
        let seen = server.seen("/version");
        assert!(
            seen.iter().any(|s| s.user.name == user),
            "kubectl did not send {user}'s token: {seen:?}"
        );
    }
    server.shutdown().await;
}

/// A raw TLS connection speaking HTTP/1.1, with the admin's client certificate.
async fn raw_tls(pki: &Pki, port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_cert_pem().as_bytes()).unwrap()).unwrap();
    let chain = vec![CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.admin_key_pem().as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

/// Read until the end of the response head.
async fn read_head(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection closed in the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_connections_reach_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    let server = Server::start(&pki, Authenticator::new(None).unwrap()).await;

    let mut tls = raw_tls(&pki, server.port).await;
    tls.write_all(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tls)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping");
    drop(tls);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_responses_that_never_end() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
    let server = Server::start(&pki, Authenticator::new(None).unwrap()).await;

    let mut tls = raw_tls(&pki, server.port).await;
    tls.write_all(b"GET /forever HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tls)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let started = std::time::Instant::now();
    server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    // The stream was cut: reading reaches the end (or an error), not more waiting.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "the connection stayed open after shutdown");
}
