//! Mirror pods: the API server's read-only copies of this node's static pods, so `kubectl
//! get pods` shows them and their status. Kept in step with the manifests: created when
//! missing, replaced when the manifest changed (the mirror's hash annotation differs) or a
//! user deleted it (the static pod keeps running, as upstream), and deleted when no static
//! pod has their hash any more.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};

use super::static_pods::mirror_of;
use super::{HASH_ANNOTATION, MIRROR_ANNOTATION, is_mirror};

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("listing the node's mirror pods: {0}")]
    List(kube::Error),
    #[error("creating mirror pod {namespace}/{name}: {source}")]
    Create { namespace: String, name: String, source: kube::Error },
    #[error("deleting mirror pod {namespace}/{name}: {source}")]
    Delete { namespace: String, name: String, source: kube::Error },
}

/// What to do to make the mirror pods match the static pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MirrorPlan {
    /// Static pods (namespace, name) to create a mirror of.
    pub create: Vec<(String, String)>,
    /// Mirror pods (namespace, name) to delete.
    pub delete: Vec<(String, String)>,
}

fn key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

fn annotation<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(name)).map(String::as_str)
}

/// Compare the static pods with the mirror pods the API has for this node (pure).
pub fn plan(static_pods: &[Pod], mirrors: &[Pod]) -> MirrorPlan {
    let wanted: HashMap<(String, String), &str> = static_pods.iter().map(|p| (key(p), annotation(p, HASH_ANNOTATION).unwrap_or(""))).collect();
    let mut have: HashMap<(String, String), &str> = HashMap::new();
    let mut plan = MirrorPlan::default();
    for m in mirrors.iter().filter(|m| is_mirror(m)) {
        let k = key(m);
        let hash = annotation(m, MIRROR_ANNOTATION).unwrap_or("");
        let current = wanted.get(&k).is_some_and(|h| *h == hash);
        if current && m.metadata.deletion_timestamp.is_none() {
            have.insert(k, hash);
        } else {
            // Stale, orphaned, or deleted by a user (nothing else finishes a mirror's graceful
            // deletion): removed now, and made anew if its static pod still runs.
            plan.delete.push(k);
        }
    }
    for p in static_pods {
        let k = key(p);
        if !have.contains_key(&k) {
            plan.create.push(k);
        }
    }
    plan.create.sort();
    plan.delete.sort();
    plan
}

/// Make the API's mirror pods on `node` match `static_pods`.
pub async fn sync(client: &kube::Client, node: &str, node_uid: &str, static_pods: &[Pod]) -> Result<(), MirrorError> {
    let all: kube::Api<Pod> = kube::Api::all(client.clone());
    let mirrors = all.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await.map_err(MirrorError::List)?.items;
    let plan = plan(static_pods, &mirrors);
    for (namespace, name) in &plan.delete {
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
        match api.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(MirrorError::Delete { namespace: namespace.clone(), name: name.clone(), source }),
        }
    }
    for (namespace, name) in &plan.create {
        let Some(pod) = static_pods.iter().find(|p| key(p) == (namespace.clone(), name.clone())) else { continue };
        let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
        match api.create(&PostParams::default(), &mirror_of(pod, node_uid)).await {
            Ok(_) => {}
            // A mirror being deleted still holds the name: the next sync creates it.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => return Err(MirrorError::Create { namespace: namespace.clone(), name: name.clone(), source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(name: &str, annotation: (&str, &str)) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("default".into());
        p.metadata.name = Some(name.into());
        p.metadata.annotations = Some(BTreeMap::from([(annotation.0.to_string(), annotation.1.to_string())]));
        p
    }

    #[test]
    fn missing_mirrors_are_created_stale_ones_replaced_and_orphans_deleted() {
        let statics = [pod("web-n", (HASH_ANNOTATION, "h1")), pod("db-n", (HASH_ANNOTATION, "h2")), pod("new-n", (HASH_ANNOTATION, "h3"))];
        let mut deleted = pod("deleted-n", (MIRROR_ANNOTATION, "h4"));
        deleted.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let statics = [statics[0].clone(), statics[1].clone(), statics[2].clone(), pod("deleted-n", (HASH_ANNOTATION, "h4"))];
        let mirrors = [pod("web-n", (MIRROR_ANNOTATION, "h1")), pod("db-n", (MIRROR_ANNOTATION, "old")), pod("gone-n", (MIRROR_ANNOTATION, "h9")), pod("api-pod", ("x", "y")), deleted];
        let p = plan(&statics, &mirrors);
        let d = |n: &str| ("default".to_string(), n.to_string());
        assert_eq!(p.create, [d("db-n"), d("deleted-n"), d("new-n")]);
        assert_eq!(p.delete, [d("db-n"), d("deleted-n"), d("gone-n")]);
    }
}
