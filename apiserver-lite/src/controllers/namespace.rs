//! The namespace controller: a namespace being deleted (deletionTimestamp set, phase
//! Terminating) has its content deleted, resource by resource, and once nothing is left the
//! `kubernetes` finalizer is removed through `namespaces/NAME/finalize`, after which the API
//! server deletes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::resources::{Registry, Resource};

/// The finalizer the namespace controller owns (in spec.finalizers).
pub const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("deleting {resource} in namespace {namespace}: {source}")]
    DeleteContent { namespace: String, resource: String, source: kube::Error },
    #[error("finalizing namespace {namespace}: {source}")]
    Finalize { namespace: String, source: kube::Error },
}

struct Ctx {
    client: kube::Client,
    registry: Registry,
}

pub async fn run(client: kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client, registry: crate::resources::builtin() });
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("namespace controller: {e}");
            }
        })
        .await;
}

fn error_policy(_: Arc<Namespace>, e: &NamespaceError, _: Arc<Ctx>) -> Action {
    tracing::warn!("{e}");
    Action::requeue(Duration::from_secs(2))
}

/// The namespaced resources whose objects a namespace holds: each stored resource once
/// (events.k8s.io events are core events in storage), and only those that can be listed and
/// deleted as a collection.
fn content_resources(registry: &Registry) -> Vec<&Resource> {
    registry.iter().filter(|r| r.namespaced && r.stored_as.is_none() && r.has_verb("deletecollection") && r.has_verb("list")).collect()
}

fn api_resource(r: &Resource) -> ApiResource {
    ApiResource { group: r.group.clone(), version: r.version.clone(), api_version: r.api_version(), kind: r.kind.clone(), plural: r.plural.clone() }
}

fn resource_name(r: &Resource) -> String {
    if r.group.is_empty() { r.plural.clone() } else { format!("{}.{}", r.plural, r.group) }
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, NamespaceError> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let mut remaining: Vec<(String, usize)> = Vec::new();
    let mut finalizers_remaining: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for r in content_resources(&ctx.registry) {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &name, &api_resource(r));
        if let Err(e) = api.delete_collection(&DeleteParams::background(), &ListParams::default()).await {
            failures.push(format!("{}: {e}", resource_name(r)));
            continue;
        }
        match api.list(&ListParams::default()).await {
            Ok(left) if !left.items.is_empty() => {
                remaining.push((resource_name(r), left.items.len()));
                for o in &left.items {
                    for f in o.metadata.finalizers.iter().flatten() {
                        if !finalizers_remaining.contains(f) {
                            finalizers_remaining.push(f.clone());
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: {e}", resource_name(r))),
        }
    }
    if !failures.is_empty() || !remaining.is_empty() {
        // Upstream also writes NamespaceContentRemaining etc. conditions here; not yet: the
        // server deletes a terminating namespace on any update (handlers/write.rs ignores
        // spec.finalizers), so a status write would drop it with its content still there.
        tracing::debug!("namespace {name}: waiting for {remaining:?}, finalizers {finalizers_remaining:?}, failures {failures:?}");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let mut finalized = (*ns).clone();
    let spec = finalized.spec.get_or_insert_with(Default::default);
    spec.finalizers = Some(spec.finalizers.take().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect());
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api.replace_subresource("finalize", &name, &PostParams::default(), &finalized).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(NamespaceError::Finalize { namespace: name, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_every_namespaced_resource_once() {
        let registry = crate::resources::builtin();
        let names: Vec<String> = content_resources(&registry).into_iter().map(resource_name).collect();
        for r in ["pods", "configmaps", "secrets", "services", "deployments.apps", "events"] {
            assert!(names.contains(&r.to_string()), "{r} missing from {names:?}");
        }
        assert!(!names.contains(&"namespaces".to_string()));
        assert!(!names.contains(&"nodes".to_string()));
        assert!(!names.contains(&"events.events.k8s.io".to_string()), "events.k8s.io events are core events in storage");
    }
}
