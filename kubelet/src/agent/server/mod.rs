//! The kubelet's HTTPS API (port 10250) that the API server's node proxy calls: healthz,
//! metrics, stats/summary, pods, containerLogs, and exec/attach/portForward proxied to the
//! CRI runtime's streaming server; client certificates from the cluster CA are required
//! and only the API server (or system:masters) is allowed. Healthz is also served without
//! authentication on a plain loopback port (10248), as upstream does.
//!
//! - `auth` — who the caller is and whether it may; `tls` — the serving configuration.
//! - `routes` — the handlers; `proxy` — the upgrade proxy to the streaming server.
//! - `backend` — the traits the integrator implements (pods, containers, streaming URLs);
//!   `cri` — the streaming URLs over any CRI runtime.
//! - `metrics`, `stats` — `/metrics` and `/stats/summary`.
//! - `serve` — the accept loops.

pub mod auth;
pub mod backend;
pub mod cri;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod serve;
pub mod stats;
pub mod tls;

pub use backend::{ContainerRef, PodLookup, StreamFlags, StreamingRuntime};
pub use cri::CriStreaming;
pub use metrics::Metrics;
pub use routes::{ServerState, healthz_router, router};
pub use serve::{ServeError, Servers, serve_plain, serve_tls, start};
pub use stats::{CpuSampler, StatsProvider, Summary, node_stats, pods_from_cri};
pub use tls::{TlsFiles, server_config};

/// The kubelet API's port unless configured (upstream `--port`).
pub const DEFAULT_PORT: u16 = 10250;
/// The plain health port on loopback (upstream `--healthz-port`).
pub const DEFAULT_HEALTHZ_PORT: u16 = 10248;

#[cfg(test)]
mod tests;
