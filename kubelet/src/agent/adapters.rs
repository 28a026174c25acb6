//! Small traits of the agent's parts implemented over the CRI runtime ([`PodRuntime`]) and
//! the event recorder: exec for probes and hooks, and the event sinks of pods and the node.
//! (The node status, log rotation and kubelet API have their own CRI implementations in
//! `node::cri_facts`, `logs::cri` and `server::cri`.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;

use super::events::{self, EventRecorder};
use super::node::NodeEventSink;
use super::pods::deps::{EventSink, EventType};
use super::probes::{ExecError, ExecOutput, ProbeExec};
use super::runtime::PodRuntime;

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

/// Events through the agent's recorder.
#[derive(Clone)]
pub struct Events {
    pub recorder: EventRecorder,
    pub node: String,
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
        let t = if warning { events::EventType::Warning } else { events::EventType::Normal };
        // As upstream, a node's events carry its name as its uid (what `kubectl describe
        // node` searches by).
        self.recorder.record(events::node_reference(&self.node), t, reason, message);
    }
}
