//! core/v1 Events written by the workload controllers, with upstream reasons and wording, so
//! `kubectl describe` and `kubectl get events` show what the controllers did.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client, Resource};

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The reference an event points at (what `kubectl describe` matches events by).
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

/// Record one event. A failure to record is logged, never fatal: events are advisory.
pub async fn record(client: &Client, component: &str, involved: ObjectReference, type_: &str, reason: &str, message: String) {
    let namespace = involved.namespace.clone().unwrap_or_else(|| "default".into());
    let now = k8s_openapi::jiff::Timestamp::now();
    // Named `<object>.<hex nanoseconds>` as upstream names them; the counter keeps two events
    // of one nanosecond apart.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = now.as_nanosecond() as u64 + SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}.{nanos:x}", involved.name.clone().unwrap_or_default());
    let event = Event {
        metadata: ObjectMeta { name: Some(name), namespace: Some(namespace.clone()), ..Default::default() },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        source: Some(EventSource { component: Some(component.into()), host: None }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(component.into()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(reason, object = %event.involved_object.name.clone().unwrap_or_default(), "could not record event: {e}");
    }
}
