//! The pod sync's dependencies ([`PodDeps`]) over the agent's parts: volumes, environments
//! and pull secrets over the API objects, lifecycle hooks and probe results over the probe
//! manager and the CRI runtime, and the pod's cgroup, log folder and DNS settings from the
//! agent's config.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::env::{self, EnvContext};
use super::lifecycle::{self, HookKind, HookTarget};
use super::pods::cri_config::{DnsSettings, SandboxContext};
use super::pods::deps::PodDeps;
use super::pods::plan::ProbeState;
use super::pods::qos;
use super::probes::{ProbeExec, ProbeKind, ProbeManager};
use super::volumes::VolumeManager;
use super::volumes::objects::Objects;
use super::volumes::pull_secrets;

/// What the pod sync uses, shared by every pod worker.
pub struct AgentDeps {
    pub volumes: Arc<VolumeManager>,
    pub objects: Arc<dyn Objects>,
    pub probes: Arc<ProbeManager>,
    pub exec: Arc<dyn ProbeExec>,
    pub cgroup_root: String,
    pub pod_log_dir: PathBuf,
    pub dns: DnsSettings,
    pub host_ips: Vec<String>,
    pub node_allocatable: RwLock<BTreeMap<String, Quantity>>,
    /// Pod IPs by pod UID (hooks' and probes' default host), from the statuses.
    pub pod_ips: Mutex<HashMap<String, String>>,
    /// Containers (pod UID, container id) whose liveness or startup probe failed past its
    /// threshold: the next sync kills them.
    pub failed: Mutex<HashSet<(String, String, ProbeKind)>>,
    /// The pods as the sources last gave them, by UID.
    pub pods: Arc<Mutex<HashMap<String, Pod>>>,
    /// Each container's last resolved environment, for its mounts' subPathExpr.
    envs: Mutex<HashMap<(String, String), Env>>,
}

/// A resolved environment: (name, value) in order.
type Env = Vec<(String, String)>;

impl AgentDeps {
    #[allow(clippy::too_many_arguments)]
    pub fn new(volumes: Arc<VolumeManager>, objects: Arc<dyn Objects>, probes: Arc<ProbeManager>, exec: Arc<dyn ProbeExec>, pods: Arc<Mutex<HashMap<String, Pod>>>, cgroup_root: String, pod_log_dir: PathBuf, dns: DnsSettings, host_ips: Vec<String>) -> AgentDeps {
        AgentDeps {
            pods,
            volumes,
            objects,
            probes,
            exec,
            cgroup_root,
            pod_log_dir,
            dns,
            host_ips,
            node_allocatable: RwLock::default(),
            pod_ips: Mutex::default(),
            failed: Mutex::default(),
            envs: Mutex::default(),
        }
    }

    /// The folder of a pod's logs: `<dir>/<namespace>_<name>_<uid>`, as the kubelet names it.
    pub fn pod_log_directory(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.pod_log_dir.join(format!("{}_{}_{}", m.namespace.as_deref().unwrap_or("default"), m.name.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or("")))
    }

    fn pod_ip(&self, uid: &str) -> String {
        self.pod_ips.lock().unwrap().get(uid).cloned().unwrap_or_default()
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

#[async_trait]
impl PodDeps for AgentDeps {
    fn sandbox_context(&self, pod: &Pod, attempt: u32) -> SandboxContext {
        SandboxContext {
            cgroup_parent: qos::pod_cgroup(&self.cgroup_root, pod),
            log_directory: self.pod_log_directory(pod),
            dns: self.dns.clone(),
            attempt,
            seccomp_root: PathBuf::new(),
        }
    }

    async fn prepare_volumes(&self, pod: &Pod) -> Result<(), String> {
        self.volumes.setup(pod).await.map_err(|e| e.to_string())
    }

    async fn env(&self, pod: &Pod, container: &Container, pod_ip: Option<&str>) -> Result<Vec<cri::KeyValue>, String> {
        if let Some(ip) = pod_ip {
            self.pod_ips.lock().unwrap().insert(uid(pod), ip.to_string());
        }
        let ctx = EnvContext {
            pod_ips: pod_ip.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
            host_ips: self.host_ips.clone(),
            node_allocatable: self.node_allocatable.read().unwrap().clone(),
        };
        let resolved = env::resolve(pod, container, &ctx, self.objects.as_ref()).await.map_err(|e| e.to_string())?;
        self.envs.lock().unwrap().insert((uid(pod), container.name.clone()), resolved.vars.clone());
        Ok(resolved.vars.into_iter().map(|(key, value)| cri::KeyValue { key, value }).collect())
    }

    fn mounts(&self, pod: &Pod, container: &Container) -> Result<Vec<cri::Mount>, String> {
        let env = self.envs.lock().unwrap().get(&(uid(pod), container.name.clone())).cloned().unwrap_or_default();
        self.volumes.mounts(pod, container, &env).map_err(|e| e.to_string())
    }

    async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<cri::AuthConfig> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let names = pod.spec.as_ref()?.image_pull_secrets.as_ref()?;
        let mut secrets = Vec::new();
        for name in names.iter().map(|r| r.name.as_str()) {
            match self.objects.secret(namespace, name).await {
                Ok(Some(secret)) => secrets.push(secret),
                // Upstream pulls anonymously when a pull secret is missing, with a warning.
                Ok(None) => tracing::warn!(pod = %pod.metadata.name.as_deref().unwrap_or(""), "image pull secret {namespace}/{name} not found"),
                Err(e) => tracing::warn!("reading image pull secret {namespace}/{name}: {e}"),
            }
        }
        pull_secrets::pull_auth(&secrets, image)
    }

    async fn post_start(&self, pod: &Pod, container: &Container, container_id: &str) -> Result<(), String> {
        let Some(handler) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else { return Ok(()) };
        let pod_ip = self.pod_ip(&uid(pod));
        let target = HookTarget { pod, container, container_id, pod_ip: &pod_ip };
        lifecycle::run_handler(HookKind::PostStart, handler, &target, self.exec.as_ref(), Duration::ZERO).await.map_err(|e| e.to_string())
    }

    async fn pre_stop(&self, pod: &Pod, container: &Container, container_id: &str, grace: Duration) {
        let Some(handler) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return };
        let pod_ip = self.pod_ip(&uid(pod));
        let target = HookTarget { pod, container, container_id, pod_ip: &pod_ip };
        match tokio::time::timeout(grace, lifecycle::run_handler(HookKind::PreStop, handler, &target, self.exec.as_ref(), grace)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(container = %container.name, "preStop hook: {e}"),
            Err(_) => tracing::warn!(container = %container.name, "preStop hook did not finish within the grace period"),
        }
    }

    fn probe_state(&self, uid: &str, container: &str, container_id: &str) -> ProbeState {
        let failed = self.failed.lock().unwrap();
        let key = |kind| (uid.to_string(), container_id.to_string(), kind);
        let pods = self.pods.lock().unwrap();
        // Readiness and startup of this very instance (true for a container without such probes).
        let (started, ready) = match pods.get(uid) {
            Some(pod) => (self.probes.container_started(pod, container, container_id), self.probes.container_ready(pod, container, container_id)),
            None => (false, false),
        };
        ProbeState { liveness_failed: failed.contains(&key(ProbeKind::Liveness)), startup_failed: failed.contains(&key(ProbeKind::Startup)), started, ready }
    }

    async fn cleanup(&self, uid: &str) {
        if let Err(e) = self.volumes.teardown(uid) {
            tracing::warn!(pod = uid, "tearing down volumes: {e}");
        }
        self.probes.remove_pod(uid);
        self.pod_ips.lock().unwrap().remove(uid);
        self.failed.lock().unwrap().retain(|(u, _, _)| u != uid);
        self.envs.lock().unwrap().retain(|(u, _), _| u != uid);
    }
}
