//! Registering the Node and keeping its status: create it (or, when it exists from an
//! earlier run, patch back only the labels the kubelet owns, leaving the user's labels,
//! taints and unschedulable alone), then every 10 s compute the status and send it when it
//! changed or every 5 minutes, as upstream's nodeStatusReportFrequency.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ContainerImage, Node, NodeCondition, NodeStatus};
use k8s_openapi::jiff::Timestamp;

use super::api::{ApiCallError, NodeApi};
use super::conditions::{self, Observed, RuntimeStatus};
use super::machine::{Machine, MachineError};
use super::object::{self, NodeConfig};

/// How often the status is computed (upstream nodeStatusUpdateFrequency).
pub const STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How often an unchanged status is sent anyway (upstream nodeStatusReportFrequency).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// How long one CRI call of the status computation may take.
const RUNTIME_CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("reading the machine's facts for node {node}: {source}")]
    Machine { node: String, source: MachineError },
    #[error("registering node {node} with the API server: {source}")]
    Api { node: String, source: ApiCallError },
    #[error("node {node} exists but could not be read back after a conflict on create")]
    Vanished { node: String },
}

/// What the container runtime tells about itself; the integrator implements it over CRI.
#[async_trait]
pub trait RuntimeFacts: Send + Sync {
    /// `<runtime name>://<runtime version>` from the CRI Version call, e.g.
    /// `containerd://1.6.20`.
    async fn version(&self) -> Result<String, String>;
    /// The RuntimeReady and NetworkReady conditions of the CRI Status call.
    async fn status(&self) -> Result<RuntimeStatus, String>;
    /// The images present (CRI ListImages), for status.images; none by default.
    async fn images(&self) -> Result<Vec<ContainerImage>, String> {
        Ok(Vec::new())
    }
}

/// Where the agent's events about its Node go.
pub trait NodeEventSink: Send + Sync {
    /// A Normal (or, with `warning`, Warning) event about this node.
    fn node_event(&self, reason: &str, message: &str, warning: bool);
}

/// When the pod sync loop last completed a pass: the loop calls [`LoopActivity::mark`],
/// the Ready condition turns False when it has been quiet too long.
#[derive(Debug, Default)]
pub struct LoopActivity(Mutex<Option<Instant>>);

impl LoopActivity {
    pub fn mark(&self) {
        *self.0.lock().unwrap() = Some(Instant::now());
    }
    pub fn idle(&self) -> Option<Duration> {
        self.0.lock().unwrap().map(|t| t.elapsed())
    }
}

/// The Node's registration and status upkeep.
pub struct NodeStatusManager {
    api: Arc<dyn NodeApi>,
    runtime: Arc<dyn RuntimeFacts>,
    machine: Arc<dyn Machine>,
    events: Arc<dyn NodeEventSink>,
    activity: Arc<LoopActivity>,
    config: NodeConfig,
    registered: bool,
    /// The last status sent, and when.
    reported: Option<(NodeStatus, Instant)>,
    conditions: Vec<NodeCondition>,
    /// The runtime's version and images as it last told them.
    runtime_version: String,
    images: Vec<ContainerImage>,
}

impl NodeStatusManager {
    pub fn new(
        config: NodeConfig,
        api: Arc<dyn NodeApi>,
        runtime: Arc<dyn RuntimeFacts>,
        machine: Arc<dyn Machine>,
        events: Arc<dyn NodeEventSink>,
        activity: Arc<LoopActivity>,
    ) -> NodeStatusManager {
        NodeStatusManager { api, runtime, machine, events, activity, config, registered: false, reported: None, conditions: Vec::new(), runtime_version: String::new(), images: Vec::new() }
    }

    /// The status as of now, from the machine and the runtime; conditions carry their
    /// transition times over from the last computation.
    pub async fn compute_status(&mut self) -> Result<NodeStatus, RegistrationError> {
        let facts = self.machine.facts().map_err(|source| RegistrationError::Machine { node: self.config.name.clone(), source })?;
        // A runtime that does not answer must not stall the heartbeat: each call is bounded,
        // and the last known version and images stand in for ones it could not give.
        let bounded = |what: &str| format!("the runtime did not answer {what} within {}s", RUNTIME_CALL_TIMEOUT.as_secs());
        if let Ok(Ok(version)) = tokio::time::timeout(RUNTIME_CALL_TIMEOUT, self.runtime.version()).await {
            self.runtime_version = version;
        }
        let runtime = Some(tokio::time::timeout(RUNTIME_CALL_TIMEOUT, self.runtime.status()).await.unwrap_or_else(|_| Err(bounded("Status"))));
        if let Ok(Ok(images)) = tokio::time::timeout(RUNTIME_CALL_TIMEOUT, self.runtime.images()).await {
            self.images = images;
        }
        let (version, images) = (&self.runtime_version, &self.images);
        let observed = Observed { runtime, usage: self.machine.usage().ok(), loop_idle: self.activity.idle() };
        let conditions = conditions::conditions(&self.conditions, &observed, Timestamp::now());
        self.condition_events(&conditions);
        self.conditions = conditions.clone();
        Ok(object::status(&self.config, &facts, version, images, conditions))
    }

    /// Upstream's events on a condition's first report or change: NodeHasSufficientMemory,
    /// NodeReady, NodeNotReady...
    fn condition_events(&self, new: &[NodeCondition]) {
        for c in new {
            let before = self.conditions.iter().find(|p| p.type_ == c.type_).map(|p| p.status.as_str());
            if before == Some(c.status.as_str()) {
                continue;
            }
            let reason = match (c.type_.as_str(), c.status.as_str()) {
                ("MemoryPressure", "True") => "NodeHasInsufficientMemory",
                ("MemoryPressure", _) => "NodeHasSufficientMemory",
                ("DiskPressure", "True") => "NodeHasDiskPressure",
                ("DiskPressure", _) => "NodeHasNoDiskPressure",
                ("PIDPressure", "True") => "NodeHasInsufficientPID",
                ("PIDPressure", _) => "NodeHasSufficientPID",
                ("Ready", "True") => "NodeReady",
                _ => "NodeNotReady",
            };
            self.events.node_event(reason, &format!("Node {} status is now: {reason}", self.config.name), false);
        }
    }

    /// Create the Node, or bring an existing one's kubelet-owned labels up to date. Returns
    /// the Node as stored (its uid is the Lease's owner).
    pub async fn register(&mut self) -> Result<Node, RegistrationError> {
        let name = self.config.name.clone();
        let api_err = |source| RegistrationError::Api { node: name.clone(), source };
        let status = self.compute_status().await?;
        let wanted = object::node(&self.config, status);
        let node = match self.api.create_node(&wanted).await {
            Ok(node) => {
                tracing::info!(node = %name, "registered the node");
                node
            }
            Err(ApiCallError::Conflict(_)) => {
                let existing = self.api.get_node(&name).await.map_err(api_err)?.ok_or(RegistrationError::Vanished { node: name.clone() })?;
                match reconcile_patch(&self.config, &existing) {
                    Some(patch) => self.api.patch_node(&name, &patch).await.map_err(api_err)?,
                    None => existing,
                }
            }
            Err(e) => return Err(api_err(e)),
        };
        self.registered = true;
        self.reported = None;
        Ok(node)
    }

    /// Register until it works, retrying at 100 ms doubling to 7 s as upstream does.
    pub async fn register_until_done(&mut self) -> Node {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.register().await {
                Ok(node) => return node,
                Err(e) => tracing::warn!(error = %e, "node registration failed; retrying in {delay:?}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(7));
        }
    }

    /// One status pass: compute and, when changed or due, send. Whether it was sent.
    pub async fn update_once(&mut self) -> Result<bool, RegistrationError> {
        let name = self.config.name.clone();
        if !self.registered {
            self.register().await?;
        }
        let status = self.compute_status().await?;
        let due = match &self.reported {
            None => true,
            Some((last, at)) => at.elapsed() >= STATUS_REPORT_INTERVAL || !same_status(last, &status),
        };
        if !due {
            return Ok(false);
        }
        let patch = serde_json::json!({ "status": status });
        match self.api.patch_node_status(&name, &patch).await {
            Ok(_) => {
                self.reported = Some((status, Instant::now()));
                Ok(true)
            }
            Err(ApiCallError::NotFound(_)) => {
                // Deleted under us: register it again on the next pass.
                tracing::warn!(node = %name, "the node was deleted; registering it again");
                self.registered = false;
                Err(RegistrationError::Api { node: name, source: ApiCallError::NotFound("the node was deleted".into()) })
            }
            Err(source) => Err(RegistrationError::Api { node: name, source }),
        }
    }

    /// Register, then keep the status up to date, forever (the caller aborts the task).
    pub async fn run(mut self) {
        self.events.node_event("Starting", "Starting kubelet.", false);
        self.register_until_done().await;
        let mut tick = tokio::time::interval(STATUS_UPDATE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.update_once().await {
                tracing::warn!(error = %e, "updating the node status failed");
            }
        }
    }
}

/// Two statuses alike but for the conditions' heartbeats.
fn same_status(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| NodeStatus { conditions: None, ..s.clone() };
    strip(a) == strip(b) && conditions::same_ignoring_heartbeat(a.conditions.as_deref().unwrap_or(&[]), b.conditions.as_deref().unwrap_or(&[]))
}

/// The patch that brings an existing Node's kubelet-owned labels (hostname, os, arch) back,
/// adds configured labels it lacks and the configured pod CIDRs if it has none; None when
/// nothing is to change. The user's labels, taints and unschedulable stay as they are.
pub fn reconcile_patch(config: &NodeConfig, existing: &Node) -> Option<serde_json::Value> {
    let have = existing.metadata.labels.clone().unwrap_or_default();
    let owned = object::labels(&NodeConfig { labels: BTreeMap::new(), ..config.clone() });
    let mut labels = serde_json::Map::new();
    for (k, v) in owned.iter().chain(config.labels.iter().filter(|(k, _)| !owned.contains_key(*k) && !have.contains_key(*k))) {
        if have.get(k) != Some(v) {
            labels.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    let mut patch = serde_json::Map::new();
    if !labels.is_empty() {
        patch.insert("metadata".into(), serde_json::json!({ "labels": labels }));
    }
    let has_cidr = existing.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some_and(|c| !c.is_empty());
    if !has_cidr && !config.pod_cidrs.is_empty() {
        patch.insert("spec".into(), serde_json::json!({ "podCIDR": config.pod_cidrs[0], "podCIDRs": config.pod_cidrs }));
    }
    (!patch.is_empty()).then_some(serde_json::Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::node::api::fake::FakeApi;
    use crate::agent::node::conditions::RuntimeCondition;
    use crate::agent::node::machine::FakeMachine;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};

    struct FakeRuntime(Mutex<Result<RuntimeStatus, String>>);

    #[async_trait]
    impl RuntimeFacts for FakeRuntime {
        async fn version(&self) -> Result<String, String> {
            Ok("kubelet-rs://0.1.0".into())
        }
        async fn status(&self) -> Result<RuntimeStatus, String> {
            self.0.lock().unwrap().clone()
        }
    }

    #[derive(Default)]
    struct Events(Mutex<Vec<String>>);
    impl NodeEventSink for Events {
        fn node_event(&self, reason: &str, _: &str, _: bool) {
            self.0.lock().unwrap().push(reason.to_string());
        }
    }

    fn ready() -> RuntimeStatus {
        RuntimeStatus { runtime: RuntimeCondition::ready(), network: RuntimeCondition::ready() }
    }

    fn manager(api: Arc<FakeApi>, events: Arc<Events>) -> (NodeStatusManager, Arc<FakeRuntime>) {
        let runtime = Arc::new(FakeRuntime(Mutex::new(Ok(ready()))));
        let mut config = NodeConfig::new("node-a");
        config.labels.insert("tier".into(), "edge".into());
        let m = NodeStatusManager::new(config, api, runtime.clone(), Arc::new(FakeMachine::typical()), events, Arc::new(LoopActivity::default()));
        (m, runtime)
    }

    fn ready_status(node: &Node) -> String {
        node.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap().status.clone()
    }

    #[tokio::test]
    async fn registers_then_reports_only_changes() {
        let api = Arc::new(FakeApi::default());
        let events = Arc::new(Events::default());
        let (mut m, runtime) = manager(api.clone(), events.clone());
        let node = m.register().await.unwrap();
        assert!(node.metadata.uid.is_some());
        assert_eq!(node.metadata.labels.as_ref().unwrap()["tier"], "edge");
        assert_eq!(ready_status(&node), "True");
        assert_eq!(node.status.as_ref().unwrap().node_info.as_ref().unwrap().container_runtime_version, "kubelet-rs://0.1.0");

        assert!(m.update_once().await.unwrap(), "the first pass reports");
        assert!(!m.update_once().await.unwrap(), "nothing changed");
        *runtime.0.lock().unwrap() = Ok(RuntimeStatus { runtime: RuntimeCondition::ready(), network: RuntimeCondition { ready: false, reason: "NetworkPluginNotReady".into(), message: "no cni".into() } });
        assert!(m.update_once().await.unwrap(), "readiness changed");
        let stored = api.node.lock().unwrap().clone().unwrap();
        assert_eq!(ready_status(&stored), "False");
        assert_eq!(api.status_patches.lock().unwrap().len(), 2);
        let seen = events.0.lock().unwrap().clone();
        assert!(seen.contains(&"NodeHasSufficientMemory".to_string()) && seen.contains(&"NodeReady".to_string()) && seen.contains(&"NodeNotReady".to_string()), "{seen:?}");
    }

    #[tokio::test]
    async fn re_registration_keeps_the_users_labels_and_taints() {
        let api = Arc::new(FakeApi::default());
        let mut existing = Node::default();
        existing.metadata.name = Some("node-a".into());
        existing.metadata.uid = Some("old-uid".into());
        existing.metadata.labels = Some(BTreeMap::from([("team".into(), "x".into()), ("kubernetes.io/os".into(), "wrong".into()), ("tier".into(), "user-set".into())]));
        existing.spec = Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![Taint { key: "k".into(), effect: "NoSchedule".into(), ..Default::default() }]),
            ..Default::default()
        });
        *api.node.lock().unwrap() = Some(existing);
        let (mut m, _) = manager(api.clone(), Arc::new(Events::default()));
        let node = m.register().await.unwrap();
        assert_eq!(node.metadata.uid.as_deref(), Some("old-uid"));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["team"], "x");
        assert_eq!(labels["tier"], "user-set", "configured labels do not override the user's");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/hostname"], "node-a");
        let spec = node.spec.unwrap();
        assert_eq!(spec.unschedulable, Some(true));
        assert_eq!(spec.taints.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_deleted_node_is_registered_again() {
        let api = Arc::new(FakeApi::default());
        let (mut m, _) = manager(api.clone(), Arc::new(Events::default()));
        m.register().await.unwrap();
        *api.node.lock().unwrap() = None;
        assert!(m.update_once().await.is_err());
        assert!(m.update_once().await.unwrap());
        assert!(api.node.lock().unwrap().is_some());
    }

    #[test]
    fn nothing_to_reconcile_is_no_patch() {
        let config = NodeConfig::new("node-a");
        let mut node = Node::default();
        node.metadata.labels = Some(object::labels(&config));
        assert_eq!(reconcile_patch(&config, &node), None);
    }
}
