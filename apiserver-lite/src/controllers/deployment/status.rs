//! The Deployment's status from its ReplicaSets, and the Available and Progressing conditions
//! with upstream's reasons and messages (what `kubectl rollout status` and `describe` read).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::replicasets::{self as util, Error};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

pub fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Set a condition; one with the same status and reason is left alone, and a status that does
/// not change keeps its transition time.
pub fn set(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = get(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = status.conditions.as_mut() {
        c.retain(|c| c.type_ != type_);
    }
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|s| s != i32::MAX)
}

fn deadline(d: &Deployment) -> Duration {
    Duration::from_secs(d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600).max(0) as u64)
}

/// Counts from the ReplicaSets, the conditions carried over, and Available set.
pub fn calculate(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>, now: Timestamp) -> Result<DeploymentStatus, Error> {
    let available = util::status_sum(all, |s| s.available_replicas.unwrap_or(0));
    let total = util::spec_sum(all);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(util::status_sum(all, |s| s.replicas)),
        updated_replicas: Some(new.map(|rs| util::status_sum(&[rs], |s| s.replicas)).unwrap_or(0)),
        ready_replicas: Some(util::status_sum(all, |s| s.ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= util::replicas(d) - util::max_unavailable(d)? {
        set(&mut status, condition(AVAILABLE, "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into(), now));
    } else {
        set(&mut status, condition(AVAILABLE, "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into(), now));
    }
    Ok(status)
}

const REPLICA_FAILURE: &str = "ReplicaFailure";

fn replica_failure(rs: &ReplicaSet) -> Option<DeploymentCondition> {
    let c = rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE)?;
    Some(DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    })
}

/// Every replica updated and available, and the latest spec observed.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = util::replicas(d);
    s.updated_replicas == Some(want) && s.replicas == Some(want) && s.available_replicas == Some(want) && s.observed_generation >= d.metadata.generation
}

/// Whether `new` shows progress over the deployment's recorded status.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    n(new.updated_replicas) > n(old.updated_replicas)
        || n(new.replicas) - n(new.updated_replicas) < n(old.replicas) - n(old.updated_replicas)
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = get(s, PROGRESSING) else { return false };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => cond.last_update_time.as_ref().is_some_and(|t| t.0 + deadline(d) < now),
    }
}

/// The status after a rollout step, with Progressing brought up to date, and when to look
/// again if nothing else happens (to notice the progress deadline passing).
pub fn rollout(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>, now: Timestamp) -> Result<(DeploymentStatus, Option<Duration>), Error> {
    let mut status = calculate(d, all, new, now)?;
    if !has_progress_deadline(d) {
        remove(&mut status, PROGRESSING);
    }
    let current = get(&status, PROGRESSING).cloned();
    let is_complete = status.replicas == status.updated_replicas && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let new_name = new.and_then(|rs| rs.metadata.name.clone()).unwrap_or_default();
    if has_progress_deadline(d) && !is_complete {
        if complete(d, &status) {
            set(&mut status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, format!("ReplicaSet \"{new_name}\" has successfully progressed."), now));
        } else if progressing(d, &status) {
            let mut cond = condition(PROGRESSING, "True", "ReplicaSetUpdated", format!("ReplicaSet \"{new_name}\" is progressing."), now);
            if let Some(c) = &current {
                if c.status == "True" {
                    cond.last_transition_time = c.last_transition_time.clone();
                }
                remove(&mut status, PROGRESSING);
            }
            set(&mut status, cond);
        } else if timed_out(d, &status, now) {
            set(&mut status, condition(PROGRESSING, "False", TIMED_OUT, format!("ReplicaSet \"{new_name}\" has timed out progressing."), now));
        }
    }
    // A ReplicaSet that cannot create or delete pods (quota, admission) says so on the
    // Deployment too; the new ReplicaSet's failure first.
    match new.into_iter().chain(all.iter().copied()).find_map(replica_failure) {
        Some(c) => set(&mut status, c),
        None => remove(&mut status, REPLICA_FAILURE),
    }
    // Stuck but not yet timed out: come back when the deadline passes.
    let requeue = get(&status, PROGRESSING).filter(|_| has_progress_deadline(d) && !complete(d, &status)).and_then(|c| {
        if matches!(c.reason.as_deref(), Some(NEW_RS_AVAILABLE | TIMED_OUT)) {
            return None;
        }
        let due = c.last_update_time.as_ref()?.0 + deadline(d);
        Some(if due > now { due.duration_since(now).unsigned_abs() + Duration::from_secs(1) } else { Duration::from_secs(1) })
    });
    Ok((status, requeue))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 600, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": status,
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": available}}))
        .unwrap()
    }

    #[test]
    fn a_finished_rollout_says_the_new_replicaset_progressed() {
        let dep = d(2, json!({}));
        let new = rs("web-abc", 2, 2, 2);
        let (status, requeue) = rollout(&dep, &[&new], Some(&new), Timestamp::now()).unwrap();
        let p = get(&status, PROGRESSING).unwrap();
        assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-abc\" has successfully progressed."));
        assert_eq!(get(&status, AVAILABLE).unwrap().status, "True");
        assert_eq!((status.updated_replicas, status.available_replicas, status.unavailable_replicas), (Some(2), Some(2), Some(0)));
        assert_eq!(requeue, None);
    }

    #[test]
    fn a_stuck_rollout_times_out_after_the_deadline() {
        let long_ago = Timestamp::now() - Duration::from_secs(700);
        let t = json!(long_ago.to_string());
        let dep = d(2, json!({"updatedReplicas": 1, "replicas": 3, "readyReplicas": 2, "availableReplicas": 2, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": t, "lastTransitionTime": t}]}));
        let (old, new) = (rs("web-old", 2, 2, 2), rs("web-new", 1, 0, 0));
        let (status, _) = rollout(&dep, &[&old, &new], Some(&new), Timestamp::now()).unwrap();
        let p = get(&status, PROGRESSING).unwrap();
        assert_eq!((p.status.as_str(), p.reason.as_deref()), ("False", Some(TIMED_OUT)));
        assert_eq!(p.message.as_deref(), Some("ReplicaSet \"web-new\" has timed out progressing."));
    }

    #[test]
    fn a_replicaset_failure_shows_on_the_deployment_until_it_clears() {
        let dep = d(2, json!({}));
        let mut new = rs("web-abc", 2, 0, 0);
        new.status.as_mut().unwrap().conditions = Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("pods \"web-abc-x\" is forbidden: exceeded quota".into()),
            last_transition_time: Some(Time(Timestamp::now())),
        }]);
        let (status, _) = rollout(&dep, &[&new], Some(&new), Timestamp::now()).unwrap();
        assert_eq!(get(&status, REPLICA_FAILURE).unwrap().reason.as_deref(), Some("FailedCreate"));
        let mut dep = dep;
        dep.status = Some(status);
        new.status.as_mut().unwrap().conditions = None;
        let (status, _) = rollout(&dep, &[&new], Some(&new), Timestamp::now()).unwrap();
        assert!(get(&status, REPLICA_FAILURE).is_none());
    }

    #[test]
    fn availability_follows_max_unavailable() {
        let dep = d(4, json!({}));
        // Default 25% of 4: one may be unavailable.
        let (old, new) = (rs("a", 4, 3, 3), rs("b", 0, 0, 0));
        assert_eq!(get(&calculate(&dep, &[&old, &new], Some(&new), Timestamp::now()).unwrap(), AVAILABLE).unwrap().status, "True");
        let old = rs("a", 4, 2, 2);
        let s = calculate(&dep, &[&old, &new], Some(&new), Timestamp::now()).unwrap();
        assert_eq!(get(&s, AVAILABLE).unwrap().reason.as_deref(), Some("MinimumReplicasUnavailable"));
    }
}
