//! One sync of one pod: read what the runtime has, plan, and carry the plan out — kill what
//! must go, set up volumes, create the sandbox, pull images, create and start containers
//! (postStart hooks, restart counts, crash back-off), emit the events — then compute the
//! pod's status. Safe to repeat: every step looks at the runtime first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};

use super::backoff::{Backoff, Clock, SystemClock};
use super::cri_config::{ContainerContext, SandboxContext};
use super::deps::{CriConfigs, EventSink, EventType, KubeletConfigs, NoMetrics, PodDeps, PodStartMetrics};
use super::images::ImagePuller;
use super::qos;
use super::plan::{self, is_sidecar, BackoffWait, PlanInput, PodActions, ProbeState, Waiting};
use super::runtime_state::{observe, ContainerInfo, ContainerState, RuntimePod};
use super::status::{pod_status, time_from_nanos, StatusInput};
use super::termination::{grace_period, remove_dead, Terminator};
use crate::agent::runtime::{PodRuntime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("reading the runtime state of pod {pod}: {source}")]
    Observe { pod: String, source: RuntimeError },
}

/// The agent-wide settings of the sync.
#[derive(Debug, Clone, Default)]
pub struct SyncConfig {
    /// The CRI runtime's name (from Version): container IDs are `<name>://<id>`.
    pub runtime_name: String,
    /// The runtime handler for sandboxes ("" for the runtime's default).
    pub runtime_handler: String,
    /// The node's IPs (hostIP; podIPs of host-network pods).
    pub host_ips: Vec<String>,
    /// The node's memory in bytes (OOM scores of Burstable containers); 0: unknown.
    pub node_memory_capacity: i64,
}

/// Everything a sync uses; shared by all pod workers.
pub struct Syncer {
    pub runtime: Arc<dyn PodRuntime>,
    pub deps: Arc<dyn PodDeps>,
    pub events: Arc<dyn EventSink>,
    pub metrics: Arc<dyn PodStartMetrics>,
    pub configs: Arc<dyn CriConfigs>,
    pub clock: Arc<dyn Clock>,
    pub crash_backoff: Backoff,
    pub pull_backoff: Backoff,
    pub config: SyncConfig,
}

/// What a pod's worker remembers between syncs.
#[derive(Debug, Default)]
pub struct PodMemory {
    /// Why containers wait after the last sync's failures (ErrImagePull, ...), by name.
    pub errors: HashMap<String, Waiting>,
    /// The status last computed.
    pub status: Option<PodStatus>,
    /// The start latency was reported.
    pub start_reported: bool,
    /// Syncs in a row that left a step failing (the retry backs off with them).
    pub failed_syncs: u32,
}

/// The result of one sync.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub status: PodStatus,
    /// Sync again after this long at the latest (a back-off ends, a step failed).
    pub retry_after: Option<Duration>,
    /// What the runtime has for the pod after the sync.
    pub runtime: RuntimePod,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// How soon to retry a failed step after the first failed sync; the wait doubles with each
/// failed sync in a row up to [`MAX_RETRY`] (upstream's pod workers wait 10 s after an error).
const RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// The retry after `failed` failed syncs in a row (at least one).
fn retry_after_failures(failed: u32) -> Duration {
    RETRY.saturating_mul(1 << failed.saturating_sub(1).min(8)).min(MAX_RETRY)
}

impl Syncer {
    /// A syncer with the real CRI configs, the system clock and no metrics.
    pub fn new(runtime: Arc<dyn PodRuntime>, deps: Arc<dyn PodDeps>, events: Arc<dyn EventSink>, config: SyncConfig) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Syncer {
            runtime,
            deps,
            events,
            metrics: Arc::new(NoMetrics),
            configs: Arc::new(KubeletConfigs),
            crash_backoff: Backoff::crash_loop(clock.clone()),
            pull_backoff: Backoff::image_pull(clock.clone()),
            clock,
            config,
        }
    }

    pub fn with_metrics(mut self, metrics: Arc<dyn PodStartMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_configs(mut self, configs: Arc<dyn CriConfigs>) -> Self {
        self.configs = configs;
        self
    }

    /// Replaces the clock (and the back-offs, which use it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.crash_backoff = Backoff::crash_loop(clock.clone());
        self.pull_backoff = Backoff::image_pull(clock.clone());
        self.clock = clock;
        self
    }

    pub fn terminator(&self) -> Terminator<'_> {
        Terminator { runtime: self.runtime.as_ref(), deps: self.deps.as_ref(), events: self.events.as_ref() }
    }

    fn probe_state(&self, uid: &str, c: &ContainerInfo) -> ProbeState {
        self.deps.probe_state(uid, &c.name, &c.id)
    }

    /// The crash back-off of the exited container `c`, if it must still wait.
    fn crash_wait(&self, uid: &str, c: &ContainerInfo) -> Option<BackoffWait> {
        let key = (uid.to_string(), c.name.clone());
        if c.finished_at > 0 && c.started_at > 0 {
            self.crash_backoff.reset_if_ran(&key, Duration::from_nanos((c.finished_at - c.started_at).max(0) as u64));
        }
        let finished = std::time::UNIX_EPOCH + Duration::from_nanos(c.finished_at.max(0) as u64);
        let remaining = self.crash_backoff.remaining(&key, finished)?;
        Some(BackoffWait { remaining, delay: self.crash_backoff.delay(&key).unwrap_or(remaining) })
    }

    fn plan(&self, pod: &Pod, rt: &RuntimePod) -> PodActions {
        let uid = uid_of(pod);
        let spec = pod.spec.as_ref();
        let hashes: HashMap<String, String> =
            spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten())).map(|c| (c.name.clone(), self.configs.hash(c))).collect();
        let probes = |c: &ContainerInfo| self.probe_state(&uid, c);
        let backoff = |c: &ContainerInfo| self.crash_wait(&uid, c);
        plan::compute(&PlanInput { pod, runtime: rt, hashes: &hashes, probes: &probes, backoff: &backoff })
    }

    fn now(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        let nanos = self.clock.now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
        time_from_nanos(nanos.max(1)).expect("positive time")
    }

    /// The pod's status from what the runtime has.
    pub fn status(&self, pod: &Pod, rt: &RuntimePod, waiting: &HashMap<String, Waiting>, previous: Option<&PodStatus>) -> PodStatus {
        let uid = uid_of(pod);
        let probes = |c: &ContainerInfo| self.probe_state(&uid, c);
        let previous = previous.or(pod.status.as_ref());
        pod_status(&StatusInput {
            pod,
            runtime: rt,
            runtime_name: &self.config.runtime_name,
            probes: &probes,
            waiting,
            host_ips: &self.config.host_ips,
            previous,
            qos_class: Some(qos::qos_class(pod).as_str().to_string()),
            now: self.now(),
        })
    }

    /// One sync of a pod that should run (not being deleted).
    pub async fn sync(&self, pod: &Pod, memory: &mut PodMemory) -> Result<SyncOutcome, SyncError> {
        let uid = uid_of(pod);
        let pod_name = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""));
        let observe_err = |source| SyncError::Observe { pod: pod_name.clone(), source };
        let rt = observe(self.runtime.as_ref(), &uid).await.map_err(observe_err)?;
        let actions = self.plan(pod, &rt);
        if memory.status.is_none() && all_apps_running(pod, &rt) {
            // Adopted after an agent restart: its start was long ago, not a latency to report.
            memory.start_reported = true;
        }
        if !actions.is_noop() {
            tracing::debug!(pod = %pod_name, ?actions, "sync");
        }
        let mut retry_after = actions.retry_after;

        // Errors of containers that run now are over.
        memory.errors.retain(|name, _| !rt.latest(name).is_some_and(|c| c.is_running()));
        for name in actions.waiting.keys() {
            let message = format!("Back-off restarting failed container {name} in pod {}", pod_ref(pod));
            self.events.event(pod, Some(name), EventType::Warning, "BackOff", &message);
        }

        let mut failed = false;
        if !actions.is_noop()
            && let Err(failure) = self.act(pod, &rt, &actions, memory).await
        {
            tracing::warn!(pod = %pod_name, "sync: {failure}");
            failed = true;
        }
        // A crash back-off has its own end (in `actions.retry_after`); other waits retry.
        failed |= memory.errors.values().any(|w| w.reason != "CrashLoopBackOff");
        memory.failed_syncs = if failed { memory.failed_syncs.saturating_add(1) } else { 0 };
        if failed {
            let retry = retry_after_failures(memory.failed_syncs);
            retry_after = Some(retry_after.map_or(retry, |r| r.min(retry)));
        }

        let rt = if actions.is_noop() { rt } else { observe(self.runtime.as_ref(), &uid).await.map_err(observe_err)? };
        let rt = self.with_termination_messages(pod, rt).await;
        if let Err(e) = remove_dead(self.runtime.as_ref(), &rt).await {
            tracing::warn!(pod = %pod_name, "removing dead containers: {e}");
        }
        let mut waiting = actions.waiting.clone();
        for (name, w) in &memory.errors {
            waiting.entry(name.clone()).or_insert_with(|| w.clone());
        }
        let status = self.status(pod, &rt, &waiting, memory.status.as_ref());
        self.report_start(pod, &rt, memory);
        memory.status = Some(status.clone());
        Ok(SyncOutcome { status, retry_after, runtime: rt })
    }

    /// Fills in the termination messages the runtime did not report.
    async fn with_termination_messages(&self, pod: &Pod, mut rt: RuntimePod) -> RuntimePod {
        let Some(spec) = pod.spec.as_ref() else { return rt };
        for c in rt.containers.iter_mut().filter(|c| c.state == ContainerState::Exited && c.message.is_empty()) {
            let Some(container) = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|s| s.name == c.name) else { continue };
            if let Some(message) = self.deps.termination_message(pod, container, &c.id, c.exit_code).await {
                c.message = message;
            }
        }
        rt
    }

    fn report_start(&self, pod: &Pod, rt: &RuntimePod, memory: &mut PodMemory) {
        if memory.start_reported || !all_apps_running(pod, rt) {
            return;
        }
        memory.start_reported = true;
        if let Some(created) = &pod.metadata.creation_timestamp {
            let created = std::time::UNIX_EPOCH + Duration::from_secs(created.0.as_second().max(0) as u64);
            if let Ok(latency) = self.clock.now().duration_since(created) {
                self.metrics.pod_started(pod, latency);
            }
        }
    }

    /// Carries out `actions`; failures of single containers are recorded in `memory.errors`,
    /// a failure of the pod as a whole is returned.
    async fn act(&self, pod: &Pod, rt: &RuntimePod, actions: &PodActions, memory: &mut PodMemory) -> Result<(), String> {
        let grace = grace_period(pod);
        let term = self.terminator();
        if actions.kill_pod {
            term.kill_pod(Some(pod), rt, Some(grace)).await.map_err(|e| format!("killing the pod: {e}"))?;
        }
        for kill in &actions.to_kill {
            if let Some(c) = rt.containers.iter().find(|c| c.id == kill.container_id) {
                term.stop_container(Some(pod), c, grace, Some(kill.reason.message(&kill.name))).await.map_err(|e| format!("stopping container {}: {e}", kill.name))?;
            }
        }
        if actions.init_to_start.is_empty() && actions.to_start.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.deps.prepare_volumes(pod).await {
            self.events.event(pod, None, EventType::Warning, "FailedMount", &e);
            return Err(format!("volumes: {e}"));
        }
        let (sandbox_id, attempt, ips) = match actions.create_sandbox {
            Some(attempt) => {
                let (id, ips) = self.create_sandbox(pod, attempt).await?;
                (id, attempt, ips)
            }
            None => {
                let sb = rt.sandbox().ok_or("no sandbox")?;
                (sb.id.clone(), sb.attempt, sb.ips.clone())
            }
        };
        let ctx = self.deps.sandbox_context(pod, attempt);
        let sandbox_config = self.configs.sandbox(pod, &ctx).map_err(|e| format!("sandbox config: {e}"))?;
        let start = Start { pod, rt, sandbox_id: &sandbox_id, sandbox_config: &sandbox_config, sandbox_context: &ctx, pod_ip: ips.first().map(String::as_str) };

        let spec = pod.spec.as_ref().ok_or("pod without spec")?;
        let init = spec.init_containers.as_deref().unwrap_or_default();
        for name in &actions.init_to_start {
            let Some(c) = init.iter().find(|c| &c.name == name) else { continue };
            let kind = if is_sidecar(c) { "sidecar" } else { "init" };
            let ok = self.start_recorded(&start, c, kind, memory).await;
            // A regular init container must finish before anything else starts.
            if !ok && !is_sidecar(c) {
                return Ok(());
            }
        }
        for name in &actions.to_start {
            if let Some(c) = spec.containers.iter().find(|c| &c.name == name) {
                self.start_recorded(&start, c, "app", memory).await;
            }
        }
        Ok(())
    }

    async fn create_sandbox(&self, pod: &Pod, attempt: u32) -> Result<(String, Vec<String>), String> {
        let ctx = self.deps.sandbox_context(pod, attempt);
        let failed = |message: String| {
            self.events.event(pod, None, EventType::Warning, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {message}"));
            message
        };
        let config = self.configs.sandbox(pod, &ctx).map_err(|e| failed(e.to_string()))?;
        let id = self.runtime.run_pod_sandbox(config, &self.config.runtime_handler).await.map_err(|e| failed(e.to_string()))?;
        let status = self.runtime.pod_sandbox_status(&id).await.map_err(|e| failed(e.to_string()))?;
        let ips = status.network.map(|n| std::iter::once(n.ip).chain(n.additional_ips.into_iter().map(|i| i.ip)).filter(|i| !i.is_empty()).collect()).unwrap_or_default();
        Ok((id, ips))
    }

    /// Starts `c`, recording why it waits on failure; true when it started.
    async fn start_recorded(&self, start: &Start<'_>, c: &Container, kind: &'static str, memory: &mut PodMemory) -> bool {
        match self.start_container(start, c, kind).await {
            Ok(()) => {
                memory.errors.remove(&c.name);
                true
            }
            Err(w) => {
                tracing::debug!(container = %c.name, reason = %w.reason, "{}", w.message);
                memory.errors.insert(c.name.clone(), w);
                false
            }
        }
    }

    async fn start_container(&self, s: &Start<'_>, c: &Container, kind: &'static str) -> Result<(), Waiting> {
        let pod = s.pod;
        let uid = uid_of(pod);
        let name = c.name.as_str();
        let warn = |reason: &str, message: &str| self.events.event(pod, Some(name), EventType::Warning, reason, message);
        let puller = ImagePuller { runtime: self.runtime.as_ref(), deps: self.deps.as_ref(), events: self.events.as_ref(), backoff: &self.pull_backoff };
        let image = puller.ensure(pod, c).await?;

        let config_error = |message: String| {
            warn("Failed", &format!("Error: {message}"));
            Waiting::new("CreateContainerConfigError", message)
        };
        let envs = self.deps.env(pod, c, s.pod_ip).await.map_err(config_error)?;
        let mounts = self.deps.mounts(pod, c).map_err(config_error)?;
        let previous = s.rt.latest(name);
        let restart_count = previous.map(|p| p.restart_count + 1).unwrap_or(0);
        let ctx = ContainerContext {
            image,
            restart_count,
            envs,
            mounts,
            cgroup_parent: s.sandbox_context.cgroup_parent.clone(),
            kind,
            node_memory_capacity: self.config.node_memory_capacity,
            seccomp_root: s.sandbox_context.seccomp_root.clone(),
        };
        let config = self.configs.container(pod, c, &ctx).map_err(|e| config_error(e.to_string()))?;

        if previous.is_some_and(|p| p.state == ContainerState::Exited) {
            self.crash_backoff.next(&(uid.clone(), name.to_string()));
        }
        let id = self.runtime.create_container(s.sandbox_id, config, s.sandbox_config.clone()).await.map_err(|e| {
            warn("Failed", &format!("Error: {e}"));
            Waiting::new("CreateContainerError", e.to_string())
        })?;
        self.events.event(pod, Some(name), EventType::Normal, "Created", &format!("Created container: {name}"));
        self.runtime.start_container(&id).await.map_err(|e| {
            warn("Failed", &format!("Error: {e}"));
            Waiting::new("RunContainerError", e.to_string())
        })?;
        self.events.event(pod, Some(name), EventType::Normal, "Started", &format!("Started container {name}"));

        if c.lifecycle.as_ref().is_some_and(|l| l.post_start.is_some())
            && let Err(message) = self.deps.post_start(pod, c, &id).await
        {
            warn("FailedPostStartHook", &message);
            let info = ContainerInfo::just_started(&id, s.sandbox_id, name, restart_count);
            let kill = format!("FailedPostStartHook: {message}");
            if let Err(e) = self.terminator().stop_container(Some(pod), &info, grace_period(pod), Some(kill)).await {
                tracing::warn!("stopping container {name} after its postStart hook failed: {e}");
            }
            return Err(Waiting::new("PostStartHookError", message));
        }
        Ok(())
    }
}

fn all_apps_running(pod: &Pod, rt: &RuntimePod) -> bool {
    let apps = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    !apps.is_empty() && apps.iter().all(|c| rt.latest(&c.name).is_some_and(|i| i.is_running()))
}

/// `name_namespace(uid)`, as upstream's messages name a pod.
pub fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Where containers of one sync start.
struct Start<'a> {
    pod: &'a Pod,
    rt: &'a RuntimePod,
    sandbox_id: &'a str,
    sandbox_config: &'a cri::PodSandboxConfig,
    sandbox_context: &'a SandboxContext,
    pod_ip: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{pod, Harness};
    use super::*;

    fn web(uid: &str) -> Pod {
        pod(uid, serde_json::json!({"containers": [{"name": "app", "image": "busybox:1", "command": ["sleep", "1000"]}]}))
    }

    fn waiting_reason(s: &PodStatus, i: usize) -> Option<String> {
        s.container_statuses.as_ref().unwrap()[i].state.as_ref().unwrap().waiting.as_ref().and_then(|w| w.reason.clone())
    }

    #[tokio::test]
    async fn a_pod_starts_sandbox_then_containers() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = pod("u1", serde_json::json!({
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [{"name": "a", "image": "busybox:1"}, {"name": "b", "image": "busybox:1"}]}));
        let mut mem = PodMemory::default();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(h.runtime.calls(), vec!["RunPodSandbox pod-u1", "PullImage busybox:1", "CreateContainer init", "StartContainer init"]);
        assert_eq!(out.status.phase.as_deref(), Some("Pending"));
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("PodInitializing"));
        // The init container finishes: the app containers start.
        let init = h.runtime.running("init").unwrap();
        h.runtime.exit_container(&init.id, 0, "");
        h.runtime.clear_calls();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(h.runtime.calls(), vec!["CreateContainer a", "StartContainer a", "CreateContainer b", "StartContainer b"]);
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
        assert_eq!(out.status.pod_ip.as_deref().map(|ip| ip.starts_with("10.88.0.")), Some(true));
        assert!(h.events.reasons().contains(&"Pulled".to_string()));
        assert_eq!(h.events.messages("Started"), vec!["Started container init", "Started container a", "Started container b"]);
        assert_eq!(h.metrics.0.lock().unwrap().len(), 1, "start latency reported once");
        // Nothing to do afterwards.
        h.runtime.clear_calls();
        syncer.sync(&pod, &mut mem).await.unwrap();
        assert!(h.runtime.calls().is_empty(), "{:?}", h.runtime.calls());
        assert_eq!(h.metrics.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_crashing_container_restarts_with_growing_backoff() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = web("u1");
        let mut mem = PodMemory::default();
        syncer.sync(&pod, &mut mem).await.unwrap();
        let crash = || h.runtime.exit_container(&h.runtime.running("app").unwrap().id, 1, "");

        crash();
        // The first restart is immediate.
        syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(h.runtime.containers_named("app").len(), 2);
        crash();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("CrashLoopBackOff"));
        let w = out.status.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(w.message.as_deref(), Some("back-off 10s restarting failed container=app pod=pod-u1_ns(u1)"));
        assert!(out.retry_after.unwrap() <= Duration::from_secs(10));
        assert_eq!(out.status.container_statuses.as_ref().unwrap()[0].restart_count, 1);
        assert!(h.events.messages("BackOff").contains(&"Back-off restarting failed container app in pod pod-u1_ns(u1)".to_string()));
        // After 10 s it restarts, and the next back-off is 20 s.
        h.clock.advance(Duration::from_secs(11));
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert!(out.status.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().running.is_some());
        assert_eq!(out.status.container_statuses.as_ref().unwrap()[0].restart_count, 2);
        // (The fake runtime's exit times are wall-clock; the test clock is 11 s ahead.)
        crash();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        let w = out.status.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!(w.message.as_deref(), Some("back-off 20s restarting failed container=app pod=pod-u1_ns(u1)"));
        // Dead containers are removed but the newest exited one.
        let exited = h.runtime.containers_named("app").iter().filter(|c| c.state == cri::ContainerState::ContainerExited).count();
        assert_eq!(exited, 1);
    }

    #[tokio::test]
    async fn a_changed_spec_restarts_the_container() {
        let h = Harness::new();
        let syncer = h.syncer();
        let mut pod = web("u1");
        let mut mem = PodMemory::default();
        syncer.sync(&pod, &mut mem).await.unwrap();
        let first = h.runtime.running("app").unwrap();
        pod.spec.as_mut().unwrap().containers[0].image = Some("busybox:2".into());
        h.runtime.clear_calls();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(h.runtime.calls()[0], "StopContainer app 30");
        assert!(h.runtime.calls().contains(&"StartContainer app".to_string()));
        let second = h.runtime.running("app").unwrap();
        assert_ne!(first.id, second.id);
        assert_eq!(out.status.container_statuses.as_ref().unwrap()[0].restart_count, 1);
        assert!(h.events.messages("Killing").contains(&"Container app definition changed, will be restarted".to_string()));
    }

    #[tokio::test]
    async fn pull_failures_back_off() {
        let h = Harness::new();
        let syncer = h.syncer();
        h.runtime.fail_pull("busybox:1", Some("not found"));
        let pod = web("u1");
        let mut mem = PodMemory::default();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("ErrImagePull"));
        assert_eq!(out.retry_after, Some(Duration::from_secs(2)));
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("ImagePullBackOff"));
        h.runtime.fail_pull("busybox:1", None);
        h.clock.advance(Duration::from_secs(11));
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
    }

    #[tokio::test]
    async fn never_pull_policy_and_config_errors_wait_with_reasons() {
        let h = Harness::new();
        let syncer = h.syncer();
        let mut pod = web("u1");
        pod.spec.as_mut().unwrap().containers[0].image_pull_policy = Some("Never".into());
        let mut mem = PodMemory::default();
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("ErrImageNeverPull"));
        h.runtime.add_image("busybox:1");
        *h.deps.env_error.lock().unwrap() = Some("configmap \"cfg\" not found".into());
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("CreateContainerConfigError"));
        *h.deps.env_error.lock().unwrap() = None;
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
        assert!(h.events.messages("Pulled").contains(&"Container image \"busybox:1\" already present on machine".to_string()));
    }

    #[tokio::test]
    async fn a_step_that_keeps_failing_is_retried_less_often_until_it_works() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = web("u1");
        h.runtime.add_image("busybox:1");
        *h.deps.env_error.lock().unwrap() = Some("configmap \"cfg\" not found".into());
        let mut mem = PodMemory::default();
        let mut retries = Vec::new();
        for _ in 0..5 {
            let out = syncer.sync(&pod, &mut mem).await.unwrap();
            assert_eq!(waiting_reason(&out.status, 0).as_deref(), Some("CreateContainerConfigError"));
            retries.push(out.retry_after.unwrap().as_secs());
        }
        assert_eq!(retries, [2, 4, 8, 10, 10]);
        *h.deps.env_error.lock().unwrap() = None;
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
        // A later failure starts again from the shortest wait.
        assert_eq!(mem.failed_syncs, 0);
        assert_eq!(retry_after_failures(1), RETRY);
    }

    #[tokio::test]
    async fn a_failed_post_start_hook_kills_the_container() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = pod("u1", serde_json::json!({"containers": [{"name": "app", "image": "busybox:1",
            "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}));
        *h.deps.post_start_error.lock().unwrap() = Some("exec false: exit code 1".into());
        let mut mem = PodMemory::default();
        syncer.sync(&pod, &mut mem).await.unwrap();
        assert!(h.runtime.running("app").is_none());
        assert_eq!(h.events.messages("FailedPostStartHook"), vec!["exec false: exit code 1"]);
    }

    #[tokio::test]
    async fn a_dead_sandbox_is_recreated() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = web("u1");
        let mut mem = PodMemory::default();
        syncer.sync(&pod, &mut mem).await.unwrap();
        let sb = h.runtime.sandboxes()[0].id.clone();
        h.runtime.kill_sandbox(&sb);
        syncer.sync(&pod, &mut mem).await.unwrap();
        let sandboxes = h.runtime.sandboxes();
        assert_eq!(sandboxes.iter().filter(|s| s.ready).count(), 1);
        assert_eq!(sandboxes.last().unwrap().config.metadata.as_ref().unwrap().attempt, 1);
        let app = h.runtime.running("app").unwrap();
        assert_eq!(app.sandbox_id, sandboxes.last().unwrap().id);
    }

    #[tokio::test]
    async fn a_restarted_kubelet_adopts_running_containers() {
        let h = Harness::new();
        let pod = web("u1");
        h.syncer().sync(&pod, &mut PodMemory::default()).await.unwrap();
        h.runtime.clear_calls();
        // A new syncer with no memory: the runtime state says it all.
        let out = h.syncer().sync(&pod, &mut PodMemory::default()).await.unwrap();
        assert!(h.runtime.calls().iter().all(|c| !c.starts_with("Create") && !c.starts_with("Run") && !c.starts_with("Stop")), "{:?}", h.runtime.calls());
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
        assert_eq!(h.metrics.0.lock().unwrap().len(), 1, "no start latency for an adopted pod");
    }

    #[tokio::test]
    async fn the_real_cri_configs_carry_what_adoption_needs() {
        let h = Harness::new();
        let syncer = |h: &Harness| {
            let config = SyncConfig { runtime_name: "fake".into(), ..Default::default() };
            Syncer::new(h.runtime.clone(), h.deps.clone(), h.events.clone(), config).with_clock(h.clock.clone())
        };
        let pod = web("u1");
        let out = syncer(&h).sync(&pod, &mut PodMemory::default()).await.unwrap();
        assert_eq!(out.status.phase.as_deref(), Some("Running"));
        assert_eq!(out.status.qos_class.as_deref(), Some("BestEffort"));
        let app = h.runtime.running("app").unwrap();
        h.runtime.exit_container(&app.id, 1, "");
        syncer(&h).sync(&pod, &mut PodMemory::default()).await.unwrap();
        h.runtime.clear_calls();
        let out = syncer(&h).sync(&pod, &mut PodMemory::default()).await.unwrap();
        assert!(h.runtime.calls().iter().all(|c| !c.starts_with("Create")), "{:?}", h.runtime.calls());
        assert_eq!(out.status.container_statuses.as_ref().unwrap()[0].restart_count, 1);
    }

    #[tokio::test]
    async fn termination_messages_come_from_the_deps() {
        let h = Harness::new();
        let syncer = h.syncer();
        let mut pod = web("u1");
        pod.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let mut mem = PodMemory::default();
        syncer.sync(&pod, &mut mem).await.unwrap();
        h.runtime.exit_container(&h.runtime.running("app").unwrap().id, 42, "");
        let out = syncer.sync(&pod, &mut mem).await.unwrap();
        let t = out.status.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().terminated.unwrap();
        assert_eq!((t.exit_code, t.message.as_deref(), t.reason.as_deref()), (42, Some("the answer"), Some("Error")));
        assert_eq!(out.status.phase.as_deref(), Some("Failed"));
    }

    #[tokio::test]
    async fn a_pod_stops_app_containers_then_sidecars_in_reverse_then_the_sandbox() {
        let h = Harness::new();
        let syncer = h.syncer();
        let pod = pod("u1", serde_json::json!({"terminationGracePeriodSeconds": 7,
            "initContainers": [{"name": "s1", "image": "busybox:1", "restartPolicy": "Always"}, {"name": "s2", "image": "busybox:1", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "busybox:1", "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}]}));
        let mut mem = PodMemory::default();
        for _ in 0..4 {
            syncer.sync(&pod, &mut mem).await.unwrap();
        }
        assert!(h.runtime.running("app").is_some() && h.runtime.running("s1").is_some() && h.runtime.running("s2").is_some());
        let rt = observe(h.runtime.as_ref(), "u1").await.unwrap();
        h.runtime.clear_calls();
        syncer.terminator().kill_pod(Some(&pod), &rt, Some(7)).await.unwrap();
        let calls = h.runtime.calls();
        assert_eq!(calls[..3], ["StopContainer app 7", "StopContainer s2 7", "StopContainer s1 7"]);
        assert!(calls[3].starts_with("StopPodSandbox"), "{calls:?}");
        assert_eq!(h.deps.pre_stops.lock().unwrap().clone(), vec!["app"]);
    }
}
