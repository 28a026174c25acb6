//! The HTTPS serving loop: accept, TLS handshake, HTTP/1.1 or HTTP/2, authenticate, hand
//! the request to the router.
//!
//! Each connection, handshake included, runs in its own task so a client that stalls
//! mid-handshake holds up nobody else. The authenticated [`UserInfo`] is put in the
//! request's extensions before the router sees it; authorization is the handlers' job
//! (they know the verb and resource). Upgrades (exec, attach, port-forward over WebSocket
//! or SPDY) pass through: hyper hands the upgraded stream to whichever handler claims it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::authn::{Authenticator, UserInfo};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown is asked for, connections get this long to finish what they are doing;
/// watches never finish by themselves, so they are then cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed accept (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Paths anyone may GET without credentials, as kube-apiserver's anonymous
/// system:public-info-viewer allows.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// Serve `app` over TLS on `listener` until `shutdown` completes, then stop accepting and
/// give open connections a few seconds to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    authn: Arc<Authenticator>,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small answers go out at once, not after the peer's delayed ACK (~40 ms).
                    let _ = stream.set_nodelay(true);
                    let conn = Connection {
                        acceptor: acceptor.clone(),
                        authn: authn.clone(),
                        app: app.clone(),
                        peer,
                    };
                    connections.spawn(conn.run(stream, stop_rx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "cutting connections still open after the grace period"
        );
    }
    connections.shutdown().await;
}

/// What one connection's task needs.
struct Connection {
    acceptor: TlsAcceptor,
    authn: Arc<Authenticator>,
    app: axum::Router,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        let tls = tokio::select! {
            handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream)) => match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                    return;
                }
            },
            () = stopped(&mut stop) => return,
        };
        // The verifier has already checked the chain against the CA; only the leaf names
        // the user.
        let client_cert: Option<Arc<[u8]>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| Arc::from(c.as_ref()));

        let Connection {
            authn, app, peer, ..
        } = self;
        let service = hyper::service::service_fn(move |req| {
            handle(req, client_cert.clone(), authn.clone(), app.clone(), peer)
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stopped(&mut stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// Resolves once shutdown is asked for (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns must not live across the caller's awaits.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// Authenticate one request and pass it on, or answer 401.
async fn handle(
    mut req: Request<Incoming>,
    client_cert: Option<Arc<[u8]>>,
    authn: Arc<Authenticator>,
    app: axum::Router,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let presented = client_cert.is_some() || req.headers().contains_key(header::AUTHORIZATION);
    let user = match authn
        .authenticate_request(client_cert.as_deref(), req.headers())
        .await
    {
        Some(user) => user,
        // Bad credentials are refused even on public paths, as kube-apiserver does.
        None if !presented && is_public(&req) => UserInfo::anonymous(),
        None => return Ok(unauthorized()),
    };
    // The token has done its job; nothing downstream (proxies to kubelets) should see it.
    req.headers_mut().remove(header::AUTHORIZATION);
    req.extensions_mut().insert(user);
    req.extensions_mut().insert(ConnectInfo(peer));
    app.oneshot(req.map(Body::new)).await
}

fn is_public(req: &Request<Incoming>) -> bool {
    matches!(*req.method(), Method::GET | Method::HEAD) && PUBLIC_PATHS.contains(&req.uri().path())
}

/// kube-apiserver's answer to missing or invalid credentials.
pub fn unauthorized() -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    let mut response = Response::new(Body::from(status.to_string()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unauthorized_is_a_kube_status() {
        let response = unauthorized();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"Unauthorized","reason":"Unauthorized","code":401})
        );
    }
}
