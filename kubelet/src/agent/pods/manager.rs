//! The pods of this node, each synced by its own task, level-triggered: on a spec update,
//! every resync period (10 s), when its back-off ends, and when the runtime changes under it
//! — a relist of the runtime every second (like the kubelet's PLEG) wakes the pods whose
//! containers or sandboxes changed. A pod being deleted is stopped gracefully; a pod whose
//! object is gone is killed at once; runtime pods of unknown UIDs (orphans) are killed once
//! the full set of desired pods is known. After a kubelet restart the workers find the
//! running containers by their labels and adopt them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::cri_config::labels;
use super::runtime_state::observe;
use super::sync::{PodMemory, Syncer};
use super::termination::{grace_period, remove_all};

/// What the manager reports about pods.
#[derive(Debug, Clone, PartialEq)]
pub enum PodEvent {
    /// The pod's status changed.
    Status { uid: String, namespace: String, name: String, status: Box<PodStatus> },
    /// The pod was deleted (or removed) and nothing of it is left in the runtime: the API
    /// deletion can be finished.
    Terminated { uid: String, namespace: String, name: String },
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Every pod is synced at least this often.
    pub resync: Duration,
    /// How often the runtime is relisted for changes.
    pub relist: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig { resync: Duration::from_secs(10), relist: Duration::from_secs(1) }
    }
}

enum Msg {
    Update(Box<Pod>),
    Remove,
    Wake,
}

struct Shared {
    syncer: Arc<Syncer>,
    config: ManagerConfig,
    events: mpsc::UnboundedSender<PodEvent>,
    workers: Mutex<HashMap<String, mpsc::UnboundedSender<Msg>>>,
    statuses: Mutex<HashMap<String, PodStatus>>,
    /// Pods terminated and cleaned up (their API objects may linger until finalized).
    terminated: Mutex<HashSet<String>>,
    /// The UIDs that should exist, once the first full list is in.
    desired: Mutex<Option<HashSet<String>>>,
    /// Orphans being killed.
    orphans: Mutex<HashSet<String>>,
}

/// The pods of this node. Dropping it stops the workers (leaving containers running).
pub struct PodManager {
    shared: Arc<Shared>,
    relist: Mutex<Option<JoinHandle<()>>>,
}

fn ids(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (m.uid.clone().unwrap_or_default(), m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default())
}

impl PodManager {
    /// The manager and the stream of its pod events. Call [`PodManager::start_relist`] too.
    pub fn new(syncer: Arc<Syncer>, config: ManagerConfig) -> (PodManager, mpsc::UnboundedReceiver<PodEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            syncer,
            config,
            events,
            workers: Mutex::default(),
            statuses: Mutex::default(),
            terminated: Mutex::default(),
            desired: Mutex::default(),
            orphans: Mutex::default(),
        };
        (PodManager { shared: Arc::new(shared), relist: Mutex::new(None) }, rx)
    }

    /// A new or changed pod (a set deletionTimestamp stops it gracefully).
    pub fn update(&self, pod: Pod) {
        let (uid, namespace, name) = ids(&pod);
        if uid.is_empty() {
            return;
        }
        if self.shared.terminated.lock().unwrap().contains(&uid) {
            // Already cleaned up; say so again in case the finalization was lost.
            let _ = self.shared.events.send(PodEvent::Terminated { uid, namespace, name });
            return;
        }
        let mut workers = self.shared.workers.lock().unwrap();
        if let Some(tx) = workers.get(&uid)
            && tx.send(Msg::Update(Box::new(pod.clone()))).is_ok()
        {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        workers.insert(uid.clone(), tx);
        tokio::spawn(worker(self.shared.clone(), uid, pod, rx));
    }

    /// The pod object is gone: kill its containers now and remove them.
    pub fn remove(&self, uid: &str) {
        if let Some(tx) = self.shared.workers.lock().unwrap().get(uid) {
            let _ = tx.send(Msg::Remove);
        }
    }

    /// Syncs the pod now (a probe result changed, for instance).
    pub fn wake(&self, uid: &str) {
        if let Some(tx) = self.shared.workers.lock().unwrap().get(uid) {
            let _ = tx.send(Msg::Wake);
        }
    }

    /// The UIDs of every pod that should run here (API pods and static pods), after the first
    /// full list: pods the runtime has for other UIDs are killed and removed by the relist.
    pub fn set_desired_pods(&self, uids: HashSet<String>) {
        let stale: Vec<String> = self.shared.workers.lock().unwrap().keys().filter(|u| !uids.contains(*u)).cloned().collect();
        for uid in stale {
            self.remove(&uid);
        }
        *self.shared.desired.lock().unwrap() = Some(uids);
    }

    /// The pod's latest status.
    pub fn status(&self, uid: &str) -> Option<PodStatus> {
        self.shared.statuses.lock().unwrap().get(uid).cloned()
    }

    /// The UIDs with a worker (pods being run or terminated).
    pub fn pods(&self) -> Vec<String> {
        self.shared.workers.lock().unwrap().keys().cloned().collect()
    }

    /// Starts relisting the runtime (every `relist`), waking pods whose runtime objects
    /// changed and killing orphans.
    pub fn start_relist(&self) {
        let shared = self.shared.clone();
        let handle = tokio::spawn(async move {
            let mut seen: HashMap<String, Vec<(String, i32)>> = HashMap::new();
            let mut tick = tokio::time::interval(shared.config.relist);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = relist(&shared, &mut seen).await {
                    tracing::warn!("relisting the runtime: {e}");
                }
            }
        });
        *self.relist.lock().unwrap() = Some(handle);
    }
}

impl Drop for PodManager {
    fn drop(&mut self) {
        if let Some(h) = self.relist.lock().unwrap().take() {
            h.abort();
        }
        // Closing the channels ends the workers.
        self.shared.workers.lock().unwrap().clear();
    }
}

async fn relist(shared: &Arc<Shared>, seen: &mut HashMap<String, Vec<(String, i32)>>) -> Result<(), crate::agent::runtime::RuntimeError> {
    let runtime = shared.syncer.runtime.clone();
    let containers = runtime.list_containers(None).await?;
    let sandboxes = runtime.list_pod_sandboxes(None).await?;
    let mut now: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    for (uid, id, state) in containers
        .into_iter()
        .map(|c| (c.labels.get(labels::POD_UID).cloned(), c.id, c.state))
        .chain(sandboxes.into_iter().map(|s| (s.labels.get(labels::POD_UID).cloned(), s.id, s.state + 100)))
    {
        if let Some(uid) = uid {
            now.entry(uid).or_default().push((id, state));
        }
    }
    for objects in now.values_mut() {
        objects.sort();
    }
    let desired = shared.desired.lock().unwrap().clone();
    for (uid, objects) in &now {
        let worker = shared.workers.lock().unwrap().get(uid).cloned();
        match worker {
            Some(tx) => {
                if seen.get(uid) != Some(objects) {
                    let _ = tx.send(Msg::Wake);
                }
            }
            None => {
                let orphan = desired.as_ref().is_some_and(|d| !d.contains(uid)) && !shared.terminated.lock().unwrap().contains(uid);
                if orphan && shared.orphans.lock().unwrap().insert(uid.clone()) {
                    tokio::spawn(kill_orphan(shared.clone(), uid.clone()));
                }
            }
        }
    }
    *seen = now;
    Ok(())
}

async fn kill_orphan(shared: Arc<Shared>, uid: String) {
    let syncer = &shared.syncer;
    let result = async {
        let rt = observe(syncer.runtime.as_ref(), &uid).await?;
        tracing::info!(uid = %uid, "killing the containers of a pod that no longer exists");
        syncer.terminator().kill_pod(None, &rt, None).await?;
        let rt = observe(syncer.runtime.as_ref(), &uid).await?;
        remove_all(syncer.runtime.as_ref(), &rt).await
    }
    .await;
    match result {
        Ok(()) => {
            syncer.deps.cleanup(&uid).await;
            syncer.crash_backoff.forget_pod(&uid);
            syncer.pull_backoff.forget_pod(&uid);
        }
        Err(e) => tracing::warn!(uid = %uid, "killing an orphaned pod: {e}"),
    }
    // Retried by a later relist if anything is left.
    shared.orphans.lock().unwrap().remove(&uid);
}

fn apply(msg: Msg, pod: &mut Pod, removed: &mut bool) {
    match msg {
        Msg::Update(p) => *pod = *p,
        Msg::Remove => *removed = true,
        Msg::Wake => {}
    }
}

async fn worker(shared: Arc<Shared>, uid: String, mut pod: Pod, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let syncer = shared.syncer.clone();
    let mut memory = PodMemory::default();
    let mut removed = false;
    let mut published: Option<PodStatus> = None;
    let (_, namespace, name) = ids(&pod);
    let publish = |status: &PodStatus, published: &mut Option<PodStatus>| {
        if published.as_ref() != Some(status) {
            *published = Some(status.clone());
            shared.statuses.lock().unwrap().insert(uid.clone(), status.clone());
            let _ = shared.events.send(PodEvent::Status { uid: uid.clone(), namespace: namespace.clone(), name: name.clone(), status: Box::new(status.clone()) });
        }
    };
    loop {
        if removed || pod.metadata.deletion_timestamp.is_some() {
            let grace = if removed { 0 } else { grace_period(&pod) };
            match terminate(&syncer, &pod, grace, &mut memory).await {
                Ok(status) => {
                    publish(&status, &mut published);
                    shared.terminated.lock().unwrap().insert(uid.clone());
                    shared.workers.lock().unwrap().remove(&uid);
                    shared.statuses.lock().unwrap().remove(&uid);
                    let _ = shared.events.send(PodEvent::Terminated { uid: uid.clone(), namespace: namespace.clone(), name: name.clone() });
                    return;
                }
                Err(e) => {
                    tracing::warn!(pod = %format!("{namespace}/{name}"), "stopping the pod: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        } else {
            let (wait, failing) = match syncer.sync(&pod, &mut memory).await {
                Ok(out) => {
                    publish(&out.status, &mut published);
                    let failing = !memory.errors.is_empty();
                    (out.retry_after.map_or(shared.config.resync, |r| r.min(shared.config.resync)), failing)
                }
                Err(e) => {
                    tracing::warn!(pod = %format!("{namespace}/{name}"), "{e}");
                    (Duration::from_secs(1), true)
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        // While a step keeps failing, runtime changes (often the failed step's
                        // own leftovers) wait for the retry instead of spinning the sync.
                        Some(Msg::Wake) if failing => continue,
                        Some(msg) => {
                            apply(msg, &mut pod, &mut removed);
                            break;
                        }
                        None => return,
                    },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        // Take everything queued so one sync covers it.
        loop {
            match rx.try_recv() {
                Ok(msg) => apply(msg, &mut pod, &mut removed),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// Stops the pod within `grace` seconds, reports its final status, removes its containers
/// and sandboxes and lets the integrator clean up.
async fn terminate(syncer: &Syncer, pod: &Pod, grace: i64, memory: &mut PodMemory) -> Result<PodStatus, String> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let runtime = syncer.runtime.as_ref();
    let rt = observe(runtime, &uid).await.map_err(|e| e.to_string())?;
    syncer.terminator().kill_pod(Some(pod), &rt, Some(grace)).await.map_err(|e| e.to_string())?;
    let rt = observe(runtime, &uid).await.map_err(|e| e.to_string())?;
    let status = syncer.status(pod, &rt, &HashMap::new(), memory.status.as_ref());
    remove_all(runtime, &rt).await.map_err(|e| e.to_string())?;
    syncer.deps.cleanup(&uid).await;
    syncer.crash_backoff.forget_pod(&uid);
    syncer.pull_backoff.forget_pod(&uid);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{pod, Harness};
    use super::*;

    fn fast() -> ManagerConfig {
        ManagerConfig { resync: Duration::from_millis(200), relist: Duration::from_millis(20) }
    }

    async fn until<F: Fn() -> bool>(what: &str, f: F) {
        for _ in 0..300 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn web(uid: &str) -> Pod {
        pod(uid, serde_json::json!({"terminationGracePeriodSeconds": 5, "containers": [
            {"name": "app", "image": "busybox:1", "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}]}))
    }

    fn phase(m: &PodManager, uid: &str) -> Option<String> {
        m.status(uid).and_then(|s| s.phase)
    }

    #[tokio::test]
    async fn a_pod_runs_and_crashes_are_noticed_by_the_relist() {
        let h = Harness::new();
        let (m, mut events) = PodManager::new(Arc::new(h.syncer()), fast());
        m.start_relist();
        m.update(web("u1"));
        until("running", || phase(&m, "u1").as_deref() == Some("Running")).await;
        match events.recv().await.unwrap() {
            PodEvent::Status { uid, namespace, name, .. } => assert_eq!((uid.as_str(), namespace.as_str(), name.as_str()), ("u1", "ns", "pod-u1")),
            e => panic!("{e:?}"),
        }
        let first = h.runtime.running("app").unwrap();
        h.runtime.exit_container(&first.id, 1, "");
        until("a restart", || h.runtime.running("app").is_some_and(|c| c.id != first.id)).await;
    }

    #[tokio::test]
    async fn deletion_stops_gracefully_and_reports_termination() {
        let h = Harness::new();
        let (m, mut events) = PodManager::new(Arc::new(h.syncer()), fast());
        let mut p = web("u1");
        m.update(p.clone());
        until("running", || h.runtime.running("app").is_some()).await;
        p.metadata.deletion_timestamp = Some(crate::agent::pods::status::time_from_nanos(1_000_000_000).unwrap());
        p.metadata.deletion_grace_period_seconds = Some(3);
        m.update(p.clone());
        loop {
            match events.recv().await.unwrap() {
                PodEvent::Terminated { uid, .. } => {
                    assert_eq!(uid, "u1");
                    break;
                }
                PodEvent::Status { .. } => {}
            }
        }
        assert_eq!(h.deps.pre_stops.lock().unwrap().clone(), vec!["app"]);
        let calls = h.runtime.calls();
        let stop = calls.iter().find(|c| c.starts_with("StopContainer")).unwrap();
        assert!(stop == "StopContainer app 3" || stop == "StopContainer app 2", "{stop}");
        assert!(h.runtime.containers().is_empty() && h.runtime.sandboxes().is_empty());
        assert!(h.deps.cleaned.lock().unwrap().contains("u1"));
        assert!(h.events.messages("Killing").contains(&"Stopping container app".to_string()));
        // Later updates of the lingering API object only repeat the news.
        m.update(p);
        assert!(matches!(events.recv().await.unwrap(), PodEvent::Terminated { .. }));
        assert!(h.runtime.containers().is_empty());
    }

    #[tokio::test]
    async fn removal_kills_at_once() {
        let h = Harness::new();
        let (m, mut events) = PodManager::new(Arc::new(h.syncer()), fast());
        m.update(web("u1"));
        until("running", || h.runtime.running("app").is_some()).await;
        m.remove("u1");
        while !matches!(events.recv().await.unwrap(), PodEvent::Terminated { .. }) {}
        assert!(h.runtime.calls().contains(&"StopContainer app 0".to_string()));
        assert!(h.deps.pre_stops.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_restarted_kubelet_adopts_and_kills_orphans() {
        let h = Harness::new();
        {
            let (m, _events) = PodManager::new(Arc::new(h.syncer()), fast());
            m.update(web("keep"));
            m.update(web("gone"));
            until("both running", || h.runtime.containers().iter().filter(|c| c.state == cri_api::runtime::v1::ContainerState::ContainerRunning).count() == 2).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        h.runtime.clear_calls();
        let (m, _events) = PodManager::new(Arc::new(h.syncer()), fast());
        m.start_relist();
        m.update(web("keep"));
        m.set_desired_pods(HashSet::from(["keep".to_string()]));
        until("the orphan removed", || h.runtime.sandboxes().len() == 1).await;
        until("adopted", || phase(&m, "keep").as_deref() == Some("Running")).await;
        let calls = h.runtime.calls();
        assert!(!calls.iter().any(|c| c.starts_with("CreateContainer") || c.starts_with("RunPodSandbox")), "{calls:?}");
        assert_eq!(h.runtime.sandboxes()[0].config.metadata.as_ref().unwrap().uid, "keep");
        assert!(h.deps.cleaned.lock().unwrap().contains("gone"));
    }
}
