//! The CRI runtime and image services as one typed trait, [`PodRuntime`]: what the pod sync
//! needs from any CRI runtime (ours or containerd). [`CriRuntime`] speaks gRPC over the
//! runtime's unix socket; [`fake::FakeRuntime`] keeps everything in memory for unit tests.

mod cri_client;
pub mod fake;

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;

pub use cri_client::CriRuntime;

/// A failed CRI call: which call, and the runtime's answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    #[error("connecting to the CRI runtime at {path}: {message}")]
    Connect { path: String, message: String },
    #[error("CRI {call} failed: {message} ({code:?})")]
    Call { call: &'static str, code: tonic::Code, message: String },
    /// The runtime answered without a field the call must return.
    #[error("CRI {call} answered without {field}")]
    Incomplete { call: &'static str, field: &'static str },
}

impl RuntimeError {
    /// The object the call was about does not exist (already removed, for instance).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::Call { code: tonic::Code::NotFound, .. })
    }

    pub(crate) fn call(call: &'static str, status: tonic::Status) -> Self {
        RuntimeError::Call { call, code: status.code(), message: status.message().to_string() }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// The CRI calls the agent makes. Ids are the runtime's sandbox and container ids.
#[async_trait]
pub trait PodRuntime: Send + Sync {
    async fn version(&self) -> Result<cri::VersionResponse>;
    /// The runtime's conditions (RuntimeReady, NetworkReady).
    async fn status(&self) -> Result<cri::RuntimeStatus>;

    /// Runs a sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig, runtime_handler: &str) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus>;
    async fn list_pod_sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Result<Vec<cri::PodSandbox>>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(&self, sandbox_id: &str, config: cri::ContainerConfig, sandbox_config: cri::PodSandboxConfig) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM, then SIGKILL after `timeout_seconds` (0: at once).
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Result<Vec<cri::Container>>;
    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus>;

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout_seconds: i64) -> Result<cri::ExecSyncResponse>;
    /// The streaming URL for an exec session.
    async fn exec(&self, request: cri::ExecRequest) -> Result<String>;
    async fn attach(&self, request: cri::AttachRequest) -> Result<String>;
    async fn port_forward(&self, request: cri::PortForwardRequest) -> Result<String>;
    async fn reopen_container_log(&self, id: &str) -> Result<()>;

    /// Pulls `image`; returns the image reference the runtime knows it by.
    async fn pull_image(&self, image: &str, auth: Option<cri::AuthConfig>, sandbox_config: Option<cri::PodSandboxConfig>) -> Result<String>;
    /// The image if the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>>;
}
