//! The RollingUpdate step (upstream's rollingUpdate): without surge, old pods are deleted
//! (the create pass then replaces them) only as far as maxUnavailable allows, counting every
//! node whose pod is missing, unavailable or being replaced; with maxSurge, new pods are
//! started beside available old ones on up to maxSurge nodes and the old pod goes once the
//! new one is available.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::placement::{is_available, is_updated};
use crate::controllers::deployment::replicasets::scaled_value;

/// What the budget allows this pass: pods to delete and nodes to start a new pod on.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub delete: Vec<String>,
    pub create: Vec<String>,
}

/// One node as the rolling update sees it.
pub struct NodePods<'a> {
    pub should_run: bool,
    /// The daemon pods aimed at the node (finished ones being deleted left out).
    pub pods: &'a [Pod],
}

pub fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// (maxSurge, maxUnavailable) against the number of nodes that should run the pod, both
/// rounded up as upstream; if both come to 0, one node may be unavailable.
pub fn budget(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    if !is_rolling(ds) {
        return Ok((0, 0));
    }
    let rolling = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.rolling_update.as_ref());
    let surge = scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), "0%", desired, true).map_err(|e| e.to_string())?;
    // Unset, maxUnavailable is 1 (the server's default).
    let unavailable = match rolling.and_then(|r| r.max_unavailable.as_ref()) {
        None => 1,
        v => scaled_value(v, "0%", desired, true).map_err(|e| e.to_string())?,
    };
    Ok(if desired > 0 && surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

/// Whether the DaemonSet surges (maxSurge resolves above 0).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    budget(ds, 1).is_ok_and(|(surge, _)| surge > 0)
}

/// The newest and the old live pod of a node; None when it has more than one of either
/// (the create/delete pass prunes those first).
fn updated_and_old<'a>(pods: &'a [Pod], hash: &str, generation: Option<i64>) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// The step for the given nodes (keyed by name; nodes that should run the pod but have none
/// included with no pods).
pub fn step(nodes: &BTreeMap<String, NodePods>, hash: &str, generation: Option<i64>, max_surge: i32, max_unavailable: i32, min_ready_seconds: i32, now: Timestamp) -> Step {
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    let available = |p: &Pod| is_available(p, min_ready_seconds, now);
    let mut out = Step::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let (mut replacements, mut candidates) = (vec![], vec![]);
        for node in nodes.values() {
            match updated_and_old(node.pods, hash, generation) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!available(new)),
                Some((None, Some(old))) if !available(old) => {
                    replacements.push(name(old));
                    unavailable += 1;
                }
                Some((None, Some(_))) if unavailable >= max_unavailable => {}
                Some((None, Some(old))) => candidates.push(name(old)),
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        out.delete = replacements;
        out.delete.extend(candidates.into_iter().take(room));
        return out;
    }
    let desired = nodes.values().filter(|n| n.should_run).count() as i32;
    let (mut surging, mut available_count) = (0, 0);
    let (mut allowed, mut candidates, mut not_wanted) = (vec![], vec![], vec![]);
    for (node_name, node) in nodes {
        let Some((new, old)) = updated_and_old(node.pods, hash, generation) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if node.should_run {
                    allowed.push(node_name.clone());
                } else {
                    out.delete.push(name(old));
                }
            }
            (None, Some(old)) if !node.should_run => not_wanted.push(name(old)),
            (None, Some(_)) if surging >= max_surge => {}
            (None, Some(_)) => candidates.push(node_name.clone()),
            (Some(new), Some(_)) if !available(new) => surging += 1,
            (Some(_), Some(old)) => out.delete.push(name(old)),
        }
    }
    // Old pods on nodes that no longer want one go only as pods elsewhere become available.
    let deletable = (available_count - desired).clamp(0, not_wanted.len() as i32) as usize;
    out.delete.extend(not_wanted.into_iter().take(deletable));
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    out.create = allowed;
    out.create.extend(candidates.into_iter().take(room));
    out
}

#[cfg(test)]
mod tests {
    use super::super::placement::tests::pod;
    use super::*;
    use serde_json::json;

    fn nodes(pods: &[Vec<Pod>]) -> BTreeMap<String, NodePods<'_>> {
        pods.iter().enumerate().map(|(i, p)| (format!("n{i}"), NodePods { should_run: true, pods: p })).collect()
    }

    fn run(pods: &[Vec<Pod>], surge: i32, unavailable: i32) -> Step {
        step(&nodes(pods), "new", None, surge, unavailable, 0, Timestamp::now())
    }

    #[test]
    fn without_surge_old_pods_go_only_within_max_unavailable() {
        let old = |n: &str| vec![pod(n, "old", 0, true, "Running")];
        let all_old = [old("a"), old("b"), old("c"), old("d")];
        assert_eq!(run(&all_old, 0, 1).delete, ["a"]);
        assert_eq!(run(&all_old, 0, 2).delete, ["a", "b"]);
        // One node is already being replaced (no pod yet): that uses the whole budget of 1.
        let replacing = [vec![], old("b"), old("c")];
        assert_eq!(run(&replacing, 0, 1), Step::default());
        // A new pod not yet available counts against the budget too.
        let waiting = [vec![pod("a2", "new", 5, false, "Running")], old("b")];
        assert_eq!(run(&waiting, 0, 1), Step::default());
        let done = [vec![pod("a2", "new", 5, true, "Running")], old("b")];
        assert_eq!(run(&done, 0, 1).delete, ["b"]);
    }

    #[test]
    fn unavailable_old_pods_are_replaced_regardless_of_the_budget() {
        let pods = [vec![], vec![pod("b", "old", 0, false, "Running")], vec![pod("c", "old", 0, true, "Running")]];
        assert_eq!(run(&pods, 0, 1).delete, ["b"]);
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones_up_to_max_surge() {
        let old = |n: &str| vec![pod(n, "old", 0, true, "Running")];
        let s = run(&[old("a"), old("b"), old("c")], 2, 0);
        assert_eq!(s, Step { delete: vec![], create: vec!["n0".into(), "n1".into()] });
        let surged = [vec![pod("a", "old", 0, true, "Running"), pod("a2", "new", 5, false, "Running")], old("b"), old("c")];
        assert_eq!(run(&surged, 1, 0), Step::default());
        let ready = [vec![pod("a", "old", 0, true, "Running"), pod("a2", "new", 5, true, "Running")], old("b"), old("c")];
        assert_eq!(run(&ready, 1, 0), Step { delete: vec!["a".into()], create: vec!["n1".into()] });
    }

    #[test]
    fn the_budget_rounds_up_and_never_stalls() {
        let ds = |strategy: serde_json::Value| -> DaemonSet { serde_json::from_value(json!({"spec": {"selector": {}, "template": {}, "updateStrategy": strategy}})).unwrap() };
        assert_eq!(budget(&ds(json!({"type": "RollingUpdate"})), 5), Ok((0, 1)));
        assert_eq!(budget(&ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "30%"}})), 5), Ok((0, 2)));
        assert_eq!(budget(&ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}})), 5), Ok((1, 0)));
        assert_eq!(budget(&ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})), 5), Ok((0, 1)));
        assert_eq!(budget(&ds(json!({"type": "OnDelete"})), 5), Ok((0, 0)));
        assert!(allows_surge(&ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}))));
    }
}
