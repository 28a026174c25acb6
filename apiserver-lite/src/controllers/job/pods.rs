//! The Job controller's view of pods: the pod its template stamps out (the tracking
//! finalizer, the controller reference, and for Indexed jobs the completion index as
//! annotation, label, JOB_COMPLETION_INDEX and hostname), and how a pod counts.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

/// Keeps a finished pod until the controller has counted it in the Job's status.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

pub fn owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from the job's template; `index` for Indexed jobs.
pub fn from_template(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut spec = template.spec.unwrap_or_default();
    let generate_name = match index {
        Some(i) => {
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            if spec.hostname.as_deref().unwrap_or_default().is_empty() {
                spec.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: INDEX_ENV.into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"), api_version: None }),
                    ..Default::default()
                }),
                value: None,
            };
            for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == INDEX_ENV) {
                    vars.push(env.clone());
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner_reference(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The completion index of a pod of an Indexed job (annotation first, as upstream).
pub fn index_of(pod: &Pod) -> Option<i32> {
    let from = |m: Option<&std::collections::BTreeMap<String, String>>| m.and_then(|m| m.get(COMPLETION_INDEX)).and_then(|v| v.parse().ok());
    from(pod.metadata.annotations.as_ref()).or_else(|| from(pod.metadata.labels.as_ref())).filter(|i: &i32| *i >= 0)
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// How a pod ended, if it did: its phase, or a deletion before it succeeded (counted as a
/// failure, as upstream's default podReplacementPolicy counts orphaned and evicted pods).
pub fn outcome(pod: &Pod) -> Option<Outcome> {
    match phase(pod) {
        "Succeeded" => Some(Outcome::Succeeded),
        "Failed" => Some(Outcome::Failed),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(Outcome::Failed),
        _ => None,
    }
}

/// Running or about to: neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    outcome(pod).is_none()
}

/// Container restarts of a pending or running pod.
pub fn restarts(pod: &Pod) -> i32 {
    if !matches!(phase(pod), "Pending" | "Running") {
        return 0;
    }
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
    containers.chain(init).map(|c| c.restart_count).sum()
}

/// Being deleted and not yet in a final phase.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(mode: &str) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {"completionMode": mode, "template": {"metadata": {"labels": {"job-name": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        }))
        .unwrap()
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = from_template(&job("Indexed"), Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(pod.metadata.finalizers.as_deref(), Some(&[TRACKING_FINALIZER.to_string()][..]));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, INDEX_ENV);
        assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        assert_eq!(index_of(&pod), Some(2));
        let plain = from_template(&job("NonIndexed"), None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(plain.metadata.owner_references.as_ref().unwrap()[0].kind, "Job");
        assert_eq!(index_of(&plain), None);
    }

    #[test]
    fn deleted_unfinished_pods_count_as_failed() {
        let mut pod = from_template(&job("NonIndexed"), None);
        assert_eq!(outcome(&pod), None);
        assert!(is_active(&pod));
        pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(outcome(&pod), Some(Outcome::Failed));
        assert!(is_terminating(&pod) && !is_active(&pod));
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        assert_eq!(outcome(&pod), Some(Outcome::Succeeded));
        assert!(!is_terminating(&pod));
    }
}
