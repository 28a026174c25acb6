//! The kubelet API's routes, as the API server's node proxy calls them: healthz, metrics,
//! stats/summary, pods, containerLogs, and exec/attach/portForward proxied to the CRI
//! runtime's streaming server. Every route is behind [`authorize`]: the caller's identity
//! is put in the request by the connection it came on ([`Peer`]).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use k8s_openapi::jiff::Timestamp;

use super::auth::{Decision, Identity, authorize};
use super::backend::{PodLookup, StreamFlags, StreamingRuntime};
use super::metrics::Metrics;
use super::proxy;
use super::stats::StatsProvider;
use crate::agent::logs::read::query_pairs;
use crate::agent::logs::{LogOptions, StillRunning, write_logs};

/// The most of an exec/attach/portForward request body that is forwarded (they have none).
const BODY_LIMIT: usize = 64 * 1024;

/// The caller of a request, from its connection's client certificate.
#[derive(Debug, Clone, Default)]
pub struct Peer(pub Option<Identity>);

/// What the routes serve from; shared by every connection.
#[derive(Clone)]
pub struct ServerState {
    pub lookup: Arc<dyn PodLookup>,
    pub streaming: Arc<dyn StreamingRuntime>,
    pub stats: Arc<dyn StatsProvider>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/stats/summary", get(summary))
        .route("/pods", get(pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(axum::middleware::from_fn(check_caller))
        .with_state(state)
}

/// The router for the plain, local health port (upstream's 10248): healthz only.
pub fn healthz_router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the answer: {e}")),
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

async fn check_caller(req: Request, next: axum::middleware::Next) -> Response {
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.clone());
    match authorize(peer.as_ref(), req.method().as_str(), req.uri().path()) {
        Decision::Allow => next.run(req).await,
        Decision::Unauthorized => error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Decision::Forbidden(message) => error(StatusCode::FORBIDDEN, message),
    }
}

async fn metrics(State(s): State<ServerState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

async fn summary(State(s): State<ServerState>) -> Response {
    match s.stats.summary().await {
        Ok(summary) => json(&summary),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to get the stats summary: {e}")),
    }
}

async fn pods(State(s): State<ServerState>) -> Response {
    let items = s.lookup.pods().await;
    json(&serde_json::json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items }))
}

fn not_found(ns: &str, pod: &str, container: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("container {container:?} in pod {ns}/{pod} is not known to this kubelet"))
}

/// Asks the lookup again whether the container instance being followed still runs.
struct Following {
    lookup: Arc<dyn PodLookup>,
    ns: String,
    pod: String,
    container: String,
    id: String,
}

#[async_trait]
impl StillRunning for Following {
    async fn still_running(&self) -> bool {
        self.lookup.container(&self.ns, &self.pod, &self.container).await.is_some_and(|c| c.id == self.id && c.running)
    }
}

async fn container_logs(State(s): State<ServerState>, Path((ns, pod, container)): Path<(String, String, String)>, RawQuery(query): RawQuery) -> Response {
    let options = match LogOptions::from_query(query.as_deref().unwrap_or(""), Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(found) = s.lookup.container(&ns, &pod, &container).await else { return not_found(&ns, &pod, &container) };
    let path: PathBuf = if options.previous {
        match found.previous_log_path.clone() {
            Some(p) => p,
            None => return error(StatusCode::BAD_REQUEST, format!("previous terminated container {container:?} in pod {pod:?} not found")),
        }
    } else {
        found.log_path.clone()
    };
    if let Err(e) = tokio::fs::metadata(&path).await {
        return error(StatusCode::NOT_FOUND, format!("the log of container {container:?} in pod {ns}/{pod} cannot be read ({}): {e}", path.display()));
    }
    // A previous instance has exited: nothing to follow beyond its end.
    let running = (!options.previous && found.running).then(|| Following { lookup: s.lookup.clone(), ns, pod, container, id: found.id.clone() });
    let options = LogOptions { follow: options.follow && running.is_some(), ..options };
    let (reader, mut writer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = running.as_ref().map(|r| r as &dyn StillRunning);
        if let Err(e) = write_logs(&path, &options, running, &mut writer).await {
            tracing::debug!(error = %e, "serving a container log ended with an error");
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Response::builder().header(header::CONTENT_TYPE, "text/plain").body(body).expect("a plain response")
}

fn flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs.iter().any(|(k, v)| k == name && matches!(v.as_str(), "1" | "true" | "True"))
}

/// The stream flags of an exec or attach, checked as upstream checks them.
fn stream_flags(pairs: &[(String, String)]) -> Result<StreamFlags, Box<Response>> {
    let mut f = StreamFlags { stdin: flag(pairs, "stdin"), stdout: flag(pairs, "stdout"), stderr: flag(pairs, "stderr"), tty: flag(pairs, "tty") };
    if !(f.stdin || f.stdout || f.stderr) {
        return Err(Box::new(error(StatusCode::BAD_REQUEST, "you must specify at least 1 of stdin, stdout, stderr")));
    }
    // With a terminal, stderr goes to stdout.
    if f.tty {
        f.stderr = false;
    }
    Ok(f)
}

/// The parts of a streaming request the proxy forwards.
struct Streaming {
    method: Method,
    headers: HeaderMap,
    pairs: Vec<(String, String)>,
    body: Bytes,
    upgrade: Option<OnUpgrade>,
}

async fn streaming(req: Request) -> Result<Streaming, Box<Response>> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<OnUpgrade>();
    let pairs = query_pairs(parts.uri.query().unwrap_or(""));
    let body = http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("reading the request body: {e}"))))?
        .to_bytes();
    Ok(Streaming { method: parts.method, headers: parts.headers, pairs, body, upgrade })
}

async fn relay(url: Result<String, String>, what: &str, req: Streaming) -> Response {
    let url = match url {
        Ok(url) => url,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the runtime refused to {what}: {e}")),
    };
    match proxy::forward(&url, &req.method, &req.headers, req.body, req.upgrade).await {
        Ok(resp) => resp,
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{what}: {e}")),
    }
}

async fn exec(State(s): State<ServerState>, Path((ns, pod, container)): Path<(String, String, String)>, req: Request) -> Response {
    let req = match streaming(req).await {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let flags = match stream_flags(&req.pairs) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let command: Vec<String> = req.pairs.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    if command.is_empty() {
        return error(StatusCode::BAD_REQUEST, "a command to run is required (query parameter command)");
    }
    let Some(found) = s.lookup.container(&ns, &pod, &container).await else { return not_found(&ns, &pod, &container) };
    let url = s.streaming.exec_url(&found.id, &command, flags).await;
    relay(url, &format!("exec in container {container:?} of pod {ns}/{pod}"), req).await
}

async fn attach(State(s): State<ServerState>, Path((ns, pod, container)): Path<(String, String, String)>, req: Request) -> Response {
    let req = match streaming(req).await {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let flags = match stream_flags(&req.pairs) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let Some(found) = s.lookup.container(&ns, &pod, &container).await else { return not_found(&ns, &pod, &container) };
    let url = s.streaming.attach_url(&found.id, flags).await;
    relay(url, &format!("attach to container {container:?} of pod {ns}/{pod}"), req).await
}

async fn port_forward(State(s): State<ServerState>, Path((ns, pod)): Path<(String, String)>, req: Request) -> Response {
    let req = match streaming(req).await {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let mut ports = Vec::new();
    for (_, v) in req.pairs.iter().filter(|(k, _)| k == "port" || k == "ports") {
        for p in v.split(',').filter(|p| !p.is_empty()) {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port as i32),
                _ => return error(StatusCode::BAD_REQUEST, format!("invalid port {p:?}: ports must be numbers from 1 to 65535")),
            }
        }
    }
    let Some(sandbox) = s.lookup.sandbox(&ns, &pod).await else {
        return error(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} is not known to this kubelet"));
    };
    let url = s.streaming.port_forward_url(&sandbox, &ports).await;
    relay(url, &format!("forward ports of pod {ns}/{pod}"), req).await
}
