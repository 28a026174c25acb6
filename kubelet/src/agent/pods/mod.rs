//! Pods on this node: the sync of each pod with the runtime.
//!
//! - `runtime_state` — what the runtime has for a pod (found by labels; how a restarted
//!   kubelet adopts its pods).
//! - `plan` — what one sync must do (pure); `backoff` — CrashLoopBackOff and ImagePullBackOff.
//! - `sync` — doing it: volumes, images, sandbox, containers, hooks, events.
//! - `termination` — stopping containers and pods gracefully, removing dead ones.
//! - `status` — the pod's status (pure); `manager` — one task per pod, the runtime relist.
//! - `cri_config` — a pod as CRI configs; `qos` — QoS classes.

pub mod backoff;
pub mod cri_config;
pub mod plan;
pub mod qos;
pub mod runtime_state;
pub mod status;
pub mod deps;
pub mod images;
pub mod manager;
pub mod sync;
pub mod termination;
#[cfg(test)]
pub(crate) mod testing;
