//! Which pods a ReplicaSet deletes first when it has too many, in upstream's order
//! (ActivePodsWithRanks): unscheduled before scheduled, Pending before Unknown before
//! Running, not Ready before Ready, lower `controller.kubernetes.io/pod-deletion-cost`
//! first, pods doubled up on a node with more of their kind first, Ready for less time
//! before longer, more container restarts first, newer before older.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use super::pods::ready_since;

const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pods to delete, `count` of them, chosen from `pods` (all active and owned).
pub fn pods_to_delete(mut pods: Vec<Pod>, count: usize) -> Vec<Pod> {
    // Rank: how many of this set's pods share the node (upstream counts related pods).
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in &pods {
        if let Some(node) = node_of(p) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &Pod| node_of(p).map(|n| per_node[&n]).unwrap_or(0);
    pods.sort_by(|a, b| delete_first(a, b, rank(a), rank(b)));
    pods.truncate(count);
    pods
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(p: &Pod) -> i64 {
    p.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn restarts(p: &Pod) -> i32 {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0)).unwrap_or(0)
}

/// `Less` when `a` should go before `b`.
fn delete_first(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize) -> Ordering {
    let assigned = |p: &Pod| node_of(p).is_some();
    let ready = |p: &Pod| ready_since(p).is_some();
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(ready(a).cmp(&ready(b)))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        .then(rank_b.cmp(&rank_a))
        .then_with(|| match (ready_since(a).flatten(), ready_since(b).flatten()) {
            // Ready more recently goes first.
            (Some(ta), Some(tb)) => tb.cmp(&ta),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created(a), created(b)) {
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(ta), Some(tb)) => tb.cmp(&ta),
                (None, None) => Ordering::Equal,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, age_s: u64) -> Pod {
        let now = Timestamp::now();
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(Time(now - std::time::Duration::from_secs(age_s)));
        p.spec = Some(PodSpec { node_name: node.map(Into::into), ..Default::default() });
        let conditions = ready.then(|| vec![PodCondition { type_: "Ready".into(), status: "True".into(), last_transition_time: Some(Time(now - std::time::Duration::from_secs(age_s))), ..Default::default() }]);
        p.status = Some(PodStatus { phase: Some(phase.into()), conditions, ..Default::default() });
        p
    }

    fn names(pods: Vec<Pod>) -> Vec<String> {
        pods.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first() {
        let pods = vec![
            pod("running-ready-old", Some("n1"), "Running", true, 100),
            pod("running-unready", Some("n2"), "Running", false, 100),
            pod("unscheduled", None, "Pending", false, 100),
            pod("pending-on-node", Some("n3"), "Pending", false, 100),
        ];
        assert_eq!(names(pods_to_delete(pods, 4)), ["unscheduled", "pending-on-node", "running-unready", "running-ready-old"]);
    }

    #[test]
    fn among_equals_the_newest_and_doubled_up_go_first() {
        let pods = vec![pod("old", Some("n1"), "Running", true, 100), pod("new", Some("n2"), "Running", true, 10)];
        assert_eq!(names(pods_to_delete(pods, 1)), ["new"]);
        let pods = vec![pod("alone", Some("n1"), "Running", true, 10), pod("twin-a", Some("n2"), "Running", true, 100), pod("twin-b", Some("n2"), "Running", true, 100)];
        assert!(names(pods_to_delete(pods, 1))[0].starts_with("twin"));
    }

    #[test]
    fn deletion_cost_is_honoured() {
        let mut cheap = pod("cheap", Some("n1"), "Running", true, 10);
        let mut dear = pod("dear", Some("n2"), "Running", true, 10);
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        dear.metadata.annotations = Some([(DELETION_COST.to_string(), "100".to_string())].into());
        assert_eq!(names(pods_to_delete(vec![dear, cheap], 1)), ["cheap"]);
    }
}
