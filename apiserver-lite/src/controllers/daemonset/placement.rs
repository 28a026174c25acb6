//! What one node needs done with its daemon pods (upstream's podsShouldBeOnNode): a pod
//! created where one should run and none exists, every pod deleted where none may stay,
//! failed and finished pods deleted (so a new one replaces them), and surplus pods pruned
//! to the oldest one, or while surging to the oldest new one plus an old one still needed.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::Eligibility;
use crate::controllers::replicaset::pods::{availability, is_ready, Availability};

/// The label daemon pods and ControllerRevisions carry with the revision's hash.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The label with the template generation a pod was made from (kept for old clients).
pub const GENERATION_LABEL: &str = "pod-template-generation";

#[derive(Debug, Default, PartialEq)]
pub struct NodePlan {
    /// A pod should be created on the node.
    pub create: bool,
    /// Pods to delete (by name).
    pub delete: Vec<String>,
    /// Failed pods to delete, subject to the per-node backoff (by name).
    pub failed: Vec<String>,
}

/// Whether a pod is of the current revision: its hash label, or its template generation.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && label(HASH_LABEL) == Some(hash);
    let generation_matches = generation.is_some_and(|g| label(GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    availability(pod, min_ready_seconds, now) == Availability::Available
}

/// Upstream's podByCreationTimestampAndPhase: bound pods first, then oldest, then by name.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b).cmp(&bound(a)).then_with(|| created(a).cmp(&created(b))).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The plan for one node given its eligibility and the daemon pods aimed at it.
pub fn plan_node(eligibility: Eligibility, pods: &[Pod], surge: bool, hash: &str, generation: Option<i64>, min_ready_seconds: i32, now: Timestamp) -> NodePlan {
    let mut plan = NodePlan::default();
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    if eligibility.should_run && pods.is_empty() {
        plan.create = true;
        return plan;
    }
    if !eligibility.should_continue_running {
        plan.delete = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(name).collect();
        return plan;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        match phase(pod) {
            "Failed" => plan.failed.push(name(pod)),
            "Succeeded" => plan.delete.push(name(pod)),
            _ => running.push(pod),
        }
    }
    running.sort_by(|a, b| oldest_first(a, b));
    if !surge {
        plan.delete.extend(running.iter().skip(1).map(|p| name(p)));
        return plan;
    }
    if running.is_empty() {
        // While surging a node keeps at least one pod that is not going away.
        plan.create = eligibility.should_run;
        return plan;
    }
    if running.len() == 1 {
        return plan;
    }
    // Two pods may share a node while the new one becomes available: the oldest new and the
    // oldest old. Everything else goes; the old one goes too once it is not Ready or the new
    // one is available.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in running {
        let slot = if is_updated(pod, hash, generation) { &mut oldest_new } else { &mut oldest_old };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            plan.delete.push(name(pod));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(old) || is_available(new, min_ready_seconds, now))
    {
        plan.delete.push(name(old));
    }
    plan
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    const BOTH: Eligibility = Eligibility { should_run: true, should_continue_running: true };

    /// A daemon pod of `hash`, created at second `created`, optionally bound, Ready, or in a
    /// phase.
    pub fn pod(name: &str, hash: &str, created: i64, ready: bool, phase: &str) -> Pod {
        let ts = Timestamp::from_second(1_700_000_000 + created).unwrap().to_string();
        let conditions = if ready { json!([{"type": "Ready", "status": "True"}]) } else { json!([]) };
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": ts, "labels": {HASH_LABEL: hash}},
            "spec": {"containers": [], "nodeName": "n1"},
            "status": {"phase": phase, "conditions": conditions},
        }))
        .unwrap()
    }

    fn plan(e: Eligibility, pods: &[Pod], surge: bool) -> NodePlan {
        plan_node(e, pods, surge, "new", None, 0, Timestamp::now())
    }

    #[test]
    fn a_node_that_should_run_and_has_nothing_gets_a_pod() {
        assert_eq!(plan(BOTH, &[], false), NodePlan { create: true, ..Default::default() });
        let keep_only = Eligibility { should_run: false, should_continue_running: true };
        assert_eq!(plan(keep_only, &[], false), NodePlan::default());
        assert_eq!(plan(BOTH, &[pod("a", "new", 0, true, "Running")], false), NodePlan::default());
    }

    #[test]
    fn a_node_that_may_not_keep_pods_loses_all_of_them() {
        let neither = Eligibility { should_run: false, should_continue_running: false };
        let mut going = pod("b", "new", 1, true, "Running");
        going.metadata.deletion_timestamp = going.metadata.creation_timestamp.clone();
        let p = plan(neither, &[pod("a", "new", 0, true, "Running"), going], false);
        assert_eq!(p, NodePlan { delete: vec!["a".into()], ..Default::default() });
    }

    #[test]
    fn failed_pods_are_reported_finished_ones_deleted_and_surplus_pruned_to_the_oldest() {
        let pods = [pod("young", "new", 5, true, "Running"), pod("old", "new", 1, true, "Running"), pod("dead", "new", 0, false, "Failed"), pod("done", "new", 0, false, "Succeeded")];
        let p = plan(BOTH, &pods, false);
        assert_eq!(p.failed, ["dead"]);
        assert_eq!(p.delete, ["done", "young"]);
        assert!(!p.create, "a terminating or failed pod is replaced only once it is gone");
    }

    #[test]
    fn surging_keeps_an_old_pod_until_the_new_one_is_available() {
        let old = pod("old", "prev", 0, true, "Running");
        assert_eq!(plan(BOTH, &[old.clone(), pod("new", "new", 5, false, "Running")], true), NodePlan::default());
        assert_eq!(plan(BOTH, &[old.clone(), pod("new", "new", 5, true, "Running")], true).delete, ["old"]);
        let unready_old = pod("old", "prev", 0, false, "Running");
        assert_eq!(plan(BOTH, &[unready_old, pod("new", "new", 5, false, "Running")], true).delete, ["old"]);
        let p = plan(BOTH, &[old, pod("new", "new", 5, false, "Running"), pod("new2", "new", 6, false, "Running")], true);
        assert_eq!(p.delete, ["new2"]);
    }

    #[test]
    fn updated_means_the_hash_or_the_template_generation() {
        let mut p = pod("a", "h1", 0, true, "Running");
        assert!(is_updated(&p, "h1", None));
        assert!(!is_updated(&p, "h2", Some(3)));
        p.metadata.labels.as_mut().unwrap().insert(GENERATION_LABEL.into(), "3".into());
        assert!(is_updated(&p, "h2", Some(3)));
        assert!(!is_updated(&p, "", None));
    }
}
