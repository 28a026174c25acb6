//! Which nodes a DaemonSet's pod belongs on, and the pod it puts there: upstream's
//! NodeShouldRunDaemonPod (nodeSelector, required node affinity, NoSchedule/NoExecute taints
//! against the template's tolerations plus the ones every daemon pod gets), the default
//! DaemonSet tolerations, and the node affinity on `metadata.name` that pins a pod to its node
//! while leaving the binding to the scheduler.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration};

use crate::scheduler::matching::{node_selection_matches, tolerated};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The field a daemon pod's node affinity names its node by.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// Upstream's NodeShouldRunDaemonPod: a node the template's nodeName, nodeSelector or
/// required affinity excludes neither gets nor keeps a pod; one with a NoSchedule or
/// NoExecute taint the pod does not tolerate gets none, and keeps one unless an untolerated
/// taint is NoExecute.
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> Eligibility {
    const NEITHER: Eligibility = Eligibility { should_run: false, should_continue_running: false };
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let mut spec = template_spec(ds);
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != node_name) {
        return NEITHER;
    }
    add_default_tolerations(&mut spec);
    let pod = Pod { spec: Some(spec), ..Default::default() };
    if !node_selection_matches(&pod, node) {
        return NEITHER;
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let untolerated = |effects: &[&str]| taints.iter().any(|t| effects.contains(&t.effect.as_str()) && !tolerated(tolerations, t));
    if untolerated(&["NoSchedule", "NoExecute"]) {
        return Eligibility { should_run: false, should_continue_running: !untolerated(&["NoExecute"]) };
    }
    Eligibility { should_run: true, should_continue_running: true }
}

fn template_spec(ds: &DaemonSet) -> PodSpec {
    ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default()
}

/// The tolerations every daemon pod gets (upstream's AddOrUpdateDaemonPodTolerations): it
/// stays through not-ready and unreachable (no tolerationSeconds, so never evicted), goes on
/// nodes under pressure or cordoned, and, with host networking, on nodes whose pod network
/// is not up yet.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let toleration = |key: &str, effect: &str| Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Default::default() };
    let mut wanted = vec![
        toleration(NOT_READY, "NoExecute"),
        toleration(UNREACHABLE, "NoExecute"),
        toleration(DISK_PRESSURE, "NoSchedule"),
        toleration(MEMORY_PRESSURE, "NoSchedule"),
        toleration(PID_PRESSURE, "NoSchedule"),
        toleration(UNSCHEDULABLE, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    for t in wanted {
        add_or_update_toleration(spec, t);
    }
}

/// Upstream's AddOrUpdateTolerationInPodSpec: a toleration with the same key, operator, value
/// and effect is replaced (dropping, say, its tolerationSeconds); otherwise it is appended.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |t: &Toleration| {
        let norm = |s: &Option<String>| s.clone().unwrap_or_default();
        let op = |t: &Toleration| t.operator.clone().filter(|o| !o.is_empty()).unwrap_or_else(|| "Equal".into());
        norm(&t.key) == norm(&toleration.key) && norm(&t.effect) == norm(&toleration.effect) && op(t) == op(&toleration) && norm(&t.value) == norm(&toleration.value)
    };
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

/// Pin a pod to `node` through required node affinity on `metadata.name`, replacing any
/// required terms (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the node was already
/// checked against them).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement { key: NODE_NAME_FIELD.into(), operator: "In".into(), values: Some(vec![node.into()]) }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is for: its nodeName once bound, else the node its affinity on
/// `metadata.name` names (upstream's GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| r.values.as_deref().filter(|v| v.len() == 1).map(|v| v[0].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(labels: Value, taints: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})).unwrap()
    }

    fn ds(spec: Value) -> DaemonSet {
        let mut pod_spec = json!({"containers": [{"name": "c", "image": "agent"}]});
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            pod_spec[k] = v;
        }
        serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec}}})).unwrap()
    }

    const BOTH: Eligibility = Eligibility { should_run: true, should_continue_running: true };
    const NEITHER: Eligibility = Eligibility { should_run: false, should_continue_running: false };
    const KEEP_ONLY: Eligibility = Eligibility { should_run: false, should_continue_running: true };

    #[test]
    fn node_selector_and_required_affinity_decide() {
        let n = node(json!({"disk": "ssd"}), json!([]));
        assert_eq!(node_should_run(&n, &ds(json!({}))), BOTH);
        assert_eq!(node_should_run(&n, &ds(json!({"nodeSelector": {"disk": "ssd"}}))), BOTH);
        assert_eq!(node_should_run(&n, &ds(json!({"nodeSelector": {"disk": "hdd"}}))), NEITHER);
        let affinity = |op: &str| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": op}]}]}}}});
        assert_eq!(node_should_run(&n, &ds(affinity("Exists"))), BOTH);
        assert_eq!(node_should_run(&n, &ds(affinity("DoesNotExist"))), NEITHER);
        assert_eq!(node_should_run(&n, &ds(json!({"nodeName": "n2"}))), NEITHER);
        assert_eq!(node_should_run(&n, &ds(json!({"nodeName": "n1"}))), BOTH);
    }

    #[test]
    fn taints_block_new_pods_and_no_execute_evicts_running_ones() {
        let no_schedule = node(json!({}), json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]));
        assert_eq!(node_should_run(&no_schedule, &ds(json!({}))), KEEP_ONLY);
        let tolerating = ds(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(node_should_run(&no_schedule, &tolerating), BOTH);
        let no_execute = node(json!({}), json!([{"key": "dedicated", "value": "db", "effect": "NoExecute"}]));
        assert_eq!(node_should_run(&no_execute, &ds(json!({}))), NEITHER);
        assert_eq!(node_should_run(&no_execute, &tolerating), BOTH);
        let prefer = node(json!({}), json!([{"key": "dedicated", "effect": "PreferNoSchedule"}]));
        assert_eq!(node_should_run(&prefer, &ds(json!({}))), BOTH);
    }

    #[test]
    fn daemon_pods_tolerate_node_problems_and_cordons() {
        for (key, effect) in [(NOT_READY, "NoExecute"), (UNREACHABLE, "NoExecute"), (UNSCHEDULABLE, "NoSchedule"), (DISK_PRESSURE, "NoSchedule")] {
            let n = node(json!({}), json!([{"key": key, "effect": effect}]));
            assert_eq!(node_should_run(&n, &ds(json!({}))), BOTH, "{key}");
        }
        let n = node(json!({}), json!([{"key": NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]));
        assert_eq!(node_should_run(&n, &ds(json!({}))), KEEP_ONLY);
        assert_eq!(node_should_run(&n, &ds(json!({"hostNetwork": true}))), BOTH);
    }

    #[test]
    fn default_tolerations_replace_same_ones_and_keep_others() {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [], "tolerations": [
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"},
        ]}))
        .unwrap();
        add_default_tolerations(&mut spec);
        let tolerations = serde_json::to_value(spec.tolerations.unwrap()).unwrap();
        assert_eq!(tolerations[0], json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}));
        assert_eq!(tolerations[1], json!({"key": "mine", "operator": "Exists"}));
        let keys: Vec<&str> = tolerations.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, [NOT_READY, "mine", UNREACHABLE, DISK_PRESSURE, MEMORY_PRESSURE, PID_PRESSURE, UNSCHEDULABLE]);
    }

    #[test]
    fn pinning_replaces_required_terms_and_keeps_the_rest() {
        let affinity: Affinity = serde_json::from_value(json!({
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}],
            },
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]},
        }))
        .unwrap();
        let pinned = serde_json::to_value(pin_to_node(Some(affinity), "n7")).unwrap();
        assert_eq!(pinned["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"], json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]}));
        assert!(pinned["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
        assert!(pinned["podAntiAffinity"].is_object());
        let pod = Pod { spec: Some(PodSpec { affinity: Some(pin_to_node(None, "n7")), ..Default::default() }), ..Default::default() };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        let bound = Pod { spec: Some(PodSpec { node_name: Some("n3".into()), affinity: Some(pin_to_node(None, "n7")), ..Default::default() }), ..Default::default() };
        assert_eq!(target_node(&bound).as_deref(), Some("n3"));
        assert_eq!(target_node(&Pod::default()), None);
    }
}
