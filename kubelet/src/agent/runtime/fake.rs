//! An in-memory [`PodRuntime`] for unit tests: sandboxes and containers with states, the
//! calls made in order, and knobs to make a container exit, an image pull fail, or a
//! sandbox die. Public so the integrator's tests can use it too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;

use super::{PodRuntime, Result, RuntimeError};

#[derive(Debug, Clone)]
pub struct FakeSandbox {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub ready: bool,
    pub created_at: i64,
    pub ip: String,
}

#[derive(Debug, Clone)]
pub struct FakeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub config: cri::ContainerConfig,
    pub state: cri::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: HashMap<String, FakeSandbox>,
    containers: HashMap<String, FakeContainer>,
    images: HashSet<String>,
    pull_failures: HashMap<String, String>,
    start_failures: HashMap<String, String>,
    calls: Vec<String>,
    // Monotonic fake time so that ordering by created_at is stable within a test.
    last_time: i64,
}

impl State {
    fn now(&mut self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
        self.last_time = wall.max(self.last_time + 1);
        self.last_time
    }
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }
}

/// The fake runtime. `runtime_name` is "fake".
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn not_found(call: &'static str, what: &str) -> RuntimeError {
    RuntimeError::Call { call, code: tonic::Code::NotFound, message: format!("{what} not found") }
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as "Call arg", in order.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Makes `image` present, as if pulled before.
    pub fn add_image(&self, image: &str) {
        self.state.lock().unwrap().images.insert(image.to_string());
    }

    /// Pulls of `image` fail with `message` (None: succeed again).
    pub fn fail_pull(&self, image: &str, message: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        match message {
            Some(m) => s.pull_failures.insert(image.to_string(), m.to_string()),
            None => s.pull_failures.remove(image),
        };
    }

    /// Starting containers named `name` fails with `message` (None: succeed again).
    pub fn fail_start(&self, name: &str, message: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        match message {
            Some(m) => s.start_failures.insert(name.to_string(), m.to_string()),
            None => s.start_failures.remove(name),
        };
    }

    pub fn sandboxes(&self) -> Vec<FakeSandbox> {
        let mut v: Vec<_> = self.state.lock().unwrap().sandboxes.values().cloned().collect();
        v.sort_by_key(|s| s.created_at);
        v
    }

    /// All containers, oldest first.
    pub fn containers(&self) -> Vec<FakeContainer> {
        let mut v: Vec<_> = self.state.lock().unwrap().containers.values().cloned().collect();
        v.sort_by_key(|c| c.created_at);
        v
    }

    /// The containers whose metadata name is `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<FakeContainer> {
        self.containers().into_iter().filter(|c| c.config.metadata.as_ref().is_some_and(|m| m.name == name)).collect()
    }

    /// The running container named `name`, if any.
    pub fn running(&self, name: &str) -> Option<FakeContainer> {
        self.containers_named(name).into_iter().rev().find(|c| c.state == cri::ContainerState::ContainerRunning)
    }

    /// Makes the running container `id` exit with `code` (reason "OOMKilled" when given).
    pub fn exit_container(&self, id: &str, code: i32, reason: &str) {
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        if let Some(c) = s.containers.get_mut(id) {
            c.state = cri::ContainerState::ContainerExited;
            c.exit_code = code;
            c.finished_at = now;
            c.reason = reason.to_string();
        }
    }

    /// Makes the sandbox `id` not ready, as if its network or pause process died.
    pub fn kill_sandbox(&self, id: &str) {
        if let Some(sb) = self.state.lock().unwrap().sandboxes.get_mut(id) {
            sb.ready = false;
        }
    }
}

#[async_trait]
impl PodRuntime for FakeRuntime {
    async fn version(&self) -> Result<cri::VersionResponse> {
        Ok(cri::VersionResponse { version: "0.1.0".into(), runtime_name: "fake".into(), runtime_version: "0.1.0".into(), runtime_api_version: "v1".into() })
    }

    async fn status(&self) -> Result<cri::RuntimeStatus> {
        let cond = |t: &str| cri::RuntimeCondition { r#type: t.into(), status: true, reason: String::new(), message: String::new() };
        Ok(cri::RuntimeStatus { conditions: vec![cond("RuntimeReady"), cond("NetworkReady")] })
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig, _runtime_handler: &str) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        let id = s.id("sb");
        let created_at = s.now();
        let ip = format!("10.88.0.{}", s.next_id % 250 + 2);
        s.calls.push(format!("RunPodSandbox {}", config.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("")));
        s.sandboxes.insert(id.clone(), FakeSandbox { id: id.clone(), config, ready: true, created_at, ip });
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("StopPodSandbox {id}"));
        let now = s.now();
        let Some(sb) = s.sandboxes.get_mut(id) else { return Ok(()) };
        sb.ready = false;
        for c in s.containers.values_mut().filter(|c| c.sandbox_id == id && c.state == cri::ContainerState::ContainerRunning) {
            c.state = cri::ContainerState::ContainerExited;
            c.exit_code = 137;
            c.finished_at = now;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("RemovePodSandbox {id}"));
        s.sandboxes.remove(id);
        s.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let s = self.state.lock().unwrap();
        let sb = s.sandboxes.get(id).ok_or_else(|| not_found("PodSandboxStatus", id))?;
        Ok(cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.ready { cri::PodSandboxState::SandboxReady } else { cri::PodSandboxState::SandboxNotready } as i32,
            created_at: sb.created_at,
            network: Some(cri::PodSandboxNetworkStatus { ip: sb.ip.clone(), additional_ips: vec![] }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            ..Default::default()
        })
    }

    async fn list_pod_sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Result<Vec<cri::PodSandbox>> {
        let s = self.state.lock().unwrap();
        let filter = filter.unwrap_or_default();
        Ok(s.sandboxes
            .values()
            .filter(|sb| labels_match(&filter.label_selector, &sb.config.labels))
            .filter(|sb| filter.id.is_empty() || filter.id == sb.id)
            .map(|sb| cri::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready { cri::PodSandboxState::SandboxReady } else { cri::PodSandboxState::SandboxNotready } as i32,
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .collect())
    }

    async fn create_container(&self, sandbox_id: &str, config: cri::ContainerConfig, _sandbox_config: cri::PodSandboxConfig) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        s.calls.push(format!("CreateContainer {name}"));
        if !s.sandboxes.get(sandbox_id).is_some_and(|sb| sb.ready) {
            return Err(RuntimeError::Call { call: "CreateContainer", code: tonic::Code::FailedPrecondition, message: format!("sandbox {sandbox_id} is not ready") });
        }
        let id = s.id("c");
        let created_at = s.now();
        let c = FakeContainer {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            config,
            state: cri::ContainerState::ContainerCreated,
            created_at,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
        };
        s.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        let name = s.containers.get(id).and_then(|c| c.config.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default();
        s.calls.push(format!("StartContainer {name}"));
        if let Some(message) = s.start_failures.get(&name).cloned() {
            return Err(RuntimeError::Call { call: "StartContainer", code: tonic::Code::Unknown, message });
        }
        let c = s.containers.get_mut(id).ok_or_else(|| not_found("StartContainer", id))?;
        c.state = cri::ContainerState::ContainerRunning;
        c.started_at = now;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let now = s.now();
        let name = s.containers.get(id).and_then(|c| c.config.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default();
        s.calls.push(format!("StopContainer {name} {timeout_seconds}"));
        let c = s.containers.get_mut(id).ok_or_else(|| not_found("StopContainer", id))?;
        if c.state == cri::ContainerState::ContainerRunning {
            c.state = cri::ContainerState::ContainerExited;
            c.exit_code = 143;
            c.finished_at = now;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let name = s.containers.get(id).and_then(|c| c.config.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default();
        s.calls.push(format!("RemoveContainer {name}"));
        s.containers.remove(id);
        Ok(())
    }

    async fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Result<Vec<cri::Container>> {
        let s = self.state.lock().unwrap();
        let filter = filter.unwrap_or_default();
        Ok(s.containers
            .values()
            .filter(|c| labels_match(&filter.label_selector, &c.config.labels))
            .filter(|c| filter.pod_sandbox_id.is_empty() || filter.pod_sandbox_id == c.sandbox_id)
            .map(|c| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.config.image.as_ref().map(|i| format!("sha256:{}", i.image)).unwrap_or_default(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: String::new(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let s = self.state.lock().unwrap();
        let c = s.containers.get(id).ok_or_else(|| not_found("ContainerStatus", id))?;
        Ok(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.config.image.clone(),
            image_ref: c.config.image.as_ref().map(|i| format!("sha256:{}", i.image)).unwrap_or_default(),
            reason: c.reason.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            log_path: c.config.log_path.clone(),
            ..Default::default()
        })
    }

    async fn exec_sync(&self, id: &str, cmd: Vec<String>, _timeout_seconds: i64) -> Result<cri::ExecSyncResponse> {
        self.state.lock().unwrap().calls.push(format!("ExecSync {id} {}", cmd.join(" ")));
        Ok(cri::ExecSyncResponse { stdout: vec![], stderr: vec![], exit_code: 0 })
    }

    async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        Ok(format!("http://fake/exec/{}", request.container_id))
    }

    async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        Ok(format!("http://fake/attach/{}", request.container_id))
    }

    async fn port_forward(&self, request: cri::PortForwardRequest) -> Result<String> {
        Ok(format!("http://fake/portforward/{}", request.pod_sandbox_id))
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.state.lock().unwrap().calls.push(format!("ReopenContainerLog {id}"));
        Ok(())
    }

    async fn pull_image(&self, image: &str, _auth: Option<cri::AuthConfig>, _sandbox_config: Option<cri::PodSandboxConfig>) -> Result<String> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(format!("PullImage {image}"));
        if let Some(message) = s.pull_failures.get(image).cloned() {
            return Err(RuntimeError::Call { call: "PullImage", code: tonic::Code::Unknown, message });
        }
        s.images.insert(image.to_string());
        Ok(format!("sha256:{image}"))
    }

    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let s = self.state.lock().unwrap();
        Ok(s.images.contains(image).then(|| cri::Image { id: format!("sha256:{image}"), repo_tags: vec![image.to_string()], ..Default::default() }))
    }
}
