//! Which pods and revisions are the set's: those it controls that its selector (and, for pods,
//! the `<set>-<ordinal>` name) still matches, plus matching orphans it adopts; pods it
//! controls that no longer match are released, as the ReplicaSet controller does.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::identity::{controller_ref, is_member_of};
use crate::controllers::replicaset::pods::controller_of;

fn labels_match<K: Resource>(selector: &Selector, obj: &K) -> bool {
    selector.matches(obj.meta().labels.as_ref().unwrap_or(&Default::default()))
}

/// The pods the set controls after adopting and releasing.
pub async fn claim_pods(api: &Api<Pod>, set: &StatefulSet, selector: &Selector, all: Vec<Pod>) -> Result<Vec<Pod>, (String, kube::Error)> {
    let uid = set.uid().unwrap_or_default();
    let mut owned = Vec::new();
    for pod in all {
        let matches = labels_match(selector, &pod) && is_member_of(set, &pod);
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid && matches => owned.push(pod),
            Some(r) if r.uid == uid && pod.metadata.deletion_timestamp.is_none() => {
                let refs: Vec<&OwnerReference> = pod.owner_references().iter().filter(|r| r.uid != uid).collect();
                let refs = if refs.is_empty() { json!(null) } else { json!(refs) };
                patch_owners(api, &pod, json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}}), "release").await?;
            }
            None if matches && set.metadata.deletion_timestamp.is_none() && pod.metadata.deletion_timestamp.is_none() => {
                let mut refs = pod.owner_references().to_vec();
                refs.push(controller_ref(set));
                if let Some(adopted) = patch_owners(api, &pod, json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}}), "adopt").await? {
                    owned.push(adopted);
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

/// The set's revisions (its own and matching orphans, which it adopts), in list order.
pub async fn claim_revisions(api: &Api<ControllerRevision>, set: &StatefulSet, selector: &Selector, all: Vec<ControllerRevision>) -> Result<Vec<ControllerRevision>, (String, kube::Error)> {
    let uid = set.uid().unwrap_or_default();
    let mut owned = Vec::new();
    for rev in all.into_iter().filter(|r| labels_match(selector, r)) {
        match controller_of(&rev.metadata) {
            Some(r) if r.uid == uid => owned.push(rev),
            None if set.metadata.deletion_timestamp.is_none() => {
                let mut refs = rev.owner_references().to_vec();
                refs.push(controller_ref(set));
                if let Some(adopted) = patch_owners(api, &rev, json!({"metadata": {"ownerReferences": refs, "uid": rev.uid()}}), "adopt").await? {
                    owned.push(adopted);
                }
            }
            _ => {}
        }
    }
    Ok(owned)
}

/// Patch an object's owner references; one gone meanwhile is skipped.
async fn patch_owners<K>(api: &Api<K>, obj: &K, patch: serde_json::Value, action: &str) -> Result<Option<K>, (String, kube::Error)>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err((format!("{action} {} {}", K::kind(&()).to_lowercase(), obj.name_any()), e)),
    }
}
