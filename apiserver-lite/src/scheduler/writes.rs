//! What the scheduler writes, all through the API: bindings, the PodScheduled=False
//! condition of pods that fit nowhere, and the events `kubectl describe pod` shows
//! (repeats of the same event counted on one object, as the event recorder does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

pub const SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("binding pod {pod} to node {node}: {source}")]
    Bind { pod: String, node: String, source: kube::Error },
    #[error("setting the PodScheduled condition of pod {pod}: {source}")]
    Condition { pod: String, source: kube::Error },
    #[error("recording the {reason} event of pod {pod}: {source}")]
    Event { pod: String, reason: String, source: kube::Error },
    #[error("building the {what} of pod {pod}: {source}")]
    Encode { what: &'static str, pod: String, source: serde_json::Error },
}

impl WriteError {
    /// The pod is gone or already bound: nothing to retry.
    pub fn is_final(&self) -> bool {
        matches!(self, WriteError::Bind { source: kube::Error::Api(s), .. } if s.code == 404 || s.code == 409)
    }
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

fn names(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()), pod.metadata.name.clone().unwrap_or_default())
}

/// (pod uid, reason, message) → (event name, count): a repeat updates the event.
type Recorded = HashMap<(String, String, String), (String, i32)>;

pub struct Writer {
    client: kube::Client,
    recorded: Mutex<Recorded>,
    sequence: AtomicU64,
}

impl Writer {
    pub fn new(client: kube::Client) -> Writer {
        Writer { client, recorded: Mutex::new(HashMap::new()), sequence: AtomicU64::new(0) }
    }

    pub async fn bind(&self, pod: &Pod, node: &str) -> Result<(), WriteError> {
        let (ns, name) = names(pod);
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        api.create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
            .await
            .map(drop)
            .map_err(|source| WriteError::Bind { pod: format!("{ns}/{name}"), node: node.to_string(), source })
    }

    /// PodScheduled=False reason Unschedulable with the message, unless already so.
    pub async fn unschedulable(&self, pod: &Pod, message: &str) -> Result<(), WriteError> {
        let (ns, name) = names(pod);
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let current = conditions.iter().find(|c| c.type_ == "PodScheduled");
        if current.is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable") && c.message.as_deref() == Some(message)) {
            return Ok(());
        }
        let transition = match current {
            Some(c) if c.status == "False" => c.last_transition_time.as_ref().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)).unwrap_or_else(|| json!(now())),
            _ => json!(now()),
        };
        let mut list: Vec<Value> = conditions.iter().filter(|c| c.type_ != "PodScheduled").filter_map(|c| serde_json::to_value(c).ok()).collect();
        list.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": transition}));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": list}})))
            .await
            .map(drop)
            .map_err(|source| WriteError::Condition { pod: format!("{ns}/{name}"), source })
    }

    /// A core/v1 event about the pod from the default-scheduler.
    pub async fn event(&self, pod: &Pod, type_: &str, reason: &str, action: &str, message: &str) -> Result<(), WriteError> {
        let (ns, name) = names(pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let err = |source| WriteError::Event { pod: format!("{ns}/{name}"), reason: reason.to_string(), source };
        let id = (uid.clone(), reason.to_string(), message.to_string());
        let repeat = self.recorded.lock().expect("event record lock").get(&id).cloned();
        if let Some((event_name, count)) = repeat {
            let patch = json!({"count": count + 1, "lastTimestamp": now()});
            if api.patch(&event_name, &PatchParams::default(), &Patch::Merge(patch)).await.is_ok() {
                self.recorded.lock().expect("event record lock").insert(id, (event_name, count + 1));
                return Ok(());
            }
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let event_name = format!("{name}.{:x}", nanos + self.sequence.fetch_add(1, Ordering::Relaxed) as u128);
        let event: Event = serde_json::from_value(json!({
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name, "uid": uid, "resourceVersion": pod.metadata.resource_version},
            "reason": reason, "message": message, "type": type_, "action": action,
            "source": {"component": SCHEDULER_NAME},
            "reportingComponent": SCHEDULER_NAME, "reportingInstance": SCHEDULER_NAME,
            "firstTimestamp": now(), "lastTimestamp": now(), "count": 1,
        }))
        .map_err(|source| WriteError::Encode { what: "event", pod: format!("{ns}/{name}"), source })?;
        api.create(&PostParams::default(), &event).await.map_err(err)?;
        self.recorded.lock().expect("event record lock").insert(id, (event_name, 1));
        Ok(())
    }

    /// Forget the pod's event records (it was bound or deleted).
    pub fn forget(&self, uid: &str) {
        self.recorded.lock().expect("event record lock").retain(|(u, _, _), _| u != uid);
    }
}
