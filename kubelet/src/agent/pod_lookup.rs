//! What the kubelet API serves from, over the CRI runtime: a pod's containers and sandbox
//! found by the labels the sync puts on them (so it works for pods adopted after a
//! restart), the pods as the sources gave them, and the stats summary (the node's from the
//! machine, the pods' from CRI `ListPodSandboxStats`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::node::Machine;
use super::pods::cri_config::labels;
use super::runtime::PodRuntime;
use super::server::backend::{ContainerRef, PodLookup};
use super::server::stats::{CpuSampler, StatsProvider, Summary, node_stats, pods_from_cri};

pub struct RuntimeLookup {
    runtime: Arc<dyn PodRuntime>,
    pods: Arc<Mutex<HashMap<String, Pod>>>,
}

impl RuntimeLookup {
    pub fn new(runtime: Arc<dyn PodRuntime>, pods: Arc<Mutex<HashMap<String, Pod>>>) -> RuntimeLookup {
        RuntimeLookup { runtime, pods }
    }

    /// From the pod's last status: (current instance, previous instance, running) by CRI id.
    fn instances_in_status(&self, namespace: &str, pod: &str, container: &str) -> Option<(Option<String>, Option<String>, bool)> {
        let pods = self.pods.lock().unwrap();
        let pod = pods.values().find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(pod))?;
        let status = pod.status.as_ref()?;
        let cs = status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten()).find(|c| c.name == container)?;
        let bare = |id: &Option<String>| id.as_deref().map(|id| id.split_once("://").map(|(_, id)| id).unwrap_or(id).to_string());
        let state = cs.state.as_ref();
        let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let running = state.and_then(|s| s.running.as_ref()).is_some();
        let current = if running || state.and_then(|s| s.terminated.as_ref()).is_some() {
            cs.container_id.as_ref().and_then(|_| bare(&cs.container_id))
        } else {
            last.and_then(|t| bare(&t.container_id))
        };
        Some((current, last.and_then(|t| bare(&t.container_id)), running))
    }

    fn uid_of(&self, namespace: &str, pod: &str) -> Option<String> {
        let pods = self.pods.lock().unwrap();
        pods.values()
            .find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(pod))
            .and_then(|p| p.metadata.uid.clone())
    }
}

fn restart_count(c: &cri::Container) -> u32 {
    c.annotations.get(labels::RESTART_COUNT).and_then(|n| n.parse().ok()).unwrap_or(c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0))
}

#[async_trait]
impl PodLookup for RuntimeLookup {
    async fn container(&self, namespace: &str, pod: &str, container: &str) -> Option<ContainerRef> {
        // As the kubelet: the instance the pod's status names (while a crashed container
        // waits to restart, the one that crashed), and as previous its last terminated one.
        if let Some((current, previous, running)) = self.instances_in_status(namespace, pod, container) {
            let log_path = |id: String| async move { self.runtime.container_status(&id).await.ok().map(|s| PathBuf::from(s.log_path)).filter(|p| !p.as_os_str().is_empty()) };
            let previous_log_path = match previous {
                Some(id) => log_path(id).await,
                None => None,
            };
            if let Some(id) = current
                && let Some(path) = log_path(id.clone()).await
            {
                return Some(ContainerRef { id, log_path: path, previous_log_path, running });
            }
        }
        let uid = self.uid_of(namespace, pod)?;
        let filter = cri::ContainerFilter {
            label_selector: HashMap::from([(labels::POD_UID.to_string(), uid), (labels::CONTAINER_NAME.to_string(), container.to_string())]),
            ..Default::default()
        };
        let mut instances = self.runtime.list_containers(Some(filter)).await.ok()?;
        // Newest first: by restart count, then creation.
        instances.sort_by_key(|c| std::cmp::Reverse((restart_count(c), c.created_at)));
        let current = instances.first()?;
        let status = self.runtime.container_status(&current.id).await.ok()?;
        let previous_log_path = match instances.get(1) {
            Some(previous) => self.runtime.container_status(&previous.id).await.ok().map(|s| PathBuf::from(s.log_path)).filter(|p| !p.as_os_str().is_empty()),
            None => None,
        };
        Some(ContainerRef {
            id: current.id.clone(),
            log_path: PathBuf::from(status.log_path),
            previous_log_path,
            running: status.state == cri::ContainerState::ContainerRunning as i32,
        })
    }

    async fn sandbox(&self, namespace: &str, pod: &str) -> Option<String> {
        let uid = self.uid_of(namespace, pod)?;
        let filter = cri::PodSandboxFilter {
            label_selector: HashMap::from([(labels::POD_UID.to_string(), uid)]),
            state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 }),
            ..Default::default()
        };
        let mut sandboxes = self.runtime.list_pod_sandboxes(Some(filter)).await.ok()?;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        sandboxes.into_iter().next().map(|s| s.id)
    }

    async fn pods(&self) -> Vec<Pod> {
        self.pods.lock().unwrap().values().cloned().collect()
    }
}

/// The Summary API: the node from the machine, the pods from the CRI runtime's stats.
pub struct Stats {
    pub node: String,
    pub machine: Arc<dyn Machine>,
    /// The CRI runtime service (a clone of the agent's connection: cheap, shared channel).
    pub cri: cri_api::RuntimeServiceClient<cri_api::tonic::transport::Channel>,
    /// When the agent started (the node's startTime).
    pub started: jiff::Timestamp,
    pub cpu: CpuSampler,
}

#[async_trait]
impl StatsProvider for Stats {
    async fn summary(&self) -> Result<Summary, String> {
        let facts = self.machine.facts().map_err(|e| e.to_string())?;
        let usage = self.machine.usage().map_err(|e| e.to_string())?;
        let node = node_stats(&self.node, self.started, facts.memory_bytes, &usage, self.cpu.sample());
        let pods = match self.cri.clone().list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default()).await {
            Ok(r) => pods_from_cri(&r.into_inner().stats),
            // Runtimes without the call (older containerd) give node stats only.
            Err(e) => {
                tracing::debug!("ListPodSandboxStats: {e}");
                Vec::new()
            }
        };
        Ok(Summary { node, pods })
    }
}
