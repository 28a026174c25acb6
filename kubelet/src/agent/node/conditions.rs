//! The Node's conditions (MemoryPressure, DiskPressure, PIDPressure, Ready) from what was
//! observed, with upstream's reasons and messages; a condition's lastTransitionTime moves
//! only when its status changes. Pure.

use std::time::Duration;

use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::machine::MachineUsage;
use super::object::{EVICTION_HARD_MEMORY_BYTES, EVICTION_HARD_NODEFS_PERCENT};

/// How long the sync loop may go without a pass before the node is not ready (upstream's
/// PLEG relist threshold).
pub const LOOP_THRESHOLD: Duration = Duration::from_secs(180);

/// One of the CRI's runtime conditions (RuntimeReady, NetworkReady).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCondition {
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

impl RuntimeCondition {
    pub fn ready() -> RuntimeCondition {
        RuntimeCondition { ready: true, reason: String::new(), message: String::new() }
    }
}

/// The CRI runtime's Status answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub runtime: RuntimeCondition,
    pub network: RuntimeCondition,
}

/// What the conditions are computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// None before the runtime was first asked; Err when asking failed.
    pub runtime: Option<Result<RuntimeStatus, String>>,
    /// None when the machine could not be read: no pressure is claimed then.
    pub usage: Option<MachineUsage>,
    /// How long ago the pod sync loop last completed a pass; None while it has not started.
    pub loop_idle: Option<Duration>,
}

const MEMORY: &str = "MemoryPressure";
const DISK: &str = "DiskPressure";
const PID: &str = "PIDPressure";
const READY: &str = "Ready";

/// The conditions in upstream's order, with times carried over from `previous`.
pub fn conditions(previous: &[NodeCondition], observed: &Observed, now: Timestamp) -> Vec<NodeCondition> {
    let usage = observed.usage;
    let memory_pressure = usage.is_some_and(|u| u.memory_available_bytes < EVICTION_HARD_MEMORY_BYTES);
    let disk_pressure = usage.is_some_and(|u| u.fs_capacity_bytes > 0 && u.fs_available_bytes * 100 < u.fs_capacity_bytes * EVICTION_HARD_NODEFS_PERCENT);
    let not_ready = not_ready_reasons(observed);
    let computed = [
        match memory_pressure {
            true => (MEMORY, true, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available".to_string()),
            false => (MEMORY, false, "KubeletHasSufficientMemory", "kubelet has sufficient memory available".to_string()),
        },
        match disk_pressure {
            true => (DISK, true, "KubeletHasDiskPressure", "kubelet has disk pressure".to_string()),
            false => (DISK, false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure".to_string()),
        },
        (PID, false, "KubeletHasSufficientPID", "kubelet has sufficient PID available".to_string()),
        match not_ready.is_empty() {
            true => (READY, true, "KubeletReady", "kubelet is posting ready status".to_string()),
            false => (READY, false, "KubeletNotReady", not_ready.join(", ")),
        },
    ];
    computed
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let status = if status { "True" } else { "False" }.to_string();
            let transition = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: type_.to_string(),
                status,
                reason: Some(reason.to_string()),
                message: Some(message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(transition),
            }
        })
        .collect()
}

fn not_ready_reasons(observed: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    match &observed.runtime {
        None => out.push("container runtime status check may not have completed yet".to_string()),
        Some(Err(e)) => out.push(format!("container runtime is down: {e}")),
        Some(Ok(s)) => {
            if !s.runtime.ready {
                out.push(format!("container runtime not ready: RuntimeReady=false reason:{} message:{}", s.runtime.reason, s.runtime.message));
            }
            if !s.network.ready {
                out.push(format!("container runtime network not ready: NetworkReady=false reason:{} message:{}", s.network.reason, s.network.message));
            }
        }
    }
    if let Some(idle) = observed.loop_idle.filter(|idle| *idle > LOOP_THRESHOLD) {
        out.push(format!("PLEG is not healthy: pleg was last seen active {} ago; threshold is {}", go_duration(idle), go_duration(LOOP_THRESHOLD)));
    }
    out
}

/// A duration as Go prints one: `3m0s`, `3m12.5s`, `45s`.
pub fn go_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, ms) = (rest / 60_000, rest % 60_000);
    let secs = if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{}", ms as f64 / 1000.0) + "s" };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// Whether two condition lists say the same, heartbeats aside.
pub fn same_ignoring_heartbeat(a: &[NodeCondition], b: &[NodeCondition]) -> bool {
    let strip = |c: &[NodeCondition]| c.iter().map(|c| NodeCondition { last_heartbeat_time: None, ..c.clone() }).collect::<Vec<_>>();
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observed {
        Observed {
            runtime: Some(Ok(RuntimeStatus { runtime: RuntimeCondition::ready(), network: RuntimeCondition::ready() })),
            usage: Some(MachineUsage { memory_available_bytes: 1 << 30, fs_capacity_bytes: 100, fs_available_bytes: 50 }),
            loop_idle: Some(Duration::from_secs(1)),
        }
    }

    fn find<'a>(c: &'a [NodeCondition], t: &str) -> &'a NodeCondition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_healthy_node_is_ready_without_pressure() {
        let now = Timestamp::now();
        let c = conditions(&[], &healthy(), now);
        assert_eq!(c.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), [MEMORY, DISK, PID, READY]);
        let ready = find(&c, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(ready.message.as_deref(), Some("kubelet is posting ready status"));
        assert_eq!(find(&c, MEMORY).reason.as_deref(), Some("KubeletHasSufficientMemory"));
        assert_eq!(find(&c, DISK).reason.as_deref(), Some("KubeletHasNoDiskPressure"));
        assert_eq!(find(&c, PID).reason.as_deref(), Some("KubeletHasSufficientPID"));
    }

    #[test]
    fn not_ready_says_why() {
        let now = Timestamp::now();
        let mut o = healthy();
        o.runtime = None;
        assert_eq!(find(&conditions(&[], &o, now), READY).message.as_deref(), Some("container runtime status check may not have completed yet"));
        o.runtime = Some(Ok(RuntimeStatus {
            runtime: RuntimeCondition::ready(),
            network: RuntimeCondition { ready: false, reason: "NetworkPluginNotReady".into(), message: "cni plugin not initialized".into() },
        }));
        o.loop_idle = Some(Duration::from_millis(192_500));
        let ready = conditions(&[], &o, now).into_iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni plugin not initialized, PLEG is not healthy: pleg was last seen active 3m12.5s ago; threshold is 3m0s")
        );
    }

    #[test]
    fn pressure_follows_the_thresholds() {
        let mut o = healthy();
        o.usage = Some(MachineUsage { memory_available_bytes: 99 << 20, fs_capacity_bytes: 1000, fs_available_bytes: 99 });
        let c = conditions(&[], &o, Timestamp::now());
        assert_eq!((find(&c, MEMORY).status.as_str(), find(&c, MEMORY).reason.as_deref()), ("True", Some("KubeletHasInsufficientMemory")));
        assert_eq!((find(&c, DISK).status.as_str(), find(&c, DISK).reason.as_deref()), ("True", Some("KubeletHasDiskPressure")));
    }

    #[test]
    fn transitions_move_only_when_the_status_changes() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = conditions(&[], &healthy(), t0);
        let second = conditions(&first, &healthy(), t1);
        let ready = find(&second, READY);
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        assert!(same_ignoring_heartbeat(&first, &second));
        let mut o = healthy();
        o.runtime = Some(Err("connection refused".into()));
        let third = conditions(&second, &o, t1);
        assert_eq!(find(&third, READY).last_transition_time, Some(Time(t1)));
        assert_eq!(find(&third, MEMORY).last_transition_time, Some(Time(t0)));
        assert!(!same_ignoring_heartbeat(&second, &third));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(180)), "3m0s");
        assert_eq!(go_duration(Duration::from_secs(45)), "45s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
