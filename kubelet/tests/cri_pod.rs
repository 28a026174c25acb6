//! The CRI service end to end, as root: `kubelet-rs cri` serving on a socket, driven through
//! the CRI client as the kubelet drives it. A pod sandbox with its network from our CNI
//! plugins, containers of the busybox test image run by runtime-rs, by runc and by crun, logs in
//! CRI format, ExecSync, two containers sharing the pod's localhost, exit codes and reasons,
//! idempotent removes, and a restart of the service with containers still running.
//!
//! The service runs inside a "node" network namespace (`nsenter --net`, so it keeps the
//! host's mounts and cgroups), so the bridge and its rules never touch the host's network;
//! pods' cgroups go under a `krs-test-*` cgroup (for runc and crun on a hybrid host, through
//! a wrapper that shows them that cgroup as /sys/fs/cgroup: see [`RUNC_WRAPPER`]). crun
//! cannot create a container where root lacks CAP_SYS_RESOURCE (this kind of sandbox): its
//! case then skips, saying so, and runs in the cgroup v2 guest (`scripts/test`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use cri_api::runtime::v1 as cri;

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

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root and crun"]
async fn pod_lifecycle_with_crun() {
    test_support::require_root();
    if let Some(why) = unavailable(Runtime::Crun) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    pod_lifecycle(Runtime::Crun).await;
}
