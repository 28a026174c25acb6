//! What the runtime has for one pod: its sandboxes and containers, found by the pod UID label
//! the kubelet puts on them, with the spec hash and restart count read back from their
//! annotations. This is how a restarted kubelet finds (and adopts) the pods it ran before.

use std::collections::HashMap;

use cri_api::runtime::v1 as cri;

use super::cri_config::labels;
use crate::agent::runtime::{PodRuntime, RuntimeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    pub fn from_cri(state: i32) -> Self {
        match cri::ContainerState::try_from(state) {
            Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
            _ => ContainerState::Unknown,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// The pod IPs (first one primary); empty for host-network pods or unready sandboxes.
    pub ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub state: ContainerState,
    /// The spec hash the container was created from (annotation).
    pub hash: String,
    pub restart_count: u32,
    /// Times in nanoseconds since the epoch; 0 when not reached.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// The runtime's reason for the exit (`OOMKilled`, ...), may be empty.
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    /// The grace period and preStop hook recorded at creation (for orphans with no spec).
    pub annotations: HashMap<String, String>,
}

impl ContainerInfo {
    /// A container this sync just started (before the runtime is read again).
    pub fn just_started(id: &str, sandbox_id: &str, name: &str, restart_count: u32) -> Self {
        ContainerInfo {
            id: id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            name: name.to_string(),
            state: ContainerState::Running,
            hash: String::new(),
            restart_count,
            created_at: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: String::new(),
            image_ref: String::new(),
            annotations: HashMap::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }
}

/// One pod's objects in the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimePod {
    /// Newest first.
    pub sandboxes: Vec<SandboxInfo>,
    /// Newest first (by restart count, then creation time).
    pub containers: Vec<ContainerInfo>,
}

impl RuntimePod {
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }

    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxInfo> {
        self.sandboxes.first()
    }

    /// The newest container named `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The container named `name` before the newest one (for `lastState`).
    pub fn previous(&self, name: &str) -> Option<&ContainerInfo> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    pub fn running(&self) -> impl Iterator<Item = &ContainerInfo> {
        self.containers.iter().filter(|c| c.state == ContainerState::Running)
    }

    pub fn sort(&mut self) {
        self.sandboxes.sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
        self.containers.sort_by_key(|c| std::cmp::Reverse((c.restart_count, c.created_at)));
    }
}

fn uid_selector(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

/// Reads the runtime's sandboxes and containers of pod `uid` (one status call per object for
/// IPs, times and exit codes).
pub async fn observe(runtime: &dyn PodRuntime, uid: &str) -> Result<RuntimePod, RuntimeError> {
    let sandboxes = runtime.list_pod_sandboxes(Some(cri::PodSandboxFilter { label_selector: uid_selector(uid), ..Default::default() })).await?;
    let containers = runtime.list_containers(Some(cri::ContainerFilter { label_selector: uid_selector(uid), ..Default::default() })).await?;
    let mut pod = RuntimePod::default();
    for sb in sandboxes {
        let ready = sb.state == cri::PodSandboxState::SandboxReady as i32;
        let ips = if ready {
            match runtime.pod_sandbox_status(&sb.id).await {
                Ok(st) => st.network.map(|n| std::iter::once(n.ip).chain(n.additional_ips.into_iter().map(|i| i.ip)).filter(|ip| !ip.is_empty()).collect()).unwrap_or_default(),
                // Removed between the list and the status call.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        } else {
            vec![]
        };
        pod.sandboxes.push(SandboxInfo { id: sb.id, attempt: sb.metadata.map(|m| m.attempt).unwrap_or(0), ready, created_at: sb.created_at, ips });
    }
    for c in containers {
        let status = match runtime.container_status(&c.id).await {
            Ok(st) => st,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        pod.containers.push(container_info(c, status));
    }
    pod.sort();
    Ok(pod)
}

/// The id of pod `uid`'s newest ready sandbox (for port-forwarding), if any.
pub async fn ready_sandbox(runtime: &dyn PodRuntime, uid: &str) -> Result<Option<String>, RuntimeError> {
    let ready = cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 };
    let filter = cri::PodSandboxFilter { label_selector: uid_selector(uid), state: Some(ready), ..Default::default() };
    let mut sandboxes = runtime.list_pod_sandboxes(Some(filter)).await?;
    sandboxes.retain(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
    Ok(sandboxes.into_iter().max_by_key(|s| s.created_at).map(|s| s.id))
}

pub(crate) fn container_info(c: cri::Container, st: cri::ContainerStatus) -> ContainerInfo {
    let name = c.labels.get(labels::CONTAINER_NAME).cloned().or(c.metadata.map(|m| m.name)).unwrap_or_default();
    ContainerInfo {
        id: c.id,
        sandbox_id: c.pod_sandbox_id,
        name,
        state: ContainerState::from_cri(st.state),
        hash: st.annotations.get(labels::CONTAINER_HASH).cloned().unwrap_or_default(),
        restart_count: st.annotations.get(labels::RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0),
        created_at: st.created_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        reason: st.reason,
        message: st.message,
        image: st.image.map(|i| i.image).unwrap_or_default(),
        image_ref: st.image_ref,
        annotations: st.annotations,
    }
}
