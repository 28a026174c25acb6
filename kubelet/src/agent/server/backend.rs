//! What the server needs from the rest of the agent, as traits the integrator implements:
//! finding a pod's containers and sandbox ([`PodLookup`]) and asking the CRI runtime for
//! streaming URLs ([`StreamingRuntime`]).

use std::path::PathBuf;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

/// A container of a pod on this node, as the logs and exec/attach routes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The CRI container id of its current (latest) instance.
    pub id: String,
    /// Its CRI log file (the sandbox's log directory joined with the container's log path).
    pub log_path: PathBuf,
    /// The log file of the instance before it, for `previous=true`; None when there was none
    /// (or it was cleaned up).
    pub previous_log_path: Option<PathBuf>,
    /// Whether the current instance runs: a followed log ends when it does not.
    pub running: bool,
}

#[async_trait]
pub trait PodLookup: Send + Sync {
    /// The container `container` of pod `namespace/pod`; None when this kubelet knows no such
    /// pod or the pod no such container (or it has not been created yet).
    async fn container(&self, namespace: &str, pod: &str, container: &str) -> Option<ContainerRef>;
    /// The CRI sandbox id of pod `namespace/pod`, for port-forwarding.
    async fn sandbox(&self, namespace: &str, pod: &str) -> Option<String>;
    /// The pods this kubelet runs (for `GET /pods`), as it last saw them with their status.
    async fn pods(&self) -> Vec<Pod>;
}

/// Which streams an exec or attach wants, from the query (`stdin`, `stdout`, `stderr`,
/// `tty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamFlags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The CRI runtime's streaming calls (Exec, Attach, PortForward), each answering the URL of
/// the runtime's streaming server that serves the session; the kubelet proxies to it.
#[async_trait]
pub trait StreamingRuntime: Send + Sync {
    async fn exec_url(&self, container_id: &str, command: &[String], flags: StreamFlags) -> Result<String, String>;
    async fn attach_url(&self, container_id: &str, flags: StreamFlags) -> Result<String, String>;
    /// `ports` may be empty: SPDY clients name the ports in the stream headers instead.
    async fn port_forward_url(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, String>;
}
