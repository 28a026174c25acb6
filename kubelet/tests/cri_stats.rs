//! CRI statistics, events, resource updates and log reopening end to end, as root:
//! `kubelet-rs cri` in a node network namespace (the harness of cri_pod.rs, copied), a pod
//! of busybox containers run by runtime-rs. Stats after a busy loop and a written file,
//! ListContainerStats filters, the pod's eth0 counters after traffic, verbose statuses,
//! GetContainerEvents' order for one container's life, ReopenContainerLog after the log was
//! renamed, and UpdateContainerResources of a pids limit (or the error naming the missing
//! controller on a host whose cgroup v2 does not offer it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cri_api::runtime::v1 as cri;
use cri_api::RuntimeServiceClient;

mod common;
use common::*;

type Rt = RuntimeServiceClient<tonic::transport::Channel>;

async fn start(rt: &mut Rt, pod: &str, config: &cri::PodSandboxConfig, name: &str, command: &[&str], labels: &[(&str, &str)]) -> String {
    let mut c = container_config(name, command);
    c.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let id = rt
        .create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.into(), config: Some(c), sandbox_config: Some(config.clone()) })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await.unwrap();
    wait_state(rt, &id, cri::ContainerState::ContainerRunning).await;
    id
}

async fn container_stats(rt: &mut Rt, id: &str) -> cri::ContainerStats {
    rt.container_stats(cri::ContainerStatsRequest { container_id: id.into() }).await.unwrap().into_inner().stats.unwrap()
}

async fn list_stats(rt: &mut Rt, filter: cri::ContainerStatsFilter) -> Vec<String> {
    let stats = rt.list_container_stats(cri::ListContainerStatsRequest { filter: Some(filter) }).await.unwrap().into_inner().stats;
    let mut ids: Vec<String> = stats.into_iter().map(|s| s.attributes.unwrap().id).collect();
    ids.sort();
    ids
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn stats_events_updates_and_log_reopening() {
    let svc = Service::start(Runtime::RuntimeRs);
    let controllers = svc.cgroup.enable_controllers();
    let (mut rt, _) = svc.clients().await;

    // Events from the start: a subscriber collects them all.
    let mut stream = rt.get_container_events(cri::GetEventsRequest {}).await.unwrap().into_inner();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(e)) = stream.message().await {
            if events_tx.send(e).is_err() {
                return;
            }
        }
    });

    let config = svc.pod_config("stats");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", svc.log()))
        .into_inner()
        .pod_sandbox_id;
    let logs = svc.dir.path().join("logs/stats");

    // A busy loop and a 4 MiB file, then a server for some traffic.
    let busy = start(
        &mut rt,
        &pod,
        &config,
        "busy",
        &["sh", "-c", "dd if=/dev/zero of=/data bs=1M count=4 2>/dev/null; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done; exec nc -ll -p 80 -e echo hi"],
        &[("role", "busy")],
    )
    .await;
    let idle = start(&mut rt, &pod, &config, "idle", &["sleep", "1000"], &[("role", "idle")]).await;
    wait_for("the busy loop", || read(&logs.join("busy.log")).contains("stdout F done"));

    let first = container_stats(&mut rt, &busy).await;
    assert_eq!(first.attributes.as_ref().unwrap().metadata.as_ref().unwrap().name, "busy");
    let cpu = first.cpu.as_ref().expect("cpu usage from cpu.stat");
    assert!(cpu.usage_core_nano_seconds.as_ref().unwrap().value > 0, "{cpu:?}");
    let layer = first.writable_layer.as_ref().unwrap();
    assert!(layer.used_bytes.as_ref().unwrap().value >= 4 << 20, "{layer:?}");
    assert!(layer.inodes_used.as_ref().unwrap().value >= 1, "{layer:?}");
    if !Path::new(&format!("{}/memory.current", svc.cgroup.path.display())).exists() {
        assert!(first.memory.is_none(), "no memory controller, yet {:?}", first.memory);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = container_stats(&mut rt, &busy).await;
    assert!(second.cpu.unwrap().usage_nano_cores.is_some(), "a second sample gives a rate");

    // ListContainerStats: by id prefix, pod, labels.
    let mut both = vec![busy.clone(), idle.clone()];
    both.sort();
    assert_eq!(list_stats(&mut rt, Default::default()).await, both);
    assert_eq!(list_stats(&mut rt, cri::ContainerStatsFilter { id: busy[..12].into(), ..Default::default() }).await, vec![busy.clone()]);
    assert_eq!(list_stats(&mut rt, cri::ContainerStatsFilter { pod_sandbox_id: pod.clone(), ..Default::default() }).await, both);
    let by_label = |v: &str| cri::ContainerStatsFilter { label_selector: HashMap::from([("role".to_string(), v.to_string())]), ..Default::default() };
    assert_eq!(list_stats(&mut rt, by_label("idle")).await, vec![idle.clone()]);
    assert!(list_stats(&mut rt, by_label("none")).await.is_empty());
    assert!(list_stats(&mut rt, cri::ContainerStatsFilter { pod_sandbox_id: "nope".into(), ..Default::default() }).await.is_empty());

    // Traffic to the pod, then its network counters.
    let status = rt.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: true }).await.unwrap().into_inner();
    let pod_ip = status.status.as_ref().unwrap().network.as_ref().unwrap().ip.clone();
    let node = svc.node.path();
    let start_t = Instant::now();
    loop {
        match tcp_get(&node, format!("{pod_ip}:80")) {
            Ok(a) => break assert_eq!(a, "hi"),
            Err(e) if start_t.elapsed() > Duration::from_secs(10) => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let stats = rt.pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: pod.clone() }).await.unwrap().into_inner().stats.unwrap();
    assert_eq!(stats.attributes.as_ref().unwrap().id, pod);
    let linux = stats.linux.unwrap();
    let net = linux.network.expect("network usage");
    let eth0 = net.default_interface.expect("eth0");
    assert_eq!(eth0.name, "eth0");
    assert!(eth0.rx_bytes.unwrap().value > 0 && eth0.tx_bytes.unwrap().value > 0, "{:?}", net.interfaces);
    assert!(net.interfaces.iter().all(|i| i.name != "lo"), "{:?}", net.interfaces);
    assert_eq!(linux.containers.len(), 2);
    assert!(linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value >= cpu.usage_core_nano_seconds.as_ref().unwrap().value);
    assert!(linux.process.unwrap().process_count.unwrap().value >= 2);
    let listed = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: Some(cri::PodSandboxStatsFilter { id: pod[..8].into(), ..Default::default() }) })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);

    // Verbose statuses: the pod's namespaces, the container's pid and spec.
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    assert!(info["namespaces"]["network"].as_str().is_some_and(|p| Path::new(p).exists()), "{info}");
    assert_eq!(status.containers_statuses.len(), 2);
    let verbose = rt.container_status(cri::ContainerStatusRequest { container_id: busy.clone(), verbose: true }).await.unwrap().into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert!(info["pid"].as_i64().unwrap() > 0, "{info}");
    assert_eq!(info["sandboxID"], serde_json::json!(pod));
    assert!(info["runtimeSpec"]["ociVersion"].is_string(), "{info}");

    // ReopenContainerLog: the kubelet renamed the log; the output goes on in a new file.
    let ticker = start(&mut rt, &pod, &config, "ticker", &["sh", "-c", "while true; do echo tick; sleep 0.1; done"], &[]).await;
    let log = logs.join("ticker.log");
    wait_for("ticks", || read(&log).contains("stdout F tick"));
    let rotated = logs.join("ticker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    rt.reopen_container_log(cri::ReopenContainerLogRequest { container_id: ticker.clone() }).await.unwrap();
    wait_for("ticks in the reopened log", || read(&log).contains("stdout F tick"));
    let rotated_len = read(&rotated).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(read(&rotated).len(), rotated_len, "output still goes to the renamed file");

    // UpdateContainerResources: a pids limit, where cgroup v2 offers pids.
    let pids_max = cri::LinuxContainerResources { unified: HashMap::from([("pids.max".to_string(), "50".to_string())]), ..Default::default() };
    let update = rt.update_container_resources(cri::UpdateContainerResourcesRequest { container_id: ticker.clone(), linux: Some(pids_max), ..Default::default() }).await;
    let cgroup_path = info_cgroup(&mut rt, &ticker).await;
    if controllers.iter().any(|c| c == "pids") {
        update.unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
        assert_eq!(read(&cgroup_path.join("pids.max")).trim(), "50");
        // The stored spec has the new resources too.
        let verbose = rt.container_status(cri::ContainerStatusRequest { container_id: ticker.clone(), verbose: true }).await.unwrap().into_inner();
        let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
        assert_eq!(info["runtimeSpec"]["linux"]["resources"]["unified"]["pids.max"], "50", "{info}");
    } else {
        let e = update.unwrap_err();
        eprintln!("UpdateContainerResources without the pids controller: {e}");
        assert!(e.message().contains("pids"), "the error should name the controller: {e}");
    }

    // Events of the ticker's life, in order.
    rt.stop_container(cri::StopContainerRequest { container_id: ticker.clone(), timeout: 0 }).await.unwrap();
    let e = rt.reopen_container_log(cri::ReopenContainerLogRequest { container_id: ticker.clone() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    rt.remove_container(cri::RemoveContainerRequest { container_id: ticker.clone() }).await.unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&cri::ContainerEventType::ContainerDeletedEvent) {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events_rx.recv()).await.expect("events until the deletion").unwrap();
        if e.container_id == ticker {
            if e.container_event_type == cri::ContainerEventType::ContainerStartedEvent as i32 {
                assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod);
                assert!(e.containers_statuses.iter().any(|c| c.id == ticker), "{e:?}");
            }
            seen.push(cri::ContainerEventType::try_from(e.container_event_type).unwrap());
        }
    }
    use cri::ContainerEventType::*;
    assert_eq!(seen, [ContainerCreatedEvent, ContainerStartedEvent, ContainerStoppedEvent, ContainerDeletedEvent]);

    // A container that exits by itself is reported stopped by the exit watcher.
    let short = start(&mut rt, &pod, &config, "short", &["sh", "-c", "sleep 0.5"], &[]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events_rx.recv().await {
            if e.container_id == short && e.container_event_type == ContainerStoppedEvent as i32 {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no stop event for a container that exited");

    rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    assert!(list_stats(&mut rt, Default::default()).await.is_empty());
}

async fn info_cgroup(rt: &mut Rt, id: &str) -> PathBuf {
    let verbose = rt.container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: true }).await.unwrap().into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    PathBuf::from(info["cgroupPath"].as_str().expect("cgroupPath"))
}
