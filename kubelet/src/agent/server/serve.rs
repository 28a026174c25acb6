//! Serving the routes: HTTPS with client certificates on the kubelet port (10250), each
//! connection's caller put into its requests as [`Peer`]; and plain HTTP with healthz only
//! on a loopback port (10248), as upstream serves its health check.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::auth::identity_from_cert;
use super::routes::Peer;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accept TLS connections on `listener` and serve `app` on each, forever (the caller
/// aborts the task). HTTP/1.1 only: exec, attach and port-forward are upgrades.
pub async fn serve_tls(listener: TcpListener, tls: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection to the kubelet API failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %remote, "a TLS handshake with the kubelet API failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = Peer(stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| identity_from_cert(c.as_ref())));
            serve_connection(stream, app, peer).await;
        });
    }
}

/// Serve plain HTTP (the local healthz port), forever.
pub async fn serve_plain(listener: TcpListener, app: Router) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        tokio::spawn(serve_connection(tcp, app.clone(), Peer(None)));
    }
}

async fn serve_connection<IO>(io: IO, app: Router, peer: Peer)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        app.clone().oneshot(req.map(Body::new))
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).with_upgrades().await {
        tracing::debug!(error = %e, "a connection to the kubelet API ended with an error");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr} for the kubelet API: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
}

/// The two running servers; dropping this does not stop them, [`Servers::abort`] does.
pub struct Servers {
    pub api: tokio::task::JoinHandle<()>,
    pub healthz: Option<tokio::task::JoinHandle<()>>,
    /// Where the API listens (the port is the one asked for, or the one given for 0).
    pub api_addr: std::net::SocketAddr,
    pub healthz_addr: Option<std::net::SocketAddr>,
}

impl Servers {
    pub fn abort(&self) {
        self.api.abort();
        if let Some(h) = &self.healthz {
            h.abort();
        }
    }
}

/// Bind the kubelet API at `api_addr` (e.g. 0.0.0.0:10250) with the certificates of
/// `tls`, and, when given, the plain healthz at `healthz_addr` (upstream 127.0.0.1:10248),
/// and serve both in tasks of their own.
pub async fn start(
    state: super::routes::ServerState,
    tls: &super::tls::TlsFiles,
    api_addr: std::net::SocketAddr,
    healthz_addr: Option<std::net::SocketAddr>,
) -> Result<Servers, ServeError> {
    let config = tls.server_config()?;
    let bind = |addr| async move { TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source }) };
    let api_listener = bind(api_addr).await?;
    let api_addr = api_listener.local_addr().unwrap_or(api_addr);
    let (healthz, healthz_addr) = match healthz_addr {
        Some(addr) => {
            let listener = bind(addr).await?;
            let addr = listener.local_addr().unwrap_or(addr);
            (Some(tokio::spawn(serve_plain(listener, super::routes::healthz_router()))), Some(addr))
        }
        None => (None, None),
    };
    let api = tokio::spawn(serve_tls(api_listener, config, super::routes::router(state)));
    tracing::info!(%api_addr, "serving the kubelet API");
    Ok(Servers { api, healthz, api_addr, healthz_addr })
}
