//! Events about pods and the node, written to the API server as core/v1 Events (what
//! `kubectl describe` and `kubectl get events` show). Recording never waits on the API:
//! events go through a bounded queue to one writer task, which folds a repeat of the same
//! event on the same object within ten minutes into the first one's count, as upstream's
//! event correlator does ("Back-off restarting failed container (x5 over 3m)").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use tokio::sync::mpsc;

/// How long a repeat is folded into an earlier event.
const FOLD_WINDOW: Duration = Duration::from_secs(600);
/// Events queued beyond this are dropped (with a warning in the log), never blocking a sync.
const QUEUE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// A cheap handle for recording events; clones share the writer.
#[derive(Clone)]
pub struct EventRecorder {
    queue: mpsc::Sender<Record>,
}

impl EventRecorder {
    /// A recorder whose writer task (spawned here) creates events as `kubelet` on `node`.
    pub fn start(client: kube::Client, node: String) -> EventRecorder {
        let (queue, records) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(client, node, records));
        EventRecorder { queue }
    }

    /// Record an event about `object`.
    pub fn record(&self, object: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let record = Record { object, kind, reason: reason.to_string(), message: message.to_string() };
        if self.queue.try_send(record).is_err() {
            tracing::warn!(reason, message, "event queue full: event dropped");
        }
    }
}

/// The reference to a pod (or one of its containers, with `field_path`
/// `spec.containers{name}`) that events are about.
pub fn pod_reference(namespace: &str, name: &str, uid: &str, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        field_path,
        ..Default::default()
    }
}

/// The reference to a node: its name as its uid, events in `default`, as upstream.
pub fn node_reference(name: &str) -> ObjectReference {
    ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(name.into()), uid: Some(name.to_string()), ..Default::default() }
}

/// The namespace an event about `object` lives in.
fn event_namespace(object: &ObjectReference) -> String {
    object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into())
}

/// Two records are the same event when object, type, reason and message are.
fn fold_key(r: &Record) -> String {
    format!("{}/{}/{}/{}/{}/{}/{}", r.object.kind.as_deref().unwrap_or(""), event_namespace(&r.object), r.object.name.as_deref().unwrap_or(""), r.object.uid.as_deref().unwrap_or(""), r.kind.as_str(), r.reason, r.message)
}

/// The Event for a first occurrence.
fn new_event(record: &Record, node: &str, now: jiff::Timestamp) -> Event {
    let object_name = record.object.name.clone().unwrap_or_default();
    Event {
        metadata: ObjectMeta {
            // As client-go: the object's name and a unique hex suffix.
            name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
            namespace: Some(event_namespace(&record.object)),
            ..Default::default()
        },
        involved_object: record.object.clone(),
        reason: Some(record.reason.clone()),
        message: Some(record.message.clone()),
        type_: Some(record.kind.as_str().into()),
        source: Some(EventSource { component: Some("kubelet".into()), host: Some(node.into()) }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.into()),
        action: Some(record.reason.clone()),
        ..Default::default()
    }
}

async fn write_events(client: kube::Client, node: String, mut records: mpsc::Receiver<Record>) {
    // Fold key → (namespace, event name, count, first seen).
    let mut recent: HashMap<String, (String, String, i32, Instant)> = HashMap::new();
    while let Some(record) = records.recv().await {
        let now = jiff::Timestamp::now();
        recent.retain(|_, (_, _, _, seen)| seen.elapsed() < FOLD_WINDOW);
        let key = fold_key(&record);
        if let Some((namespace, name, count, _)) = recent.get_mut(&key) {
            let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
            let patch = serde_json::json!({"count": *count + 1, "lastTimestamp": Time(now)});
            match api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
                Ok(_) => {
                    *count += 1;
                    continue;
                }
                // Gone (deleted or expired): record it anew.
                Err(e) => tracing::debug!("folding event {name}: {e}"),
            }
        }
        let event = new_event(&record, &node, now);
        let namespace = event_namespace(&record.object);
        let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), &namespace);
        match api.create(&Default::default(), &event).await {
            Ok(created) => {
                recent.insert(key, (namespace, created.metadata.name.unwrap_or_default(), 1, Instant::now()));
            }
            Err(e) => tracing::warn!(reason = %record.reason, "writing an event: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_source_and_counts_once() {
        let record = Record {
            object: pod_reference("ns", "web", "u1", Some("spec.containers{c}".into())),
            kind: EventType::Warning,
            reason: "BackOff".into(),
            message: "Back-off restarting failed container c".into(),
        };
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let event = new_event(&record, "node-a", now);
        assert_eq!(event.metadata.namespace.as_deref(), Some("ns"));
        assert!(event.metadata.name.unwrap().starts_with("web."));
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.count, Some(1));
        assert_eq!(event.source.unwrap().host.as_deref(), Some("node-a"));
        assert_eq!(event.involved_object.field_path.as_deref(), Some("spec.containers{c}"));
    }

    #[test]
    fn node_events_go_to_default_and_repeats_share_a_key() {
        let a = Record { object: node_reference("n"), kind: EventType::Normal, reason: "NodeReady".into(), message: "m".into() };
        assert_eq!(event_namespace(&a.object), "default");
        let b = a.clone();
        assert_eq!(fold_key(&a), fold_key(&b));
        let c = Record { message: "other".into(), ..a.clone() };
        assert_ne!(fold_key(&a), fold_key(&c));
    }
}
