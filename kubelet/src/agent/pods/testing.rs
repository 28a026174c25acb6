//! Test doubles for the sync and the manager: dependencies that record what they were asked,
//! an event recorder, CRI configs that carry the labels and annotations the real ones do.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::ManualClock;
use super::cri_config::{labels, ConfigError, ContainerContext, DnsSettings, SandboxContext};
use super::deps::{CriConfigs, EventSink, EventType, PodDeps, PodStartMetrics};
use super::plan::ProbeState;
use super::sync::{SyncConfig, Syncer};
use crate::agent::runtime::fake::FakeRuntime;

#[derive(Default)]
pub struct TestDeps {
    pub env_error: Mutex<Option<String>>,
    pub post_start_error: Mutex<Option<String>>,
    pub probes: Mutex<HashMap<String, ProbeState>>,
    pub pre_stops: Mutex<Vec<String>>,
    pub cleaned: Mutex<HashSet<String>>,
}

#[async_trait]
impl PodDeps for TestDeps {
    fn sandbox_context(&self, pod: &Pod, attempt: u32) -> SandboxContext {
        SandboxContext {
            cgroup_parent: format!("/kubepods/pod{}", pod.metadata.uid.as_deref().unwrap_or("")),
            log_directory: PathBuf::from("/var/log/pods/x"),
            dns: DnsSettings { cluster_dns: vec![], cluster_domain: "cluster.local".into(), host_resolv_conf: "/etc/resolv.conf".into() },
            attempt,
            seccomp_root: PathBuf::new(),
        }
    }
    async fn prepare_volumes(&self, _pod: &Pod) -> Result<(), String> {
        Ok(())
    }
    async fn env(&self, _pod: &Pod, _c: &Container, _ip: Option<&str>) -> Result<Vec<cri::KeyValue>, String> {
        match self.env_error.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(vec![]),
        }
    }
    fn mounts(&self, _pod: &Pod, _c: &Container) -> Result<Vec<cri::Mount>, String> {
        Ok(vec![])
    }
    async fn pull_auth(&self, _pod: &Pod, _image: &str) -> Option<cri::AuthConfig> {
        None
    }
    async fn post_start(&self, _pod: &Pod, _c: &Container, _id: &str) -> Result<(), String> {
        match self.post_start_error.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    async fn pre_stop(&self, _pod: &Pod, c: &Container, _id: &str, _grace: Duration) {
        self.pre_stops.lock().unwrap().push(c.name.clone());
    }
    fn probe_state(&self, _uid: &str, container: &str, _id: &str) -> ProbeState {
        self.probes.lock().unwrap().get(container).copied().unwrap_or_default()
    }
    async fn termination_message(&self, _pod: &Pod, _c: &Container, _id: &str, exit_code: i32) -> Option<String> {
        (exit_code == 42).then(|| "the answer".to_string())
    }
    async fn cleanup(&self, uid: &str) {
        self.cleaned.lock().unwrap().insert(uid.to_string());
    }
}

#[derive(Default)]
pub struct Events(pub Mutex<Vec<(String, String)>>);

impl Events {
    pub fn reasons(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|(r, _)| r.clone()).collect()
    }
    pub fn messages(&self, reason: &str) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|(r, _)| r == reason).map(|(_, m)| m.clone()).collect()
    }
}

impl EventSink for Events {
    fn event(&self, _pod: &Pod, _container: Option<&str>, _kind: EventType, reason: &str, message: &str) {
        self.0.lock().unwrap().push((reason.to_string(), message.to_string()));
    }
}

#[derive(Default)]
pub struct Metrics(pub Mutex<Vec<Duration>>);

impl PodStartMetrics for Metrics {
    fn pod_started(&self, _pod: &Pod, latency: Duration) {
        self.0.lock().unwrap().push(latency);
    }
}

/// Minimal configs with the real labels and annotations; the hash is the image and command.
pub struct TestConfigs;

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_UID.to_string(), pod.metadata.uid.clone().unwrap_or_default()),
        (labels::POD_NAME.to_string(), pod.metadata.name.clone().unwrap_or_default()),
        (labels::POD_NAMESPACE.to_string(), pod.metadata.namespace.clone().unwrap_or_default()),
    ])
}

impl CriConfigs for TestConfigs {
    fn sandbox(&self, pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError> {
        Ok(cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                attempt: ctx.attempt,
            }),
            labels: pod_labels(pod),
            ..Default::default()
        })
    }
    fn container(&self, pod: &Pod, c: &Container, ctx: &ContainerContext) -> Result<cri::ContainerConfig, ConfigError> {
        let mut labels = pod_labels(pod);
        labels.insert(labels::CONTAINER_NAME.into(), c.name.clone());
        let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let annotations = HashMap::from([
            (labels::CONTAINER_HASH.to_string(), self.hash(c)),
            (labels::RESTART_COUNT.to_string(), ctx.restart_count.to_string()),
            (labels::TERMINATION_GRACE_PERIOD.to_string(), grace.to_string()),
        ]);
        Ok(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: c.name.clone(), attempt: ctx.restart_count }),
            image: Some(cri::ImageSpec { image: ctx.image.clone(), ..Default::default() }),
            labels,
            annotations,
            ..Default::default()
        })
    }
    fn hash(&self, c: &Container) -> String {
        format!("{}|{:?}", c.image.clone().unwrap_or_default(), c.command)
    }
}

pub struct Harness {
    pub runtime: Arc<FakeRuntime>,
    pub deps: Arc<TestDeps>,
    pub events: Arc<Events>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<ManualClock>,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            runtime: Arc::new(FakeRuntime::new()),
            deps: Arc::new(TestDeps::default()),
            events: Arc::new(Events::default()),
            metrics: Arc::new(Metrics::default()),
            clock: Arc::new(ManualClock::new(SystemTime::now())),
        }
    }

    pub fn syncer(&self) -> Syncer {
        let config = SyncConfig { runtime_name: "fake".into(), runtime_handler: String::new(), host_ips: vec!["192.168.1.10".into()], node_memory_capacity: 0 };
        Syncer::new(self.runtime.clone(), self.deps.clone(), self.events.clone(), config)
            .with_configs(Arc::new(TestConfigs))
            .with_metrics(self.metrics.clone())
            .with_clock(self.clock.clone())
    }
}

pub fn pod(uid: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pod-{uid}"), "namespace": "ns", "uid": uid, "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": spec
    }))
    .unwrap()
}
