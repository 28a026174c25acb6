//! Pods sharing one pid namespace (`pid: POD`, Kubernetes' shareProcessNamespace), as root,
//! through `kubelet-rs cri`: the sandbox's pod init is pid 1 of the pod, its containers see
//! each other's processes, a restart of the service keeps the init, stop ends every process
//! of the namespace, remove leaves no mount; a pod without namespace options (pid POD by the
//! CRI's default) runs too, and a pid CONTAINER pod is unchanged.
//!
//! The harness is cri_pod.rs's: the service runs in a "node" network namespace, pods'
//! cgroups go under a `krs-test-*` cgroup, everything else is in a tempdir.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cri_api::runtime::v1 as cri;
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use test_support::netns::TestNetns;
use test_support::{CgroupParent, require_root};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A `kubelet-rs cri` of the test's own: its directories, its node namespace, its process.
struct Service {
    node: TestNetns,
    dir: tempfile::TempDir,
    cgroup: CgroupParent,
    oci_runtime: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn start(oci_runtime: PathBuf) -> Service {
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
        let mut s = Service { node: TestNetns::new(), dir, cgroup: CgroupParent::new(), oci_runtime, child: None };
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

    /// A pod whose namespace options are `options` (`None`: left out, as a minimal
    /// `crictl runp` config does).
    fn pod_config(&self, name: &str, options: Option<cri::NamespaceOption>) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
            hostname: name.into(),
            log_directory: self.dir.path().join("logs").join(name).display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", self.cgroup.name),
                security_context: options.map(|o| cri::LinuxSandboxSecurityContext { namespace_options: Some(o), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The pod init the sandbox's record names: (pid, start time).
    fn recorded_init(&self, pod: &str) -> Option<(i32, u64)> {
        let record = std::fs::read(self.dir.path().join("root/sandboxes").join(pod).join("sandbox.json")).ok()?;
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        let init = record.get("init")?;
        Some((init["pid"].as_i64()? as i32, init["start_time"].as_u64()?))
    }

    /// Every pod init any record names.
    fn all_recorded_inits(&self) -> Vec<(i32, u64)> {
        let Ok(dirs) = std::fs::read_dir(self.dir.path().join("root/sandboxes")) else { return Vec::new() };
        dirs.flatten().filter_map(|d| self.recorded_init(&d.file_name().to_string_lossy())).collect()
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
        // Inits the service did not stop (it was gone, or a test failed first): by recorded pid
        // and start time only.
        for (pid, start) in self.all_recorded_inits() {
            if start_time(pid) == Some(start) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for m in test_support::mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount").args(["--lazy", m]).status();
        }
    }
}

/// A container whose pid namespace mode is `pid` (`None`: no namespace options at all,
/// which means POD for every namespace).
fn container_config(name: &str, command: &[&str], pid: Option<cri::NamespaceMode>) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: pid.map(|pid| cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: pid as i32,
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

async fn exec(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, cmd: &[&str]) -> String {
    let out = rt
        .exec_sync(cri::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.exit_code, 0, "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).replace('\0', " ")
}

/// `/proc/<pid>/stat` field 22, None for a process that is gone (or a zombie).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    (fields[0] != "Z").then(|| fields[19].parse().ok()).flatten()
}

/// The processes (pid, start time) in the pid namespace of `pid`, as the node sees them.
fn processes_in_pid_ns_of(pid: i32) -> Vec<(i32, u64)> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .filter_map(|p| Some((p, start_time(p)?)))
        .collect()
}

fn gone(procs: &[(i32, u64)]) -> bool {
    procs.iter().all(|(p, t)| start_time(*p) != Some(*t))
}

fn modes(pid: cri::NamespaceMode) -> Option<cri::NamespaceOption> {
    Some(cri::NamespaceOption { network: cri::NamespaceMode::Pod as i32, pid: pid as i32, ipc: cri::NamespaceMode::Pod as i32, ..Default::default() })
}

async fn run_pod(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, svc: &Service, config: &cri::PodSandboxConfig) -> String {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id
}

async fn run_container(
    rt: &mut RuntimeServiceClient<tonic::transport::Channel>,
    svc: &Service,
    pod: &str,
    sandbox: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = rt
        .create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(config), sandbox_config: Some(sandbox.clone()) })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", svc.log()))
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", svc.log()));
    wait_state(rt, &id, cri::ContainerState::ContainerRunning).await;
    id
}

async fn pod_state(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, pod: &str) -> i32 {
    let status = rt.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.into(), verbose: false }).await.unwrap().into_inner();
    status.status.unwrap().state
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn a_pod_shares_one_pid_namespace_held_by_its_init() {
    let mut svc = Service::start(test_support::bins::workspace_bin("runtime-rs", "runtime-rs"));
    let (mut rt, _) = svc.clients().await;
    let config = svc.pod_config("shared", modes(cri::NamespaceMode::Pod));
    let pod = run_pod(&mut rt, &svc, &config).await;
    let (init, init_start) = svc.recorded_init(&pod).expect("no pod init recorded");
    assert_eq!(start_time(init), Some(init_start));
    let cmdline = std::fs::read_to_string(format!("/proc/{init}/cmdline")).unwrap();
    assert!(cmdline.contains("kubelet-rs") && cmdline.contains("pod-init"), "{cmdline:?}");
    // Its own session, so a restart of the service leaves it alone.
    assert_eq!(nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(init))).unwrap().as_raw(), init);
    let ns_file = svc.dir.path().join("state/sandboxes").join(&pod).join("ns/pid");
    assert!(test_support::mounts_under(svc.dir.path()).contains(&ns_file.display().to_string()));

    let pod_pid = Some(cri::NamespaceMode::Pod);
    let a = run_container(&mut rt, &svc, &pod, &config, container_config("a", &["sleep", "1001"], pod_pid)).await;
    let b = run_container(&mut rt, &svc, &pod, &config, container_config("b", &["sleep", "1002"], pod_pid)).await;
    // Each sees the other's process, and pid 1 is the pod init.
    let ps = exec(&mut rt, &a, &["ps"]).await;
    assert!(ps.contains("sleep 1002") && ps.contains("sleep 1001"), "{ps}");
    let ps = exec(&mut rt, &b, &["sh", "-c", "cat /proc/[0-9]*/cmdline; echo"]).await;
    assert!(ps.contains("sleep 1001"), "{ps}");
    let one = exec(&mut rt, &a, &["cat", "/proc/1/cmdline"]).await;
    assert!(one.contains("kubelet-rs") && one.contains("pod-init"), "{one}");
    assert_eq!(exec(&mut rt, &b, &["hostname"]).await.trim(), "shared");

    // The service restarts: the init (and so the namespace) is kept and adopted.
    svc.stop();
    svc.spawn();
    let (mut rt, _) = svc.clients().await;
    assert_eq!(pod_state(&mut rt, &pod).await, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(svc.recorded_init(&pod), Some((init, init_start)));
    assert_eq!(start_time(init), Some(init_start));
    let ps = exec(&mut rt, &b, &["ps"]).await;
    assert!(ps.contains("sleep 1001"), "{ps}");

    // Stop ends every process of the namespace; remove leaves no mount.
    let procs = processes_in_pid_ns_of(init);
    assert!(procs.len() >= 3, "{procs:?}");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(gone(&procs), "left running: {procs:?}");
    assert_eq!(pod_state(&mut rt, &pod).await, cri::PodSandboxState::SandboxNotready as i32);
    for _ in 0..2 {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    }
    let mounts = test_support::mounts_under(svc.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn a_pod_without_namespace_options_shares_its_pid_namespace_and_a_container_one_does_not() {
    let svc = Service::start(test_support::bins::workspace_bin("runtime-rs", "runtime-rs"));
    let (mut rt, _) = svc.clients().await;

    // As a minimal `crictl runp` config: no namespace options, so every mode is POD.
    let bare = svc.pod_config("bare", None);
    let pod = run_pod(&mut rt, &svc, &bare).await;
    let (init, _) = svc.recorded_init(&pod).expect("no pod init recorded");
    let c = run_container(&mut rt, &svc, &pod, &bare, container_config("c", &["sleep", "1003"], None)).await;
    let one = exec(&mut rt, &c, &["cat", "/proc/1/cmdline"]).await;
    assert!(one.contains("pod-init"), "{one}");
    let procs = processes_in_pid_ns_of(init);
    // Remove alone (no stop first) ends the init and its pod too.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(gone(&procs), "left running: {procs:?}");

    // pid CONTAINER, as before: no init, each container is pid 1 of its own.
    let own = svc.pod_config("own", modes(cri::NamespaceMode::Container));
    let pod = run_pod(&mut rt, &svc, &own).await;
    assert_eq!(svc.recorded_init(&pod), None);
    let c = run_container(&mut rt, &svc, &pod, &own, container_config("c", &["sleep", "1004"], Some(cri::NamespaceMode::Container))).await;
    let one = exec(&mut rt, &c, &["cat", "/proc/1/cmdline"]).await;
    assert!(one.starts_with("sleep 1004"), "{one}");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    let mounts = test_support::mounts_under(svc.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}
