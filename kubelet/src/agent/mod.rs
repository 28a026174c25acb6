//! The node agent (`kubelet-rs` without a subcommand): registers the Node, watches the pods
//! bound to it and static pod manifests, and makes each pod's containers match its spec
//! through any CRI runtime, reporting status back to the API server.
//!
//! - `runtime/` — the CRI runtime and image services as a typed `trait PodRuntime`, over
//!   gRPC (ours or containerd), and a fake for unit tests.
//! - `pods/` — the per-pod sync: what to do (a pure plan from spec and runtime state), doing
//!   it (sandbox, init containers, sidecars, app containers, restarts with CrashLoopBackOff,
//!   graceful termination), the pod's status; `cri_config` turns a pod into CRI configs.
//! - `volumes/` — emptyDir, hostPath, configMap, secret, downwardAPI, projected, PVCs: set up
//!   under the pod's directory before its containers start; `env` resolves environments and
//!   `expand` their `$(VAR)` references.
//! - `probes/` — startup, liveness and readiness probes; `lifecycle` runs postStart/preStop.
//! - `node/` — the Node object: machine facts, registration, conditions, the Lease.
//! - `logs/` — container log files: reading them for `kubectl logs`, rotation by size.
//! - `server/` — the kubelet's HTTPS API (logs, exec, attach, port-forward, healthz, metrics,
//!   stats) the API server proxies to.

pub mod adapters;
pub mod config;
pub mod env;
pub mod events;
pub mod expand;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod node_cgroups;
pub mod pod_deps;
pub mod pod_lookup;
pub mod pods;
pub mod probes;
pub mod quantity;
pub mod runtime;
mod run;
pub mod server;
pub mod sources;
pub mod status_writer;
pub mod volumes;
pub use run::{AgentError, run};
