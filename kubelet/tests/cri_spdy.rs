//! The streaming server's SPDY/3.1 side end to end, as root: `kubelet-rs cri` in a node
//! network namespace and a busybox pod (as in `cri_streaming.rs`), and a SPDY client made
//! of the server's own session code speaking to the URLs `Exec` and `PortForward` return,
//! as the API server does when it proxies `kubectl exec` and `port-forward`.

use std::path::Path;
use std::time::{Duration, Instant};

use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use kubelet_rs::cri::streaming::spdy::{Headers, Role, Session, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

type Client = RuntimeServiceClient<tonic::transport::Channel>;

/// The pod's network and IPC, a pid namespace per container (pod-wide ones are not supported).
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}


/// Upgrades a connection to `url` (http://127.0.0.1:<port>/...), made inside the node
/// namespace, to SPDY offering `protocols`; the response's status code when it is not 101.
async fn connect(node: &Path, url: &str, protocols: &[&str]) -> Result<Session, u16> {
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let addr: std::net::SocketAddr = host.parse().unwrap();
    // The streaming server listens in the node's namespace.
    let tcp = in_ns(node, move || std::net::TcpStream::connect(addr)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
    let mut request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    for p in protocols {
        request += &format!("X-Stream-Protocol-Version: {p}\r\n");
    }
    request += "\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte: what follows the response's head is already SPDY.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let code: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if code != 101 {
        return Err(code);
    }
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: spdy/3.1"), "{head}");
    assert!(protocols.iter().any(|p| lower.contains(&format!("x-stream-protocol-version: {p}"))), "{head}");
    Ok(Session::new(tcp, Role::Client))
}

async fn open(session: &mut Session, pairs: &[(&str, &str)]) -> Stream {
    tokio::time::timeout(Duration::from_secs(10), session.open(Headers::new(pairs))).await.expect("a SYN_REPLY").unwrap()
}

/// Everything the server sends on `stream` until its FIN.
async fn read_all(stream: &mut Stream) -> String {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(data)) = tokio::time::timeout_at(deadline, stream.read()).await {
        got.extend(data);
    }
    String::from_utf8_lossy(&got).into_owned()
}

async fn exec_url(rt: &mut Client, id: &str, cmd: &[&str], stdin: bool, stderr: bool) -> String {
    exec_request(rt, cri::ExecRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), tty: false, stdin, stdout: true, stderr }).await
}

async fn exec_request(rt: &mut Client, request: cri::ExecRequest) -> String {
    rt.exec(request).await.unwrap().into_inner().url
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn exec_and_port_forward_over_spdy() {
    let svc = Service::start(Runtime::RuntimeRs);
    let node = svc.node.path().to_path_buf();
    let mut rt = RuntimeServiceClient::new(cri_api::connect(svc.socket()).await.unwrap());
    let config = svc.pod_config_with("spdy", Some(namespaces()), vec![]);
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id;
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "server".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: ["nc", "-ll", "-p", "80", "-e", "echo", "hi"].map(String::from).to_vec(),
        log_path: "server.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config) })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", svc.log()))
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.unwrap();

    // stdout and stderr on their streams, the exit code in the v4 status on the error stream.
    let url = exec_url(&mut rt, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"], false, true).await;
    let mut session = connect(&node, &url, &["v4.channel.k8s.io", "v3.channel.k8s.io"]).await.unwrap();
    let mut error = open(&mut session, &[("streamType", "error")]).await;
    let mut stdout = open(&mut session, &[("streamType", "stdout")]).await;
    let mut stderr = open(&mut session, &[("streamType", "stderr")]).await;
    let (out, err, status) = tokio::join!(read_all(&mut stdout), read_all(&mut stderr), read_all(&mut error));
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"), "{status}\n{}", svc.log());
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status:?}"));
    assert_eq!((&status["status"], &status["reason"]), (&"Failure".into(), &"NonZeroExitCode".into()), "{status}");
    assert_eq!(status["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
    drop(session);

    // A token works once; a protocol the server does not speak is refused.
    assert_eq!(connect(&node, &url, &["v4.channel.k8s.io"]).await.err(), Some(404));
    let url = exec_url(&mut rt, &id, &["true"], false, false).await;
    assert_eq!(connect(&node, &url, &["v9.channel.k8s.io"]).await.err(), Some(403));

    // stdin reaches the process, and its FIN ends it.
    let url = exec_url(&mut rt, &id, &["cat"], true, false).await;
    let mut session = connect(&node, &url, &["v4.channel.k8s.io"]).await.unwrap();
    let mut error = open(&mut session, &[("streamType", "error")]).await;
    let stdin = open(&mut session, &[("streamType", "stdin")]).await;
    let mut stdout = open(&mut session, &[("streamType", "stdout")]).await;
    stdin.writer.write(b"hello\n").await.unwrap();
    stdin.writer.close().await.unwrap();
    let (out, status) = tokio::join!(read_all(&mut stdout), read_all(&mut error));
    assert_eq!(out, "hello\n", "{status}\n{}", svc.log());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&status).unwrap(), serde_json::json!({"metadata": {}, "status": "Success"}));
    drop(session);

    // A terminal, sized by two resizes in one data frame (the last one wins).
    let cmd = ["sh", "-c", "tty; read x; stty size"].map(String::from).to_vec();
    let url = exec_request(&mut rt, cri::ExecRequest { container_id: id.clone(), cmd, tty: true, stdin: true, stdout: true, stderr: false }).await;
    let mut session = connect(&node, &url, &["v4.channel.k8s.io"]).await.unwrap();
    let mut error = open(&mut session, &[("streamType", "error")]).await;
    let stdin = open(&mut session, &[("streamType", "stdin")]).await;
    let mut stdout = open(&mut session, &[("streamType", "stdout")]).await;
    let resize = open(&mut session, &[("streamType", "resize")]).await;
    resize.writer.write(br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#).await.unwrap();
    // Resizes and input are separate streams, not ordered with each other.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stdin.writer.write(b"go\r").await.unwrap();
    let (out, status) = tokio::join!(read_all(&mut stdout), read_all(&mut error));
    assert!(out.contains("/dev/pts/") && out.contains("30 100"), "{out:?} {status}\n{}", svc.log());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&status).unwrap()["status"], "Success");
    drop(session);

    // Port 80 of the pod's localhost through a data and an error stream (the server may
    // still be starting: then the error stream says so and we try again).
    let start = Instant::now();
    loop {
        let url = rt.port_forward(cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![80] }).await.unwrap().into_inner().url;
        let mut session = connect(&node, &url, &["portforward.k8s.io"]).await.unwrap();
        let mut error = open(&mut session, &[("streamType", "error"), ("port", "80"), ("requestID", "0")]).await;
        let mut data = open(&mut session, &[("streamType", "data"), ("port", "80"), ("requestID", "0")]).await;
        let (got, failure) = tokio::join!(read_all(&mut data), read_all(&mut error));
        if got == "hi\n" {
            assert_eq!(failure, "");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "data {got:?}, error {failure:?}\n{}", svc.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}
