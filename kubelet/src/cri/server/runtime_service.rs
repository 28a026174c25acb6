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
use crate::cri::container::{ContainerManager, manager as container};
use crate::cri::sandbox::{self, SandboxManager};
use crate::cri::streaming::{ExecTarget, Streams};

/// Why the runtime service could not load its state.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the pod sandboxes: {0}")]
    Sandboxes(#[from] sandbox::Error),
    #[error("loading the containers: {0}")]
    Containers(#[from] container::Error),
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
        Ok(Runtime { state: Arc::new(RuntimeState { config, sandboxes, containers, pod_cidr: Mutex::new(String::new()), streams: OnceLock::new() }) })
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
        let id = request.into_inner().pod_sandbox_id;
        let sandbox = self.sandboxes(move |m| m.status(&id)).await?;
        Ok(Response::new(v1::PodSandboxStatusResponse { status: Some(sandbox.to_status()), ..Default::default() }))
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
        let id = request.into_inner().container_id;
        let status = self
            .containers(move |s| {
                let record = s.containers.get(&id).map_err(container_status)?;
                Ok(record.to_status(&s.containers.status_of(&record)))
            })
            .await?;
        Ok(Response::new(v1::ContainerStatusResponse { status: Some(status), ..Default::default() }))
    }

    async fn update_container_resources(&self, _: Request<v1::UpdateContainerResourcesRequest>) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        Err(not_implemented("UpdateContainerResources"))
    }

    async fn reopen_container_log(&self, _: Request<v1::ReopenContainerLogRequest>) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        Err(not_implemented("ReopenContainerLog"))
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

    async fn attach(&self, _: Request<v1::AttachRequest>) -> Result<Response<v1::AttachResponse>, Status> {
        Err(not_implemented("Attach"))
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

    async fn container_stats(&self, _: Request<v1::ContainerStatsRequest>) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        Err(not_implemented("ContainerStats"))
    }

    async fn list_container_stats(&self, _: Request<v1::ListContainerStatsRequest>) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        Err(not_implemented("ListContainerStats"))
    }

    async fn pod_sandbox_stats(&self, _: Request<v1::PodSandboxStatsRequest>) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        Err(not_implemented("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(&self, _: Request<v1::ListPodSandboxStatsRequest>) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        Err(not_implemented("ListPodSandboxStats"))
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
        Err(not_implemented("GetContainerEvents"))
    }
}
