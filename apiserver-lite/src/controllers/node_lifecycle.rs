//! The node lifecycle controller: a node whose kubelet stopped renewing its Lease (in
//! `kube-node-lease`) and posting status for longer than the grace period gets its
//! conditions set to Unknown; nodes not Ready get the `not-ready` or `unreachable` taints
//! (NoSchedule and NoExecute), removed again once they are Ready; and pods on a node with a
//! NoExecute taint are deleted when their tolerations run out (at once if they tolerate none).
//! Liveness is judged by when this controller saw the lease or heartbeat change, on its own
//! clock, as upstream does, so clock skew between nodes and the control plane does not matter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, EventSource, Node, NodeCondition, ObjectReference, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const COMPONENT: &str = "node-controller";

#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How long a node may go without renewing its lease or posting status before it is
    /// Unknown (kube-controller-manager's --node-monitor-grace-period, 50 s).
    pub grace: Duration,
    /// How often nodes are checked (--node-monitor-period, 5 s).
    pub monitor_period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig { grace: Duration::from_secs(50), monitor_period: Duration::from_secs(5) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeLifecycleError {
    #[error("updating node {node}: {source}")]
    UpdateNode { node: String, source: kube::Error },
    #[error("evicting pod {namespace}/{name} from node {node}: {source}")]
    Evict { namespace: String, name: String, node: String, source: kube::Error },
}

/// What the controller last saw of a node's liveness, and when (on its own clock).
struct Probe {
    seen: String,
    at: Instant,
    ready: Option<String>,
}

struct Monitor {
    client: kube::Client,
    config: NodeLifecycleConfig,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    probes: HashMap<String, Probe>,
}

fn cache<K>(api: Api<K>) -> Store<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    tokio::spawn(reflector::reflector(writer, watcher::watcher(api, watcher::Config::default())).default_backoff().for_each(|_| async {}));
    store
}

pub async fn run(client: kube::Client, config: NodeLifecycleConfig) {
    let nodes = cache(Api::<Node>::all(client.clone()));
    let leases = cache(Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE));
    let pods = cache(Api::<Pod>::all(client.clone()));
    for ready in [nodes.wait_until_ready().await.is_ok(), leases.wait_until_ready().await.is_ok(), pods.wait_until_ready().await.is_ok()] {
        if !ready {
            return;
        }
    }
    let mut interval = tokio::time::interval(config.monitor_period);
    let mut m = Monitor { client, config, nodes, leases, pods, probes: HashMap::new() };
    loop {
        interval.tick().await;
        for e in m.pass().await {
            tracing::warn!("node lifecycle: {e}");
        }
    }
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

impl Monitor {
    async fn pass(&mut self) -> Vec<NodeLifecycleError> {
        let mut errors = Vec::new();
        let nodes = self.nodes.state();
        self.probes.retain(|name, _| nodes.iter().any(|n| n.metadata.name.as_deref() == Some(name)));
        for node in nodes {
            if let Err(e) = self.check(&node).await {
                errors.push(e);
            }
        }
        errors
    }

    async fn check(&mut self, node: &Node) -> Result<(), NodeLifecycleError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let lease = self.leases.state().into_iter().find(|l| l.metadata.name.as_deref() == Some(name.as_str()));
        let seen = format!(
            "{:?}/{:?}",
            lease.as_ref().and_then(|l| l.spec.as_ref()?.renew_time.clone()).map(|t| t.0),
            condition(node, "Ready").and_then(|c| c.last_heartbeat_time.clone()).map(|t| t.0)
        );
        let now = Instant::now();
        let probe = self.probes.entry(name.clone()).or_insert_with(|| Probe { seen: seen.clone(), at: now, ready: None });
        if probe.seen != seen {
            probe.seen = seen;
            probe.at = now;
        }
        let stale = now.duration_since(probe.at) > self.config.grace;
        let mut node = node.clone();
        if stale && let Some(updated) = mark_unknown(&node) {
            let api: Api<Node> = Api::all(self.client.clone());
            node = api.replace_status(&name, &PostParams::default(), &updated).await.map_err(|source| NodeLifecycleError::UpdateNode { node: name.clone(), source })?;
        }
        let ready = condition(&node, "Ready").map(|c| c.status.clone());
        let probe = self.probes.get_mut(&name).expect("probe inserted above");
        let was_ready = probe.ready.replace(ready.clone().unwrap_or_default());
        if was_ready.as_deref() == Some("True") && ready.as_deref() != Some("True") {
            self.event(&node_ref(&node), "NodeNotReady", &format!("Node {name} status is now: NodeNotReady")).await;
        }
        if let Some(taints) = desired_taints(&node, Timestamp::now()) {
            let api: Api<Node> = Api::all(self.client.clone());
            let mut updated = node.clone();
            updated.spec.get_or_insert_with(Default::default).taints = Some(taints).filter(|t| !t.is_empty());
            node = api.replace(&name, &PostParams::default(), &updated).await.map_err(|source| NodeLifecycleError::UpdateNode { node: name.clone(), source })?;
        }
        if ready.as_deref() == Some("Unknown") {
            self.mark_pods_not_ready(&name).await;
        }
        self.evict(&node).await
    }

    /// Pods on an unreachable node cannot be serving as far as anyone knows: their Ready
    /// condition goes False (so endpoints drop them), as upstream's MarkPodsNotReady.
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods.state().into_iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)) {
            let mut updated = (*pod).clone();
            let Some(conditions) = updated.status.as_mut().and_then(|s| s.conditions.as_mut()) else { continue };
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status == "True") else { continue };
            *ready = PodCondition { status: "False".into(), last_transition_time: Some(Time(Timestamp::now())), ..ready.clone() };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
            let _ = api.replace_status(pod.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &updated).await;
        }
    }

    async fn evict(&self, node: &Node) -> Result<(), NodeLifecycleError> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().filter(|t| t.effect == "NoExecute").collect();
        if taints.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        for pod in self.pods.state().into_iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()) && p.metadata.deletion_timestamp.is_none()) {
            let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
            if eviction_time(&taints, &tolerations, now).is_none_or(|at| at > now) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let reference = ObjectReference { api_version: Some("v1".into()), kind: Some("Pod".into()), name: Some(pod_name.clone()), namespace: Some(ns.clone()), uid: pod.metadata.uid.clone(), ..Default::default() };
            self.event(&reference, "TaintManagerEviction", &format!("Marking for deletion Pod {ns}/{pod_name}")).await;
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            // Say why it goes before it goes, as upstream (best effort: the deletion is what counts).
            if let Some(marked) = with_disruption_target(&pod) {
                let _ = api.replace_status(&pod_name, &PostParams::default(), &marked).await;
            }
            match api.delete(&pod_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => return Err(NodeLifecycleError::Evict { namespace: ns, name: pod_name, node: name.clone(), source }),
            }
        }
        Ok(())
    }

    /// A core/v1 Event, as kube-controller-manager's node-controller records them; best
    /// effort (an event lost is no reason to stop managing nodes).
    async fn event(&self, object: &ObjectReference, reason: &str, message: &str) {
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta { name: Some(format!("{}.{:x}", object.name.as_deref().unwrap_or(""), now.as_nanosecond())), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: object.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some("Normal".into()),
            source: Some(EventSource { component: Some(COMPONENT.into()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(COMPONENT.into()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!("event {reason} for {:?}: {e}", object.name);
        }
    }
}

/// The pod with the DisruptionTarget condition the taint manager sets before deleting it,
/// or None when it already has it.
fn with_disruption_target(pod: &Pod) -> Option<Pod> {
    let mut marked = pod.clone();
    let conditions = marked.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    if conditions.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True") {
        return None;
    }
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    });
    Some(marked)
}

/// The node as the involved object of its events (by uid, as the node controller records
/// them; `kubectl describe node` looks up events both by the node's uid and its name).
fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: node.metadata.name.clone(), uid: node.metadata.uid.clone(), ..Default::default() }
}

/// The node with its conditions set to Unknown, or None when they already are: Ready (and
/// the pressure conditions the kubelet reports) with reason NodeStatusUnknown; a node that
/// never posted Ready gets it as Unknown with NodeStatusNeverUpdated.
fn mark_unknown(node: &Node) -> Option<Node> {
    let mut updated = node.clone();
    let conditions = updated.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    let now = Time(Timestamp::now());
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            last_transition_time: Some(now.clone()),
        });
        changed = true;
    }
    for c in conditions.iter_mut().filter(|c| ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"].contains(&c.type_.as_str())) {
        if c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(now.clone());
            changed = true;
        }
    }
    changed.then_some(updated)
}

/// The node's taints as its Ready condition calls for, or None when they already are so:
/// `unreachable` for Unknown, `not-ready` for False, neither for True; other taints kept,
/// and a taint already there keeps its timeAdded (eviction deadlines count from it).
fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let key = match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        Some("False") => Some(NOT_READY_TAINT),
        Some(_) => None,
        // No Ready condition yet: the kubelet has not reported; mark_unknown handles it after the grace period.
        None => return None,
    };
    let mut taints: Vec<Taint> = current.iter().filter(|t| ![NOT_READY_TAINT, UNREACHABLE_TAINT].contains(&t.key.as_str()) || Some(t.key.as_str()) == key).cloned().collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                let time_added = (effect == "NoExecute").then_some(Time(now));
                taints.push(Taint { key: key.into(), effect: effect.into(), value: None, time_added });
            }
        }
    }
    (taints != current).then_some(taints)
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect_ok = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match t.key.as_deref() {
        None | Some("") => t.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match t.operator.as_deref() {
        Some("Exists") => true,
        _ => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// When a pod with these tolerations must leave a node with these NoExecute taints: now
/// if some taint is not tolerated, else the earliest expiry of the tolerations' seconds
/// counted from when each taint was added; None if every toleration is forever.
fn eviction_time(taints: &[Taint], tolerations: &[Toleration], now: Timestamp) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        let Some(seconds) = matching.iter().map(|t| t.toleration_seconds).try_fold(i64::MAX, |m, s| s.map(|s| m.min(s))) else { continue };
        let since = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let at = since.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds.max(0))).unwrap_or(now);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, taints: serde_json::Value) -> Node {
        let conditions = match ready {
            Some(s) => serde_json::json!([{"type": "Ready", "status": s, "reason": "KubeletReady"}]),
            None => serde_json::json!([]),
        };
        serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}, "spec": {"taints": taints}, "status": {"conditions": conditions}})).unwrap()
    }

    fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
        Taint { key: key.into(), effect: effect.into(), value: None, time_added: added.map(Time) }
    }

    #[test]
    fn an_unknown_node_is_unreachable_and_a_ready_one_loses_the_taints() {
        let now = Timestamp::now();
        let t = desired_taints(&node(Some("Unknown"), serde_json::json!([{"key": "dedicated", "effect": "NoSchedule"}])), now).unwrap();
        let keys: Vec<(String, String)> = t.iter().map(|t| (t.key.clone(), t.effect.clone())).collect();
        assert_eq!(keys, [("dedicated", "NoSchedule"), (UNREACHABLE_TAINT, "NoSchedule"), (UNREACHABLE_TAINT, "NoExecute")].map(|(a, b)| (a.to_string(), b.to_string())));
        assert!(t[2].time_added.is_some());
        let back = node(Some("True"), serde_json::to_value(&t).unwrap());
        assert_eq!(desired_taints(&back, now).unwrap().len(), 1);
        let not_ready = desired_taints(&node(Some("False"), serde_json::to_value(&t).unwrap()), now).unwrap();
        assert!(not_ready.iter().all(|t| t.key != UNREACHABLE_TAINT) && not_ready.iter().filter(|t| t.key == NOT_READY_TAINT).count() == 2);
        assert_eq!(desired_taints(&node(Some("True"), serde_json::json!([])), now), None);
        assert_eq!(desired_taints(&node(None, serde_json::json!([])), now), None);
    }

    #[test]
    fn mark_unknown_sets_ready_unknown_once() {
        let n = node(Some("True"), serde_json::json!([]));
        let u = mark_unknown(&n).unwrap();
        let ready = condition(&u, "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref(), ready.message.as_deref()), ("Unknown", Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));
        assert!(mark_unknown(&u).is_none());
        let never = mark_unknown(&node(None, serde_json::json!([]))).unwrap();
        assert_eq!(condition(&never, "Ready").unwrap().reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }

    #[test]
    fn an_evicted_pod_is_marked_as_a_disruption_target_once() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})).unwrap();
        let marked = with_disruption_target(&pod).unwrap();
        let c = marked.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].type_.as_str(), c[1].reason.as_deref()), ("DisruptionTarget", Some("DeletionByTaintManager")));
        assert!(with_disruption_target(&marked).is_none());
    }

    #[test]
    fn eviction_waits_for_the_shortest_matching_toleration() {
        let added = Timestamp::from_second(1_000_000).unwrap();
        let now = Timestamp::from_second(1_000_001).unwrap();
        let taints = [taint(UNREACHABLE_TAINT, "NoExecute", Some(added))];
        let tol = |secs: Option<i64>| Toleration { key: Some(UNREACHABLE_TAINT.into()), operator: Some("Exists".into()), effect: Some("NoExecute".into()), toleration_seconds: secs, value: None };
        assert_eq!(eviction_time(&taints, &[tol(Some(300))], now), Some(Timestamp::from_second(1_000_300).unwrap()));
        assert_eq!(eviction_time(&taints, &[tol(Some(300)), tol(Some(2))], now), Some(Timestamp::from_second(1_000_002).unwrap()));
        assert_eq!(eviction_time(&taints, &[tol(None)], now), None);
        assert_eq!(eviction_time(&taints, &[], now), Some(now), "not tolerated: now");
        let other = Toleration { key: Some("x".into()), operator: Some("Exists".into()), ..Default::default() };
        assert_eq!(eviction_time(&taints, &[other], now), Some(now));
        let everything = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert_eq!(eviction_time(&taints, &[everything], now), None);
    }
}
