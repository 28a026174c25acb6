//! A server of the test's own: SQLite in a tempdir behind the watch cache, bootstrapped, its
//! router called in-process (no TLS, no authentication: `tests/kubectl.rs` covers those).
#![allow(dead_code)]

pub mod etcd;
mod events;
mod kubelet_stand_in;
mod wait;

#[allow(unused_imports)]
pub use kubelet_stand_in::KubeletStandIn;
#[allow(unused_imports)]
pub use events::{event_messages, event_messages_until};
#[allow(unused_imports)]
pub use wait::{eventually, wait_for};

use std::sync::Arc;
use std::time::Duration;

use apiserver_lite::handlers::Api;
use apiserver_lite::storage::Store;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub api: Arc<Api>,
    pub app: axum::Router,
}

pub async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let sqlite = apiserver_lite::storage::sqlite::SqliteStore::open(&dir.join("state.db")).expect("open sqlite");
    apiserver_lite::storage::cache::CachedStore::new(Arc::new(sqlite), 1000).await.expect("watch cache")
}

impl TestServer {
    pub async fn new() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        TestServer::with_store(dir, store).await
    }

    pub async fn with_store(dir: tempfile::TempDir, store: Arc<dyn Store>) -> TestServer {
        let mut api = Api::new(Arc::new(apiserver_lite::resources::builtin()), store);
        api.bookmark_interval = Duration::from_millis(300);
        let api = Arc::new(api);
        apiserver_lite::server::bootstrap(&api, ("127.0.0.1".parse().unwrap(), 6443)).await.expect("bootstrap");
        let app = apiserver_lite::server::app(api.clone());
        TestServer { dir, api, app }
    }

    /// A request; the status and the body as JSON (Value::Null if empty or not JSON).
    pub async fn call(&self, method: Method, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.call_with(method, path, &[("content-type", content_type)], body).await;
        (status, body)
    }

    pub async fn call_with(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self.app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, "application/json", "").await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, "application/json", &body.to_string()).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, "application/json", &body.to_string()).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, "application/json", "").await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, content_type, &body.to_string()).await
    }

    /// A watch; its events arrive on the returned receiver, one JSON value per line.
    pub async fn watch(&self, path: &str) -> tokio::sync::mpsc::Receiver<Value> {
        let req = Request::builder().method(Method::GET).uri(path).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "watch {path}");
        let (tx, rx) = tokio::sync::mpsc::channel(1000);
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        if tx.send(serde_json::from_slice(&line).expect("a watch line is JSON")).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        rx
    }
}

/// The next watch event that is not a bookmark, within 10 s.
pub async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<Value>) -> Value {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a watch event within 10 s").expect("the watch is open");
        if e["type"] != "BOOKMARK" {
            return e;
        }
    }
}

pub fn pod(name: &str, labels: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
    })
}

/// `apiserver-lite` as users run it: its own data dir and port, TLS, the admin kubeconfig.
/// Killed (by PID) on drop.
pub struct ServerProcess {
    pub data: std::path::PathBuf,
    pub port: u16,
    child: Option<std::process::Child>,
    extra: Vec<String>,
}

use etcd::free_port;

impl ServerProcess {
    pub fn start(data: &std::path::Path, extra: &[&str]) -> ServerProcess {
        let mut s = ServerProcess { data: data.to_path_buf(), port: free_port(), child: None, extra: extra.iter().map(|s| s.to_string()).collect() };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data.join("server.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_apiserver-lite"))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start apiserver-lite");
        self.child = Some(child);
        let start = std::time::Instant::now();
        loop {
            if self.kubeconfig().exists() && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("apiserver-lite exited with {status}: {}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "apiserver-lite did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.data.join("admin.kubeconfig")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash: nothing acknowledged may be lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[allow(unused_imports)]
pub use test_support::kubectl::Kubectl;
