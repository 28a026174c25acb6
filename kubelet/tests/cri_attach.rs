//! Terminals, stdin and Attach end to end, as root: `kubelet-rs cri` in a node network
//! namespace (the harness of `cri_streaming.rs`), a busybox pod, containers with `tty` and
//! `stdin`, and WebSocket clients attached to them through the URLs `Attach` returns, up to
//! the session's closing handshake.

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

/// The test's pod: its network and IPC, a pid namespace per container.
fn pod_config(svc: &Service) -> cri::PodSandboxConfig {
    svc.pod_config_with("attach", Some(namespaces()), vec![])
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

/// What the server sends, by channel, until `done` holds for it (or the deadline: then
/// the test fails with what came).
async fn read_until(ws: &mut Ws, channels: &mut BTreeMap<u8, Vec<u8>>, done: impl Fn(&BTreeMap<u8, Vec<u8>>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(channels) {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                if let Some((&ch, data)) = b.split_first() {
                    channels.entry(ch).or_default().extend_from_slice(data);
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended before the expected output ({other:?}): {channels:?}"),
        }
    }
}

fn container_config(name: &str, command: &[&str], tty: bool, stdin: bool, stdin_once: bool) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        tty,
        stdin,
        stdin_once,
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run_container(rt: &mut Client, svc: &Service, pod: &str, config: cri::ContainerConfig) -> String {
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(pod_config(svc)) };
    let id = rt.create_container(request).await.unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", svc.log())).into_inner().container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", svc.log()));
    id
}

/// The container's status once it has exited.
async fn wait_exit(rt: &mut Client, id: &str) -> cri::ContainerStatus {
    let start = Instant::now();
    loop {
        let status = rt.container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: false }).await.unwrap().into_inner().status.unwrap();
        if status.state == cri::ContainerState::ContainerExited as i32 {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "container {id} did not exit: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log's entries as `(stream, content)`.
fn log_entries(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let _ts = it.next();
            let stream = it.next().unwrap_or_default().to_string();
            let _tag = it.next();
            (stream, it.next().unwrap_or_default().to_string())
        })
        .collect()
}

async fn attach_url(rt: &mut Client, id: &str, stdin: bool, stderr: bool, tty: bool) -> Result<String, tonic::Status> {
    let request = cri::AttachRequest { container_id: id.into(), stdin, tty, stdout: true, stderr };
    Ok(rt.attach(request).await?.into_inner().url)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn tty_stdin_and_attach_with_runtime_rs() {
    tty_stdin_and_attach(Runtime::RuntimeRs).await;
}

/// runc needs `--console-socket` for a container with a terminal, as runtime-rs does; it
/// runs through the harness's cgroup v2 wrapper (never the host's v1 hierarchies).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn tty_stdin_and_attach_with_runc() {
    tty_stdin_and_attach(Runtime::Runc).await;
}

/// crun the same way; where root lacks CAP_SYS_RESOURCE (crun's create raises
/// RLIMIT_MEMLOCK) it skips, saying so, and runs in the cgroup v2 guest.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and crun"]
async fn tty_stdin_and_attach_with_crun() {
    test_support::require_root();
    if let Some(why) = unavailable(Runtime::Crun) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    tty_stdin_and_attach(Runtime::Crun).await;
}

async fn tty_stdin_and_attach(runtime: Runtime) {
    let svc = Service::start(runtime);
    let node = svc.node.path().to_path_buf();
    let logs = svc.dir.path().join("logs").join("attach");
    let mut rt = RuntimeServiceClient::new(cri_api::connect(svc.socket()).await.unwrap());
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(pod_config(&svc)), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id;

    // A terminal: the container runs, its output lands in the log as stdout lines.
    let id = run_container(&mut rt, &svc, &pod, container_config("tty", &["sh", "-c", "echo one; echo two >&2; tty"], true, false, false)).await;
    let status = wait_exit(&mut rt, &id).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let entries = log_entries(&logs.join("tty.log"));
    let contents: Vec<&str> = entries.iter().map(|(_, c)| c.as_str()).collect();
    assert!(entries.iter().all(|(s, _)| s == "stdout"), "{entries:?}");
    assert_eq!(contents[..2], ["one", "two"], "{entries:?}");
    assert!(contents[2].starts_with("/dev/pts/"), "{entries:?}");
    // An exited container cannot be attached to.
    assert_eq!(attach_url(&mut rt, &id, false, false, true).await.unwrap_err().code(), tonic::Code::FailedPrecondition);

    // stdin and stdin_once: cat echoes what the client sends, and ends when it detaches.
    let id = run_container(&mut rt, &svc, &pod, container_config("cat", &["cat"], false, true, true)).await;
    let bad = attach_url(&mut rt, &id, true, false, true).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    // An output-only client comes and goes: stdin stays open (cat still runs below).
    let watcher = attach_url(&mut rt, &id, false, true, false).await.unwrap();
    let mut ws = connect(&node, &watcher, "v5.channel.k8s.io").await.unwrap();
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = attach_url(&mut rt, &id, true, true, false).await.unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/attach/"), "{url}");
    let mut ws = connect(&node, &url, "v5.channel.k8s.io").await.unwrap();
    ws.send(Message::Binary(b"\x00hello\n".to_vec().into())).await.unwrap();
    let mut got = BTreeMap::new();
    read_until(&mut ws, &mut got, |c| c.get(&1).is_some_and(|o| o.as_slice() == b"hello\n")).await;
    ws.close(None).await.unwrap();
    drop(ws);
    let status = wait_exit(&mut rt, &id).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(log_entries(&logs.join("cat.log")), [("stdout".to_string(), "hello".to_string())]);
    // A token works once.
    assert!(matches!(connect(&node, &url, "v5.channel.k8s.io").await, Err(tungstenite::Error::Http(r)) if r.status() == 404));

    // A shell on a terminal: input runs, resizes reach it, the session ends with the shell.
    let id = run_container(&mut rt, &svc, &pod, container_config("sh", &["sh"], true, true, false)).await;
    let bad = attach_url(&mut rt, &id, true, true, true).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad}");
    let url = attach_url(&mut rt, &id, true, false, true).await.unwrap();
    let mut ws = connect(&node, &url, "v4.channel.k8s.io").await.unwrap();
    let out = |c: &BTreeMap<u8, Vec<u8>>| String::from_utf8_lossy(c.get(&1).map(Vec::as_slice).unwrap_or_default()).into_owned();
    let mut got = BTreeMap::new();
    ws.send(Message::Binary(b"\x00echo hi\n".to_vec().into())).await.unwrap();
    // The terminal echoes the command line; the output is a line of its own.
    read_until(&mut ws, &mut got, |c| out(c).lines().any(|l| l.trim_end() == "hi")).await;
    ws.send(Message::Binary(b"\x04{\"Width\":100,\"Height\":30}".to_vec().into())).await.unwrap();
    ws.send(Message::Binary(b"\x00stty size\n".to_vec().into())).await.unwrap();
    read_until(&mut ws, &mut got, |c| out(c).lines().any(|l| l.trim_end() == "30 100")).await;
    ws.send(Message::Binary(b"\x00exit 0\n".to_vec().into())).await.unwrap();
    // The shell's end ends the session, with a status.
    read_until(&mut ws, &mut got, |c| c.contains_key(&3)).await;
    let s: serde_json::Value = serde_json::from_slice(&got[&3]).unwrap();
    assert_eq!(s["status"], "Success", "{s}");
    let status = wait_exit(&mut rt, &id).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let logged: Vec<String> = log_entries(&logs.join("sh.log")).into_iter().map(|(_, c)| c).collect();
    assert!(logged.iter().any(|l| l == "hi"), "{logged:?}");

    // The closing handshake, as for exec (cri_streaming.rs): the container's end ends the
    // session, and the server keeps the connection until the client answers its close frame.
    let id = run_container(&mut rt, &svc, &pod, container_config("ticks", &["sh", "-c", "while :; do echo tick; sleep 0.2; done"], false, false, false)).await;
    let url = attach_url(&mut rt, &id, false, false, false).await.unwrap();
    let mut raw = RawWs::connect(&node, &url, "v5.channel.k8s.io").await;
    // Attached once the output comes.
    loop {
        let (opcode, payload) = tokio::time::timeout(Duration::from_secs(20), raw.frame()).await.expect("the container's output");
        assert_ne!(opcode, 8, "the session closed before any output: {payload:?}\n{}", svc.log());
        if opcode == 2 && payload.first() == Some(&1) {
            break;
        }
    }
    rt.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 0 }).await.unwrap();
    let frames = raw.frames_until_close().await;
    let status = frames.iter().find(|(op, p)| *op == 2 && p.first() == Some(&3)).map(|(_, p)| String::from_utf8_lossy(&p[1..]).into_owned());
    assert!(status.as_deref().is_some_and(|s| s.contains("Success")), "the session's status: {status:?}; frames {frames:?}");
    raw.closing_handshake().await;

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}
