//! The CRI service end to end, as root: `kubelet-rs cri` serving on a socket, driven through
//! the CRI client as the kubelet drives it. A pod sandbox with its network from our CNI
//! plugins, containers of the busybox test image run by runtime-rs and by runc, logs in
//! CRI format, ExecSync, two containers sharing the pod's localhost, exit codes and reasons,
//! idempotent removes, and a restart of the service with containers still running.
//!
//! The service runs inside a "node" network namespace (`nsenter --net`, so it keeps the
//! host's mounts and cgroups), so the bridge and its rules never touch the host's network;
//! pods' cgroups go under a `krs-test-*` cgroup (for runc, through a wrapper that shows it
//! that cgroup as /sys/fs/cgroup: see [`RUNC_WRAPPER`]).

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::runtime::v1 as cri;
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use test_support::netns::TestNetns;
use test_support::{CgroupParent, require_root};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(path).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// The OCI runtime the service is given.
enum Runtime {
    RuntimeRs,
    /// runc through a wrapper (written into the service's directory) that gives it a pure
    /// cgroup v2 view: see [`RUNC_WRAPPER`].
    Runc,
}

/// runc in a private mount and cgroup namespace where our test cgroup (`$KRS_CG`, a
/// `krs-test-*` directory of the cgroup v2 hierarchy) is bind-mounted over /sys/fs/cgroup:
/// on this hybrid host runc would otherwise create cgroups in the v1 hierarchies. Every verb
/// goes through unchanged; the mount namespace is a copy of the service's, so bundles, the
/// runtime root and the pod's bind-mounted namespace files are all reachable. unshare and sh
/// exec, so the service's pid for the runtime is runc's and the monitor's stdio reaches it.
const RUNC_WRAPPER: &str = r#"#!/bin/sh
exec unshare --mount --propagation private --cgroup sh -c 'mount --bind "$0" /sys/fs/cgroup && exec runc "$@"' "$KRS_CG" "$@"
"#;

/// A `kubelet-rs cri` of the test's own: its directories, its node namespace, its process.
struct Service {
    node: TestNetns,
    dir: tempfile::TempDir,
    /// The test's cgroup, removed with whatever is left in it on drop.
    _cgroup: CgroupParent,
    oci_runtime: PathBuf,
    /// The pods' `linux.cgroup_parent`, as the runtime sees the cgroup tree.
    cgroup_parent: String,
    /// Where that parent is on the host.
    pods_cgroup: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(runtime: Runtime) -> Service {
        require_root();
        let plugins = test_support::bins::workspace_bin("cni", "krs-bridge");
        for p in ["krs-host-local", "krs-portmap"] {
            test_support::bins::workspace_bin("cni", p);
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        // The busybox test image, imported (the node namespace cannot reach the registry).
        let layout = test_support::test_images::test_image("busybox");
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args(["image", "--root"])
            .arg(&root)
            .arg("import")
            .arg(&layout)
            .args(["--name", BUSYBOX])
            .output()
            .unwrap();
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("10-test.conflist"),
            serde_json::json!({
                "cniVersion": "1.1.0", "name": "krs-cri-test",
                "plugins": [
                    {"type": "krs-bridge", "bridge": "cni0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
                     "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]], "dataDir": dir.path().join("ipam")}},
                    {"type": "krs-portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        let _ = plugins;
        let cgroup = CgroupParent::new();
        let (oci_runtime, cgroup_parent, pods_cgroup) = match runtime {
            Runtime::RuntimeRs => (test_support::bins::workspace_bin("runtime-rs", "runtime-rs"), format!("/{}", cgroup.name), cgroup.path.clone()),
            Runtime::Runc => {
                assert!(Command::new("runc").arg("--version").output().is_ok_and(|o| o.status.success()), "runc is not installed (apt-get install runc)");
                let wrapper = dir.path().join("runc-wrapper");
                std::fs::write(&wrapper, RUNC_WRAPPER.replace("\"$KRS_CG\"", &format!("'{}'", cgroup.path.display()))).unwrap();
                std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                // Our cgroup is runc's /sys/fs/cgroup: the pods go below it.
                (wrapper, "/pods".to_string(), cgroup.path.join("pods"))
            }
        };
        let mut s = Service { node: TestNetns::new(), dir, _cgroup: cgroup, oci_runtime, cgroup_parent, pods_cgroup, child: None };
        s.spawn();
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let plugin_dir = test_support::bins::workspace_bin("cni", "krs-bridge").parent().unwrap().to_path_buf();
        let log = File::create(d.join("service.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node.path().display()))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_kubelet-rs"))
            .arg("cri")
            .arg("--socket")
            .arg(self.socket())
            .arg("--root")
            .arg(d.join("root"))
            .arg("--state-dir")
            .arg(d.join("state"))
            .arg("--oci-runtime")
            .arg(&self.oci_runtime)
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
        self.child = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "service did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: the containers (and their monitors) keep running.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    async fn clients(&self) -> (RuntimeServiceClient<tonic::transport::Channel>, ImageServiceClient<tonic::transport::Channel>) {
        let channel = cri_api::connect(self.socket()).await.unwrap();
        (RuntimeServiceClient::new(channel.clone()), ImageServiceClient::new(channel))
    }

    fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
            hostname: name.into(),
            log_directory: self.dir.path().join("logs").join(name).display().to_string(),
            port_mappings: vec![cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() }],
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Whatever a failed test left: remove every pod through the service, then stop it.
        if self.child.is_some() {
            let socket = self.socket();
            // On a thread of its own: the test's runtime may be the one dropping us.
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
        self.stop();
        for m in test_support::mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount").args(["--lazy", m]).status();
        }
    }
}

fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn wait_state(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, state: cri::ContainerState) -> cri::ContainerStatus {
    let start = Instant::now();
    loop {
        let status = rt.container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: false }).await.unwrap().into_inner().status.unwrap();
        if status.state == state as i32 {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "container {id} stayed {:?}", status.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exec(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
    rt.exec_sync(cri::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 })
        .await
        .unwrap()
        .into_inner()
}

fn tcp_get(ns: &Path, to: String) -> Result<String, String> {
    in_ns(ns, move || {
        let addr: SocketAddr = to.parse().unwrap();
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("connect {to}: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).map_err(|e| e.to_string())?;
        Ok(s.trim().to_string())
    })
}

async fn pod_lifecycle(runtime: Runtime) {
    let mut svc = Service::start(runtime);
    let (mut rt, mut img) = svc.clients().await;
    let images = img.list_images(cri::ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert!(images.iter().any(|i| i.repo_tags.iter().any(|t| t == BUSYBOX)), "{images:?}");

    let config = svc.pod_config("web");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id;
    let status = rt.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false }).await.unwrap().into_inner();
    let pod_ip = status.status.unwrap().network.unwrap().ip;
    assert!(pod_ip.starts_with("10.89.0."), "{pod_ip}");

    let create = |name: &str, command: &[&str]| cri::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config(name, command)),
        sandbox_config: Some(config.clone()),
    };
    let server = rt
        .create_container(create("server", &["sh", "-c", "echo hello; echo oops >&2; exec nc -ll -p 80 -e echo hi"]))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", svc.log()))
        .into_inner()
        .container_id;
    let created = wait_state(&mut rt, &server, cri::ContainerState::ContainerCreated).await;
    assert_eq!(created.log_path, svc.dir.path().join("logs/web/server.log").display().to_string());
    rt.start_container(cri::StartContainerRequest { container_id: server.clone() }).await.unwrap();
    wait_state(&mut rt, &server, cri::ContainerState::ContainerRunning).await;
    // The container's cgroup is below ours, wherever the runtime saw the tree from.
    let below = svc.pods_cgroup.join(&server);
    assert!(below.is_dir(), "no cgroup {}", below.display());

    // The server answers at the pod's address and at its hostPort on the node.
    let node = svc.node.path();
    let start = Instant::now();
    let answer = loop {
        match tcp_get(&node, format!("{pod_ip}:80")) {
            Ok(a) => break a,
            Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(answer, "hi");
    assert_eq!(tcp_get(&node, "127.0.0.1:8080".into()).unwrap(), "hi");

    // Logs in CRI format at the path the request named.
    let log = std::fs::read_to_string(svc.dir.path().join("logs/web/server.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with(" stdout F hello")), "{log}");
    assert!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
    for l in &lines {
        let ts = l.split(' ').next().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{l}");
    }

    // ExecSync: output and exit codes; the pod's hostname.
    let out = exec(&mut rt, &server, &["hostname"]).await;
    assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stdout).trim()), (0, "web"));
    let out = exec(&mut rt, &server, &["sh", "-c", "echo err >&2; exit 3"]).await;
    assert_eq!((out.exit_code, String::from_utf8_lossy(&out.stderr).trim()), (3, "err"));

    // A second container shares the pod's localhost.
    let client = rt.create_container(create("client", &["sleep", "1000"])).await.unwrap().into_inner().container_id;
    rt.start_container(cri::StartContainerRequest { container_id: client.clone() }).await.unwrap();
    let out = exec(&mut rt, &client, &["sh", "-c", "nc -w 3 127.0.0.1 80 </dev/null"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi", "{out:?}");

    // A container that exits on its own: code and reason.
    let failing = rt.create_container(create("failing", &["sh", "-c", "exit 7"])).await.unwrap().into_inner().container_id;
    rt.start_container(cri::StartContainerRequest { container_id: failing.clone() }).await.unwrap();
    let exited = wait_state(&mut rt, &failing, cri::ContainerState::ContainerExited).await;
    assert_eq!((exited.exit_code, exited.reason.as_str()), (7, "Error"));
    assert!(exited.finished_at >= exited.started_at && exited.started_at > 0);

    // The service restarts; its containers keep running and are found again.
    svc.stop();
    svc.spawn();
    let (mut rt, _) = svc.clients().await;
    wait_state(&mut rt, &server, cri::ContainerState::ContainerRunning).await;
    let out = exec(&mut rt, &server, &["echo", "still here"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "still here");
    let listed = rt.list_containers(cri::ListContainersRequest::default()).await.unwrap().into_inner().containers;
    assert_eq!(listed.len(), 3);

    // Stop with a grace period: nc is its pid namespace's init and has no SIGTERM handler, so
    // SIGTERM does nothing and SIGKILL ends it when the grace period is over.
    let asked = std::time::SystemTime::now();
    rt.stop_container(cri::StopContainerRequest { container_id: server.clone(), timeout: 2 }).await.unwrap();
    let stopped = wait_state(&mut rt, &server, cri::ContainerState::ContainerExited).await;
    assert_eq!((stopped.exit_code, stopped.reason.as_str()), (128 + libc::SIGKILL, "Error"), "{stopped:?}");
    assert!(asked.elapsed().unwrap() >= Duration::from_secs(2), "SIGKILL came before the grace period ended");
    rt.stop_container(cri::StopContainerRequest { container_id: server.clone(), timeout: 5 }).await.unwrap();
    for _ in 0..2 {
        rt.remove_container(cri::RemoveContainerRequest { container_id: server.clone() }).await.unwrap();
    }
    let e = rt.container_status(cri::ContainerStatusRequest { container_id: server.clone(), verbose: false }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Removing the pod removes its containers, its network and every mount.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    for _ in 0..2 {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    assert!(rt.list_containers(cri::ListContainersRequest::default()).await.unwrap().into_inner().containers.is_empty());
    assert!(tcp_get(&node, "127.0.0.1:8080".into()).is_err());
    let mounts = test_support::mounts_under(svc.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let ipam: Vec<_> = std::fs::read_dir(svc.dir.path().join("ipam/krs-cri-test")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(ipam.iter().all(|n| n == "lock" || n.to_string_lossy().starts_with("last_reserved")), "{ipam:?}");
    // Bad requests say what is wrong.
    let e = rt.create_container(cri::CreateContainerRequest { pod_sandbox_id: "nope".into(), config: Some(container_config("x", &["true"])), sandbox_config: None }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn pod_lifecycle_with_runtime_rs() {
    pod_lifecycle(Runtime::RuntimeRs).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and runc"]
async fn pod_lifecycle_with_runc() {
    pod_lifecycle(Runtime::Runc).await;
}
