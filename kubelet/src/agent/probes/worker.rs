//! One probe of one container: waits the initial delay, then probes every period and
//! applies the thresholds, recording the state in the manager's table and telling the
//! agent through its events.

use std::sync::Weak;
use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::action::{self, ProbeResult, Target};
use super::manager::{Key, Shared};
use super::{PodRef, ProbeEvent, ProbeKind};

pub(super) struct WorkerSpec {
    pub key: Key,
    pub pod: PodRef,
    pub probe: Probe,
    pub target: Target,
    /// The container has a startup probe: liveness and readiness wait for it.
    pub gated: bool,
    /// How long the container had been running when the worker started (counts toward the
    /// initial delay).
    pub running_for: Duration,
}

/// The probe's timing and thresholds with the API's defaults; liveness and startup probes
/// always need just one success.
pub(super) struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe, kind: ProbeKind) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| Duration::from_secs(v.unwrap_or(default).max(min) as u64);
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            success_threshold: if kind == ProbeKind::Readiness { count(probe.success_threshold, 1) } else { 1 },
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

pub(super) async fn run(shared: Weak<Shared>, spec: WorkerSpec) {
    let kind = spec.key.2;
    let timing = Timing::of(&spec.probe, kind);
    let container = spec.key.1.clone();
    let container_id = spec.target.container_id.clone();
    tokio::time::sleep(timing.initial_delay.saturating_sub(spec.running_for)).await;
    // The current streak: the result and how many times in a row it came.
    let mut last: Option<bool> = None;
    let mut streak = 0u32;
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let waiting_for_startup = spec.gated && kind != ProbeKind::Startup && !shared.started(&spec.key.0, &container);
        if !waiting_for_startup {
            let result = action::run(&spec.probe, &spec.target, shared.exec.as_ref()).await;
            let ok = match result {
                ProbeResult::Success => Some(true),
                ProbeResult::Failure(output) => {
                    let message = format!("{} probe failed: {output}", kind.as_str());
                    shared.send(ProbeEvent::Unhealthy {
                        pod: spec.pod.clone(),
                        container: container.clone(),
                        container_id: container_id.clone(),
                        kind,
                        message,
                    });
                    Some(false)
                }
                ProbeResult::Error(e) => {
                    let message = format!("{} probe errored: {e}", kind.as_str());
                    shared.send(ProbeEvent::Unhealthy {
                        pod: spec.pod.clone(),
                        container: container.clone(),
                        container_id: container_id.clone(),
                        kind,
                        message,
                    });
                    None
                }
            };
            if let Some(ok) = ok {
                if last == Some(ok) {
                    streak = streak.saturating_add(1);
                } else {
                    last = Some(ok);
                    streak = 1;
                }
                let threshold = if ok { timing.success_threshold } else { timing.failure_threshold };
                if streak >= threshold {
                    if !shared.set_result(&spec.key, &container_id, ok) {
                        return; // replaced by a newer container's worker
                    }
                    if !ok && kind != ProbeKind::Readiness {
                        shared.send(ProbeEvent::Kill {
                            pod: spec.pod.clone(),
                            container: container.clone(),
                            container_id: container_id.clone(),
                            kind,
                            message: format!(
                                "Container {container} failed {} probe, will be restarted",
                                kind.as_str().to_lowercase()
                            ),
                            grace_period: spec.probe.termination_grace_period_seconds,
                        });
                        // On hold until the container is replaced.
                        return;
                    }
                    if ok && kind == ProbeKind::Startup {
                        return;
                    }
                }
            }
        }
        drop(shared);
        tokio::time::sleep(timing.period).await;
    }
}
