//! What the workload controllers read from pods: whether one is active, Ready, available
//! (Ready for minReadySeconds), and the pod a template stamps out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// Counted towards replicas: not being deleted and not finished.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    pod.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// When the pod's Ready condition last became True, if it is True now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let cond = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| cond.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`; otherwise, if Ready, how long until it
/// becomes available (so the caller can come back then).
pub fn availability(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Availability {
    match ready_since(pod) {
        None => Availability::NotReady,
        Some(_) if min_ready_seconds <= 0 => Availability::Available,
        // Ready with no transition time: treat it as ready since forever, as upstream does.
        Some(None) => Availability::Available,
        Some(Some(since)) => {
            let available_at = since + std::time::Duration::from_secs(min_ready_seconds as u64);
            if available_at <= now {
                Availability::Available
            } else {
                Availability::ReadyFor(available_at.duration_since(now).unsigned_abs())
            }
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Availability {
    NotReady,
    /// Ready, available after this much longer.
    ReadyFor(std::time::Duration),
    Available,
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// The pod a ReplicaSet's template makes: its labels, annotations and spec, a generated name
/// `<owner>-<5 chars>`, and the owner as controller.
pub fn from_template(template: &PodTemplateSpec, namespace: &str, owner_name: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{owner_name}-")),
            namespace: Some(namespace.to_string()),
            labels: meta.labels.clone(),
            annotations: meta.annotations.clone(),
            finalizers: meta.finalizers.clone(),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether every label of the template is on the pod (status.fullyLabeledReplicas).
pub fn fully_labeled(pod: &Pod, template_labels: &BTreeMap<String, String>) -> bool {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_at(t: Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), last_transition_time: Some(Time(t)), ..Default::default() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Timestamp::now();
        let pod = ready_at(now - std::time::Duration::from_secs(3));
        assert_eq!(availability(&pod, 0, now), Availability::Available);
        assert_eq!(availability(&pod, 2, now), Availability::Available);
        assert_eq!(availability(&pod, 10, now), Availability::ReadyFor(std::time::Duration::from_secs(7)));
        assert_eq!(availability(&Pod::default(), 0, now), Availability::NotReady);
    }

    #[test]
    fn failed_and_deleting_pods_are_not_active() {
        let mut pod = ready_at(Timestamp::now());
        assert!(is_active(&pod));
        pod.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(!is_active(&pod));
        let mut deleting = ready_at(Timestamp::now());
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert!(!is_active(&deleting));
    }
}
