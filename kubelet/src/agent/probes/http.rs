//! The HTTP GET of httpGet probes and lifecycle hooks: one request on a fresh connection
//! (HTTP/1.1, HTTPS without certificate verification, as the kubelet's prober), no
//! redirects followed, and errors worded as the upstream kubelet's Go client words them
//! (`Get "http://10.0.0.5:80/healthz": dial tcp 10.0.0.5:80: connect: connection refused`),
//! since users search for those messages.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{ACCEPT, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// The User-Agent of the kubelet's probes (`kube-probe/<major>.<minor>`).
pub const USER_AGENT_VALUE: &str = "kube-probe/1.33";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Where a GET goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The path and query (`/healthz?full=1`); empty is `/`.
    pub path: String,
    /// Extra headers, in order (a `Host` header sets the request's host).
    pub headers: Vec<(String, String)>,
}

/// `host:port`, IPv6 literals in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

impl HttpTarget {
    pub fn path_and_query(&self) -> String {
        if self.path.is_empty() {
            "/".to_string()
        } else if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        }
    }

    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let path = if self.path.is_empty() { String::new() } else { self.path_and_query() };
        format!("{scheme}://{}{path}", join_host_port(&self.host, self.port))
    }
}

/// Go's wording of a failed TCP dial.
pub fn dial_error(addr: &str, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let what = match err.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::TimedOut => "i/o timeout".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => {
            // "Connection reset by peer (os error 104)" -> "connection reset by peer"
            let text = err.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            let mut chars = text.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or(text)
        }
    };
    format!("dial tcp {addr}: {what}")
}

/// Connects to `host:port` within `timeout`, with Go's error wording.
pub async fn dial(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect((host.trim_matches(['[', ']']), port))).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(dial_error(&addr, &e)),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn headers(t: &HttpTarget) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in &t.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
        let v = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name:?}"))?;
        map.append(n, v);
    }
    if !map.contains_key(USER_AGENT) {
        map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if !map.contains_key(ACCEPT) {
        map.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    if !map.contains_key(HOST) {
        let host = HeaderValue::from_str(&join_host_port(&t.host, t.port))
            .map_err(|_| format!("invalid host {:?}", t.host))?;
        map.insert(HOST, host);
    }
    Ok(map)
}

/// GETs the target within `timeout` and returns the response's status code. The error is
/// the whole message (`Get "<url>": ...`).
pub async fn get(t: &HttpTarget, timeout: Duration) -> Result<u16, String> {
    let url = t.url();
    match tokio::time::timeout(timeout, get_inner(t)).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => {
            Err(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

async fn get_inner(t: &HttpTarget) -> Result<u16, String> {
    let headers = headers(t)?;
    let mut request = hyper::Request::builder()
        .method(hyper::Method::GET)
        .uri(t.path_and_query())
        .body(http_body_empty())
        .map_err(|e| format!("invalid request: {e}"))?;
    *request.headers_mut() = headers;
    // The dial has the whole request's deadline (the caller's timeout).
    let tcp = dial(&t.host, t.port, Duration::from_secs(3600)).await?;
    match t.scheme {
        Scheme::Http => send(TokioIo::new(tcp), request).await,
        Scheme::Https => {
            let connector = tokio_rustls::TlsConnector::from(tls_config());
            let name = rustls::pki_types::ServerName::try_from(t.host.trim_matches(['[', ']']).to_string())
                .map_err(|e| format!("invalid TLS server name {:?}: {e}", t.host))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
            send(TokioIo::new(tls), request).await
        }
    }
}

type EmptyBody = empty_body::Empty;

fn http_body_empty() -> EmptyBody {
    EmptyBody::default()
}

async fn send<S>(io: TokioIo<S>, request: hyper::Request<EmptyBody>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await.map_err(|e| e.to_string());
    // The body is not needed: closing the connection discards it.
    driver.abort();
    Ok(response?.status().as_u16())
}

/// A request body with nothing in it (hyper 1 has no body type of its own).
mod empty_body {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::{Body, Bytes, Frame, SizeHint};

    #[derive(Debug, Default)]
    pub struct Empty;

    impl Body for Empty {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(None)
        }

        fn is_end_stream(&self) -> bool {
            true
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(0)
        }
    }
}

/// TLS that accepts any server certificate (the kubelet's probes do not verify: pods serve
/// self-signed certificates), but still checks the handshake's signatures.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
