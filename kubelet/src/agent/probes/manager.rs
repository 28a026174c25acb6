//! The probe workers of the node's containers and the state they keep: per (pod uid,
//! container name, kind), the container id the worker probes and its current result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::worker::{self, WorkerSpec};
use super::{PodRef, ProbeEvent, ProbeExec, ProbeKind, Target};

/// (pod uid, container name, kind)
pub(super) type Key = (String, String, ProbeKind);

struct Entry {
    pod: PodRef,
    container_id: String,
    result: bool,
    task: AbortHandle,
}

pub(super) struct Shared {
    pub exec: Arc<dyn ProbeExec>,
    events: mpsc::UnboundedSender<ProbeEvent>,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Shared {
    pub fn send(&self, event: ProbeEvent) {
        // Nobody listening any more: the agent is shutting down.
        let _ = self.events.send(event);
    }

    fn result(&self, uid: &str, container: &str, kind: ProbeKind) -> Option<bool> {
        self.entries.lock().unwrap().get(&(uid.to_string(), container.to_string(), kind)).map(|e| e.result)
    }

    pub fn started(&self, uid: &str, container: &str) -> bool {
        self.result(uid, container, ProbeKind::Startup).unwrap_or(true)
    }

    /// Records a worker's result; false when the worker's container is no longer the
    /// current one (its worker was replaced or removed). A readiness or startup change is
    /// announced.
    pub fn set_result(&self, key: &Key, container_id: &str, result: bool) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let Some(entry) = entries.get_mut(key).filter(|e| e.container_id == container_id) else {
            return false;
        };
        let changed = entry.result != result;
        entry.result = result;
        let pod = entry.pod.clone();
        drop(entries);
        if changed && key.2 != ProbeKind::Liveness {
            self.send(ProbeEvent::Changed {
                pod,
                container: key.1.clone(),
                container_id: container_id.to_string(),
                kind: key.2,
                success: result,
            });
        }
        true
    }
}

/// The probes of the node's containers. Cheap to clone; workers are tokio tasks, so the
/// methods that start them must be called within a tokio runtime.
#[derive(Clone)]
pub struct ProbeManager {
    shared: Arc<Shared>,
}

/// The container named `name` among the pod's containers and init containers (sidecars
/// have probes too).
fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

fn probes(c: &Container) -> Vec<(ProbeKind, &Probe)> {
    [
        (ProbeKind::Startup, c.startup_probe.as_ref()),
        (ProbeKind::Liveness, c.liveness_probe.as_ref()),
        (ProbeKind::Readiness, c.readiness_probe.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, p)| p.map(|p| (k, p)))
    .collect()
}

impl ProbeManager {
    /// A manager and the events its probes send.
    pub fn new(exec: Arc<dyn ProbeExec>) -> (ProbeManager, mpsc::UnboundedReceiver<ProbeEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (ProbeManager { shared: Arc::new(Shared { exec, events, entries: Mutex::new(HashMap::new()) }) }, rx)
    }

    /// Starts probing a running container (its probes are taken from `pod`'s spec), or
    /// keeps probing it: calling again with the same container id changes nothing, so the
    /// pod sync may call this on every pass. A new container id (the container was
    /// restarted) starts its probes afresh: readiness false, liveness true, not started.
    /// `pod_ip` is the default host of httpGet, tcpSocket and grpc probes. The initial
    /// delay counts from now: for a container found running (after a restart of the agent)
    /// use [`ProbeManager::add_container_started_at`].
    pub fn add_container(&self, pod: &Pod, container_name: &str, container_id: &str, pod_ip: &str) {
        self.add_container_started_at(pod, container_name, container_id, pod_ip, SystemTime::now());
    }

    /// [`ProbeManager::add_container`] for a container that started at `started_at` (its
    /// CRI status): the initial delays count from then, as upstream, so a container adopted
    /// after a restart of the agent is probed at once if its delay has passed.
    pub fn add_container_started_at(
        &self,
        pod: &Pod,
        container_name: &str,
        container_id: &str,
        pod_ip: &str,
        started_at: SystemTime,
    ) {
        let running_for = SystemTime::now().duration_since(started_at).unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let Some(container) = find_container(pod, container_name) else {
            return;
        };
        let probes = probes(container);
        let gated = probes.iter().any(|(k, _)| *k == ProbeKind::Startup);
        let pod_ref = PodRef {
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
        };
        let mut entries = self.shared.entries.lock().unwrap();
        for (kind, probe) in probes {
            let key: Key = (uid.clone(), container_name.to_string(), kind);
            if entries.get(&key).is_some_and(|e| e.container_id == container_id) {
                continue;
            }
            if let Some(old) = entries.remove(&key) {
                old.task.abort();
            }
            let spec = WorkerSpec {
                key: key.clone(),
                pod: pod_ref.clone(),
                probe: probe.clone(),
                target: Target {
                    container_id: container_id.to_string(),
                    pod_ip: pod_ip.to_string(),
                    container: container.clone(),
                },
                gated,
                running_for,
            };
            let task = tokio::spawn(worker::run(Arc::downgrade(&self.shared), spec)).abort_handle();
            // Readiness starts unready, liveness alive, startup not started.
            let result = kind == ProbeKind::Liveness;
            entries.insert(key, Entry { pod: pod_ref.clone(), container_id: container_id.to_string(), result, task });
        }
    }

    /// Stops probing the container (it stopped, or is being removed) and forgets its state.
    pub fn remove_container(&self, pod_uid: &str, container_name: &str) {
        self.shared.entries.lock().unwrap().retain(|(uid, name, _), e| {
            let keep = uid != pod_uid || name != container_name;
            if !keep {
                e.task.abort();
            }
            keep
        });
    }

    /// Stops probing every container of the pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        self.shared.entries.lock().unwrap().retain(|(uid, _, _), e| {
            if uid == pod_uid {
                e.task.abort();
            }
            uid != pod_uid
        });
    }

    /// Stops every probe.
    pub fn shutdown(&self) {
        for (_, e) in self.shared.entries.lock().unwrap().drain() {
            e.task.abort();
        }
    }

    /// Whether the container counts as ready as far as probes go: its readiness probe's
    /// result, else (no readiness probe) whether it started; true without probes. The
    /// caller still requires the container to be running.
    pub fn ready(&self, pod_uid: &str, container_name: &str) -> bool {
        self.shared
            .result(pod_uid, container_name, ProbeKind::Readiness)
            .unwrap_or_else(|| self.shared.started(pod_uid, container_name))
    }

    /// Whether the container's startup probe has succeeded; true without one.
    pub fn started(&self, pod_uid: &str, container_name: &str) -> bool {
        self.shared.started(pod_uid, container_name)
    }

    /// Whether the container `container_id` is ready as far as its probes go, from the pod's
    /// spec: with a readiness probe, its result for this very container (false until probed,
    /// or if [`ProbeManager::add_container`] has not been told of it); without one, whether
    /// it started; true without probes. The caller still requires the container to be running.
    pub fn container_ready(&self, pod: &Pod, container_name: &str, container_id: &str) -> bool {
        let Some(c) = find_container(pod, container_name) else { return true };
        if c.readiness_probe.is_some() {
            return self.result_for(pod, container_name, ProbeKind::Readiness, container_id).unwrap_or(false);
        }
        self.container_started(pod, container_name, container_id)
    }

    /// Whether the container `container_id` has passed its startup probe (false until then,
    /// or if the manager has not been told of it); true without one.
    pub fn container_started(&self, pod: &Pod, container_name: &str, container_id: &str) -> bool {
        let Some(c) = find_container(pod, container_name) else { return true };
        if c.startup_probe.is_none() {
            return true;
        }
        self.result_for(pod, container_name, ProbeKind::Startup, container_id).unwrap_or(false)
    }

    fn result_for(&self, pod: &Pod, container_name: &str, kind: ProbeKind, container_id: &str) -> Option<bool> {
        let key = (pod.metadata.uid.clone().unwrap_or_default(), container_name.to_string(), kind);
        let entries = self.shared.entries.lock().unwrap();
        entries.get(&key).filter(|e| e.container_id == container_id).map(|e| e.result)
    }

    /// The container id whose probes are running for this container, if any.
    pub fn probed_container_id(&self, pod_uid: &str, container_name: &str) -> Option<String> {
        let entries = self.shared.entries.lock().unwrap();
        entries.iter().find(|((u, n, _), _)| u == pod_uid && n == container_name).map(|(_, e)| e.container_id.clone())
    }
}
