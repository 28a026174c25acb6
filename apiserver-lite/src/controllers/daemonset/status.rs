//! DaemonSet status as upstream counts it: per node that should run the pod, whether it
//! has one (current), whether the oldest is Ready and available and of the current revision;
//! per node that should not, whether it has one anyway (misscheduled).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::placement::{is_updated, oldest_first};
use crate::controllers::replicaset::pods::{availability, Availability};

/// The status for `nodes` (name and whether it should run the pod) and the daemon pods by
/// node, and how long until a Ready pod becomes available (to look again then).
pub fn calculate(ds: &DaemonSet, nodes: &[(String, bool)], by_node: &BTreeMap<String, Vec<Pod>>, hash: &str, generation: Option<i64>, now: Timestamp) -> (DaemonSetStatus, Option<Duration>) {
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) = (0, 0, 0, 0, 0, 0);
    let mut wait: Option<Duration> = None;
    for (name, should_run) in nodes {
        let pods = by_node.get(name).map(Vec::as_slice).unwrap_or_default();
        if !should_run {
            misscheduled += i32::from(!pods.is_empty());
            continue;
        }
        desired += 1;
        let Some(pod) = pods.iter().min_by(|a, b| oldest_first(a, b)) else { continue };
        current += 1;
        match availability(pod, min_ready, now) {
            Availability::NotReady => {}
            Availability::ReadyFor(d) => {
                ready += 1;
                wait = Some(wait.map_or(d, |w| w.min(d)));
            }
            Availability::Available => {
                ready += 1;
                available += 1;
            }
        }
        updated += i32::from(is_updated(pod, hash, generation));
    }
    let old = ds.status.clone().unwrap_or_default();
    let status = DaemonSetStatus {
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    };
    (status, wait)
}

#[cfg(test)]
mod tests {
    use super::super::placement::tests::pod;
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_follow_upstream() {
        let ds: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "a", "generation": 4}, "spec": {"selector": {}, "template": {}}, "status": {"collisionCount": 1, "currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0, "numberReady": 0}})).unwrap();
        let nodes: Vec<(String, bool)> = [("n1", true), ("n2", true), ("n3", true), ("n4", false), ("n5", false)].iter().map(|(n, r)| (n.to_string(), *r)).collect();
        let by_node: BTreeMap<String, Vec<Pod>> = [
            ("n1".to_string(), vec![pod("a", "new", 0, true, "Running")]),
            ("n2".to_string(), vec![pod("b", "old", 0, true, "Running"), pod("b2", "new", 3, false, "Running")]),
            ("n4".to_string(), vec![pod("d", "new", 0, true, "Running")]),
        ]
        .into();
        let (s, wait) = calculate(&ds, &nodes, &by_node, "new", None, Timestamp::now());
        assert_eq!((s.desired_number_scheduled, s.current_number_scheduled, s.number_misscheduled, s.number_ready), (3, 2, 1, 2));
        assert_eq!((s.number_available, s.number_unavailable, s.updated_number_scheduled), (Some(2), Some(1), Some(1)));
        assert_eq!((s.observed_generation, s.collision_count), (Some(4), Some(1)));
        assert_eq!(wait, None);
    }
}
