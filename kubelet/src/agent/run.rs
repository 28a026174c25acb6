//! The agent's main loop. Start: connect to the API server and the CRI runtime, register
//! the Node (then keep its status and Lease up to date), build the pod sync with its
//! volumes, probes and hooks, serve the kubelet API, and watch the pod sources. Then apply,
//! one at a time: pod updates from the sources to the pod manager, the manager's statuses to
//! the API (and probes to newly running containers), and probe results to the pods. On
//! shutdown the loops stop and the pods keep running, to be adopted at the next start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

use super::adapters::{Cri, Events};
use super::config::AgentConfig;
use super::events::EventRecorder;
use super::logs::rotate::{LogRotator, RotationPolicy};
use super::node::{HostMachine, LeaseRenewer, LoopActivity, Machine, NodeApi, NodeConfig, NodeStatusManager};
use super::node_cgroups;
use super::pod_deps::AgentDeps;
use super::pods::cri_config::DnsSettings;
use super::pods::deps::{EventSink, EventType, PodStartMetrics};
use super::pods::manager::{ManagerConfig, PodEvent, PodManager};
use super::pods::sync::{SyncConfig, Syncer};
use super::probes::{ProbeEvent, ProbeManager};
use super::runtime::{CriRuntime, PodRuntime};
use super::pod_lookup::{RuntimeLookup, Stats};
use super::server::metrics::Metrics;
use super::server::cri::CriStreaming;
use super::server::routes::ServerState;
use super::server::stats::CpuSampler;
use super::server::tls::TlsFiles;
use super::logs::cri::CriLogRuntime;
use super::node::cri_facts::CriRuntimeFacts;
use super::sources::{self, PodUpdate, Source};
use super::status_writer::{StatusUpdate, StatusWriter};
use super::volumes::VolumeManager;
use super::volumes::provisioner::Provisioner;
use super::volumes::mounter::HostMounter;
use super::volumes::objects::ApiObjects;

/// Upstream's plain healthz port.
const HEALTHZ_PORT: u16 = 10248;

/// How long the agent waits for the CRI runtime's socket at start.
const CRI_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the API server: {0}")]
    Client(#[from] apiserver_lite::controllers::ClientError),
    #[error("the CRI runtime at {path}: {message}")]
    Cri { path: String, message: String },
    #[error("creating {path}: {message}")]
    Dir { path: std::path::PathBuf, message: String },
    #[error("the kubelet API: {0}")]
    Server(String),
}

pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let node = config.node_name.clone();
    for dir in [&config.root_dir, &config.pod_log_dir] {
        std::fs::create_dir_all(dir).map_err(|e| AgentError::Dir { path: dir.clone(), message: e.to_string() })?;
    }
    let client = apiserver_lite::controllers::kubeconfig_client(&config.kubeconfig).await?;
    let runtime: Arc<dyn PodRuntime> = Arc::new(connect_cri(&config).await?);
    let channel = cri_api::connect(&config.cri_socket).await.map_err(|e| AgentError::Cri { path: config.cri_socket.display().to_string(), message: e.to_string() })?;
    let cri_client = cri_api::RuntimeServiceClient::new(channel.clone());
    let cri = Cri(runtime.clone());
    let version = runtime.version().await.map_err(|e| AgentError::Cri { path: config.cri_socket.display().to_string(), message: e.to_string() })?;
    tracing::info!(runtime = %version.runtime_name, version = %version.runtime_version, node = %node, "node agent starting");

    let recorder = EventRecorder::start(client.clone(), node.clone());
    let events = Events { recorder, node: node.clone() };
    let metrics = Arc::new(Metrics::new(node.clone()));

    // The Node, its status loop and its Lease.
    let machine: Arc<dyn Machine> = Arc::new(HostMachine::new(config.root_dir.clone()));
    let node_api: Arc<dyn NodeApi> = Arc::new(client.clone());
    let activity = Arc::new(LoopActivity::default());
    let mut node_config = NodeConfig::new(node.clone());
    node_config.labels = config.node_labels.iter().cloned().collect();
    node_config.pod_cidrs = config.pod_cidr.iter().cloned().collect();
    node_config.node_ip = config.node_ip;
    node_config.kubelet_port = config.server.address.port();
    let mut node_status = NodeStatusManager::new(node_config, node_api.clone(), Arc::new(CriRuntimeFacts::new(channel)), machine.clone(), Arc::new(events.clone()), activity.clone());
    let registered = node_status.register_until_done().await;
    let node_uid = registered.metadata.uid.clone().unwrap_or_default();
    let allocatable = registered.status.as_ref().and_then(|s| s.allocatable.clone()).unwrap_or_default();
    let memory_capacity = registered.status.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("memory")).and_then(|q| super::quantity::parse(&q.0).ok()).map(|n| n.value() as i64).unwrap_or(0);
    let host_ips: Vec<String> = registered.status.as_ref().and_then(|s| s.addresses.as_ref()).into_iter().flatten().filter(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).collect();
    let mut background = vec![tokio::spawn(node_status.run()), tokio::spawn(LeaseRenewer::new(node_api, node.clone()).run())];

    // The pod sync.
    let objects = Arc::new(ApiObjects::new(client.clone()));
    let volumes = Arc::new(VolumeManager::new(config.root_dir.clone(), objects.clone(), Arc::new(HostMounter)));
    volumes.set_node_allocatable(allocatable.clone());
    let (probes, mut probe_events) = ProbeManager::new(Arc::new(cri.clone()));
    let probes = Arc::new(probes);
    let dns = DnsSettings { cluster_dns: config.cluster_dns.clone(), cluster_domain: config.cluster_domain.clone(), host_resolv_conf: config.host_resolv_conf.clone() };
    // The pods as the sources last gave them, for the kubelet API and the probes.
    let pods: Arc<Mutex<HashMap<String, Pod>>> = Arc::default();
    let deps = Arc::new(AgentDeps::new(volumes.clone(), objects, probes.clone(), Arc::new(cri.clone()), pods.clone(), config.cgroup_root.clone(), config.pod_log_dir.clone(), dns, host_ips.clone()));
    *deps.node_allocatable.write().unwrap() = allocatable;
    let sync_config = SyncConfig { runtime_name: version.runtime_name.clone(), runtime_handler: String::new(), host_ips, node_memory_capacity: memory_capacity };
    let available = node_cgroups::detect(&config.cgroup_root).unwrap_or_default();
    let missing = node_cgroups::missing(&available);
    if !missing.is_empty() {
        tracing::warn!(cgroup_root = %config.cgroup_root, "the cgroup v2 hierarchy offers no {} controller here: pods run without those limits", missing.join(", "));
    }
    let syncer = Syncer::new(runtime.clone(), deps.clone(), Arc::new(events.clone()), sync_config)
        .with_metrics(Arc::new(StartLatency(metrics.clone())))
        .with_configs(Arc::new(node_cgroups::TrimmedConfigs { available }));
    let (manager, mut pod_events) = PodManager::new(Arc::new(syncer), ManagerConfig { resync: config.resync_period, relist: Duration::from_secs(1) });
    manager.start_relist();

    // The kubelet API and log rotation.
    let state = ServerState {
        lookup: Arc::new(RuntimeLookup::new(runtime.clone(), pods.clone())),
        streaming: Arc::new(CriStreaming { runtime: cri_client.clone() }),
        stats: Arc::new(Stats { node: node.clone(), machine, cri: cri_client.clone(), started: jiff::Timestamp::now(), cpu: CpuSampler::default() }),
        metrics: metrics.clone(),
    };
    let files = TlsFiles { cert: config.server.cert_file.clone(), key: config.server.key_file.clone(), client_ca: config.server.client_ca_file.clone() };
    let healthz = std::net::SocketAddr::from(([127, 0, 0, 1], HEALTHZ_PORT));
    let servers = super::server::start(state, &files, config.server.address, Some(healthz)).await.map_err(|e| AgentError::Server(e.to_string()))?;
    background.push(tokio::spawn(LogRotator::new(RotationPolicy::default(), Arc::new(CriLogRuntime { runtime: cri_client })).run()));

    // Claims of storage class `local-path` get hostPath volumes on this node.
    if let Some((kubeconfig, dir)) = &config.local_path {
        let provisioner = Provisioner::new(apiserver_lite::controllers::kubeconfig_client(kubeconfig).await?, node.clone(), dir.clone());
        background.push(tokio::spawn(async move { provisioner.run(Duration::from_secs(2)).await }));
    }

    // Status writes go through one task so a slow API never holds up the loop.
    let (status_tx, status_rx) = mpsc::unbounded_channel::<StatusUpdate>();
    background.push(tokio::spawn(write_statuses(StatusWriter::new(client.clone()), status_rx)));

    // The sources.
    let (updates_tx, mut updates) = mpsc::channel::<PodUpdate>(1024);
    background.push(tokio::spawn(sources::api::watch(client.clone(), node.clone(), updates_tx.clone())));
    if let Some(dir) = config.manifest_dir.clone() {
        background.push(tokio::spawn(sources::static_pods::watch(dir, node.clone(), updates_tx.clone())));
    }
    drop(updates_tx);
    let mut desired = sources::Desired::new(if config.manifest_dir.is_some() { 2 } else { 1 });
    let mut static_pods: HashMap<String, Pod> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));

    tokio::pin!(shutdown);
    loop {
        activity.mark();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                if !static_pods.is_empty() {
                    spawn_mirror_sync(&client, &node, &node_uid, &static_pods);
                }
                spawn_volume_refresh(&volumes, &pods);
            }
            update = updates.recv() => {
                let Some(update) = update else { break };
                if let Some(uids) = desired.apply(&update) {
                    manager.set_desired_pods(uids);
                }
                match update {
                    PodUpdate::Set(source, pod) => {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        pods.lock().unwrap().insert(uid.clone(), (*pod).clone());
                        if source == Source::File {
                            static_pods.insert(uid, (*pod).clone());
                            spawn_mirror_sync(&client, &node, &node_uid, &static_pods);
                        }
                        manager.update(*pod);
                    }
                    PodUpdate::Gone(source, uid) => {
                        manager.remove(&uid);
                        if source == Source::File && static_pods.remove(&uid).is_some() {
                            spawn_mirror_sync(&client, &node, &node_uid, &static_pods);
                        }
                    }
                    PodUpdate::Synced(..) => {}
                }
            }
            event = pod_events.recv() => {
                let Some(event) = event else { break };
                handle_pod_event(event, &pods, &probes, &deps, &metrics, &status_tx);
            }
            event = probe_events.recv() => {
                let Some(event) = event else { continue };
                handle_probe_event(event, &pods, &deps, &events, &manager);
            }
        }
    }
    probes.shutdown();
    servers.abort();
    for task in background {
        task.abort();
    }
    tracing::info!("node agent stopped; pods keep running");
    Ok(())
}

/// Connect to the CRI runtime, waiting for its socket (it may be starting beside us).
async fn connect_cri(config: &AgentConfig) -> Result<CriRuntime, AgentError> {
    let start = std::time::Instant::now();
    loop {
        let attempt = match CriRuntime::connect(&config.cri_socket).await {
            Ok(runtime) => match runtime.version().await {
                Ok(_) => return Ok(runtime),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if start.elapsed() > CRI_WAIT {
            return Err(AgentError::Cri { path: config.cri_socket.display().to_string(), message: attempt });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn spawn_mirror_sync(client: &kube::Client, node: &str, node_uid: &str, static_pods: &HashMap<String, Pod>) {
    let (client, node, node_uid) = (client.clone(), node.to_string(), node_uid.to_string());
    let statics: Vec<Pod> = static_pods.values().cloned().collect();
    tokio::spawn(async move {
        if let Err(e) = sources::mirror::sync(&client, &node, &node_uid, &statics).await {
            tracing::warn!("mirror pods: {e}");
        }
    });
}

/// API data in running pods' volumes (configMap, secret, downwardAPI, projected) follows the
/// objects: each tick sets the volumes up again, which rewrites only what changed.
fn spawn_volume_refresh(volumes: &Arc<VolumeManager>, pods: &Mutex<HashMap<String, Pod>>) {
    let api_data = |p: &Pod| {
        p.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|vs| {
            vs.iter().any(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some())
        })
    };
    let running: Vec<Pod> = pods
        .lock()
        .unwrap()
        .values()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && api_data(p))
        .cloned()
        .collect();
    if running.is_empty() {
        return;
    }
    let volumes = volumes.clone();
    tokio::spawn(async move {
        for pod in running {
            if let Err(e) = volumes.setup(&pod).await {
                tracing::warn!(pod = %pod.metadata.name.as_deref().unwrap_or(""), "refreshing volumes: {e}");
            }
        }
    });
}

/// The manager's news: statuses to the API; running containers to the probe manager.
fn handle_pod_event(event: PodEvent, pods: &Mutex<HashMap<String, Pod>>, probes: &ProbeManager, deps: &AgentDeps, metrics: &Metrics, status_tx: &mpsc::UnboundedSender<StatusUpdate>) {
    match event {
        PodEvent::Status { uid, namespace, name, status } => {
            let pod = pods.lock().unwrap().get(&uid).cloned();
            let source = if pod.as_ref().is_some_and(sources::is_static) { Source::File } else { Source::Api };
            let pod_ip = status.pod_ip.clone().unwrap_or_default();
            if !pod_ip.is_empty() {
                deps.pod_ips.lock().unwrap().insert(uid.clone(), pod_ip.clone());
            }
            if let Some(pod) = &pod
                && pod.metadata.deletion_timestamp.is_none()
            {
                for cs in status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()) {
                    if let (Some(id), Some(_running)) = (&cs.container_id, cs.state.as_ref().and_then(|s| s.running.as_ref())) {
                        let id = id.split_once("://").map(|(_, id)| id).unwrap_or(id);
                        probes.add_container(pod, &cs.name, id, &pod_ip);
                    }
                }
            }
            update_counts(pods, metrics, &uid, &status);
            let _ = status_tx.send(StatusUpdate { namespace, name, uid, source, status: *status, terminated: false });
        }
        PodEvent::Terminated { uid, namespace, name } => {
            let pod = pods.lock().unwrap().remove(&uid);
            let source = if pod.as_ref().is_some_and(sources::is_static) { Source::File } else { Source::Api };
            probes.remove_pod(&uid);
            let status = pod.and_then(|p| p.status).unwrap_or_default();
            let _ = status_tx.send(StatusUpdate { namespace, name, uid, source, status, terminated: true });
        }
    }
}

/// The running pods and containers gauges.
fn update_counts(pods: &Mutex<HashMap<String, Pod>>, metrics: &Metrics, uid: &str, status: &k8s_openapi::api::core::v1::PodStatus) {
    let mut pods = pods.lock().unwrap();
    if let Some(pod) = pods.get_mut(uid) {
        pod.status = Some(status.clone());
    }
    let running = |p: &&Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    metrics.set_running_pods(pods.values().filter(running).count() as i64);
    let containers = pods
        .values()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .count();
    metrics.set_running_containers(containers as i64);
}

/// Probe news: events, and a sync of the pod whose container must be killed or whose
/// readiness changed.
fn handle_probe_event(event: ProbeEvent, pods: &Mutex<HashMap<String, Pod>>, deps: &AgentDeps, events: &Events, manager: &PodManager) {
    let pod_of = |uid: &str| pods.lock().unwrap().get(uid).cloned();
    match event {
        ProbeEvent::Unhealthy { pod, container, message, .. } => {
            if let Some(p) = pod_of(&pod.uid) {
                events.event(&p, Some(&container), EventType::Warning, "Unhealthy", &message);
            }
        }
        ProbeEvent::Kill { pod, container, container_id, kind, message, .. } => {
            if let Some(p) = pod_of(&pod.uid) {
                events.event(&p, Some(&container), EventType::Normal, "Killing", &message);
            }
            deps.failed.lock().unwrap().insert((pod.uid.clone(), container_id, kind));
            manager.wake(&pod.uid);
        }
        ProbeEvent::Changed { pod, .. } => manager.wake(&pod.uid),
    }
}

async fn write_statuses(mut writer: StatusWriter, mut updates: mpsc::UnboundedReceiver<StatusUpdate>) {
    while let Some(first) = updates.recv().await {
        // Only the latest status of each pod matters: take what else is queued.
        let mut latest: Vec<StatusUpdate> = vec![first];
        while let Ok(next) = updates.try_recv() {
            match latest.iter_mut().find(|u| u.uid == next.uid) {
                Some(slot) if !slot.terminated => *slot = next,
                Some(_) => {}
                None => latest.push(next),
            }
        }
        for update in latest {
            if let Err(e) = writer.write(&update).await {
                tracing::warn!("{e}");
            }
            if update.terminated {
                writer.forget(&update.uid);
            }
        }
    }
}

/// Pod start latencies into the kubelet's metrics.
struct StartLatency(Arc<Metrics>);

impl PodStartMetrics for StartLatency {
    fn pod_started(&self, pod: &Pod, latency: Duration) {
        self.0.observe_pod_start(latency);
        tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or(""), latency_ms = latency.as_millis() as u64, "pod started");
    }
}
