//! CRI `RuntimeService`: version, runtime and network status, runtime config. The pod
//! sandbox and container RPCs answer `Unimplemented` until their managers are wired in;
//! each is its own method below, to be replaced one by one.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use cni::runtime::CniRuntime;
use cri_api::runtime::v1::runtime_service_server::RuntimeService;
use cri_api::runtime::v1::{self, CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition};
use serde_json::json;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::status::{container_status, not_implemented, sandbox_status};
use crate::cri::config::CriConfig;
use crate::cri::container::record::{ContainerRecord, Status as ContainerState};
use crate::cri::container::{ContainerManager, manager as container};
use crate::cri::events::{self, ContainerEvent};
use crate::cri::sandbox::{self, Sandbox, SandboxManager};
use crate::cri::stats::{self, StatsCollector};
use crate::cri::streaming::{AttachTarget, ExecTarget, Streams};

/// Why the runtime service could not load its state.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the pod sandboxes: {0}")]
    Sandboxes(#[from] sandbox::Error),
    #[error("loading the containers: {0}")]
    Containers(#[from] container::Error),
    #[error("starting the container exit watcher: {0}")]
    Watcher(std::io::Error),
}

const RUNTIME_NAME: &str = "kubelet-rs";
const RUNTIME_API_VERSION: &str = "v1";
/// The version of the kubelet runtime API (`VersionResponse.version`).
const KUBELET_API_VERSION: &str = "0.1.0";

const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";
const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>>;

/// What the runtime RPCs share.
struct RuntimeState {
    config: CriConfig,
    sandboxes: SandboxManager,
    containers: ContainerManager,
    /// Statistics, and the last cpu sample of each container and pod.
    stats: StatsCollector,
    /// From `UpdateRuntimeConfig`; CNI plugins get their ranges from their own config.
    pod_cidr: Mutex<String>,
    /// The streaming server's registry, once it listens (`Exec`, `PortForward`).
    streams: OnceLock<Streams>,
}

/// The `RuntimeService` implementation; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    state: Arc<RuntimeState>,
}

impl Runtime {
    /// Loads the sandboxes a previous run left (see [`SandboxManager::new`]).
    pub fn new(config: CriConfig) -> Result<Runtime, StartError> {
        let sandboxes = SandboxManager::new(&config)?;
        let containers = ContainerManager::new(&config)?;
        let stats = StatsCollector::new(stats::layers_root(&config.root));
        let state = Arc::new(RuntimeState {
            config,
            sandboxes,
            containers,
            stats,
            pod_cidr: Mutex::new(String::new()),
            streams: OnceLock::new(),
        });
        events::spawn_watcher(Arc::downgrade(&state), events::EXIT_POLL, |s: &RuntimeState| s.containers.poll_exits())
            .map_err(StartError::Watcher)?;
        Ok(Runtime { state })
    }

    /// Runs blocking container work (mounts, the OCI runtime, monitors) off the async threads.
    async fn containers<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RuntimeState) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&state)).await.map_err(|e| Status::internal(format!("container task failed: {e}")))?
    }

    /// Runs blocking sandbox work (namespaces, mounts, CNI plugins) off the async threads.
    async fn sandboxes<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SandboxManager) -> Result<T, sandbox::Error> + Send + 'static,
    ) -> Result<T, Status> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || f(&state.sandboxes))
            .await
            .map_err(|e| Status::internal(format!("sandbox task failed: {e}")))?
            .map_err(sandbox_status)
    }

    /// Gives `Exec` and `PortForward` the streaming server to hand URLs out for.
    pub fn with_streams(self, streams: Streams) -> Runtime {
        let _ = self.state.streams.set(streams);
        self
    }

    fn streams(&self) -> Result<&Streams, Status> {
        self.state.streams.get().ok_or_else(|| Status::unavailable("the streaming server is not running"))
    }

    /// The pod CIDR the kubelet last gave (empty if none).
    pub fn pod_cidr(&self) -> String {
        self.state.pod_cidr.lock().expect("pod cidr lock").clone()
    }

    /// Whether pods can be networked: a valid configuration list in the conf dir whose
    /// plugins pass CNI STATUS. Ok(network name), or what is wrong.
    async fn network_ready(&self) -> Result<String, String> {
        let config = self.state.config.clone();
        tokio::task::spawn_blocking(move || {
            let list = cni::runtime::default_network(&config.cni_conf_dir).map_err(|e| e.to_string())?;
            let cni = CniRuntime::new(config.cni_bin_dirs.clone()).with_cache_dir(config.cni_cache_dir.clone());
            cni.status(&list).map_err(|e| e.to_string())?;
            Ok(list.name)
        })
        .await
        .map_err(|e| format!("network status check failed: {e}"))?
    }
}

impl RuntimeState {
    /// The containers of the sandbox that are not over (the ones with a cgroup to measure).
    fn live_containers(&self, sandbox_id: &str) -> Vec<ContainerRecord> {
        let filter = v1::ContainerFilter { pod_sandbox_id: sandbox_id.to_string(), ..Default::default() };
        self.containers
            .list(Some(&filter))
            .into_iter()
            .filter(|(r, st)| r.sandbox_id == sandbox_id && !matches!(st, ContainerState::Exited(_)))
            .map(|(r, _)| r)
            .collect()
    }

    fn sandbox_stats(&self, sandbox: &Sandbox) -> v1::PodSandboxStats {
        let measured = self.live_containers(&sandbox.id).iter().map(|r| self.stats.container(r)).collect();
        self.stats.sandbox(sandbox, measured)
    }

    /// The statuses of the sandbox's containers, for events and verbose sandbox status.
    fn container_statuses(&self, sandbox_id: &str) -> Vec<v1::ContainerStatus> {
        let filter = v1::ContainerFilter { pod_sandbox_id: sandbox_id.to_string(), ..Default::default() };
        self.containers.list(Some(&filter)).iter().filter(|(r, _)| r.sandbox_id == sandbox_id).map(|(r, st)| r.to_status(st)).collect()
    }

    /// A lifecycle event with its pod's status and its containers' statuses as they are now.
    fn event_response(&self, event: &ContainerEvent) -> v1::ContainerEventResponse {
        v1::ContainerEventResponse {
            container_id: event.container_id.clone(),
            container_event_type: event.kind.to_cri() as i32,
            created_at: event.at_ns,
            pod_sandbox_status: self.sandboxes.get(&event.sandbox_id).ok().map(|s| s.to_status()),
            containers_statuses: self.container_statuses(&event.sandbox_id),
        }
    }

    /// Forgets the cpu samples of containers and pods that are gone.
    fn prune_stats(&self) {
        let containers = self.containers.list(None);
        let sandboxes = self.sandboxes.list(None);
        let keep: Vec<&str> = containers.iter().map(|(r, _)| r.id.as_str()).chain(sandboxes.iter().map(|s| s.id.as_str())).collect();
        self.stats.retain(&keep);
    }
}

/// `verbose` ContainerStatus: what containerd's `info` holds that we have.
fn container_info(state: &RuntimeState, record: &ContainerRecord) -> HashMap<String, String> {
    let spec: Option<serde_json::Value> =
        std::fs::read(record.dir.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let info = json!({
        "sandboxID": record.sandbox_id,
        "pid": record.pid,
        "monitorPid": record.monitor_pid,
        "bundle": record.dir,
        "logPath": record.log_path,
        "cgroupPath": state.stats.cgroup_dir(record),
        "runtimeSpec": spec,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

/// `verbose` PodSandboxStatus: the sandbox's namespaces (held by files; no pause process,
/// so no pid), cgroup parent and directories.
fn sandbox_info(s: &Sandbox) -> HashMap<String, String> {
    let info = json!({
        "id": s.id,
        "pid": 0,
        "runtimeHandler": s.runtime_handler,
        "cgroupParent": s.cgroup_parent,
        "namespaces": {"network": s.namespaces.net, "ipc": s.namespaces.ipc, "uts": s.namespaces.uts},
        "namespaceModes": {"network": s.modes.network, "pid": s.modes.pid, "ipc": s.modes.ipc},
        "sysctls": s.sysctls,
        "ips": s.ips,
        "dir": s.dir,
        "stateDir": s.state_dir,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

fn stats_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn condition(kind: &str, ready: Result<(), String>) -> RuntimeCondition {
    match ready {
        Ok(()) => RuntimeCondition { r#type: kind.into(), status: true, reason: String::new(), message: String::new() },
        Err(message) => RuntimeCondition {
            r#type: kind.into(),
            status: false,
            reason: NETWORK_NOT_READY_REASON.into(),
            message: format!("network plugin not ready: {message}"),
        },
    }
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    type GetContainerEventsStream = EventStream;

    async fn version(&self, _: Request<v1::VersionRequest>) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(v1::VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(&self, request: Request<v1::StatusRequest>) -> Result<Response<v1::StatusResponse>, Status> {
        let network = self.network_ready().await;
        let mut info = HashMap::new();
        if request.into_inner().verbose {
            let config = &self.state.config;
            let detail = json!({
                "cniConfDir": config.cni_conf_dir,
                "cniBinDirs": config.cni_bin_dirs,
                "network": network.as_ref().ok(),
                "podCIDR": self.pod_cidr(),
                "ociRuntime": config.oci_runtime,
                "root": config.root,
                "stateDir": config.state_dir,
            });
            info.insert("config".to_string(), detail.to_string());
        }
        let conditions = vec![condition(RUNTIME_READY, Ok(())), condition(NETWORK_READY, network.map(drop))];
        Ok(Response::new(v1::StatusResponse {
            status: Some(v1::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![v1::RuntimeHandler { name: String::new(), features: Some(Default::default()) }],
            features: Some(Default::default()),
        }))
    }

    async fn runtime_config(
        &self,
        _: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        Ok(Response::new(v1::RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration { cgroup_driver: CgroupDriver::Cgroupfs as i32 }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request.into_inner().runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr);
        if let Some(cidr) = cidr.filter(|c| !c.is_empty()) {
            let mut current = self.state.pod_cidr.lock().expect("pod cidr lock");
            if *current != cidr {
                info!(pod_cidr = %cidr, "pod CIDR set");
                *current = cidr;
            }
        }
        Ok(Response::new(v1::UpdateRuntimeConfigResponse {}))
    }

    // Pod sandboxes, containers, streaming, stats and events: not implemented yet.

    async fn run_pod_sandbox(&self, request: Request<v1::RunPodSandboxRequest>) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("RunPodSandbox: config is missing"))?;
        let handler = request.runtime_handler;
        let pod_sandbox_id = self.sandboxes(move |m| m.run_with_handler(&config, &handler)).await?;
        Ok(Response::new(v1::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(&self, request: Request<v1::StopPodSandboxRequest>) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let sandbox = id.clone();
        // Its containers stop first (CRI: "stop any running process in the sandbox").
        self.containers(move |s| {
            let Ok(found) = s.sandboxes.get(&sandbox) else { return Ok(()) };
            for c in s.containers.ids_in_sandbox(&found.id) {
                s.containers.stop(&c, std::time::Duration::ZERO).map_err(container_status)?;
            }
            Ok(())
        })
        .await?;
        self.sandboxes(move |m| m.stop(&id)).await?;
        Ok(Response::new(v1::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(&self, request: Request<v1::RemovePodSandboxRequest>) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let sandbox = id.clone();
        // Its containers go first, forcibly (CRI: "all its containers are forcibly removed").
        self.containers(move |s| {
            let Ok(found) = s.sandboxes.get(&sandbox) else { return Ok(()) };
            for c in s.containers.ids_in_sandbox(&found.id) {
                s.containers.remove(&c).map_err(container_status)?;
            }
            Ok(())
        })
        .await?;
        self.sandboxes(move |m| m.remove(&id)).await?;
        Ok(Response::new(v1::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(&self, request: Request<v1::PodSandboxStatusRequest>) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        let request = request.into_inner();
        let id = request.pod_sandbox_id;
        let sandbox = self.sandboxes(move |m| m.status(&id)).await?;
        let info = if request.verbose { sandbox_info(&sandbox) } else { HashMap::new() };
        let sandbox_id = sandbox.id.clone();
        let containers_statuses = self.containers(move |s| Ok(s.container_statuses(&sandbox_id))).await?;
        Ok(Response::new(v1::PodSandboxStatusResponse { status: Some(sandbox.to_status()), info, containers_statuses, timestamp: stats_now() }))
    }

    async fn list_pod_sandbox(&self, request: Request<v1::ListPodSandboxRequest>) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        let items = self.sandboxes(move |m| Ok(m.list(filter.as_ref()).iter().map(|s| s.to_list_item()).collect())).await?;
        Ok(Response::new(v1::ListPodSandboxResponse { items }))
    }

    async fn create_container(&self, request: Request<v1::CreateContainerRequest>) -> Result<Response<v1::CreateContainerResponse>, Status> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| Status::invalid_argument("CreateContainer: config is missing"))?;
        let sandbox_id = request.pod_sandbox_id;
        let container_id = self
            .containers(move |s| {
                let sandbox = s.sandboxes.get(&sandbox_id).map_err(sandbox_status)?;
                if sandbox.state != sandbox::State::Ready {
                    return Err(Status::failed_precondition(format!("sandbox {} is not ready", sandbox.id)));
                }
                s.containers.create(&sandbox, &config).map_err(container_status)
            })
            .await?;
        Ok(Response::new(v1::CreateContainerResponse { container_id }))
    }

    async fn start_container(&self, request: Request<v1::StartContainerRequest>) -> Result<Response<v1::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.containers(move |s| s.containers.start(&id).map_err(container_status)).await?;
        Ok(Response::new(v1::StartContainerResponse {}))
    }

    async fn stop_container(&self, request: Request<v1::StopContainerRequest>) -> Result<Response<v1::StopContainerResponse>, Status> {
        let request = request.into_inner();
        let timeout = std::time::Duration::from_secs(request.timeout.max(0) as u64);
        let id = request.container_id;
        self.containers(move |s| s.containers.stop(&id, timeout).map_err(container_status)).await?;
        Ok(Response::new(v1::StopContainerResponse {}))
    }

    async fn remove_container(&self, request: Request<v1::RemoveContainerRequest>) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        self.containers(move |s| s.containers.remove(&id).map_err(container_status)).await?;
        Ok(Response::new(v1::RemoveContainerResponse {}))
    }

    async fn list_containers(&self, request: Request<v1::ListContainersRequest>) -> Result<Response<v1::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter;
        let containers = self
            .containers(move |s| Ok(s.containers.list(filter.as_ref()).iter().map(|(r, st)| r.to_list_item(st)).collect()))
            .await?;
        Ok(Response::new(v1::ListContainersResponse { containers }))
    }

    async fn container_status(&self, request: Request<v1::ContainerStatusRequest>) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        let request = request.into_inner();
        let (id, verbose) = (request.container_id, request.verbose);
        let (status, info) = self
            .containers(move |s| {
                let record = s.containers.get(&id).map_err(container_status)?;
                let info = if verbose { container_info(s, &record) } else { HashMap::new() };
                Ok((record.to_status(&s.containers.status_of(&record)), info))
            })
            .await?;
        Ok(Response::new(v1::ContainerStatusResponse { status: Some(status), info }))
    }

    async fn update_container_resources(&self, request: Request<v1::UpdateContainerResourcesRequest>) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        let request = request.into_inner();
        let resources = request.linux.ok_or_else(|| Status::invalid_argument("UpdateContainerResources: linux resources are missing"))?;
        let id = request.container_id;
        self.containers(move |s| s.containers.update_resources(&id, &resources).map_err(container_status)).await?;
        Ok(Response::new(v1::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(&self, request: Request<v1::ReopenContainerLogRequest>) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        self.containers(move |s| s.containers.reopen_log(&id).map_err(container_status)).await?;
        Ok(Response::new(v1::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, request: Request<v1::ExecSyncRequest>) -> Result<Response<v1::ExecSyncResponse>, Status> {
        let request = request.into_inner();
        let timeout = std::time::Duration::from_secs(request.timeout.max(0) as u64);
        let (id, cmd) = (request.container_id, request.cmd);
        let out = self.containers(move |s| s.containers.exec_sync(&id, &cmd, timeout).map_err(container_status)).await?;
        Ok(Response::new(v1::ExecSyncResponse { stdout: out.stdout, stderr: out.stderr, exit_code: out.exit_code }))
    }

    async fn exec(&self, request: Request<v1::ExecRequest>) -> Result<Response<v1::ExecResponse>, Status> {
        let r = request.into_inner();
        // Checked here, at the edge, so the client learns before it connects.
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: must name the program to run"));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be requested"));
        }
        if r.tty && r.stderr {
            return Err(Status::invalid_argument("tty and stderr cannot both be requested: a terminal has one output"));
        }
        let id = r.container_id.clone();
        let (container_id, oci, spec) = self.containers(move |s| s.containers.exec_context(&id).map_err(container_status)).await?;
        let process = crate::cri::container::exec_process(&spec, &r.cmd, r.tty).map_err(|e| container_status(e.into()))?;
        let target = ExecTarget { container_id, oci, process, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
        let url = self.streams()?.exec(target).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        let r = request.into_inner();
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout and stderr must be requested"));
        }
        let id = r.container_id.clone();
        let (dir, stdio) = self.containers(move |s| s.containers.attach_context(&id).map_err(container_status)).await?;
        // Checked against the container's config: attach cannot add a stdin or a terminal.
        if r.stdin && !stdio.stdin {
            return Err(Status::invalid_argument(format!("container {}: stdin requested, but the container was created without stdin", r.container_id)));
        }
        if r.tty && !stdio.tty {
            return Err(Status::invalid_argument(format!("container {}: tty requested, but the container has no terminal", r.container_id)));
        }
        if (r.tty || stdio.tty) && r.stderr {
            return Err(Status::invalid_argument("stderr cannot be requested with a terminal: a terminal has one output"));
        }
        let target = AttachTarget { container_id: r.container_id, dir, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: stdio.tty };
        let url = self.streams()?.attach(target).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::AttachResponse { url }))
    }

    async fn port_forward(&self, request: Request<v1::PortForwardRequest>) -> Result<Response<v1::PortForwardResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let sandbox = self.sandboxes(move |m| m.get(&id)).await?;
        let netns = sandbox
            .namespaces
            .net
            .clone()
            .ok_or_else(|| Status::failed_precondition(format!("pod sandbox {} has no network namespace of its own", sandbox.id)))?;
        let url = self.streams()?.port_forward(netns).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::PortForwardResponse { url }))
    }

    async fn container_stats(&self, request: Request<v1::ContainerStatsRequest>) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let stats = self
            .containers(move |s| {
                let record = s.containers.get(&id).map_err(container_status)?;
                Ok(s.stats.container(&record).stats)
            })
            .await?;
        Ok(Response::new(v1::ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(&self, request: Request<v1::ListContainerStatsRequest>) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .containers(move |s| {
                s.prune_stats();
                Ok(s.containers
                    .list(None)
                    .into_iter()
                    .filter(|(r, st)| !matches!(st, ContainerState::Exited(_)) && stats::container_matches(r, &filter))
                    .map(|(r, _)| s.stats.container(&r).stats)
                    .collect())
            })
            .await?;
        Ok(Response::new(v1::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(&self, request: Request<v1::PodSandboxStatsRequest>) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let stats = self
            .containers(move |s| {
                let sandbox = s.sandboxes.get(&id).map_err(sandbox_status)?;
                Ok(s.sandbox_stats(&sandbox))
            })
            .await?;
        Ok(Response::new(v1::PodSandboxStatsResponse { stats: Some(stats) }))
    }

    async fn list_pod_sandbox_stats(&self, request: Request<v1::ListPodSandboxStatsRequest>) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .containers(move |s| {
                s.prune_stats();
                Ok(s.sandboxes
                    .list(None)
                    .iter()
                    .filter(|sb| sb.state == sandbox::State::Ready && stats::sandbox_matches(sb, &filter))
                    .map(|sb| s.sandbox_stats(sb))
                    .collect())
            })
            .await?;
        Ok(Response::new(v1::ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(&self, _: Request<v1::CheckpointContainerRequest>) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        Err(not_implemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(&self, _: Request<v1::ListMetricDescriptorsRequest>) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        Err(not_implemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(&self, _: Request<v1::ListPodSandboxMetricsRequest>) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        Err(not_implemented("ListPodSandboxMetrics"))
    }

    async fn get_container_events(&self, _: Request<v1::GetEventsRequest>) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let mut events = self.state.containers.events().subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let state = self.state.clone();
        // Until the client goes away (even while nothing happens): each event with its pod's statuses as they are now.
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    r = events.recv() => r,
                    () = tx.closed() => return,
                };
                let event = match received {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("a container event subscriber fell behind; {n} events were dropped");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let state = state.clone();
                let Ok(response) = tokio::task::spawn_blocking(move || state.event_response(&event)).await else { return };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as EventStream))
    }
}
