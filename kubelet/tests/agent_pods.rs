//! The pod sync against a real `kubelet-rs cri` (root): a pod's containers start, a crashing
//! one goes into CrashLoopBackOff, a restarted agent adopts the running containers, and a
//! deletion stops and removes everything.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{BUSYBOX, Runtime, Service};
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use kubelet_rs::agent::node_cgroups::{self, TrimmedConfigs};
use kubelet_rs::agent::pods::cri_config::{DnsSettings, SandboxContext};
use kubelet_rs::agent::pods::deps::{EventSink, EventType, PodDeps};
use kubelet_rs::agent::pods::manager::{ManagerConfig, PodEvent, PodManager};
use kubelet_rs::agent::pods::plan::ProbeState;
use kubelet_rs::agent::pods::sync::{SyncConfig, Syncer};
use kubelet_rs::agent::runtime::{CriRuntime, PodRuntime};
use tokio::sync::mpsc;

struct Deps {
    cgroup_parent: String,
    logs: PathBuf,
}

#[async_trait]
impl PodDeps for Deps {
    fn sandbox_context(&self, pod: &Pod, attempt: u32) -> SandboxContext {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        SandboxContext {
            cgroup_parent: self.cgroup_parent.clone(),
            log_directory: self.logs.join(&uid),
            dns: DnsSettings { cluster_dns: vec![], cluster_domain: "cluster.local".into(), host_resolv_conf: "/etc/resolv.conf".into() },
            attempt,
            seccomp_root: PathBuf::new(),
        }
    }
    async fn prepare_volumes(&self, _pod: &Pod) -> Result<(), String> {
        Ok(())
    }
    async fn env(&self, _pod: &Pod, _c: &Container, _ip: Option<&str>) -> Result<Vec<cri::KeyValue>, String> {
        Ok(vec![])
    }
    fn mounts(&self, _pod: &Pod, _c: &Container) -> Result<Vec<cri::Mount>, String> {
        Ok(vec![])
    }
    async fn pull_auth(&self, _pod: &Pod, _image: &str) -> Option<cri::AuthConfig> {
        None
    }
    async fn post_start(&self, _pod: &Pod, _c: &Container, _id: &str) -> Result<(), String> {
        Ok(())
    }
    async fn pre_stop(&self, _pod: &Pod, _c: &Container, _id: &str, _grace: Duration) {}
    fn probe_state(&self, _uid: &str, _c: &str, _id: &str) -> ProbeState {
        ProbeState::default()
    }
    async fn cleanup(&self, _uid: &str) {}
}


#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl EventSink for Events {
    fn event(&self, _pod: &Pod, _c: Option<&str>, _kind: EventType, reason: &str, message: &str) {
        self.0.lock().unwrap().push(format!("{reason}: {message}"));
    }
}

async fn manager(service: &Service, events: Arc<Events>) -> (PodManager, mpsc::UnboundedReceiver<PodEvent>, Arc<CriRuntime>) {
    let runtime = Arc::new(CriRuntime::connect(&service.socket()).await.expect("connect"));
    let version = runtime.version().await.expect("version");
    let deps = Arc::new(Deps { cgroup_parent: service.cgroup_parent.clone(), logs: service.dir.path().join("pod-logs") });
    let config = SyncConfig { runtime_name: version.runtime_name, ..Default::default() };
    // The agent's own configs, trimmed to the controllers the test's cgroup offers (none of
    // cpu/memory on a hybrid host, all of them in the cgroup v2 guest).
    let available = node_cgroups::detect(&service.cgroup_parent).unwrap_or_default();
    let syncer = Syncer::new(runtime.clone(), deps, events, config).with_configs(Arc::new(TrimmedConfigs { available }));
    let (m, rx) = PodManager::new(Arc::new(syncer), ManagerConfig { resync: Duration::from_secs(1), relist: Duration::from_millis(200) });
    m.start_relist();
    (m, rx, runtime)
}

/// Waits for a status event of which `check` holds.
async fn wait_status(rx: &mut mpsc::UnboundedReceiver<PodEvent>, what: &str, check: impl Fn(&PodStatus) -> bool) -> PodStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(PodEvent::Status { status, .. })) if check(&status) => return *status,
            Ok(Some(e)) => eprintln!("(not yet {what}: {e:?})"),
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

fn container<'a>(s: &'a PodStatus, name: &str) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses.as_ref().unwrap().iter().find(|c| c.name == name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn a_pod_runs_crashes_back_off_is_adopted_and_deleted() {
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::DEBUG).with_test_writer().try_init();
    let service = Service::start(Runtime::RuntimeRs);
    let events = Arc::new(Events::default());
    let (m, mut rx, runtime) = manager(&service, events.clone()).await;
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "agent-pods-test-uid", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [
            {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "1000"]},
            {"name": "crash", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "exit 3"]}
        ]}
    }))
    .unwrap();
    m.update(pod.clone());
    let t0 = Instant::now();

    let running = wait_status(&mut rx, "app running", |s| container(s, "app").state.as_ref().is_some_and(|st| st.running.is_some())).await;
    eprintln!("running after {:?}", t0.elapsed());
    let app_id = container(&running, "app").container_id.clone().unwrap();
    assert!(app_id.contains("://"), "{app_id}");
    assert!(running.pod_ip.is_some(), "{running:?}");

    let looping = wait_status(&mut rx, "CrashLoopBackOff", |s| {
        container(s, "crash").state.as_ref().and_then(|st| st.waiting.as_ref()).and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
    })
    .await;
    eprintln!("crash looping after {:?}", t0.elapsed());
    let crash = container(&looping, "crash");
    assert!(crash.restart_count >= 1);
    assert_eq!(crash.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 3);
    assert_eq!(looping.phase.as_deref(), Some("Running"));
    let log = events.0.lock().unwrap().clone();
    assert!(log.iter().any(|e| e.starts_with("BackOff: Back-off restarting failed container crash")), "{log:?}");

    // The agent restarts: the running app container is adopted, not recreated.
    drop(m);
    drop(rx);
    let (m, mut rx, _) = manager(&service, events.clone()).await;
    m.update(pod.clone());
    m.set_desired_pods(["agent-pods-test-uid".to_string()].into());
    let adopted = wait_status(&mut rx, "adopted", |s| container(s, "app").state.as_ref().is_some_and(|st| st.running.is_some())).await;
    assert_eq!(container(&adopted, "app").container_id.as_ref(), Some(&app_id));

    // Deletion: stopped within the grace period, then everything removed.
    pod.metadata.deletion_timestamp = adopted.start_time.clone();
    pod.metadata.deletion_grace_period_seconds = Some(2);
    let started = Instant::now();
    m.update(pod);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("terminated in time") {
            Some(PodEvent::Terminated { uid, .. }) => {
                assert_eq!(uid, "agent-pods-test-uid");
                break;
            }
            Some(_) => {}
            None => panic!("manager gone"),
        }
    }
    eprintln!("terminated after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let filter = cri::PodSandboxFilter { label_selector: HashMap::from([("io.kubernetes.pod.uid".to_string(), "agent-pods-test-uid".to_string())]), ..Default::default() };
    assert!(runtime.list_pod_sandboxes(Some(filter)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root"]
async fn requests_and_limits_reach_the_container_cgroup_where_the_controllers_exist() {
    let service = Service::start(Runtime::RuntimeRs);
    let events = Arc::new(Events::default());
    let (m, mut rx, _) = manager(&service, events.clone()).await;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "limited", "namespace": "default", "uid": "agent-limits-test-uid", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            {"name": "app", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "1000"],
             "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}
        ]}
    }))
    .unwrap();
    m.update(pod);
    let running = wait_status(&mut rx, "app running", |s| container(s, "app").state.as_ref().is_some_and(|st| st.running.is_some())).await;
    assert_eq!(running.qos_class.as_deref(), Some("Burstable"));
    let id = container(&running, "app").container_id.clone().unwrap();
    let id = id.split_once("://").unwrap().1.to_string();
    let cgroup = service.pods_cgroup.join(&id);
    let read = |file: &str| std::fs::read_to_string(cgroup.join(file)).map(|s| s.trim().to_string());
    let available = node_cgroups::detect(&service.cgroup_parent).unwrap_or_default();
    if available.contains("memory") {
        assert_eq!(read("memory.max").unwrap(), (64 * 1024 * 1024).to_string());
    } else {
        // Trimmed, not refused: the container runs without the limit.
        assert!(read("memory.max").is_err(), "no memory controller, yet memory.max exists");
    }
    if available.contains("cpu") {
        assert_eq!(read("cpu.max").unwrap(), "50000 100000");
        // 250m as shares (256), in cgroup v2's weight as runc converts it.
        assert_eq!(read("cpu.weight").unwrap(), "10");
    } else {
        assert!(read("cpu.max").is_err(), "no cpu controller, yet cpu.max exists");
    }
    eprintln!("controllers here: {available:?}");
}
