//! A pod and its containers as CRI configs: the sandbox config (metadata, hostname, DNS,
//! port mappings, namespaces, cgroup parent, sysctls, security context), each container's
//! config (image, command and args, env, mounts, resources, security context, log path,
//! tty/stdin), and the labels and annotations the kubelet puts on both so that the pod and
//! container behind any CRI object can be found again after a restart (the same keys as the
//! upstream kubelet, so containerd shows them the usual way). Pure functions: the caller
//! resolves env, volumes and images first.
//!
//! - `sandbox.rs` — the sandbox config; `dns.rs` — DNS by dnsPolicy from the node's settings
//! - `container.rs` — a container's config; `hash.rs` — the container hash
//! - `resources.rs` — requests and limits as CRI resources, OOM scores; `quantity.rs` —
//!   resource quantities as numbers
//! - `security.rs` — namespaces and security contexts, seccomp, runAsNonRoot

mod container;
pub mod dns;
mod hash;
pub mod quantity;
pub mod resources;
mod sandbox;
mod security;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

/// The label and annotation keys on sandboxes and containers.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Annotation: the hash of the container's spec the container was created from.
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    /// Annotation: how many times the kubelet had restarted this container before.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    /// Annotation: the pod's terminationGracePeriodSeconds, for stopping it after a restart.
    pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
    /// Annotation: the container's preStop hook as JSON, run when the kubelet restarted since.
    pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
    /// Label on containers: the kind of container (`init`, `sidecar` or `app`).
    pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
    /// Annotation: the container's ports as JSON, as the upstream kubelet records them.
    pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Something in the pod the runtime cannot do; the message names the field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The node's resolv.conf (dnsPolicy Default, or the searches of ClusterFirst) is
    /// unreadable or malformed.
    #[error("{}: {message}", path.display())]
    ResolvConf { path: PathBuf, message: String },
    /// runAsNonRoot with a user that is, or may be, root (upstream's wording).
    #[error("{0}")]
    RunAsNonRoot(String),
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// Where `Localhost` seccomp profiles live when no other root is given (the kubelet's
/// `<root-dir>/seccomp`).
pub const DEFAULT_SECCOMP_ROOT: &str = "/var/lib/kubelet-rs/seccomp";

/// The node's DNS settings for pods (dnsPolicy ClusterFirst/Default/None).
#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    /// The cluster DNS service's IPs (`--cluster-dns`); empty: ClusterFirst falls back to Default.
    pub cluster_dns: Vec<IpAddr>,
    /// `cluster.local`.
    pub cluster_domain: String,
    /// The host's resolv.conf (dnsPolicy Default, and hostNetwork pods under ClusterFirst).
    /// Empty: no host DNS (Default gives an empty config, which runtimes read as the node's).
    pub host_resolv_conf: PathBuf,
}

/// What the sandbox config needs beyond the pod.
#[derive(Debug, Clone, Default)]
pub struct SandboxContext {
    /// The pod's cgroup (`<node cgroup root>/<qos>/pod<uid>`), as the CRI runtime expects it.
    pub cgroup_parent: String,
    /// `/var/log/pods/<ns>_<name>_<uid>`.
    pub log_directory: PathBuf,
    pub dns: DnsSettings,
    /// How many sandboxes this pod had before (0 for the first).
    pub attempt: u32,
    /// The folder `Localhost` seccomp profiles are relative to; empty: [`DEFAULT_SECCOMP_ROOT`].
    pub seccomp_root: PathBuf,
}

/// What a container config needs beyond the pod and the container.
#[derive(Debug, Clone, Default)]
pub struct ContainerContext {
    /// The image as the runtime knows it (reference or image ID) after the pull.
    pub image: String,
    /// The container's restart count; also its CRI `attempt` and the log file name.
    pub restart_count: u32,
    /// The resolved environment (`env`, `envFrom`, service variables), in order.
    pub envs: Vec<cri::KeyValue>,
    /// The container's volume mounts, resolved to host paths.
    pub mounts: Vec<cri::Mount>,
    /// The pod's cgroup, as in the sandbox config.
    pub cgroup_parent: String,
    /// The kind: `init`, `sidecar` or `app` (the CONTAINER_TYPE label).
    pub kind: &'static str,
    /// The node's memory capacity in bytes, for a Burstable container's OOM score
    /// (`1000 - 1000 * request / capacity`); 0: unknown, the score is 999.
    pub node_memory_capacity: i64,
    /// The folder `Localhost` seccomp profiles are relative to; empty: [`DEFAULT_SECCOMP_ROOT`].
    pub seccomp_root: PathBuf,
}

/// The sandbox config of `pod`.
pub fn sandbox_config(pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError> {
    sandbox::sandbox_config(pod, ctx)
}

/// The config of `container` (an init, sidecar or app container of `pod`).
pub fn container_config(
    pod: &Pod,
    container: &Container,
    ctx: &ContainerContext,
) -> Result<cri::ContainerConfig, ConfigError> {
    container::container_config(pod, container, ctx)
}

/// Checks runAsNonRoot (the container's, else the pod's) against the user the container
/// will run as: its runAsUser, else the image config's `User` (`image_user`, e.g. `1000`,
/// `nginx:nginx`; empty is root). A user name cannot be checked and is refused, as upstream.
pub fn verify_run_as_non_root(pod: &Pod, container: &Container, image_user: &str) -> Result<(), ConfigError> {
    security::verify_run_as_non_root(pod, container, image_user)
}

/// A hash of the container's spec: a container whose spec hash changed is restarted.
/// See [`hash`] for what it covers.
pub fn container_hash(container: &Container) -> String {
    hash::container_hash(container)
}
