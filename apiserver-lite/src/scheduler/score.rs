//! Scores for the nodes that passed the filters, each 0..=100 and weighted as upstream's
//! default profile does: least allocated (1), balanced allocation (1), taint toleration
//! (3), node affinity preferences (2), pod affinity preferences (2), topology spread (2).

use super::cache::{NodeInfo, PodInfo};
use super::matching::{pod_tolerations, term_matches, tolerated};
use super::topology::Topology;

const MAX: i64 = 100;

fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let one = |requested: i64, allocatable: i64| if allocatable <= 0 || requested > allocatable { 0 } else { (allocatable - requested) * MAX / allocatable };
    let cpu = one(node.nonzero_requested.0 + pod.nonzero.0, node.allocatable.milli_cpu);
    let mem = one(node.nonzero_requested.1 + pod.nonzero.1, node.allocatable.memory);
    (cpu + mem) / 2
}

fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let fraction = |requested: i64, allocatable: i64| if allocatable <= 0 { 1.0 } else { (requested as f64 / allocatable as f64).min(1.0) };
    let cpu = fraction(node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu);
    let mem = fraction(node.requested.memory + pod.requests.memory, node.allocatable.memory);
    // The standard deviation of two fractions is half their distance.
    ((1.0 - (cpu - mem).abs() / 2.0) * MAX as f64) as i64
}

fn untolerated_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations: Vec<_> = pod_tolerations(&pod.pod).iter().filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")).cloned().collect();
    let taints = node.node.as_ref().and_then(|n| n.spec.as_ref()).and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&tolerations, t)).count() as i64
}

fn preferred_node_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let Some(n) = &node.node else { return 0 };
    let preferred = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.node_affinity.as_ref()).and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default();
    preferred.iter().filter(|p| term_matches(&p.preference, n)).map(|p| p.weight as i64).sum()
}

fn preferred_pod_affinity(node: &NodeInfo, t: &Topology) -> i64 {
    let labels = node.labels();
    t.preferred.iter().map(|d| labels.and_then(|l| l.get(&d.key)).and_then(|v| d.counts.get(v)).map(|n| n * d.weight).unwrap_or(0)).sum()
}

fn spread_count(node: &NodeInfo, t: &Topology) -> i64 {
    let labels = node.labels();
    t.spread.iter().filter(|s| !s.hard).map(|s| labels.and_then(|l| l.get(&s.key)).and_then(|v| s.counts.get(v)).copied().unwrap_or(0)).sum()
}

/// Scale raw values to 0..=100, `higher_is_better` or the reverse; all equal scores 0 for
/// "better" scales and full marks for "fewer is better" ones with nothing to avoid.
fn normalize(raw: &[i64], higher_is_better: bool) -> Vec<i64> {
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter()
        .map(|&r| match (higher_is_better, max == min) {
            (true, true) => 0,
            (false, true) => MAX,
            (true, false) => (r - min) * MAX / (max - min),
            (false, false) => (max - r) * MAX / (max - min),
        })
        .collect()
}

/// The total score of each feasible node, in order.
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo], topology: Option<&Topology>) -> Vec<i64> {
    let mut total: Vec<i64> = nodes.iter().map(|n| least_allocated(pod, n) + balanced_allocation(pod, n)).collect();
    let mut add = |raw: Vec<i64>, higher_is_better: bool, weight: i64| {
        for (t, s) in total.iter_mut().zip(normalize(&raw, higher_is_better)) {
            *t += s * weight;
        }
    };
    add(nodes.iter().map(|n| untolerated_prefer_no_schedule(pod, n)).collect(), false, 3);
    add(nodes.iter().map(|n| preferred_node_affinity(pod, n)).collect(), true, 2);
    if let Some(t) = topology {
        add(nodes.iter().map(|n| preferred_pod_affinity(n, t)).collect(), true, 2);
        add(nodes.iter().map(|n| spread_count(n, t)).collect(), false, 2);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::Cache;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn emptier_nodes_preferred_and_prefer_no_schedule_avoided() {
        let mut c = Cache::default();
        for (name, taints) in [("a", json!([])), ("b", json!([])), ("c", json!([{"key": "k", "effect": "PreferNoSchedule"}]))] {
            c.set_node(serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})).unwrap());
        }
        let pod = |name: &str| Arc::new(PodInfo::new(Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}})).unwrap())));
        c.place(pod("x"), "a", false);
        let nodes: Vec<&NodeInfo> = ["a", "b", "c"].iter().map(|n| &c.nodes[*n]).collect();
        let s = score(&pod("p"), &nodes, None);
        assert!(s[1] > s[0], "b is emptier than a: {s:?}");
        assert!(s[1] > s[2], "c has an untolerated PreferNoSchedule taint: {s:?}");
        assert_eq!(normalize(&[1, 3], true), vec![0, 100]);
        assert_eq!(normalize(&[2, 2], false), vec![100, 100]);
    }
}
