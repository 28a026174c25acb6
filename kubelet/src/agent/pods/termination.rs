//! Stopping containers and pods gracefully, and removing what is dead. A container is
//! stopped with its preStop hook (through [`PodDeps`]) and then StopContainer with what is
//! left of the grace period (the pod's deletionGracePeriodSeconds if set, else
//! terminationGracePeriodSeconds, default 30). A pod stops its app containers together,
//! then its sidecars one by one in reverse order, then its sandbox.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::cri_config::labels;
use super::deps::{EventSink, EventType, PodDeps};
use super::plan::is_sidecar;
use super::runtime_state::{ContainerInfo, ContainerState, RuntimePod};
use crate::agent::runtime::{PodRuntime, RuntimeError};

/// Upstream's floor for the time between SIGTERM and SIGKILL once a grace period is given.
const MIN_GRACE_SECONDS: i64 = 2;

/// The grace period for stopping `pod`, in seconds.
pub fn grace_period(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0)
}

/// The grace period recorded on a container at creation (for pods the kubelet no longer
/// has the spec of).
pub fn recorded_grace_period(c: &ContainerInfo) -> i64 {
    c.annotations.get(labels::TERMINATION_GRACE_PERIOD).and_then(|v| v.parse().ok()).unwrap_or(30)
}

fn spec_of<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

fn ignore_not_found(r: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}

pub struct Terminator<'a> {
    pub runtime: &'a dyn PodRuntime,
    pub deps: &'a dyn PodDeps,
    pub events: &'a dyn EventSink,
}

impl Terminator<'_> {
    /// Stops the container `c` within `grace` seconds (0: kill at once, no preStop hook).
    /// `message` is the Killing event's message (None: "Stopping container <name>").
    pub async fn stop_container(&self, pod: Option<&Pod>, c: &ContainerInfo, grace: i64, message: Option<String>) -> Result<(), RuntimeError> {
        let started = Instant::now();
        if let Some(pod) = pod {
            let message = message.unwrap_or_else(|| format!("Stopping container {}", c.name));
            self.events.event(pod, Some(&c.name), EventType::Normal, "Killing", &message);
            let hook = spec_of(pod, &c.name).filter(|s| s.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()));
            if let (Some(spec), true) = (hook, grace > 0) {
                let budget = Duration::from_secs(grace as u64);
                // A hook that outlives the grace period is abandoned: SIGTERM goes out anyway.
                let _ = tokio::time::timeout(budget, self.deps.pre_stop(pod, spec, &c.id, budget)).await;
            }
        }
        let timeout = if grace == 0 { 0 } else { (grace - started.elapsed().as_secs() as i64).max(MIN_GRACE_SECONDS) };
        ignore_not_found(self.runtime.stop_container(&c.id, timeout).await)
    }

    /// Stops every running container of the pod and its ready sandboxes. `pod` is None for
    /// pods the kubelet has no spec of (orphans): each container's recorded grace applies.
    pub async fn kill_pod(&self, pod: Option<&Pod>, rt: &RuntimePod, grace: Option<i64>) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let sidecar_names: Vec<&str> = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.init_containers.as_ref())
            .map(|init| init.iter().filter(|c| is_sidecar(c)).map(|c| c.name.as_str()).collect())
            .unwrap_or_default();
        let grace_of = |c: &ContainerInfo| grace.unwrap_or_else(|| recorded_grace_period(c));
        let (sidecars, others): (Vec<&ContainerInfo>, Vec<&ContainerInfo>) = rt.running().partition(|c| sidecar_names.contains(&c.name.as_str()));
        let mut result = Ok(());
        for r in join_all(others.iter().map(|c| self.stop_container(pod, c, grace_of(c), None))).await {
            result = result.and(r);
        }
        // Sidecars last, in reverse order of the spec, with what is left of the grace period.
        for name in sidecar_names.iter().rev() {
            for c in sidecars.iter().filter(|c| c.name == *name) {
                let left = match grace_of(c) {
                    0 => 0,
                    g => (g - started.elapsed().as_secs() as i64).max(MIN_GRACE_SECONDS),
                };
                result = result.and(self.stop_container(pod, c, left, None).await);
            }
        }
        for sb in rt.sandboxes.iter().filter(|s| s.ready) {
            result = result.and(ignore_not_found(self.runtime.stop_pod_sandbox(&sb.id).await));
        }
        result
    }
}

/// Removes dead containers but the newest exited one of each name (for `kubectl logs
/// --previous` and restart counts) and the newest container of each name whatever its state,
/// then old sandboxes left without containers.
pub async fn remove_dead(runtime: &dyn PodRuntime, rt: &RuntimePod) -> Result<(), RuntimeError> {
    let mut seen: Vec<&str> = Vec::new();
    let mut kept_exited: Vec<&str> = Vec::new();
    let mut remaining: Vec<&ContainerInfo> = Vec::new();
    // `containers` is newest first.
    for c in &rt.containers {
        let newest = !seen.contains(&c.name.as_str());
        seen.push(&c.name);
        let keep = match c.state {
            ContainerState::Running => true,
            ContainerState::Exited if !kept_exited.contains(&c.name.as_str()) => {
                kept_exited.push(&c.name);
                true
            }
            ContainerState::Exited => false,
            // Created but never started, or unknown: leftovers of failed starts.
            ContainerState::Created | ContainerState::Unknown => newest,
        };
        if keep {
            remaining.push(c);
        } else {
            ignore_not_found(runtime.remove_container(&c.id).await)?;
        }
    }
    for sb in rt.sandboxes.iter().skip(1).filter(|s| !s.ready) {
        if !remaining.iter().any(|c| c.sandbox_id == sb.id) {
            ignore_not_found(runtime.remove_pod_sandbox(&sb.id).await)?;
        }
    }
    Ok(())
}

/// Removes everything of a pod that is gone (call after [`Terminator::kill_pod`]).
pub async fn remove_all(runtime: &dyn PodRuntime, rt: &RuntimePod) -> Result<(), RuntimeError> {
    for c in &rt.containers {
        ignore_not_found(runtime.remove_container(&c.id).await)?;
    }
    for sb in &rt.sandboxes {
        ignore_not_found(runtime.stop_pod_sandbox(&sb.id).await)?;
        ignore_not_found(runtime.remove_pod_sandbox(&sb.id).await)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        assert_eq!(grace_period(&pod), 30);
        pod.spec.as_mut().unwrap().termination_grace_period_seconds = Some(5);
        assert_eq!(grace_period(&pod), 5);
        pod.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&pod), 0);
    }

    #[tokio::test]
    async fn remove_dead_keeps_the_newest_of_each_name_and_one_exit() {
        use crate::agent::pods::runtime_state::SandboxInfo;
        use crate::agent::runtime::fake::FakeRuntime;
        let c = |id: &str, name: &str, state, restarts: u32| ContainerInfo {
            state,
            restart_count: restarts,
            ..ContainerInfo::just_started(id, "sb1", name, restarts)
        };
        let mut rt = RuntimePod {
            sandboxes: vec![
                SandboxInfo { id: "sb1".into(), attempt: 1, ready: true, created_at: 2, ips: vec![] },
                SandboxInfo { id: "sb0".into(), attempt: 0, ready: false, created_at: 1, ips: vec![] },
            ],
            containers: vec![
                c("a3", "a", ContainerState::Created, 3),
                c("a2", "a", ContainerState::Created, 2),
                c("a1", "a", ContainerState::Exited, 1),
                c("a0", "a", ContainerState::Exited, 0),
                c("b1", "b", ContainerState::Running, 1),
                c("b0", "b", ContainerState::Exited, 0),
            ],
        };
        rt.sort();
        let fake = FakeRuntime::new();
        remove_dead(&fake, &rt).await.unwrap();
        let removed: Vec<String> = fake.calls().into_iter().collect();
        // The fake names removals by container name; ids: a2 and a0 go, and the old sandbox.
        assert_eq!(removed.iter().filter(|c| c.starts_with("RemoveContainer")).count(), 2, "{removed:?}");
        assert!(removed.contains(&"RemovePodSandbox sb0".to_string()), "{removed:?}");
    }
}
