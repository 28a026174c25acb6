//! Terminals, stdin and Attach end to end, as root: `kubelet-rs cri` in a node network
//! namespace (the harness of `cri_streaming.rs`), a busybox pod, containers with `tty` and
//! `stdin`, and WebSocket clients attached to them through the URLs `Attach` returns.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use futures_util::{SinkExt, StreamExt};
use test_support::netns::TestNetns;
use test_support::{CgroupParent, require_root};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

type Client = RuntimeServiceClient<tonic::transport::Channel>;
type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A `kubelet-rs cri` in a node namespace of its own, with the busybox image imported.
struct Service {
    node: TestNetns,
    dir: tempfile::TempDir,
    cgroup: CgroupParent,
    child: Option<Child>,
}

impl Service {
    fn start(oci_runtime: PathBuf) -> Service {
        require_root();
        let plugin_dir = test_support::bins::workspace_bin("cni", "krs-bridge").parent().unwrap().to_path_buf();
        test_support::bins::workspace_bin("cni", "krs-host-local");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let layout = test_support::test_images::test_image("busybox");
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args(["image", "--root"])
            .arg(d.join("root"))
            .arg("import")
            .arg(&layout)
            .args(["--name", BUSYBOX])
            .output()
            .unwrap();
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::create_dir_all(d.join("net.d")).unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "1.1.0", "name": "krs-attach-test",
            "plugins": [{"type": "krs-bridge", "bridge": "cni0", "isDefaultGateway": true,
                         "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": "10.91.0.0/24"}]], "dataDir": d.join("ipam")}}]
        });
        std::fs::write(d.join("net.d/10-test.conflist"), conflist.to_string()).unwrap();
        let mut s = Service { node: TestNetns::new(), dir, cgroup: CgroupParent::new(), child: None };
        let d = s.dir.path();
        let log = File::create(d.join("service.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", s.node.path().display()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_kubelet-rs"))
            .arg("cri")
            .arg("--socket")
            .arg(s.socket())
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--oci-runtime")
            .arg(oci_runtime)
            .arg("--cni-conf-dir")
            .arg(d.join("net.d"))
            .arg("--cni-bin-dir")
            .arg(plugin_dir)
            .arg("--cni-cache-dir")
            .arg(d.join("cni-cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        s.child = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(s.socket()).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "service did not start: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    fn pod_config(&self) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: "attach".into(), uid: "uid-attach".into(), namespace: "default".into(), attempt: 0 }),
            hostname: "attach".into(),
            log_directory: self.dir.path().join("logs").display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", self.cgroup.name),
                security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The pod's network and IPC, a pid namespace per container (pod-wide ones are not supported).
fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Whatever a failed test left: its pods removed through the service, then the service stopped.
        if self.child.is_some() {
            let socket = self.socket();
            let cleanup = move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(ch) = cri_api::connect(&socket).await {
                        let mut c = RuntimeServiceClient::new(ch);
                        if let Ok(list) = c.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await {
                            for s in list.into_inner().items {
                                let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: s.id }).await;
                            }
                        }
                    }
                });
            };
            let _ = std::thread::spawn(cleanup).join();
        }
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        for m in test_support::mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount").args(["--lazy", m]).status();
        }
    }
}

/// Connects to `url` (http://127.0.0.1:<port>/...) from inside the node namespace, where
/// the streaming server listens, offering `protocol`.
async fn connect(node: &Path, url: &str, protocol: &str) -> Result<Ws, tungstenite::Error> {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").split('/').next().unwrap().parse().unwrap();
    let ns = File::open(node).unwrap();
    let tcp = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpStream::connect(addr)
    })
    .join()
    .unwrap()
    .unwrap();
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
    let request = cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(svc.pod_config()) };
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
    tty_stdin_and_attach(test_support::bins::workspace_bin("runtime-rs", "runtime-rs")).await;
}

/// runc needs `--console-socket` for a container with a terminal, as runtime-rs does.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and runc"]
async fn tty_stdin_and_attach_with_runc() {
    let runc = std::env::var_os("KRS_TEST_RUNC").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"));
    if !runc.exists() {
        eprintln!("SKIPPED: no runc at {}", runc.display());
        return;
    }
    tty_stdin_and_attach(runc).await;
}

async fn tty_stdin_and_attach(oci_runtime: PathBuf) {
    let svc = Service::start(oci_runtime);
    let node = svc.node.path().to_path_buf();
    let logs = svc.dir.path().join("logs");
    let mut rt = RuntimeServiceClient::new(cri_api::connect(svc.socket()).await.unwrap());
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(svc.pod_config()), runtime_handler: String::new() })
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

    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}
