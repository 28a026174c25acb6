//! What the pod sync needs from the rest of the agent, as small traits the integrator
//! implements: volumes, environments, mounts, registry credentials, lifecycle hooks and
//! probe results ([`PodDeps`]), events ([`EventSink`]), the pod start latency metric
//! ([`PodStartMetrics`]) and the CRI configs ([`CriConfigs`], `cri_config` by default).

use std::time::Duration;

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::cri_config::{self, ConfigError, ContainerContext, SandboxContext};
use super::plan::ProbeState;

#[async_trait]
pub trait PodDeps: Send + Sync {
    /// The sandbox context of `pod`: its cgroup parent (node cgroup root, QoS class, pod
    /// UID), log directory and DNS settings. `attempt` is the sandbox's attempt number.
    fn sandbox_context(&self, pod: &Pod, attempt: u32) -> SandboxContext;
    /// Sets up the pod's volumes (idempotent; called before containers start). An error is
    /// shown as a FailedMount event and retried.
    async fn prepare_volumes(&self, pod: &Pod) -> Result<(), String>;
    /// The container's resolved environment. An error (a missing ConfigMap key, ...) makes
    /// the container wait with CreateContainerConfigError and the message.
    async fn env(&self, pod: &Pod, container: &Container, pod_ip: Option<&str>) -> Result<Vec<cri::KeyValue>, String>;
    /// The container's volume mounts as host paths (error: CreateContainerConfigError).
    fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<cri::Mount>, String>;
    /// Credentials for pulling `image` (from the pod's imagePullSecrets), if any.
    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<cri::AuthConfig>;
    /// Runs the container's postStart hook (only called when it has one). An error kills
    /// the container (FailedPostStartHook).
    async fn post_start(&self, pod: &Pod, container: &Container, container_id: &str) -> Result<(), String>;
    /// Runs the container's preStop hook (only called when it has one), within `grace`.
    async fn pre_stop(&self, pod: &Pod, container: &Container, container_id: &str, grace: Duration);
    /// The probe results of the running container `container_id` (named `container`) of pod `uid`.
    fn probe_state(&self, uid: &str, container: &str, container_id: &str) -> ProbeState;
    /// The termination message of the exited container `container_id` (the file mounted at
    /// its terminationMessagePath; with FallbackToLogsOnError and a failure, the tail of its
    /// log), when the runtime did not report one. By default none.
    async fn termination_message(&self, pod: &Pod, container: &Container, container_id: &str, exit_code: i32) -> Option<String> {
        let _ = (pod, container, container_id, exit_code);
        None
    }
    /// The pod is gone and all its containers and sandboxes removed: tear down its volumes,
    /// forget its probes.
    async fn cleanup(&self, uid: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Where pod events go (the API server's Events). `container` is set for events about one
/// container (the reference's fieldPath `spec.containers{name}`).
pub trait EventSink: Send + Sync {
    fn event(&self, pod: &Pod, container: Option<&str>, kind: EventType, reason: &str, message: &str);
}

/// The pod start latency: from the pod's creationTimestamp to all its app containers
/// running, reported once per pod.
pub trait PodStartMetrics: Send + Sync {
    fn pod_started(&self, pod: &Pod, latency: Duration);
}

/// No metrics.
pub struct NoMetrics;

impl PodStartMetrics for NoMetrics {
    fn pod_started(&self, _pod: &Pod, _latency: Duration) {}
}

/// The CRI configs of a pod (injectable so the sync is tested without the real builders).
pub trait CriConfigs: Send + Sync {
    fn sandbox(&self, pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError>;
    fn container(&self, pod: &Pod, container: &Container, ctx: &ContainerContext) -> Result<cri::ContainerConfig, ConfigError>;
    fn hash(&self, container: &Container) -> String;
}

/// The configs from `cri_config`.
pub struct KubeletConfigs;

impl CriConfigs for KubeletConfigs {
    fn sandbox(&self, pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError> {
        cri_config::sandbox_config(pod, ctx)
    }
    fn container(&self, pod: &Pod, container: &Container, ctx: &ContainerContext) -> Result<cri::ContainerConfig, ConfigError> {
        cri_config::container_config(pod, container, ctx)
    }
    fn hash(&self, container: &Container) -> String {
        cri_config::container_hash(container)
    }
}
