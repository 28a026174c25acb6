//! An OOM kill reported through the CRI, as root: a container with a small
//! `LinuxContainerResources.memory_limit_in_bytes` whose init keeps allocating must end
//! EXITED with reason `OOMKilled` and exit code 137, with runtime-rs, runc and crun.
//!
//! It needs the cgroup v2 memory controller below the test's cgroup. On a hybrid host (the
//! development machines: cgroup2 holds only hugetlb) every case skips, saying so; the cgroup
//! v2 guest runs them (`scripts/test`). The pod uses the node's network (no CNI): the
//! memory limit is what is tested here.

mod common;

use common::*;
use cri_api::runtime::v1 as cri;

/// The container's init is a shell that reads 200 MB into a variable: the biggest process of
/// its cgroup, so the OOM killer picks it rather than `head` or `tr`.
const ALLOCATE: &str = "echo start; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived";

async fn oom_kill_is_reported(runtime: Runtime) {
    test_support::require_root();
    if let Some(why) = unavailable(runtime) {
        eprintln!("SKIPPED ({runtime:?}): {why}");
        return;
    }
    let svc = Service::start(runtime);
    if !svc.cgroup.offers("memory") {
        eprintln!("SKIPPED ({runtime:?}): the cgroup v2 hierarchy offers no memory controller here (a hybrid host); the cgroup v2 guest has one (scripts/test runs it there)");
        return;
    }
    let (mut rt, _) = svc.clients().await;
    let options = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let config = svc.pod_config_with("oom", Some(options), Vec::new());
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id;

    let limit = 32 * 1024 * 1024;
    let mut container = container_config_with("hog", &["sh", "-c", ALLOCATE], Some(cri::NamespaceMode::Container));
    if let Some(linux) = container.linux.as_mut() {
        linux.security_context.as_mut().unwrap().namespace_options.as_mut().unwrap().network = cri::NamespaceMode::Node as i32;
        linux.resources = Some(cri::LinuxContainerResources { memory_limit_in_bytes: limit, ..Default::default() });
    }
    let id = rt
        .create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config) })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", svc.log()))
        .into_inner()
        .container_id;
    // The limit reached the container's cgroup.
    let max = std::fs::read_to_string(svc.pods_cgroup.join(&id).join("memory.max")).unwrap();
    assert_eq!(max.trim(), limit.to_string());
    rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    let status = wait_state(&mut rt, &id, cri::ContainerState::ContainerExited).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "OOMKilled"), "{status:?}\n{}", svc.log());
    let log = std::fs::read_to_string(&status.log_path).unwrap();
    assert!(log.lines().any(|l| l.ends_with(" stdout F start")), "{log}");
    assert!(!log.contains("survived"), "the allocation was not stopped: {log}");
    let events = std::fs::read_to_string(svc.pods_cgroup.join(&id).join("memory.events")).unwrap();
    assert!(events.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "{events}");

    rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn oom_killed_with_runtime_rs() {
    oom_kill_is_reported(Runtime::RuntimeRs).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and runc"]
async fn oom_killed_with_runc() {
    oom_kill_is_reported(Runtime::Runc).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and crun"]
async fn oom_killed_with_crun() {
    oom_kill_is_reported(Runtime::Crun).await;
}
