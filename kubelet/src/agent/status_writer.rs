//! Pod statuses from the sync written to the API server (the kubelet's status manager):
//! only when they changed, through the status subresource, keeping the conditions other
//! components own (DisruptionTarget, readiness gates' types). A static pod's status goes to
//! its mirror pod. When a deleted pod's containers have all stopped, the writer finishes its
//! deletion (grace period 0, only for the same UID), which is how a `kubectl delete pod`
//! completes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};

use super::sources::Source;

/// The pod conditions the kubelet writes; others are kept as the API has them.
const KUBELET_CONDITIONS: &[&str] = &["PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"];

/// One pod's status as the sync computed it.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub source: Source,
    pub status: PodStatus,
    /// The pod is being deleted and nothing of it runs any more.
    pub terminated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("reading pod {namespace}/{name}: {source}")]
    Get { namespace: String, name: String, source: kube::Error },
    #[error("writing the status of pod {namespace}/{name}: {source}")]
    Patch { namespace: String, name: String, source: kube::Error },
    #[error("finishing the deletion of pod {namespace}/{name}: {source}")]
    Delete { namespace: String, name: String, source: kube::Error },
}

pub struct StatusWriter {
    client: kube::Client,
    /// What was last written, by UID.
    written: HashMap<String, PodStatus>,
    /// The UID of the object it was written to (a mirror pod's differs from its static pod's).
    target_uid: HashMap<String, Option<String>>,
}

impl StatusWriter {
    pub fn new(client: kube::Client) -> StatusWriter {
        StatusWriter { client, written: HashMap::new(), target_uid: HashMap::new() }
    }

    /// Forget a pod that is gone.
    pub fn forget(&mut self, uid: &str) {
        self.written.remove(uid);
        self.target_uid.remove(uid);
    }

    /// Write `update` if it says something new; finish the deletion of a terminated pod.
    pub async fn write(&mut self, update: &StatusUpdate) -> Result<(), StatusError> {
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), &update.namespace);
        let current = pods.get_opt(&update.name).await.map_err(|source| StatusError::Get { namespace: update.namespace.clone(), name: update.name.clone(), source })?;
        let Some(current) = current else {
            // Deleted already (or a mirror pod not created yet): nothing to write to.
            return Ok(());
        };
        // An API pod of the same name but another UID is another pod.
        if update.source == Source::Api && current.metadata.uid.as_deref() != Some(update.uid.as_str()) {
            return Ok(());
        }
        let merged = merge(current.status.as_ref(), &update.status);
        // Written when the API's copy differs (a recreated mirror pod has none), unless this
        // exact status was already sent for this pod.
        let sent = self.written.get(&update.uid) == Some(&merged) && current.metadata.uid == self.target_uid.get(&update.uid).cloned().flatten();
        if !sent && current.status.as_ref() != Some(&merged) {
            let patch = serde_json::json!({"status": merged});
            pods.patch_status(&update.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| StatusError::Patch { namespace: update.namespace.clone(), name: update.name.clone(), source })?;
            self.written.insert(update.uid.clone(), merged);
            self.target_uid.insert(update.uid.clone(), current.metadata.uid.clone());
        }
        if update.terminated && update.source == Source::Api && current.metadata.deletion_timestamp.is_some() {
            let params = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(update.uid.clone()), resource_version: None }), ..Default::default() };
            match pods.delete(&update.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(source) => return Err(StatusError::Delete { namespace: update.namespace.clone(), name: update.name.clone(), source }),
            }
            self.written.remove(&update.uid);
        }
        Ok(())
    }
}

/// The status to write: the sync's, with the conditions others own kept from the API's.
fn merge(current: Option<&PodStatus>, computed: &PodStatus) -> PodStatus {
    let mut status = computed.clone();
    let foreign: Vec<PodCondition> = current
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .filter(|c| !computed.conditions.iter().flatten().any(|mine| mine.type_ == c.type_))
        .cloned()
        .collect();
    if !foreign.is_empty() {
        status.conditions.get_or_insert_with(Vec::new).extend(foreign);
    }
    // The scheduler's nomination is not the kubelet's to clear.
    if status.nominated_node_name.is_none() {
        status.nominated_node_name = current.and_then(|s| s.nominated_node_name.clone());
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(t: &str, s: &str) -> PodCondition {
        PodCondition { type_: t.into(), status: s.into(), ..Default::default() }
    }

    #[test]
    fn conditions_of_other_components_are_kept() {
        let current = PodStatus { conditions: Some(vec![condition("PodScheduled", "True"), condition("DisruptionTarget", "True"), condition("Ready", "False")]), ..Default::default() };
        let computed = PodStatus { phase: Some("Running".into()), conditions: Some(vec![condition("PodScheduled", "True"), condition("Ready", "True")]), ..Default::default() };
        let merged = merge(Some(&current), &computed);
        let types: Vec<(&str, &str)> = merged.conditions.as_ref().unwrap().iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(types, [("PodScheduled", "True"), ("Ready", "True"), ("DisruptionTarget", "True")]);
        assert_eq!(merged.phase.as_deref(), Some("Running"));
    }
}
