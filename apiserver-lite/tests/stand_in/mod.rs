//! A stand-in kubelet for the node-proxy tests: the kubelet's HTTPS API with a serving
//! certificate from the cluster's CA, refusing clients without a certificate from that CA,
//! serving what the API server proxies to it:
//!
//! - `GET /containerLogs/NS/POD/CONTAINER`: three lines (`tailLines` honoured), or with
//!   `follow=true` a line every 100 ms until the client goes.
//! - `/exec/NS/POD/CONTAINER` over WebSocket `v5`/`v4.channel.k8s.io`: `echo ARGS` writes
//!   ARGS to stdout, `sh -c "exit N"` exits N, `cat` copies stdin to stdout until stdin
//!   closes; the status goes on the error channel.
//! - `/attach/NS/POD/CONTAINER` over WebSocket: a greeting on stdout, then success.
//! - `/portForward/NS/POD` over SPDY/3.1 (`spdy`): each data stream is relayed to a TCP
//!   echo server on loopback, whatever port is asked for. Its WebSocket tunnel
//!   (`SPDY/3.1+portforward.k8s.io`) is refused, so clients fall back to SPDY as they do
//!   with kubelets that predate it.
//! - `/raw-echo`: an upgrade to a made-up protocol whose bytes come straight back, to test
//!   the tunnel without any framing.
//!
//! Everything runs on a runtime of its own, so the tests can block on kubectl.
#![allow(dead_code)]

pub mod spdy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiserver_lite::auth::Pki;
use axum::Router;
use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub const LOG_LINES: [&str; 3] = ["starting", "listening on :80", "ready"];

pub struct StandInKubelet {
    pub port: u16,
    /// The TCP echo server port-forwarded connections reach.
    pub echo_port: u16,
    /// The subject CN of every client certificate presented, in order.
    pub clients: Arc<Mutex<Vec<String>>>,
    /// Every request's path and query, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Every upgrade asked for: the path and the `Upgrade` header (`websocket`, `SPDY/3.1`).
    pub upgrades: Arc<Mutex<Vec<(String, String)>>>,
    /// Followed log streams still open: one that outlives its client leaks a connection.
    pub follows: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone)]
struct Shared {
    requests: Arc<Mutex<Vec<String>>>,
    upgrades: Arc<Mutex<Vec<(String, String)>>>,
    follows: Arc<AtomicUsize>,
    echo_port: u16,
}

impl StandInKubelet {
    /// Start on a free loopback port with a serving certificate for 127.0.0.1 from `pki`.
    pub fn start(pki: &Pki) -> StandInKubelet {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (cert, key) = pki.issue_serving_cert("stand-in-kubelet", &["127.0.0.1".to_string()]).unwrap();
        let tls = server_tls(pki.ca_cert_pem(), &cert, &key);
        let clients = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let upgrades = Arc::new(Mutex::new(Vec::new()));
        let follows = Arc::new(AtomicUsize::new(0));
        let (port, echo_port) = runtime.block_on(async {
            let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo_port = echo.local_addr().unwrap().port();
            tokio::spawn(echo_server(echo));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let app = router(Shared { requests: requests.clone(), upgrades: upgrades.clone(), follows: follows.clone(), echo_port });
            tokio::spawn(serve(listener, tls, app, clients.clone()));
            (port, echo_port)
        });
        StandInKubelet { port, echo_port, clients, requests, upgrades, follows, runtime: Some(runtime) }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn upgrades(&self) -> Vec<(String, String)> {
        self.upgrades.lock().unwrap().clone()
    }

    /// Wait up to 5 s for every followed log stream to be closed; whether they all were.
    pub fn follows_closed(&self) -> bool {
        let start = std::time::Instant::now();
        while self.follows.load(Ordering::SeqCst) != 0 {
            if start.elapsed() > Duration::from_secs(5) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for StandInKubelet {
    fn drop(&mut self) {
        // Without waiting: this may run inside a test's runtime, even while it unwinds.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn server_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    let der = |pem: &str| {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        CertificateDer::from(base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    // Client certificates are required, as a kubelet with anonymous auth off requires them.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![der(cert_pem)], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router, clients: Arc<Mutex<Vec<String>>>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, app, clients) = (acceptor.clone(), app.clone(), clients.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else { return };
            if let Some(cert) = stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
                let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
                clients.lock().unwrap().push(cn);
            }
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(req.map(Body::new)));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await;
        });
    }
}

async fn echo_server(listener: TcpListener) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let (mut r, mut w) = tcp.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .route("/raw-echo", any(raw_echo))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(shared): State<Shared>, req: Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri();
    shared.requests.lock().unwrap().push(uri.path_and_query().map(|p| p.to_string()).unwrap_or_default());
    if let Some(upgrade) = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()) {
        shared.upgrades.lock().unwrap().push((uri.path().to_string(), upgrade.to_string()));
    }
    next.run(req).await
}

/// The query's pairs in order, repeats kept (`command` repeats).
fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Counts a followed stream while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::SeqCst);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn logs(State(shared): State<Shared>, Path((ns, pod, container)): Path<(String, String, String)>, RawQuery(raw): RawQuery) -> Response {
    let q: HashMap<String, String> = pairs(&raw).into_iter().collect();
    if pod == "missing" {
        return (StatusCode::NOT_FOUND, format!("pod {ns}/{pod} is not known to this kubelet")).into_response();
    }
    if q.get("follow").map(String::as_str) == Some("true") {
        let prefix = format!("{container}:");
        let stream = futures_util::stream::unfold((0u64, Open::new(&shared.follows)), move |(n, open)| {
            let line = format!("{prefix} tick {n}\n");
            async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some((Ok::<_, std::io::Error>(line), (n + 1, open)))
            }
        });
        return Response::builder().header(header::CONTENT_TYPE, "text/plain").body(Body::from_stream(stream)).unwrap();
    }
    let tail: usize = q.get("tailLines").and_then(|t| t.parse().ok()).unwrap_or(LOG_LINES.len());
    let lines: Vec<String> = LOG_LINES.iter().skip(LOG_LINES.len().saturating_sub(tail)).map(|l| format!("{container}: {l}\n")).collect();
    ([(header::CONTENT_TYPE, "text/plain")], lines.concat()).into_response()
}

/// The stream channels of the channel protocols.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
/// v5: a message on it names a stream the sender is done writing.
const CLOSE: u8 = 255;

fn channel(ch: u8, data: &[u8]) -> Message {
    let mut frame = vec![ch];
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

/// What a command in the stand-in's container does: (stdout, stderr, exit code).
fn run(command: &[String]) -> (String, String, i32) {
    match command {
        [echo, args @ ..] if echo == "echo" => (format!("{}\n", args.join(" ")), String::new(), 0),
        [sh, c, script] if sh == "sh" && c == "-c" => match script.strip_prefix("exit ").and_then(|n| n.trim().parse().ok()) {
            Some(code) => (String::new(), String::new(), code),
            None => (String::new(), format!("sh: cannot run {script:?} here\n"), 2),
        },
        _ => (String::new(), format!("{}: command not found\n", command.first().map(String::as_str).unwrap_or("")), 127),
    }
}

/// The exit status as the kubelet reports it on the error channel.
fn status(code: i32) -> String {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"}).to_string();
    }
    json!({
        "metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

const CHANNEL_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

async fn exec(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>, RawQuery(raw): RawQuery) -> Response {
    let Ok(ws) = ws else { return (StatusCode::BAD_REQUEST, "the stand-in kubelet serves exec over WebSocket only").into_response() };
    let command: Vec<String> = pairs(&raw).into_iter().filter(|(k, _)| k == "command").map(|(_, v)| v).collect();
    ws.protocols(CHANNEL_PROTOCOLS).on_upgrade(move |mut socket: WebSocket| async move {
        if command == ["cat"] {
            return cat(socket).await;
        }
        let (stdout, stderr, code) = run(&command);
        if !stdout.is_empty() {
            let _ = socket.send(channel(STDOUT, stdout.as_bytes())).await;
        }
        if !stderr.is_empty() {
            let _ = socket.send(channel(STDERR, stderr.as_bytes())).await;
        }
        let _ = socket.send(channel(ERROR, status(code).as_bytes())).await;
        let _ = socket.send(normal_close()).await;
    })
}

/// `cat`: stdin back on stdout until the client closes stdin (v5's close signal: channel
/// 255 naming channel 0) or the connection.
async fn cat(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        match message {
            Message::Binary(data) if data.first() == Some(&STDIN) && data.len() > 1 => {
                let Ok(()) = socket.send(channel(STDOUT, &data[1..])).await else { return };
            }
            Message::Binary(data) if data[..] == [CLOSE, STDIN] => break,
            Message::Close(_) => return,
            _ => {}
        }
    }
    let _ = socket.send(channel(ERROR, status(0).as_bytes())).await;
    let _ = socket.send(normal_close()).await;
}

async fn attach(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>, Path((_, _, container)): Path<(String, String, String)>) -> Response {
    let Ok(ws) = ws else { return (StatusCode::BAD_REQUEST, "the stand-in kubelet serves attach over WebSocket only").into_response() };
    ws.protocols(CHANNEL_PROTOCOLS).on_upgrade(move |mut socket: WebSocket| async move {
        let _ = socket.send(channel(STDOUT, format!("attached to {container}\n").as_bytes())).await;
        let _ = socket.send(channel(ERROR, status(0).as_bytes())).await;
        let _ = socket.send(normal_close()).await;
    })
}

/// A close with status 1000: client-go takes a close without a status (1005) for an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() }))
}

fn upgrade_of(headers: &HeaderMap) -> String {
    headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

async fn port_forward(State(shared): State<Shared>, mut req: Request) -> Response {
    if upgrade_of(req.headers()) != "spdy/3.1" {
        return (StatusCode::BAD_REQUEST, "the stand-in kubelet forwards ports over SPDY/3.1 only").into_response();
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "not an HTTP/1.1 upgrade").into_response();
    };
    let echo: SocketAddr = ([127, 0, 0, 1], shared.echo_port).into();
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            spdy::serve_port_forward(TokioIo::new(upgraded), echo).await;
        }
    });
    switching(&[(header::UPGRADE.as_str(), "SPDY/3.1"), ("X-Stream-Protocol-Version", "portforward.k8s.io")])
}

async fn raw_echo(mut req: Request) -> Response {
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "not an HTTP/1.1 upgrade").into_response();
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = [0u8; 4096];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    switching(&[(header::UPGRADE.as_str(), "raw-echo")])
}

fn switching(headers: &[(&str, &str)]) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    for (k, v) in headers {
        resp.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    resp
}
