//! The streaming server end to end, as root: `kubelet-rs cri` in a node network namespace
//! (as in `cri_pod.rs`), a busybox pod, and WebSocket clients speaking the Kubernetes
//! channel protocols to the URLs `Exec` and `PortForward` return: output and exit codes,
//! stdin, a terminal and its size, a port inside the pod, single-use tokens, the closing
//! handshake.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

mod common;
use common::raw_ws::RawWs;
use common::*;

type Client = RuntimeServiceClient<tonic::transport::Channel>;
type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The pod's network and IPC, a pid namespace per container (pod-wide ones are not supported).
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Connects to `url` (http://127.0.0.1:<port>/...) from inside the node namespace, where
/// the streaming server listens, offering `protocol`.
async fn connect(node: &Path, url: &str, protocol: &str) -> Result<Ws, tungstenite::Error> {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").split('/').next().unwrap().parse().unwrap();
    // The streaming server listens in the node's namespace.
    let tcp = in_ns(node, move || std::net::TcpStream::connect(addr)).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut request = url.replacen("http://", "ws://", 1).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, tokio::net::TcpStream::from_std(tcp).unwrap()).await?;
    Ok(ws)
}

/// Everything the server sends until it closes, by channel (after the byte that names it).
/// The server must end with a close frame carrying 1000 (normal): kubectl reports a close
/// without a status as an error.
async fn read_all(ws: &mut Ws) -> BTreeMap<u8, Vec<u8>> {
    let mut channels: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut close_code = None;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
        match message {
            Message::Binary(b) => {
                if let Some((&ch, data)) = b.split_first() {
                    channels.entry(ch).or_default().extend_from_slice(data);
                }
            }
            Message::Close(frame) => close_code = Some(frame.map(|f| u16::from(f.code))),
            _ => {}
        }
    }
    assert_eq!(close_code, Some(Some(1000)), "the session ends with a normal close frame");
    channels
}

fn text(channels: &BTreeMap<u8, Vec<u8>>, ch: u8) -> String {
    String::from_utf8_lossy(channels.get(&ch).map(Vec::as_slice).unwrap_or_default()).into_owned()
}

fn status(channels: &BTreeMap<u8, Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(channels.get(&3).expect("a status on the error channel")).unwrap()
}

async fn exec_url(rt: &mut Client, id: &str, cmd: &[&str], stdin: bool, stderr: bool, tty: bool) -> String {
    let request = cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr,
    };
    rt.exec(request).await.unwrap().into_inner().url
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn exec_and_port_forward_over_websocket_with_runtime_rs() {
    exec_and_port_forward_over_websocket(Runtime::RuntimeRs).await;
}

/// runc's `exec` hands the terminal over the console socket as runtime-rs does; runc runs
/// through the harness's cgroup v2 wrapper (never the host's v1 hierarchies).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn exec_and_port_forward_over_websocket_with_runc() {
    exec_and_port_forward_over_websocket(Runtime::Runc).await;
}

/// crun the same way; where root lacks CAP_SYS_RESOURCE (crun's create raises
/// RLIMIT_MEMLOCK) it skips, saying so, and runs in the cgroup v2 guest.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and crun"]
async fn exec_and_port_forward_over_websocket_with_crun() {
    test_support::require_root();
    if let Some(why) = unavailable(Runtime::Crun) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    exec_and_port_forward_over_websocket(Runtime::Crun).await;
}

async fn exec_and_port_forward_over_websocket(runtime: Runtime) {
    let svc = Service::start(runtime);
    let node = svc.node.path().to_path_buf();
    let mut rt = RuntimeServiceClient::new(cri_api::connect(svc.socket()).await.unwrap());
    let config = svc.pod_config_with("streams", Some(namespaces()), vec![]);
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

    // Output on stdout and stderr, the exit code in the status, as the kubelet reports it.
    let url = exec_url(&mut rt, &id, &["sh", "-c", "echo out; echo err >&2; exit 3"], false, true, false).await;
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/exec/"), "{url}");
    let mut ws = connect(&node, &url, "v4.channel.k8s.io").await.unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!((text(&got, 1).as_str(), text(&got, 2).as_str()), ("out\n", "err\n"), "{got:?}\n{}", svc.log());
    let s = status(&got);
    assert_eq!((&s["status"], &s["reason"]), (&"Failure".into(), &"NonZeroExitCode".into()), "{s}");
    assert_eq!(s["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));

    // A token works once.
    match connect(&node, &url, "v4.channel.k8s.io").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("a reused token was accepted: {:?}", other.map(drop)),
    }
    let unknown = url.rsplit_once('/').unwrap().0.to_string() + "/0123";
    assert!(matches!(connect(&node, &unknown, "v4.channel.k8s.io").await, Err(tungstenite::Error::Http(r)) if r.status() == 404));

    // The closing handshake: after its close frame the server waits for the client's before
    // it closes the connection. Closed with the client's frame unread, the connection was
    // reset, and a proxy between (the kubelet's, the API server's) then lost the exit status.
    let url = exec_url(&mut rt, &id, &["true"], false, false, false).await;
    let mut raw = RawWs::connect(&node, &url, "v5.channel.k8s.io").await;
    let frames = raw.frames_until_close().await;
    assert!(frames.iter().any(|(op, p)| *op == 2 && p.first() == Some(&3)), "a status on the error channel: {frames:?}");
    raw.closing_handshake().await;

    // stdin reaches the process; v5's close signal ends it.
    let url = exec_url(&mut rt, &id, &["cat"], true, false, false).await;
    let mut ws = connect(&node, &url, "v5.channel.k8s.io").await.unwrap();
    ws.send(Message::Binary(b"\x00hello\n".to_vec().into())).await.unwrap();
    ws.send(Message::Binary(vec![255, 0].into())).await.unwrap();
    let got = read_all(&mut ws).await;
    assert_eq!(text(&got, 1), "hello\n", "{got:?}");
    assert_eq!(status(&got), serde_json::json!({"metadata": {}, "status": "Success"}));

    // A terminal, and its size from the resize channel. Our terminal is resized before the
    // input after it is written, but the runtime passes the size on to the container's
    // terminal when its SIGWINCH arrives, apart from copying input (runc: two goroutines), so
    // the size may land just after "go": the shell gives it up to 5 s.
    let wait_for_size = r#"tty; read x; i=0; until [ "$(stty size)" = "30 100" ] || [ $i = 50 ]; do sleep 0.1; i=$((i+1)); done; stty size"#;
    let url = exec_url(&mut rt, &id, &["sh", "-c", wait_for_size], true, false, true).await;
    let mut ws = connect(&node, &url, "v5.channel.k8s.io").await.unwrap();
    ws.send(Message::Binary(b"\x04{\"Width\":100,\"Height\":30}".to_vec().into())).await.unwrap();
    ws.send(Message::Binary(b"\x00go\r".to_vec().into())).await.unwrap();
    let got = read_all(&mut ws).await;
    let out = text(&got, 1);
    assert!(out.contains("/dev/pts/"), "{got:?}\n{}", svc.log());
    assert!(out.contains("30 100"), "{out:?}");
    assert_eq!(status(&got)["status"], "Success");

    // Bad requests are refused before any URL is given.
    let bad = rt.exec(cri::ExecRequest { container_id: id.clone(), cmd: vec!["true".into()], tty: true, stdout: true, stderr: true, stdin: false }).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    let bad = rt.exec(cri::ExecRequest { container_id: id.clone(), cmd: vec![], stdout: true, ..Default::default() }).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);
    let bad = rt.exec(cri::ExecRequest { container_id: "nope".into(), cmd: vec!["true".into()], stdout: true, ..Default::default() }).await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::NotFound);

    // Port 80 of the pod's localhost: the port first on both channels, then the server's answer.
    let start = Instant::now();
    loop {
        let url = rt.port_forward(cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![80] }).await.unwrap().into_inner().url;
        assert!(url.contains("/portforward/"), "{url}");
        let mut ws = connect(&node, &format!("{url}?ports=80"), "v4.channel.k8s.io").await.unwrap();
        let got = read_all(&mut ws).await;
        let data = got.get(&0).cloned().unwrap_or_default();
        assert_eq!(got.get(&1).map(|e| &e[..2]), Some(&[80u8, 0][..]), "{got:?}");
        if data.len() > 2 || start.elapsed() > Duration::from_secs(10) {
            assert_eq!(&data[..2], &[80, 0]);
            assert_eq!(String::from_utf8_lossy(&data[2..]), "hi\n", "{got:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}
