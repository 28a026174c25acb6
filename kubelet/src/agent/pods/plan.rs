//! What one sync of a pod must do, as a pure function of the pod's spec and what the runtime
//! has for it (like the upstream kubelet's computePodActions): kill the whole pod when its
//! sandbox is gone or changed, create a sandbox, start the next init container (sidecars —
//! init containers with `restartPolicy: Always` — are started in order and kept running; the
//! next one waits only for their startup), start app containers, kill containers whose spec
//! changed, whose liveness or startup probe failed or that are not in the spec, and restart
//! exited ones per the pod's restartPolicy unless they are backing off (CrashLoopBackOff).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::runtime_state::{ContainerInfo, ContainerState, RuntimePod};

/// What the probes found for a running container (only consulted for probes it has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// The liveness probe failed `failureThreshold` times: restart the container.
    pub liveness_failed: bool,
    /// The startup probe failed `failureThreshold` times: restart the container.
    pub startup_failed: bool,
    /// The startup probe succeeded.
    pub started: bool,
    /// The readiness probe's last result was success.
    pub ready: bool,
}

/// A waiting container's reason and message, as shown in its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

impl Waiting {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Waiting { reason: reason.to_string(), message: message.into() }
    }
}

/// Why a running container is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    SpecChanged,
    LivenessFailed,
    StartupFailed,
    NotInSpec,
    /// Created but never started, or in an unknown state: replaced.
    Stale,
}

impl KillReason {
    /// The message of the Killing event.
    pub fn message(self, name: &str) -> String {
        match self {
            KillReason::SpecChanged => format!("Container {name} definition changed, will be restarted"),
            KillReason::LivenessFailed => format!("Container {name} failed liveness probe, will be restarted"),
            KillReason::StartupFailed => format!("Container {name} failed startup probe, will be restarted"),
            KillReason::NotInSpec => format!("Container {name} is not in the pod's spec"),
            KillReason::Stale => format!("Stopping container {name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillAction {
    pub container_id: String,
    pub name: String,
    pub reason: KillReason,
}

/// A crash back-off still running for a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffWait {
    /// Until the container may be restarted.
    pub remaining: Duration,
    /// The back-off's current step (shown as "back-off 20s").
    pub delay: Duration,
}

/// The input of [`compute`].
pub struct PlanInput<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    /// The spec hash (`cri_config::container_hash`) of each init and app container by name.
    pub hashes: &'a HashMap<String, String>,
    /// The probe results of a running container.
    pub probes: &'a dyn Fn(&ContainerInfo) -> ProbeState,
    /// The crash back-off of an exited container that would be restarted.
    pub backoff: &'a dyn Fn(&ContainerInfo) -> Option<BackoffWait>,
}

/// The plan of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every running container and ready sandbox of the pod first.
    pub kill_pod: bool,
    /// Create a new sandbox with this attempt number (after `kill_pod`).
    pub create_sandbox: Option<u32>,
    /// The ready sandbox to start containers in when none is created.
    pub sandbox_id: Option<String>,
    /// Running containers to stop (before starting anything).
    pub to_kill: Vec<KillAction>,
    /// Init containers to start, in order (several only when sidecars are involved).
    pub init_to_start: Vec<String>,
    /// App containers to start.
    pub to_start: Vec<String>,
    /// Containers held back by their crash back-off (CrashLoopBackOff).
    pub waiting: HashMap<String, Waiting>,
    /// When the earliest back-off ends: sync again then.
    pub retry_after: Option<Duration>,
    /// A regular init container failed under restartPolicy Never: the pod failed.
    pub init_failed: bool,
}

impl PodActions {
    pub fn is_noop(&self) -> bool {
        !self.kill_pod && self.create_sandbox.is_none() && self.to_kill.is_empty() && self.init_to_start.is_empty() && self.to_start.is_empty()
    }
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// An init container with `restartPolicy: Always`.
pub fn is_sidecar(container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
}

/// Whether an exited (or broken) container must run again under the pod's policy.
fn should_restart(policy: &str, c: &ContainerInfo) -> bool {
    match c.state {
        ContainerState::Running => false,
        ContainerState::Created | ContainerState::Unknown => true,
        ContainerState::Exited => match policy {
            "Never" => false,
            "OnFailure" => c.exit_code != 0,
            _ => true,
        },
    }
}

/// Go's time.Duration formatting for whole seconds ("10s", "1m20s", "5m0s").
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60)
    }
}

/// The upstream CrashLoopBackOff message.
pub fn crash_loop_message(pod: &Pod, name: &str, delay: Duration) -> String {
    let meta = &pod.metadata;
    format!(
        "back-off {} restarting failed container={name} pod={}_{}({})",
        go_duration(delay),
        meta.name.as_deref().unwrap_or(""),
        meta.namespace.as_deref().unwrap_or("default"),
        meta.uid.as_deref().unwrap_or("")
    )
}

struct Planner<'a, 'b> {
    input: &'b PlanInput<'a>,
    policy: &'a str,
    actions: PodActions,
}

impl Planner<'_, '_> {
    fn hash_changed(&self, c: &ContainerInfo) -> bool {
        !c.hash.is_empty() && self.input.hashes.get(&c.name).is_some_and(|h| *h != c.hash)
    }

    fn kill(&mut self, c: &ContainerInfo, reason: KillReason) {
        self.actions.to_kill.push(KillAction { container_id: c.id.clone(), name: c.name.clone(), reason });
    }

    /// Restarts the exited `c` unless it is backing off; true when it will start now.
    fn restart_exited(&mut self, c: &ContainerInfo) -> bool {
        if c.state != ContainerState::Exited {
            // Created but not started, or unknown: replace it at once.
            self.kill(c, KillReason::Stale);
            return true;
        }
        match (self.input.backoff)(c) {
            Some(wait) => {
                let message = crash_loop_message(self.input.pod, &c.name, wait.delay);
                self.actions.waiting.insert(c.name.clone(), Waiting::new("CrashLoopBackOff", message));
                let retry = self.actions.retry_after.map_or(wait.remaining, |r| r.min(wait.remaining));
                self.actions.retry_after = Some(retry);
                false
            }
            None => true,
        }
    }

    /// The probe- or spec-driven restart of a running container, if any.
    fn running_kill_reason(&self, spec: &Container, c: &ContainerInfo) -> Option<KillReason> {
        if self.hash_changed(c) {
            return Some(KillReason::SpecChanged);
        }
        let probe = (self.input.probes)(c);
        if spec.liveness_probe.is_some() && probe.liveness_failed {
            return Some(KillReason::LivenessFailed);
        }
        if spec.startup_probe.is_some() && probe.startup_failed {
            return Some(KillReason::StartupFailed);
        }
        None
    }

    fn started(&self, spec: &Container, c: &ContainerInfo) -> bool {
        c.is_running() && (spec.startup_probe.is_none() || (self.input.probes)(c).started)
    }

    /// Init containers; true when the pod is initialized (app containers may run).
    fn init_containers(&mut self, init: &[Container], apps: &[Container]) -> bool {
        let rt = self.input.runtime;
        // Once an app container ran, regular init containers are done for this sandbox's
        // lifetime; only sidecars are kept running.
        let previously_initialized = apps.iter().any(|c| rt.latest(&c.name).is_some_and(|i| i.sandbox_id == rt.sandbox().map(|s| s.id.as_str()).unwrap_or("")));
        for spec in init {
            let sidecar = is_sidecar(spec);
            if previously_initialized && !sidecar {
                continue;
            }
            let Some(c) = rt.latest(&spec.name) else {
                self.actions.init_to_start.push(spec.name.clone());
                if previously_initialized {
                    continue;
                }
                return false;
            };
            match c.state {
                ContainerState::Running if !sidecar => return false,
                ContainerState::Running => {
                    if let Some(reason) = self.running_kill_reason(spec, c) {
                        self.kill(c, reason);
                        self.actions.init_to_start.push(spec.name.clone());
                        if !previously_initialized {
                            return false;
                        }
                    } else if !previously_initialized && !self.started(spec, c) {
                        return false;
                    }
                }
                ContainerState::Exited if !sidecar && c.exit_code == 0 => {}
                ContainerState::Exited if !sidecar && self.policy == "Never" => {
                    self.actions.init_failed = true;
                    self.actions.kill_pod = self.alive();
                    return false;
                }
                _ => {
                    if self.restart_exited(c) {
                        self.actions.init_to_start.push(spec.name.clone());
                    }
                    if !previously_initialized || !sidecar {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Anything of the pod still running in the runtime.
    fn alive(&self) -> bool {
        let rt = self.input.runtime;
        rt.sandboxes.iter().any(|s| s.ready) || rt.running().next().is_some()
    }
}

/// Whether the pod needs a new sandbox, and its attempt number.
fn sandbox_needed(rt: &RuntimePod) -> Option<u32> {
    match rt.sandbox() {
        None => Some(0),
        Some(sb) if !sb.ready => Some(sb.attempt + 1),
        // More than one ready sandbox: start over with one.
        Some(sb) if rt.sandboxes.iter().filter(|s| s.ready).count() > 1 => Some(sb.attempt + 1),
        Some(_) => None,
    }
}

/// The actions of one sync of `input.pod`.
pub fn compute(input: &PlanInput<'_>) -> PodActions {
    let pod = input.pod;
    let empty = Vec::new();
    let spec = pod.spec.as_ref();
    let apps = spec.map(|s| &s.containers).unwrap_or(&empty);
    let init = spec.and_then(|s| s.init_containers.as_ref()).unwrap_or(&empty);
    let policy = restart_policy(pod);
    let rt = input.runtime;
    let mut p = Planner { input, policy, actions: PodActions::default() };

    if let Some(attempt) = sandbox_needed(rt) {
        p.actions.kill_pod = p.alive();
        // A pod that never restarts does not get a second sandbox once its containers ran.
        if policy == "Never" && attempt != 0 && !rt.containers.is_empty() {
            return p.actions;
        }
        if let Some(first) = init.first() {
            p.actions.init_to_start.push(first.name.clone());
        } else {
            let succeeded = |c: &Container| rt.latest(&c.name).is_some_and(|i| i.state == ContainerState::Exited && i.exit_code == 0);
            p.actions.to_start = apps.iter().filter(|c| !(policy == "OnFailure" && succeeded(c))).map(|c| c.name.clone()).collect();
            if p.actions.to_start.is_empty() {
                // Everything succeeded already: the pod is done.
                return p.actions;
            }
        }
        p.actions.create_sandbox = Some(attempt);
        return p.actions;
    }
    let sandbox_id = rt.sandbox().map(|s| s.id.clone()).unwrap_or_default();
    p.actions.sandbox_id = Some(sandbox_id.clone());

    let in_spec = |name: &str| apps.iter().chain(init.iter()).any(|c| c.name == name);
    for c in rt.running() {
        if !in_spec(&c.name) {
            p.kill(c, KillReason::NotInSpec);
        }
    }

    if !p.init_containers(init, apps) {
        return p.actions;
    }

    let mut app_alive = false;
    for spec in apps {
        let Some(c) = rt.latest(&spec.name) else {
            p.actions.to_start.push(spec.name.clone());
            app_alive = true;
            continue;
        };
        if c.is_running() {
            match p.running_kill_reason(spec, c) {
                Some(reason) => {
                    p.kill(c, reason);
                    if policy != "Never" {
                        p.actions.to_start.push(spec.name.clone());
                        app_alive = true;
                    }
                }
                None => app_alive = true,
            }
        } else if should_restart(policy, c) {
            app_alive = true;
            if p.restart_exited(c) {
                p.actions.to_start.push(spec.name.clone());
            }
        }
    }
    // Every app container finished for good: stop the rest (sidecars) and the sandbox.
    if !app_alive && !apps.is_empty() {
        p.actions.kill_pod = p.alive();
    }
    p.actions
}

#[cfg(test)]
mod tests {
    use super::super::runtime_state::SandboxInfo;
    use super::*;

    pub(crate) fn pod(json: serde_json::Value) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": []}
        });
        if let Some(spec) = json.get("spec") {
            for (k, val) in spec.as_object().unwrap() {
                v["spec"][k] = val.clone();
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn sandbox(id: &str, attempt: u32, ready: bool) -> SandboxInfo {
        SandboxInfo { id: id.into(), attempt, ready, created_at: attempt as i64, ips: vec!["10.0.0.2".into()] }
    }

    fn container(name: &str, state: ContainerState, exit_code: i32, restart_count: u32) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-{restart_count}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            state,
            hash: "h".into(),
            restart_count,
            created_at: restart_count as i64,
            started_at: 1,
            finished_at: if state == ContainerState::Exited { 2 } else { 0 },
            exit_code,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:b".into(),
            annotations: HashMap::new(),
        }
    }

    use ContainerState::{Exited, Running};

    struct Case {
        pod: Pod,
        rt: RuntimePod,
        hashes: HashMap<String, String>,
        probes: HashMap<String, ProbeState>,
        backoff: Option<BackoffWait>,
    }

    impl Case {
        fn new(pod: Pod, sandboxes: Vec<SandboxInfo>, containers: Vec<ContainerInfo>) -> Self {
            let mut rt = RuntimePod { sandboxes, containers };
            rt.sort();
            let spec = pod.spec.clone().unwrap();
            let hashes = spec.containers.iter().chain(spec.init_containers.iter().flatten()).map(|c| (c.name.clone(), "h".to_string())).collect();
            Case { pod, rt, hashes, probes: HashMap::new(), backoff: None }
        }
        fn plan(&self) -> PodActions {
            let probes = |c: &ContainerInfo| self.probes.get(&c.name).copied().unwrap_or_default();
            let backoff = |_: &ContainerInfo| self.backoff;
            compute(&PlanInput { pod: &self.pod, runtime: &self.rt, hashes: &self.hashes, probes: &probes, backoff: &backoff })
        }
    }

    fn two_apps() -> Pod {
        pod(serde_json::json!({"spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}}))
    }

    fn with_init(policy: &str) -> Pod {
        pod(serde_json::json!({"spec": {"restartPolicy": policy,
            "initContainers": [{"name": "i1", "image": "busybox"}, {"name": "side", "image": "busybox", "restartPolicy": "Always"}, {"name": "i2", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox"}]}}))
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_all_app_containers() {
        let a = Case::new(two_apps(), vec![], vec![]).plan();
        assert_eq!(a.create_sandbox, Some(0));
        assert!(!a.kill_pod);
        assert_eq!(a.to_start, vec!["a", "b"]);
    }

    #[test]
    fn a_running_pod_needs_nothing() {
        let a = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Running, 0, 0)]).plan();
        assert!(a.is_noop(), "{a:?}");
        assert_eq!(a.sandbox_id.as_deref(), Some("sb"));
    }

    #[test]
    fn a_dead_sandbox_is_replaced_with_the_next_attempt() {
        let a = Case::new(two_apps(), vec![sandbox("sb", 0, false)], vec![container("a", Running, 0, 0), container("b", Exited, 0, 0)]).plan();
        assert!(a.kill_pod);
        assert_eq!(a.create_sandbox, Some(1));
        assert_eq!(a.to_start, vec!["a", "b"]);
    }

    #[test]
    fn never_pods_get_no_second_sandbox() {
        let mut p = two_apps();
        p.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let a = Case::new(p, vec![sandbox("sb", 0, false)], vec![container("a", Exited, 0, 0)]).plan();
        assert_eq!(a.create_sandbox, None);
        assert!(a.to_start.is_empty());
    }

    #[test]
    fn a_missing_container_is_started() {
        let a = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0)]).plan();
        assert_eq!(a.to_start, vec!["b"]);
        assert!(a.create_sandbox.is_none() && !a.kill_pod);
    }

    #[test]
    fn exited_containers_restart_by_policy() {
        for (policy, code, restarts) in [("Always", 0, true), ("Always", 1, true), ("OnFailure", 0, false), ("OnFailure", 2, true), ("Never", 1, false)] {
            let mut p = two_apps();
            p.spec.as_mut().unwrap().restart_policy = Some(policy.into());
            let a = Case::new(p, vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Exited, code, 0)]).plan();
            assert_eq!(a.to_start == vec!["b"], restarts, "{policy} {code}: {a:?}");
            assert!(!a.kill_pod);
        }
    }

    #[test]
    fn a_container_in_backoff_waits_with_crash_loop_back_off() {
        let mut case = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Exited, 1, 3)]);
        case.backoff = Some(BackoffWait { remaining: Duration::from_secs(7), delay: Duration::from_secs(20) });
        let a = case.plan();
        assert!(a.to_start.is_empty());
        assert_eq!(a.retry_after, Some(Duration::from_secs(7)));
        let w = &a.waiting["b"];
        assert_eq!(w.reason, "CrashLoopBackOff");
        assert_eq!(w.message, "back-off 20s restarting failed container=b pod=web_ns(u1)");
        assert!(!a.kill_pod, "a container in back-off keeps the pod");
    }

    #[test]
    fn all_done_stops_the_sandbox() {
        let mut p = two_apps();
        p.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let a = Case::new(p.clone(), vec![sandbox("sb", 0, true)], vec![container("a", Exited, 0, 0), container("b", Exited, 0, 0)]).plan();
        assert!(a.kill_pod);
        assert!(a.to_start.is_empty());
        // Afterwards: no new sandbox for a pod that succeeded.
        let a = Case::new(p, vec![sandbox("sb", 0, false)], vec![container("a", Exited, 0, 0), container("b", Exited, 0, 0)]).plan();
        assert!(a.is_noop(), "{a:?}");
    }

    #[test]
    fn a_changed_spec_hash_restarts_the_container() {
        let mut case = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Running, 0, 0)]);
        case.hashes.insert("b".into(), "new".into());
        let a = case.plan();
        assert_eq!(a.to_kill, vec![KillAction { container_id: "b-0".into(), name: "b".into(), reason: KillReason::SpecChanged }]);
        assert_eq!(a.to_start, vec!["b"]);
    }

    #[test]
    fn a_failed_liveness_probe_restarts_only_when_the_container_has_one() {
        let mut case = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Running, 0, 0)]);
        case.probes.insert("a".into(), ProbeState { liveness_failed: true, ..Default::default() });
        assert!(case.plan().is_noop());
        case.pod.spec.as_mut().unwrap().containers[0].liveness_probe = Some(Default::default());
        let a = case.plan();
        assert_eq!(a.to_kill[0].reason, KillReason::LivenessFailed);
        assert_eq!(a.to_start, vec!["a"]);
    }

    #[test]
    fn containers_not_in_the_spec_are_killed() {
        let a = Case::new(two_apps(), vec![sandbox("sb", 0, true)], vec![container("a", Running, 0, 0), container("b", Running, 0, 0), container("old", Running, 0, 0)]).plan();
        assert_eq!(a.to_kill.len(), 1);
        assert_eq!((a.to_kill[0].name.as_str(), a.to_kill[0].reason), ("old", KillReason::NotInSpec));
    }

    #[test]
    fn init_containers_run_one_at_a_time() {
        let sb = || vec![sandbox("sb", 0, true)];
        let a = Case::new(with_init("Always"), vec![], vec![]).plan();
        assert_eq!((a.create_sandbox, a.init_to_start.clone()), (Some(0), vec!["i1".to_string()]));
        assert!(a.to_start.is_empty());
        // i1 running: wait.
        assert!(Case::new(with_init("Always"), sb(), vec![container("i1", Running, 0, 0)]).plan().is_noop());
        // i1 done: the sidecar next.
        let a = Case::new(with_init("Always"), sb(), vec![container("i1", Exited, 0, 0)]).plan();
        assert_eq!(a.init_to_start, vec!["side"]);
        // Sidecar running (no startup probe): i2 starts while it keeps running.
        let a = Case::new(with_init("Always"), sb(), vec![container("i1", Exited, 0, 0), container("side", Running, 0, 0)]).plan();
        assert_eq!(a.init_to_start, vec!["i2"]);
        // i2 done: the app container.
        let a = Case::new(with_init("Always"), sb(), vec![container("i1", Exited, 0, 0), container("side", Running, 0, 0), container("i2", Exited, 0, 0)]).plan();
        assert_eq!((a.init_to_start.len(), a.to_start.clone()), (0, vec!["a".to_string()]));
    }

    #[test]
    fn a_sidecar_with_a_startup_probe_holds_the_next_init_container_until_started() {
        let mut p = with_init("Always");
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[1].startup_probe = Some(Default::default());
        let mut case = Case::new(p, vec![sandbox("sb", 0, true)], vec![container("i1", Exited, 0, 0), container("side", Running, 0, 0)]);
        assert!(case.plan().is_noop());
        case.probes.insert("side".into(), ProbeState { started: true, ..Default::default() });
        assert_eq!(case.plan().init_to_start, vec!["i2"]);
    }

    #[test]
    fn a_failed_init_container_restarts_or_fails_the_pod() {
        let sb = || vec![sandbox("sb", 0, true)];
        let a = Case::new(with_init("OnFailure"), sb(), vec![container("i1", Exited, 1, 0)]).plan();
        assert_eq!(a.init_to_start, vec!["i1"]);
        assert!(!a.init_failed);
        let a = Case::new(with_init("Never"), sb(), vec![container("i1", Exited, 1, 0)]).plan();
        assert!(a.init_failed && a.kill_pod);
        assert!(a.init_to_start.is_empty() && a.to_start.is_empty());
    }

    #[test]
    fn an_exited_sidecar_restarts_even_under_never() {
        let cs = vec![container("i1", Exited, 0, 0), container("side", Exited, 0, 0), container("i2", Exited, 0, 0), container("a", Running, 0, 0)];
        let a = Case::new(with_init("Never"), vec![sandbox("sb", 0, true)], cs).plan();
        assert_eq!(a.init_to_start, vec!["side"]);
        assert!(a.to_start.is_empty() && !a.kill_pod);
    }

    #[test]
    fn sidecars_are_stopped_when_the_app_containers_are_done() {
        let cs = vec![container("i1", Exited, 0, 0), container("side", Running, 0, 0), container("i2", Exited, 0, 0), container("a", Exited, 0, 0)];
        let a = Case::new(with_init("Never"), vec![sandbox("sb", 0, true)], cs).plan();
        assert!(a.kill_pod);
        assert!(a.init_to_start.is_empty());
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
