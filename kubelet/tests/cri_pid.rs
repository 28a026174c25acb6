//! Pods sharing one pid namespace (`pid: POD`, Kubernetes' shareProcessNamespace), as root,
//! through `kubelet-rs cri`: the sandbox's pod init is pid 1 of the pod, its containers see
//! each other's processes, a restart of the service keeps the init, stop ends every process
//! of the namespace, remove leaves no mount; a pod without namespace options (pid POD by the
//! CRI's default) runs too, and a pid CONTAINER pod is unchanged.
//!
//! The harness is cri_pod.rs's: the service runs in a "node" network namespace, pods'
//! cgroups go under a `krs-test-*` cgroup, everything else is in a tempdir.


use cri_api::runtime::v1 as cri;
use cri_api::RuntimeServiceClient;

mod common;
use common::*;

async fn exec(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, cmd: &[&str]) -> String {
    let out = rt
        .exec_sync(cri::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.exit_code, 0, "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).replace('\0', " ")
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
    let mut svc = Service::start(Runtime::RuntimeRs);
    let (mut rt, _) = svc.clients().await;
    let config = svc.pod_config_with("shared", modes(cri::NamespaceMode::Pod), vec![]);
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
    let a = run_container(&mut rt, &svc, &pod, &config, container_config_with("a", &["sleep", "1001"], pod_pid)).await;
    let b = run_container(&mut rt, &svc, &pod, &config, container_config_with("b", &["sleep", "1002"], pod_pid)).await;
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
    let svc = Service::start(Runtime::RuntimeRs);
    let (mut rt, _) = svc.clients().await;

    // As a minimal `crictl runp` config: no namespace options, so every mode is POD.
    let bare = svc.pod_config_with("bare", None, vec![]);
    let pod = run_pod(&mut rt, &svc, &bare).await;
    let (init, _) = svc.recorded_init(&pod).expect("no pod init recorded");
    let c = run_container(&mut rt, &svc, &pod, &bare, container_config_with("c", &["sleep", "1003"], None)).await;
    let one = exec(&mut rt, &c, &["cat", "/proc/1/cmdline"]).await;
    assert!(one.contains("pod-init"), "{one}");
    let procs = processes_in_pid_ns_of(init);
    // Remove alone (no stop first) ends the init and its pod too.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(gone(&procs), "left running: {procs:?}");

    // pid CONTAINER, as before: no init, each container is pid 1 of its own.
    let own = svc.pod_config_with("own", modes(cri::NamespaceMode::Container), vec![]);
    let pod = run_pod(&mut rt, &svc, &own).await;
    assert_eq!(svc.recorded_init(&pod), None);
    let c = run_container(&mut rt, &svc, &pod, &own, container_config_with("c", &["sleep", "1004"], Some(cri::NamespaceMode::Container))).await;
    let one = exec(&mut rt, &c, &["cat", "/proc/1/cmdline"]).await;
    assert!(one.starts_with("sleep 1004"), "{one}");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    let mounts = test_support::mounts_under(svc.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}
