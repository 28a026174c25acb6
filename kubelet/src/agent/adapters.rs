//! The small traits the agent's parts ask for, implemented over the CRI runtime
//! ([`PodRuntime`]) and the event recorder: exec for probes and hooks, runtime facts for
//! the Node, streaming URLs for the kubelet API, log reopening for rotation, and the event
//! sinks of pods and the node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{ContainerImage, Pod};

use super::events::{self, EventRecorder};
use super::logs::rotate::{ContainerLog, LogRuntime};
use super::node::{NodeEventSink, RuntimeCondition, RuntimeFacts, RuntimeStatus};
use super::pods::deps::{EventSink, EventType};
use super::probes::{ExecError, ExecOutput, ProbeExec};
use super::runtime::PodRuntime;
use super::server::backend::{StreamFlags, StreamingRuntime};

/// The CRI runtime as the other parts need it.
#[derive(Clone)]
pub struct Cri(pub Arc<dyn PodRuntime>);

#[async_trait]
impl ProbeExec for Cri {
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput, ExecError> {
        // ExecSync's timeout is whole seconds (0: none); the wait here adds a margin for the call.
        let seconds = if timeout.is_zero() { 0 } else { timeout.as_secs().max(1) as i64 };
        let call = self.0.exec_sync(container_id, cmd.to_vec(), seconds);
        let result = if timeout.is_zero() { call.await } else { tokio::time::timeout(timeout + Duration::from_secs(2), call).await.map_err(|_| ExecError::Timeout)? };
        match result {
            Ok(out) => {
                let mut output = out.stdout;
                output.extend_from_slice(&out.stderr);
                Ok(ExecOutput { exit_code: out.exit_code, output })
            }
            Err(e) if e.to_string().contains("DeadlineExceeded") || e.to_string().contains("timed out") => Err(ExecError::Timeout),
            Err(e) => Err(ExecError::Failed(e.to_string())),
        }
    }
}

fn condition(status: &cri::RuntimeStatus, name: &str) -> RuntimeCondition {
    match status.conditions.iter().find(|c| c.r#type == name) {
        Some(c) => RuntimeCondition { ready: c.status, reason: c.reason.clone(), message: c.message.clone() },
        None => RuntimeCondition { ready: false, reason: "Unknown".into(), message: format!("the runtime reports no {name} condition") },
    }
}

#[async_trait]
impl RuntimeFacts for Cri {
    async fn version(&self) -> Result<String, String> {
        let v = self.0.version().await.map_err(|e| e.to_string())?;
        Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    }

    async fn status(&self) -> Result<RuntimeStatus, String> {
        let status = self.0.status().await.map_err(|e| e.to_string())?;
        Ok(RuntimeStatus { runtime: condition(&status, "RuntimeReady"), network: condition(&status, "NetworkReady") })
    }

    async fn images(&self) -> Result<Vec<ContainerImage>, String> {
        Ok(Vec::new())
    }
}

fn stream_flags(flags: StreamFlags) -> (bool, bool, bool, bool) {
    (flags.stdin, flags.stdout, flags.stderr, flags.tty)
}

#[async_trait]
impl StreamingRuntime for Cri {
    async fn exec_url(&self, container_id: &str, command: &[String], flags: StreamFlags) -> Result<String, String> {
        let (stdin, stdout, stderr, tty) = stream_flags(flags);
        let request = cri::ExecRequest { container_id: container_id.into(), cmd: command.to_vec(), tty, stdin, stdout, stderr };
        self.0.exec(request).await.map_err(|e| e.to_string())
    }

    async fn attach_url(&self, container_id: &str, flags: StreamFlags) -> Result<String, String> {
        let (stdin, stdout, stderr, tty) = stream_flags(flags);
        let request = cri::AttachRequest { container_id: container_id.into(), tty, stdin, stdout, stderr };
        self.0.attach(request).await.map_err(|e| e.to_string())
    }

    async fn port_forward_url(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, String> {
        let request = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports.to_vec() };
        self.0.port_forward(request).await.map_err(|e| e.to_string())
    }
}

#[async_trait]
impl LogRuntime for Cri {
    async fn running_container_logs(&self) -> Vec<ContainerLog> {
        let filter = cri::ContainerFilter { state: Some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 }), ..Default::default() };
        let Ok(containers) = self.0.list_containers(Some(filter)).await else { return Vec::new() };
        let mut logs = Vec::new();
        for c in containers {
            if let Ok(status) = self.0.container_status(&c.id).await
                && !status.log_path.is_empty()
            {
                logs.push(ContainerLog { container_id: c.id, path: status.log_path.into() });
            }
        }
        logs
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<(), String> {
        self.0.reopen_container_log(container_id).await.map_err(|e| e.to_string())
    }
}

/// Events through the agent's recorder.
#[derive(Clone)]
pub struct Events {
    pub recorder: EventRecorder,
    pub node: String,
    pub node_uid: Arc<std::sync::Mutex<Option<String>>>,
}

fn kind(t: EventType) -> events::EventType {
    match t {
        EventType::Normal => events::EventType::Normal,
        EventType::Warning => events::EventType::Warning,
    }
}

/// The reference of `pod` (or its container `container`: `spec.containers{name}`, or
/// `spec.initContainers{name}` for an init container).
pub fn pod_object(pod: &Pod, container: Option<&str>) -> k8s_openapi::api::core::v1::ObjectReference {
    let m = &pod.metadata;
    let field_path = container.map(|name| {
        let init = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.name == name));
        if init { format!("spec.initContainers{{{name}}}") } else { format!("spec.containers{{{name}}}") }
    });
    events::pod_reference(m.namespace.as_deref().unwrap_or("default"), m.name.as_deref().unwrap_or(""), m.uid.as_deref().unwrap_or(""), field_path)
}

impl EventSink for Events {
    fn event(&self, pod: &Pod, container: Option<&str>, t: EventType, reason: &str, message: &str) {
        self.recorder.record(pod_object(pod, container), kind(t), reason, message);
    }
}

impl NodeEventSink for Events {
    fn node_event(&self, reason: &str, message: &str, warning: bool) {
        let uid = self.node_uid.lock().unwrap().clone();
        let t = if warning { events::EventType::Warning } else { events::EventType::Normal };
        self.recorder.record(events::node_reference(&self.node, uid.as_deref()), t, reason, message);
    }
}
