//! A pod's status, as a pure function of its spec, what the runtime has for it, the probe
//! results and the reasons its containers wait for: phase (upstream rules, including the
//! restartPolicy), the five conditions, container and init-container statuses with state,
//! lastState and restart count, IPs and start time.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{is_sidecar, restart_policy, ProbeState, Waiting};
use super::runtime_state::{ContainerInfo, ContainerState, RuntimePod};

pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a RuntimePod,
    /// The CRI runtime's name (`containerd`, ...): container IDs are `<name>://<id>`.
    pub runtime_name: &'a str,
    pub probes: &'a dyn Fn(&ContainerInfo) -> ProbeState,
    /// Why containers wait (CrashLoopBackOff from the plan, ErrImagePull and others from the
    /// last sync), by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// The node's IPs (hostIP, and podIPs of host-network pods).
    pub host_ips: &'a [String],
    /// The status computed before (keeps startTime and condition transition times).
    pub previous: Option<&'a PodStatus>,
    pub qos_class: Option<String>,
    pub now: Time,
}

/// Nanoseconds since the epoch (CRI) as a Kubernetes time, to the second; None for 0.
pub fn time_from_nanos(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(k8s_openapi::jiff::Timestamp::from_second(nanos / 1_000_000_000).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)))
}

fn terminated(c: &ContainerInfo, runtime_name: &str) -> K8sState {
    let reason = match c.reason.as_str() {
        "" if c.exit_code == 0 => "Completed",
        "" => "Error",
        r => r,
    };
    K8sState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("{runtime_name}://{}", c.id)),
            exit_code: c.exit_code,
            reason: Some(reason.to_string()),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time_from_nanos(c.started_at),
            finished_at: time_from_nanos(c.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting_state(w: &Waiting) -> K8sState {
    K8sState { waiting: Some(ContainerStateWaiting { reason: Some(w.reason.clone()), message: (!w.message.is_empty()).then(|| w.message.clone()) }), ..Default::default() }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    App,
}

fn container_status(input: &StatusInput<'_>, spec: &Container, kind: Kind, initialized: bool) -> ContainerStatus {
    let rt = input.runtime;
    let latest = rt.latest(&spec.name);
    let previous = rt.previous(&spec.name).filter(|c| c.state == ContainerState::Exited).map(|c| terminated(c, input.runtime_name));
    let default_waiting = match kind {
        Kind::Init => Waiting::new("PodInitializing", ""),
        Kind::App if !initialized => Waiting::new("PodInitializing", ""),
        Kind::App => Waiting::new("ContainerCreating", ""),
    };
    let reason = input.waiting.get(&spec.name);
    let (state, last_state) = match latest {
        None => (waiting_state(reason.unwrap_or(&default_waiting)), None),
        Some(c) => match c.state {
            ContainerState::Running => (
                K8sState { running: Some(ContainerStateRunning { started_at: time_from_nanos(c.started_at) }), ..Default::default() },
                previous,
            ),
            ContainerState::Exited => match reason {
                // Restarting (or failing to): the exit becomes the last state.
                Some(w) => (waiting_state(w), Some(terminated(c, input.runtime_name))),
                None => (terminated(c, input.runtime_name), previous),
            },
            ContainerState::Created | ContainerState::Unknown => {
                (waiting_state(reason.unwrap_or(&Waiting::new("ContainerCreating", ""))), previous)
            }
        },
    };
    let running = latest.is_some_and(|c| c.is_running());
    let probe = latest.map(|c| (input.probes)(c)).unwrap_or_default();
    let started = running && (spec.startup_probe.is_none() || probe.started);
    let completed = latest.is_some_and(|c| c.state == ContainerState::Exited && c.exit_code == 0);
    let ready = if kind == Kind::Init && !is_sidecar(spec) {
        completed && state.terminated.is_some()
    } else {
        started && (spec.readiness_probe.is_none() || probe.ready)
    };
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|c| format!("{}://{}", input.runtime_name, c.id)),
        ready,
        started: Some(started),
        restart_count: latest.map(|c| c.restart_count as i32).unwrap_or(0),
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

fn exit_code(state: &Option<K8sState>) -> Option<i32> {
    state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code)
}

/// Init containers not done: regular ones not completed, sidecars not started.
fn incomplete_init(init: &[Container], statuses: &[ContainerStatus]) -> Vec<String> {
    init.iter()
        .zip(statuses)
        .filter(|(spec, st)| if is_sidecar(spec) { st.started != Some(true) } else { exit_code(&st.state) != Some(0) })
        .map(|(spec, _)| spec.name.clone())
        .collect()
}

/// The upstream kubelet's phase rules.
fn phase(pod: &Pod, init: &[Container], init_statuses: &[ContainerStatus], statuses: &[ContainerStatus], app_ran: bool) -> &'static str {
    let policy = restart_policy(pod);
    let (mut pending_init, mut failed_init) = (0, 0);
    for (spec, st) in init.iter().zip(init_statuses) {
        if is_sidecar(spec) {
            if st.started != Some(true) {
                pending_init += 1;
            }
            continue;
        }
        let state = st.state.as_ref();
        if let Some(code) = exit_code(&st.state) {
            if code != 0 {
                failed_init += 1;
            }
        } else if state.is_some_and(|s| s.waiting.is_some()) && exit_code(&st.last_state).is_some_and(|c| c != 0) {
            failed_init += 1;
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for st in statuses {
        let state = st.state.as_ref();
        if state.is_some_and(|s| s.running.is_some()) {
            running += 1;
        } else if let Some(code) = exit_code(&st.state) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if let Some(code) = exit_code(&st.last_state) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if (pending_init > 0 || failed_init > 0) && !app_ran {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(input: &StatusInput<'_>, type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let before = input.previous.and_then(|p| p.conditions.as_ref()).and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let last_transition_time = match before {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(input.now.clone()),
    };
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time,
        ..Default::default()
    }
}

fn name_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// The pod's status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let rt = input.runtime;
    let empty = Vec::new();
    let spec = pod.spec.as_ref();
    let apps = spec.map(|s| &s.containers).unwrap_or(&empty);
    let init = spec.and_then(|s| s.init_containers.as_ref()).unwrap_or(&empty);
    let sandbox = rt.sandbox();

    // An app container that ran in the current sandbox means initialization finished.
    let app_ran = apps.iter().any(|c| rt.latest(&c.name).is_some_and(|i| Some(i.sandbox_id.as_str()) == sandbox.map(|s| s.id.as_str())));
    let init_statuses: Vec<ContainerStatus> = init.iter().map(|c| container_status(input, c, Kind::Init, true)).collect();
    let incomplete = incomplete_init(init, &init_statuses);
    let initialized = incomplete.is_empty() || app_ran;
    let statuses: Vec<ContainerStatus> = apps.iter().map(|c| container_status(input, c, Kind::App, initialized)).collect();

    let previous_phase = input.previous.and_then(|p| p.phase.as_deref());
    let phase = match previous_phase {
        // Terminal phases never change.
        Some(p @ ("Succeeded" | "Failed")) => p.to_string(),
        _ => phase(pod, init, &init_statuses, &statuses, app_ran).to_string(),
    };

    let mut unready: Vec<String> = init.iter().zip(&init_statuses).filter(|(c, st)| is_sidecar(c) && !st.ready).map(|(c, _)| c.name.clone()).collect();
    unready.extend(statuses.iter().filter(|s| !s.ready).map(|s| s.name.clone()));
    let done = phase == "Succeeded" || phase == "Failed";
    let containers_ready = unready.is_empty() && !done;
    let (ready_reason, ready_message) =
        if done { ("PodCompleted", None) } else { ("ContainersNotReady", Some(format!("containers with unready status: {}", name_list(&unready)))) };
    let gates_ok = spec.and_then(|s| s.readiness_gates.as_ref()).into_iter().flatten().all(|gate| {
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().any(|c| c.type_ == gate.condition_type && c.status == "True")
    });
    let sandbox_ready = sandbox.is_some_and(|s| s.ready);

    let conditions = vec![
        condition(input, "PodReadyToStartContainers", sandbox_ready, None, None),
        condition(input, "Initialized", initialized, Some("ContainersNotInitialized"), Some(format!("containers with incomplete status: {}", name_list(&incomplete)))),
        condition(input, "Ready", containers_ready && gates_ok, Some(ready_reason), ready_message.clone()),
        condition(input, "ContainersReady", containers_ready, Some(ready_reason), ready_message),
        condition(input, "PodScheduled", true, None, None),
    ];

    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let pod_ips: Vec<String> = if host_network { input.host_ips.to_vec() } else { sandbox.filter(|s| s.ready).map(|s| s.ips.clone()).unwrap_or_default() };
    // Keep the last known IP while the pod is stopped (as the kubelet does).
    let pod_ips = if pod_ips.is_empty() {
        input.previous.and_then(|p| p.pod_ips.as_ref()).map(|ips| ips.iter().map(|i| i.ip.clone()).collect()).unwrap_or_default()
    } else {
        pod_ips
    };
    let start_time = input.previous.and_then(|p| p.start_time.clone()).or_else(|| Some(input.now.clone()));

    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| input.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty()).then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time,
        qos_class: input.qos_class.clone().or_else(|| input.previous.and_then(|p| p.qos_class.clone())),
        container_statuses: Some(statuses),
        init_container_statuses: (!init.is_empty()).then_some(init_statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::runtime_state::SandboxInfo;
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}, "spec": spec})).unwrap()
    }

    const SEC: i64 = 1_000_000_000;

    fn c(name: &str, state: ContainerState, code: i32, restarts: u32) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}{restarts}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            state,
            hash: "h".into(),
            restart_count: restarts,
            created_at: (100 + restarts as i64) * SEC,
            started_at: (100 + restarts as i64) * SEC,
            finished_at: if state == ContainerState::Exited { (200 + restarts as i64) * SEC } else { 0 },
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            annotations: HashMap::new(),
        }
    }

    struct Case {
        pod: Pod,
        rt: RuntimePod,
        probes: HashMap<String, ProbeState>,
        waiting: HashMap<String, Waiting>,
        previous: Option<PodStatus>,
    }

    impl Case {
        fn new(pod: Pod, containers: Vec<ContainerInfo>) -> Self {
            let mut rt = RuntimePod { sandboxes: vec![SandboxInfo { id: "sb".into(), attempt: 0, ready: true, created_at: 1, ips: vec!["10.88.0.5".into()] }], containers };
            rt.sort();
            Case { pod, rt, probes: HashMap::new(), waiting: HashMap::new(), previous: None }
        }
        fn status(&self) -> PodStatus {
            let probes = |c: &ContainerInfo| self.probes.get(&c.name).copied().unwrap_or_default();
            let now = time_from_nanos(1000 * SEC).unwrap();
            let hosts = vec!["192.168.1.10".to_string()];
            pod_status(&StatusInput {
                pod: &self.pod,
                runtime: &self.rt,
                runtime_name: "containerd",
                probes: &probes,
                waiting: &self.waiting,
                host_ips: &hosts,
                previous: self.previous.as_ref(),
                qos_class: Some("BestEffort".into()),
                now,
            })
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    fn one(policy: &str) -> Pod {
        pod(serde_json::json!({"restartPolicy": policy, "containers": [{"name": "app", "image": "busybox"}]}))
    }

    use ContainerState::{Exited, Running};

    #[test]
    fn a_new_pod_is_pending_with_container_creating() {
        let mut case = Case::new(one("Always"), vec![]);
        case.rt.sandboxes.clear();
        let s = case.status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let st = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(st.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        assert_eq!(cond(&s, "PodScheduled").status, "True");
        assert!(s.pod_ip.is_none());
        assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    }

    #[test]
    fn a_running_pod_is_ready() {
        let s = Case::new(one("Always"), vec![c("app", Running, 0, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let st = &s.container_statuses.as_ref().unwrap()[0];
        assert!(st.ready);
        assert_eq!(st.started, Some(true));
        assert_eq!(st.container_id.as_deref(), Some("containerd://app0"));
        assert_eq!(st.image_id, "sha256:abc");
        assert!(st.state.as_ref().unwrap().running.is_some());
        for t in ["Ready", "ContainersReady", "Initialized", "PodReadyToStartContainers"] {
            assert_eq!(cond(&s, t).status, "True", "{t}");
        }
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert!(s.start_time.is_some());
    }

    #[test]
    fn readiness_and_startup_probes_gate_ready() {
        let mut p = one("Always");
        p.spec.as_mut().unwrap().containers[0].readiness_probe = Some(Default::default());
        let mut case = Case::new(p, vec![c("app", Running, 0, 0)]);
        let s = case.status();
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").message.as_deref(), Some("containers with unready status: [app]"));
        assert_eq!(cond(&s, "ContainersReady").reason.as_deref(), Some("ContainersNotReady"));
        case.probes.insert("app".into(), ProbeState { ready: true, ..Default::default() });
        assert_eq!(cond(&case.status(), "Ready").status, "True");
        case.pod.spec.as_mut().unwrap().containers[0].startup_probe = Some(Default::default());
        let s = case.status();
        assert_eq!(s.container_statuses.as_ref().unwrap()[0].started, Some(false));
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_last_exit() {
        let mut case = Case::new(one("Always"), vec![c("app", Exited, 1, 2), c("app", Exited, 1, 1)]);
        case.waiting.insert("app".into(), Waiting::new("CrashLoopBackOff", "back-off 20s restarting failed container=app pod=web_ns(u1)"));
        let s = case.status();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let st = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(st.restart_count, 2);
        let w = st.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = st.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(last.finished_at, time_from_nanos(202 * SEC));
    }

    #[test]
    fn a_restarted_container_shows_its_previous_exit() {
        let mut oom = c("app", Exited, 137, 0);
        oom.reason = "OOMKilled".into();
        let s = Case::new(one("Always"), vec![c("app", Running, 0, 1), oom]).status();
        let st = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(st.restart_count, 1);
        assert_eq!(st.last_state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("OOMKilled"));
    }

    #[test]
    fn phases_of_finished_pods_follow_the_restart_policy() {
        let two = |policy: &str| pod(serde_json::json!({"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]}));
        let cases = [
            ("Never", 0, 0, "Succeeded"),
            ("Never", 0, 1, "Failed"),
            ("OnFailure", 0, 0, "Succeeded"),
            ("OnFailure", 0, 1, "Running"),
            ("Always", 0, 0, "Running"),
        ];
        for (policy, a, b, want) in cases {
            let s = Case::new(two(policy), vec![c("a", Exited, a, 0), c("b", Exited, b, 0)]).status();
            assert_eq!(s.phase.as_deref(), Some(want), "{policy} {a} {b}");
        }
        let s = Case::new(two("Never"), vec![c("a", Exited, 0, 0), c("b", Running, 0, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let s = Case::new(two("Never"), vec![c("a", Exited, 0, 0), c("b", Exited, 0, 0)]).status();
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let s = Case::new(two("Never"), vec![c("a", Exited, 0, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Pending"), "b still waiting");
    }

    #[test]
    fn terminal_phases_stick() {
        let mut case = Case::new(one("Always"), vec![c("app", Running, 0, 0)]);
        case.previous = Some(PodStatus { phase: Some("Failed".into()), ..Default::default() });
        assert_eq!(case.status().phase.as_deref(), Some("Failed"));
    }

    fn with_init(policy: &str) -> Pod {
        pod(serde_json::json!({"restartPolicy": policy,
            "initContainers": [{"name": "i1", "image": "busybox"}, {"name": "side", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "busybox"}]}))
    }

    #[test]
    fn initializing_pods() {
        let s = Case::new(with_init("Always"), vec![c("i1", Running, 0, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [i1 side]"));
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("PodInitializing"));
        let side = &s.init_container_statuses.as_ref().unwrap()[1];
        assert_eq!(side.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("PodInitializing"));

        let s = Case::new(with_init("Always"), vec![c("i1", Exited, 0, 0), c("side", Running, 0, 0), c("app", Running, 0, 0)]).status();
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let inits = s.init_container_statuses.as_ref().unwrap();
        assert!(inits[0].ready, "a completed init container is ready");
        assert!(inits[1].ready && inits[1].started == Some(true));
        assert_eq!(cond(&s, "Ready").status, "True");
    }

    #[test]
    fn a_failed_init_container_fails_a_never_pod() {
        let s = Case::new(with_init("Never"), vec![c("i1", Exited, 3, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = Case::new(with_init("OnFailure"), vec![c("i1", Exited, 3, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn transition_times_stay_while_the_status_stays() {
        let mut case = Case::new(one("Always"), vec![c("app", Running, 0, 0)]);
        let first = case.status();
        let mut prev = first.clone();
        let early = time_from_nanos(5 * SEC);
        for c in prev.conditions.as_mut().unwrap() {
            c.last_transition_time = early.clone();
        }
        prev.start_time = early.clone();
        case.previous = Some(prev);
        let s = case.status();
        assert_eq!(cond(&s, "Ready").last_transition_time, early);
        assert_eq!(s.start_time, early);
        case.rt.containers[0].state = Exited;
        case.rt.containers[0].exit_code = 1;
        let s = case.status();
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(cond(&s, "Ready").last_transition_time, time_from_nanos(1000 * SEC));
        assert_eq!(cond(&s, "PodScheduled").last_transition_time, early);
    }

    #[test]
    fn image_pull_errors_show_as_waiting() {
        let mut case = Case::new(one("Always"), vec![]);
        case.waiting.insert("app".into(), Waiting::new("ErrImagePull", "pull failed"));
        let s = case.status();
        let w = s.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().waiting.unwrap();
        assert_eq!((w.reason.as_deref(), w.message.as_deref()), (Some("ErrImagePull"), Some("pull failed")));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }
}
