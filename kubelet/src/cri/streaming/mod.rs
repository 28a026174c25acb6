//! The streaming server for `Exec` and `PortForward`: the RPCs only check the request and
//! hand back a URL with a one-time token (`/exec/<token>`, `/portforward/<token>`); the
//! client (the API server, `kubectl`) then speaks the WebSocket channel protocols here.
//!
//! - `tokens` — single-use, short-lived tokens naming a prepared request.
//! - `channel` — the `v4`/`v5.channel.k8s.io` framing and the exit status on the error channel.
//! - `exec` — a process run by the OCI runtime's `exec`, its stdio on the channels.
//! - `tty` — the terminal of an exec: a pty of ours the runtime relays to the container's, resizes.
//! - `port_forward` — TCP connections made inside the pod's network namespace.
//! - `attach` — a running container's stdio, through its monitor's attach socket (`/attach/<token>`).
//! - `spdy` — exec and port-forward over SPDY/3.1 (as the API server proxies them), chosen by
//!   the upgrade headers. Attach is offered over WebSocket only.

mod attach;
mod channel;
mod exec;
mod port_forward;
pub mod spdy;
mod tokens;
mod tty;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::warn;

pub use attach::AttachTarget;
pub use exec::ExecTarget;
use tokens::Tokens;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("running {}: {source}", binary.display())]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("the exec's terminal: {0}")]
    Console(String),
    #[error("connecting to port {port} in the pod's network namespace: {source}")]
    Connect { port: u16, source: std::io::Error },
    #[error("attach to container {id}: {message}")]
    Attach { id: String, message: String },
    #[error("bad request: {0}")]
    BadRequest(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A prepared request waiting for its client.
pub enum Pending {
    Exec(Box<ExecTarget>),
    Attach(Box<AttachTarget>),
    /// The sandbox's network namespace file.
    PortForward { netns: PathBuf },
}

/// The handle the RPCs use to register requests; cheap to clone.
#[derive(Clone)]
pub struct Streams {
    base_url: String,
    tokens: Arc<Tokens>,
}

impl Streams {
    /// Streams served at `addr` (the bound listener's address).
    pub fn new(addr: SocketAddr) -> Streams {
        Streams { base_url: format!("http://{addr}"), tokens: Arc::new(Tokens::new(tokens::TOKEN_TTL)) }
    }

    /// Registers an exec and returns its URL.
    pub fn exec(&self, target: ExecTarget) -> Result<String, Error> {
        Ok(format!("{}/exec/{}", self.base_url, self.tokens.insert(Pending::Exec(Box::new(target)))?))
    }

    /// Registers an attach and returns its URL.
    pub fn attach(&self, target: AttachTarget) -> Result<String, Error> {
        Ok(format!("{}/attach/{}", self.base_url, self.tokens.insert(Pending::Attach(Box::new(target)))?))
    }

    /// Registers a port forward into `netns` and returns its URL.
    pub fn port_forward(&self, netns: PathBuf) -> Result<String, Error> {
        Ok(format!("{}/portforward/{}", self.base_url, self.tokens.insert(Pending::PortForward { netns })?))
    }
}

/// Serves the streams registered on `streams` until the task is dropped.
pub async fn serve(listener: TcpListener, streams: Streams) -> std::io::Result<()> {
    let app = Router::new()
        .route("/exec/{token}", get(exec_handler))
        .route("/portforward/{token}", get(port_forward_handler))
        .route("/attach/{token}", get(attach_handler))
        .with_state(streams);
    axum::serve(listener, app).await
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

fn not_websocket() -> Response {
    (StatusCode::BAD_REQUEST, "not a WebSocket or SPDY/3.1 upgrade").into_response()
}

async fn exec_handler(State(streams): State<Streams>, Path(token): Path<String>, spdy: spdy::MaybeUpgrade, upgrade: Upgrade) -> Response {
    let Some(Pending::Exec(target)) = streams.tokens.take(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let spdy::MaybeUpgrade(Some(spdy)) = spdy {
        return spdy::exec(spdy, *target);
    }
    let Ok(upgrade) = upgrade else { return not_websocket() };
    upgrade.protocols(channel::EXEC_PROTOCOLS).on_upgrade(move |socket| async move {
        let version = channel::Version::of(socket.protocol());
        if let Err(e) = exec::run(socket, *target, version).await {
            warn!("exec stream: {e}");
        }
    })
}

async fn attach_handler(State(streams): State<Streams>, Path(token): Path<String>, upgrade: Upgrade) -> Response {
    let Some(Pending::Attach(target)) = streams.tokens.take(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(upgrade) = upgrade else { return not_websocket() };
    upgrade.protocols(channel::EXEC_PROTOCOLS).on_upgrade(move |socket| async move {
        let version = channel::Version::of(socket.protocol());
        if let Err(e) = attach::run(socket, *target, version).await {
            warn!("attach stream: {e}");
        }
    })
}

#[derive(serde::Deserialize)]
struct PortQuery {
    #[serde(default)]
    ports: String,
}

async fn port_forward_handler(
    State(streams): State<Streams>,
    Path(token): Path<String>,
    Query(query): Query<PortQuery>,
    spdy: spdy::MaybeUpgrade,
    upgrade: Upgrade,
) -> Response {
    let Some(Pending::PortForward { netns }) = streams.tokens.take(&token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let spdy::MaybeUpgrade(Some(spdy)) = spdy {
        return spdy::port_forward(spdy, netns);
    }
    let ports = match port_forward::parse_ports(&query.ports) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let Ok(upgrade) = upgrade else { return not_websocket() };
    upgrade.protocols(channel::PORT_FORWARD_PROTOCOLS).on_upgrade(move |socket| async move {
        if let Err(e) = port_forward::run(socket, netns, ports).await {
            warn!("port-forward stream: {e}");
        }
    })
}
