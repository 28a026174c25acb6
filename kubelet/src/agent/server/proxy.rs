//! Proxying an exec, attach or port-forward session to the CRI runtime's streaming server,
//! as upstream's kubelet does since the streams stopped being redirected: the client's
//! request (with its Upgrade, Connection, Sec-WebSocket-* and X-Stream-Protocol-Version
//! headers) goes to the runtime's URL; after its 101 the runtime's answer goes back and the
//! bytes are copied both ways (`splice`), each to its own end. Any other answer is passed on.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use apiserver_lite::handlers::node_proxy::splice;
use tokio::net::TcpStream;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the other direction of a stream may go on once one has ended.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the runtime's streaming URL {0:?} is not an http:// URL with a host")]
    BadUrl(String),
    #[error("dial tcp {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("dial tcp {addr}: no connection within {}s", DIAL_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("HTTP exchange with the runtime's streaming server at {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("the streaming server upgraded the connection, but the client's request cannot be upgraded (upgrades need HTTP/1.1)")]
    NotUpgradable,
    #[error("the request cannot be forwarded: {0}")]
    Request(#[from] axum::http::Error),
}

/// Headers about the client's connection to us rather than about the request; an upgrade's
/// Connection and Upgrade stay.
fn hop_by_hop(name: &header::HeaderName, upgrading: bool) -> bool {
    let connection = !upgrading && (name == header::CONNECTION || name == header::UPGRADE);
    connection || name == header::HOST || name == header::AUTHORIZATION || name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH || name.as_str() == "keep-alive"
}

/// Send the client's request to `url` and answer with what the streaming server answers,
/// joining the two connections after a 101.
pub async fn forward(url: &str, method: &Method, headers: &HeaderMap, body: Bytes, client: Option<OnUpgrade>) -> Result<Response<Body>, ProxyError> {
    let uri: Uri = url.parse().map_err(|_| ProxyError::BadUrl(url.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ProxyError::BadUrl(url.to_string()));
    }
    let authority = uri.authority().ok_or_else(|| ProxyError::BadUrl(url.to_string()))?.to_string();
    let addr = match uri.port_u16() {
        Some(_) => authority.clone(),
        None => format!("{authority}:80"),
    };
    let upgrading = headers.contains_key(header::UPGRADE);
    // kubectl asks for SPDY sessions with POST, WebSocket ones with GET; an upgrade has no
    // body either way, and streaming servers serve GET (ours serves only GET, containerd's
    // both), so upgrades go as GET.
    let method = if upgrading { Method::GET } else { method.clone() };
    let mut req = Request::builder().method(method).uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")).header(header::HOST, &authority);
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n, upgrading)) {
        req = req.header(name, value);
    }
    let req = req.body(Full::new(body))?;
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| ProxyError::Timeout { addr: addr.clone() })?
        .map_err(|source| ProxyError::Connect { addr: addr.clone(), source })?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|source| ProxyError::Http { addr: addr.clone(), source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a connection to the streaming server ended with an error");
        }
    });
    let mut resp = sender.send_request(req).await.map_err(|source| ProxyError::Http { addr, source })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = resp.into_parts();
        for name in [header::CONNECTION, header::TRANSFER_ENCODING] {
            parts.headers.remove(name);
        }
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let client = client.ok_or(ProxyError::NotUpgradable)?;
    let runtime = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, runtime) = match tokio::try_join!(client, runtime) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgraded stream to the runtime did not start");
                return;
            }
        };
        let spliced = splice::join(TokioIo::new(client), TokioIo::new(runtime), CLOSE_TIMEOUT).await;
        if let Some(e) = spliced.error() {
            tracing::debug!(error = %e, "an upgraded stream to the runtime ended with an error");
        }
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_headers_stay_credentials_go() {
        assert!(!hop_by_hop(&header::UPGRADE, true));
        assert!(!hop_by_hop(&header::CONNECTION, true));
        assert!(hop_by_hop(&header::CONNECTION, false));
        assert!(hop_by_hop(&header::AUTHORIZATION, true));
        assert!(hop_by_hop(&header::HOST, true));
        assert!(!hop_by_hop(&header::HeaderName::from_static("x-stream-protocol-version"), true));
    }

    #[tokio::test]
    async fn only_http_urls_are_followed() {
        let err = forward("https://127.0.0.1:1/exec/x", &Method::GET, &HeaderMap::new(), Bytes::new(), None).await.unwrap_err();
        assert!(matches!(err, ProxyError::BadUrl(_)));
        let err = forward("/exec/x", &Method::GET, &HeaderMap::new(), Bytes::new(), None).await.unwrap_err();
        assert!(matches!(err, ProxyError::BadUrl(_)));
    }
}
