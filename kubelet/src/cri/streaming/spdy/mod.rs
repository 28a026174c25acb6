//! SPDY/3.1 for the streaming URLs: the API server proxies `kubectl exec` and
//! `port-forward` to the kubelet, and so to us, over SPDY (an HTTP/1.1 upgrade to
//! `SPDY/3.1`, the subprotocol chosen from `X-Stream-Protocol-Version`). The client opens
//! one stream per purpose, named by its `streamType` header.
//!
//! - `dictionary` — the SPDY/3 zlib dictionary for header blocks.
//! - `header_block` — name/value blocks and their compression.
//! - `frame` — frame encoding and decoding.
//! - `session` — a connection's streams: the reader and writer tasks, opening and accepting.
//! - `exec` — exec over streams `error`, `stdin`, `stdout`, `stderr`, `resize`.
//! - `port_forward` — one TCP connection per pair of `data` and `error` streams.

mod dictionary;
mod exec;
pub mod frame;
pub mod header_block;
mod port_forward;
pub mod session;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tracing::warn;

pub use header_block::Headers;
pub use session::{Role, Session, Stream, StreamWriter};

use super::ExecTarget;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the connection: {0}")]
    Io(std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("header compression: {0}")]
    Compression(String),
    #[error("the session is closed")]
    Closed,
    #[error("{0}")]
    Stream(#[from] super::Error),
}

pub const UPGRADE: &str = "SPDY/3.1";
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";
/// Exec's subprotocols, newest first: v4 reports the exit status as a JSON `Status`, v3
/// adds the resize stream, v2 is the base.
pub const EXEC_PROTOCOLS: [&str; 3] = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// A request to upgrade to SPDY, if the request is one: `Upgrade: SPDY/3.1`.
pub struct MaybeUpgrade(pub Option<Upgrade>);

pub struct Upgrade {
    on_upgrade: OnUpgrade,
    /// The client's subprotocols in its order of preference.
    protocols: Vec<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeUpgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let spdy = parts.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE));
        let Some(on_upgrade) = spdy.then(|| parts.extensions.remove::<OnUpgrade>()).flatten() else {
            return Ok(MaybeUpgrade(None));
        };
        let protocols = parts
            .headers
            .get_all(PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        Ok(MaybeUpgrade(Some(Upgrade { on_upgrade, protocols })))
    }
}

impl Upgrade {
    /// The client's first choice among `supported`.
    fn negotiate(&self, supported: &[&'static str]) -> Option<&'static str> {
        self.protocols.iter().find_map(|p| supported.iter().find(|s| **s == p).copied())
    }

    /// Answers with `101 Switching Protocols` naming `protocol`, then runs the session.
    fn accept<F, Fut>(self, protocol: &'static str, run: F) -> Response
    where
        F: FnOnce(Session) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Error>> + Send,
    {
        tokio::spawn(async move {
            match self.on_upgrade.await {
                Ok(upgraded) => {
                    if let Err(e) = run(Session::new(TokioIo::new(upgraded), Role::Server)).await {
                        warn!("SPDY stream ({protocol}): {e}");
                    }
                }
                Err(e) => warn!("upgrading to SPDY: {e}"),
            }
        });
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
        headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
        response
    }
}

fn no_protocol(supported: &[&str]) -> Response {
    (StatusCode::FORBIDDEN, format!("{PROTOCOL_HEADER} names none of {}", supported.join(", "))).into_response()
}

/// Serves an exec over SPDY.
pub fn exec(upgrade: Upgrade, target: ExecTarget) -> Response {
    let Some(protocol) = upgrade.negotiate(&EXEC_PROTOCOLS) else { return no_protocol(&EXEC_PROTOCOLS) };
    upgrade.accept(protocol, move |session| exec::run(session, target, protocol))
}

/// Serves a port forward into `netns` over SPDY; the ports come with the streams.
pub fn port_forward(upgrade: Upgrade, netns: PathBuf) -> Response {
    let Some(protocol) = upgrade.negotiate(&[PORT_FORWARD_PROTOCOL]) else { return no_protocol(&[PORT_FORWARD_PROTOCOL]) };
    upgrade.accept(protocol, move |session| port_forward::run(session, netns))
}
