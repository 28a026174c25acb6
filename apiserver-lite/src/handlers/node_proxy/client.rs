//! The API server's client for kubelets: HTTPS with a client certificate from the cluster
//! CA, trusting only that CA for the kubelets' serving certificates (they get theirs from
//! [`Pki::issue_serving_cert`]). Plain HTTP to pods and service endpoints
//! ([`send_plain`]). One HTTP/1.1 connection per request: log streams and upgraded
//! exec/attach/port-forward connections each hold theirs for as long as they run.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::auth::Pki;
use crate::auth::pki::{self, MASTERS_GROUP};

/// The user the API server is to kubelets, as kubeadm names it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Its group: `system:masters`, so a kubelet that asks this server whether the caller may
/// use its API (a SubjectAccessReview) is told yes for any node subresource.
pub const KUBELET_CLIENT_GROUP: &str = MASTERS_GROUP;

/// How long a kubelet gets to accept the connection and finish the TLS handshake.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    #[error("the cluster CA certificate for verifying kubelets: {0}")]
    Ca(String),
    #[error("the API server's kubelet client certificate: {0}")]
    ClientCert(String),
    #[error("the TLS client configuration for kubelets: {0}")]
    Config(#[from] rustls::Error),
}

/// Why a request could not reach a kubelet (its answer, whatever it is, is not an error).
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{host:?} is neither an IP address nor a DNS name")]
    BadHost { host: String },
    #[error("dial tcp {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("dial tcp {addr}: no connection within {}s", DIAL_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("TLS handshake with {addr}: {source}")]
    Tls { addr: String, source: std::io::Error },
    #[error("HTTP exchange with {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
}

/// What [`crate::handlers::Api`] holds to reach kubelets; cheap to clone.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// A client trusting `ca_pem` for kubelets' serving certificates and presenting
    /// `cert_pem`/`key_pem` (a PKCS#8 key) as its own.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<KubeletClient, KubeletClientError> {
        let ca = pki::cert_der("ca.crt", ca_pem).map_err(|e| KubeletClientError::Ca(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(ca)).map_err(|e| KubeletClientError::Ca(e.to_string()))?;
        let cert = pki::cert_der("kubelet client certificate", cert_pem).map_err(|e| KubeletClientError::ClientCert(e.to_string()))?;
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| KubeletClientError::ClientCert(format!("its key: {e}")))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![CertificateDer::from(cert)], key)?;
        // Upgrades (exec, attach, port-forward) exist only in HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: Arc::new(config) })
    }

    /// A client with a fresh certificate for [`KUBELET_CLIENT_USER`] signed by the cluster
    /// CA. Issued at each start and kept in memory only: nothing else needs it.
    pub fn from_pki(pki: &Pki) -> Result<KubeletClient, KubeletClientError> {
        let (cert, key) = pki.issue_client_cert(KUBELET_CLIENT_USER, &[KUBELET_CLIENT_GROUP]).map_err(|e| KubeletClientError::ClientCert(e.to_string()))?;
        KubeletClient::new(pki.ca_cert_pem(), &cert, &key)
    }

    /// Send `req` to the kubelet at `host:port` on a connection of its own. The connection
    /// serves upgrades: after a 101, `hyper::upgrade::on(response)` is the kubelet's side.
    pub async fn send(&self, host: &str, port: u16, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, DialError> {
        let addr = authority(host, port);
        let name = server_name(host)?;
        let dial = async {
            let tcp = connect(&addr).await?;
            TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|source| DialError::Tls { addr: addr.clone(), source })
        };
        let tls = tokio::time::timeout(DIAL_TIMEOUT, dial).await.map_err(|_| DialError::Timeout { addr: addr.clone() })??;
        exchange(tls, addr, req).await
    }
}

/// Send `req` over plain HTTP to `host:port` (a pod or a service endpoint), as
/// [`KubeletClient::send`] does.
pub async fn send_plain(host: &str, port: u16, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, DialError> {
    let addr = authority(host, port);
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, connect(&addr)).await.map_err(|_| DialError::Timeout { addr: addr.clone() })??;
    exchange(tcp, addr, req).await
}

async fn connect(addr: &str) -> Result<TcpStream, DialError> {
    let tcp = TcpStream::connect(addr).await.map_err(|source| DialError::Connect { addr: addr.to_string(), source })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// One request on a fresh connection, which lives on (in a task of its own) while the
/// response body or the upgraded connection is in use.
async fn exchange<T>(io: T, addr: String, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, DialError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|source| DialError::Http { addr: addr.clone(), source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a proxied connection ended with an error");
        }
    });
    sender.send_request(req).await.map_err(|source| DialError::Http { addr, source })
}

/// `host:port`, with brackets around an IPv6 address.
pub fn authority(host: &str, port: u16) -> String {
    match host.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{host}]:{port}"),
        Err(_) => format!("{host}:{port}"),
    }
}

fn server_name(host: &str) -> Result<ServerName<'static>, DialError> {
    ServerName::try_from(host.to_string()).map_err(|_| DialError::BadHost { host: host.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_the_cluster_pki() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let client = KubeletClient::from_pki(&pki).unwrap();
        assert_eq!(client.tls.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client.tls.client_auth_cert_resolver.has_certs());
        assert!(KubeletClient::new("not a pem", pki.admin_cert_pem(), pki.admin_key_pem()).is_err());
    }

    #[test]
    fn authorities_bracket_ipv6() {
        assert_eq!(authority("10.0.0.1", 10250), "10.0.0.1:10250");
        assert_eq!(authority("fd00::1", 10250), "[fd00::1]:10250");
        assert_eq!(authority("node-a", 1), "node-a:1");
        assert!(server_name("10.0.0.1").is_ok() && server_name("node-a").is_ok());
        assert!(matches!(server_name("bad host"), Err(DialError::BadHost { .. })));
    }

    #[tokio::test]
    async fn an_unreachable_kubelet_is_a_dial_error() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let client = KubeletClient::from_pki(&pki).unwrap();
        // A port just released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let req = Request::get("/healthz").body(Full::new(Bytes::new())).unwrap();
        let err = client.send("127.0.0.1", port, req).await.unwrap_err();
        assert!(matches!(err, DialError::Connect { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("dial tcp 127.0.0.1:{port}: ")), "{err}");
    }
}
