//! The CRI runtime service: Kubernetes' container runtime interface (`runtime.v1`, gRPC over a
//! unix socket) over our OCI runtime, image store and CNI plugins.
//!
//! - `config` — where things live and which OCI runtime and CNI plugins are used.
//! - `server/` — the tonic `RuntimeService` and `ImageService`: requests checked and mapped
//!   to the managers below, errors to gRPC statuses.
//! - `sandbox/` — pod sandboxes: namespaces held open by bind-mounted files, hostname,
//!   `/etc/hosts`, `/etc/resolv.conf`, `/dev/shm`, the pod network through `cni::runtime`.
//! - `container/` — containers: the OCI spec from the image config and the CRI config, the
//!   rootfs overlay, the OCI runtime driven by its command line (`oci.rs`).
//! - `monitor/` — the per-container monitor process: copies the container's output into the
//!   CRI log file and records its exit; it outlives restarts of `kubelet-rs`.
//! - `stats/` — container and pod statistics from cgroup v2 files, the writable layer and
//!   the pod's network namespace.
//! - `events` — container lifecycle events for `GetContainerEvents`.
//! - `streaming/` — the HTTP server behind `Exec` and `PortForward`: one-time URLs, the
//!   WebSocket channel protocols.

pub mod config;
pub mod container;
pub mod events;
pub mod monitor;
pub mod sandbox;
pub mod server;
pub mod stats;
pub mod streaming;
