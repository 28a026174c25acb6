//! Carrying out a plan's steps through the API, with upstream's events on the set:
//! `SuccessfulCreate` "create Pod web-0 in StatefulSet web successful", "create Claim
//! www-web-0 Pod web-0 in StatefulSet web success", `SuccessfulDelete`, `SuccessfulUpdate`, and
//! their `Failed...` counterparts with the error.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::plan::{Step, Why};
use super::COMPONENT;
use crate::controllers::workload_events::{self as events, NORMAL, WARNING};

/// Why a step failed: what was being done, and the API's error (or our own).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{action}: {source}")]
    Api { action: String, source: Box<kube::Error> },
    /// Upstream's wording, which the pod's FailedCreate event quotes.
    #[error("failed to create PVC {claim}: {message}")]
    CreateClaim { claim: String, message: String },
    #[error("pvc {claim} is being deleted")]
    ClaimDeleting { claim: String },
}

/// What an event says of an error: the API's message, as upstream prints a Status error.
fn message_of(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

pub struct Executor<'a> {
    pub client: &'a Client,
    pub set: &'a StatefulSet,
}

impl Executor<'_> {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.set.namespace().unwrap_or_default())
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), &self.set.namespace().unwrap_or_default())
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        events::record(self.client, COMPONENT, events::reference(self.set), type_, reason, message).await;
    }

    async fn pod_event(&self, verb: &str, pod: &str, err: Option<&str>) {
        let set = self.set.name_any();
        let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
        match err {
            None => self.event(NORMAL, &format!("Successful{title}"), format!("{verb} Pod {pod} in StatefulSet {set} successful")).await,
            Some(e) => self.event(WARNING, &format!("Failed{title}"), format!("{verb} Pod {pod} in StatefulSet {set} failed error: {e}")).await,
        }
    }

    /// Run the steps in order, stopping at the first that fails.
    pub async fn run(&self, steps: Vec<Step>) -> Result<(), StepError> {
        for step in steps {
            match step {
                Step::CreatePod { pod, claims, deleting } => self.create_pod(pod, claims, deleting).await?,
                Step::CreateClaims { pod, claims } => self.create_claims(&pod, claims).await?,
                Step::UpdatePod { pod, fix_labels, claims } => self.update_pod(pod, fix_labels, claims).await?,
                Step::UpdateClaims { claims } => self.update_claims(claims).await?,
                Step::DeletePod { pod, why } => self.delete_pod(&pod, why).await?,
            }
        }
        Ok(())
    }

    async fn create_claims(&self, pod: &str, claims: Vec<PersistentVolumeClaim>) -> Result<(), StepError> {
        let set = self.set.name_any();
        let mut failure = None;
        for claim in claims {
            let name = claim.name_any();
            match self.claims().create(&PostParams::default(), &claim).await {
                Ok(_) => self.event(NORMAL, "SuccessfulCreate", format!("create Claim {name} Pod {pod} in StatefulSet {set} success")).await,
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    self.event(WARNING, "FailedCreate", format!("create Claim {name} for Pod {pod} in StatefulSet {set} failed error: {}", message_of(&e))).await;
                    failure = Some(StepError::CreateClaim { claim: name, message: message_of(&e) });
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    async fn create_pod(&self, pod: Pod, claims: Vec<PersistentVolumeClaim>, deleting: Vec<String>) -> Result<(), StepError> {
        let name = pod.name_any();
        let claimed = self.create_claims(&name, claims).await;
        let claimed = match (claimed, deleting.first()) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(claim)) => Err(StepError::ClaimDeleting { claim: claim.clone() }),
            (Ok(()), None) => Ok(()),
        };
        if let Err(e) = claimed {
            self.pod_event("create", &name, Some(&e.to_string())).await;
            return Err(e);
        }
        match self.pods().create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.pod_event("create", &name, None).await;
                Ok(())
            }
            Err(e) => {
                // Already there: the next pass sees it (upstream records no event for this).
                if !matches!(&e, kube::Error::Api(s) if s.code == 409) {
                    self.pod_event("create", &name, Some(&message_of(&e))).await;
                }
                Err(StepError::Api { action: format!("create pod {name}"), source: Box::new(e) })
            }
        }
    }

    async fn update_claims(&self, claims: Vec<PersistentVolumeClaim>) -> Result<(), StepError> {
        for claim in claims {
            let name = claim.name_any();
            let refs = claim.metadata.owner_references.clone().map_or(json!(null), |r| json!(r));
            let patch = json!({"metadata": {"ownerReferences": refs, "uid": claim.uid()}});
            match self.claims().patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(StepError::Api { action: format!("update claim {name} for its retention policy"), source: Box::new(e) }),
            }
        }
        Ok(())
    }

    async fn update_pod(&self, pod: Pod, fix_labels: bool, claims: Vec<PersistentVolumeClaim>) -> Result<(), StepError> {
        let name = pod.name_any();
        let mut result = self.update_claims(claims).await;
        if result.is_ok() && fix_labels {
            let patch = json!({"metadata": {"labels": pod.metadata.labels, "uid": pod.uid()}});
            result = match self.pods().patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => Ok(()),
                Err(e) => Err(StepError::Api { action: format!("update pod {name}"), source: Box::new(e) }),
            };
        }
        let err = result.as_ref().err().map(|e| match e {
            StepError::Api { source, .. } => message_of(source),
            other => other.to_string(),
        });
        self.pod_event("update", &name, err.as_deref()).await;
        result
    }

    async fn delete_pod(&self, pod: &Pod, why: Why) -> Result<(), StepError> {
        let name = pod.name_any();
        match self.pods().delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(statefulset = %self.set.name_any(), pod = %name, ?why, "deleted pod");
                self.pod_event("delete", &name, None).await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                self.pod_event("delete", &name, Some(&message_of(&e))).await;
                Err(StepError::Api { action: format!("delete pod {name}"), source: Box::new(e) })
            }
        }
    }
}
