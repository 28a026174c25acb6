//! httpGet, tcpSocket and grpc probes against servers on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, GRPCAction, HTTPGetAction, HTTPHeader, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

use super::action::{self, ProbeResult, Target};
use super::grpc::{HealthCheckRequest, HealthCheckResponse};
use super::http::{self, HttpTarget, Scheme};
use super::{ExecError, ExecOutput, ProbeExec};

struct NoExec;

#[async_trait::async_trait]
impl ProbeExec for NoExec {
    async fn exec_sync(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, ExecError> {
        Err(ExecError::Failed("no exec here".into()))
    }
}

/// Answers every request with `status`, keeping the requests' heads.
async fn http_server(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                log.lock().unwrap().push(head);
                let reply = format!("HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn target() -> Target {
    Target {
        container_id: "c1".into(),
        pod_ip: "127.0.0.1".into(),
        container: k8s_openapi::api::core::v1::Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: 1, ..Default::default() }]),
            ..Default::default()
        },
    }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { port, path: Some(path.into()), ..Default::default() }),
        ..Default::default()
    }
}

async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn http_status_codes_decide() {
    for (status, expected) in [
        (200, ProbeResult::Success),
        (204, ProbeResult::Success),
        (302, ProbeResult::Success),
        (404, ProbeResult::Failure("HTTP probe failed with statuscode: 404".into())),
        (500, ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())),
    ] {
        let (port, _) = http_server(status).await;
        let result = action::run(&http_probe(IntOrString::Int(port as i32), "/healthz"), &target(), &NoExec).await;
        assert_eq!(result, expected, "status {status}");
    }
}

#[tokio::test]
async fn http_request_has_the_path_headers_and_user_agent() {
    let (port, seen) = http_server(200).await;
    let mut t = target();
    t.container.ports.as_mut().unwrap()[0].container_port = port as i32;
    let mut probe = http_probe(IntOrString::String("http".into()), "/healthz?full=1");
    probe.http_get.as_mut().unwrap().http_headers = Some(vec![
        HTTPHeader { name: "X-Probe".into(), value: "yes".into() },
        HTTPHeader { name: "Host".into(), value: "web.local".into() },
    ]);
    assert_eq!(action::run(&probe, &t, &NoExec).await, ProbeResult::Success);
    let head = seen.lock().unwrap()[0].to_lowercase();
    assert!(head.starts_with("get /healthz?full=1 http/1.1\r\n"), "{head}");
    assert!(head.contains("user-agent: kube-probe/1.33\r\n"), "{head}");
    assert!(head.contains("x-probe: yes\r\n"), "{head}");
    assert!(head.contains("host: web.local\r\n"), "{head}");
    assert!(head.contains("accept: */*\r\n"), "{head}");
}

#[tokio::test]
async fn http_connection_refused_and_timeout_are_worded_as_upstream() {
    let port = closed_port().await;
    let result = action::run(&http_probe(IntOrString::Int(port as i32), "/healthz"), &target(), &NoExec).await;
    assert_eq!(
        result,
        ProbeResult::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
    // Accepts but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = HttpTarget { scheme: Scheme::Http, host: "127.0.0.1".into(), port, path: String::new(), headers: vec![] };
    let err = http::get(&t, Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(
        err,
        format!(
            "Get \"http://127.0.0.1:{port}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )
    );
    drop(silent);
}

#[tokio::test]
async fn unknown_port_names_are_errors() {
    let result = action::run(&http_probe(IntOrString::String("metrics".into()), "/"), &target(), &NoExec).await;
    assert_eq!(result, ProbeResult::Error("couldn't find port \"metrics\" in container \"web\"".into()));
}

#[tokio::test]
async fn https_without_certificate_verification() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                read_head(&mut tls).await;
                let _ = tls.write_all(b"HTTP/1.1 503 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let mut probe = http_probe(IntOrString::Int(port as i32), "/");
    probe.http_get.as_mut().unwrap().scheme = Some("HTTPS".into());
    let result = action::run(&probe, &target(), &NoExec).await;
    assert_eq!(result, ProbeResult::Failure("HTTP probe failed with statuscode: 503".into()));
}

#[tokio::test]
async fn tcp_probes_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port as i32), host: None }),
        ..Default::default()
    };
    assert_eq!(action::run(&probe(port), &target(), &NoExec).await, ProbeResult::Success);
    let closed = closed_port().await;
    assert_eq!(
        action::run(&probe(closed), &target(), &NoExec).await,
        ProbeResult::Failure(format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"))
    );
    drop(listener);
}

/// A gRPC health service answering every check with `status`.
#[derive(Clone)]
struct Health(i32);

impl tonic::server::NamedService for Health {
    const NAME: &'static str = "grpc.health.v1.Health";
}

struct Check(i32);

impl tonic::server::UnaryService<HealthCheckRequest> for Check {
    type Response = HealthCheckResponse;
    type Future = tonic::codegen::BoxFuture<tonic::Response<HealthCheckResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<HealthCheckRequest>) -> Self::Future {
        let status = self.0;
        let service = request.into_inner().service;
        Box::pin(async move {
            if service == "missing" {
                return Err(tonic::Status::not_found("unknown service"));
            }
            Ok(tonic::Response::new(HealthCheckResponse { status }))
        })
    }
}

impl tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for Health {
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        let status = self.0;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default());
            Ok(grpc.unary(Check(status), request).await)
        })
    }
}

async fn grpc_server(status: i32) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(Health(status)).serve_with_incoming(incoming));
    port
}

fn grpc_probe(port: u16, service: &str) -> Probe {
    Probe { grpc: Some(GRPCAction { port: port as i32, service: Some(service.into()) }), ..Default::default() }
}

#[tokio::test]
async fn grpc_health_checks() {
    let serving = grpc_server(1).await;
    assert_eq!(action::run(&grpc_probe(serving, ""), &target(), &NoExec).await, ProbeResult::Success);
    let failing = grpc_server(2).await;
    assert_eq!(
        action::run(&grpc_probe(failing, "db"), &target(), &NoExec).await,
        ProbeResult::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    match action::run(&grpc_probe(serving, "missing"), &target(), &NoExec).await {
        ProbeResult::Failure(m) => {
            assert!(m.starts_with("error: health rpc probe failed: "), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let closed = closed_port().await;
    match action::run(&grpc_probe(closed, ""), &target(), &NoExec).await {
        ProbeResult::Failure(m) => assert!(
            m.starts_with(&format!("timeout: failed to connect service \"127.0.0.1:{closed}\" within 1s")),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}
