//! The garbage collector: objects whose owners (metadata.ownerReferences) are all gone are
//! deleted (background propagation); an owner deleted in the foreground (the
//! `foregroundDeletion` finalizer the API server adds) has its dependents deleted and loses
//! the finalizer once none that blocks owner deletion is left; an owner deleted with the
//! `orphan` finalizer has the references to it removed from its dependents, then loses the
//! finalizer. The owner graph is rebuilt from reflectors of the kinds that own or are owned
//! on every change, so each pass is level-triggered: it looks at the whole graph and does
//! what is still to be done.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams, Preconditions, PropagationPolicy};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::resources::{Registry, Resource};

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// The kinds whose objects the graph holds: those that commonly own or are owned (nodes
/// own their leases and mirror pods).
const WATCHED: &[(&str, &str)] = &[
    ("", "nodes"),
    ("coordination.k8s.io", "leases"),
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("apps", "controllerrevisions"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("discovery.k8s.io", "endpointslices"),
];

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("deleting {kind} {namespace}/{name} whose owners are gone: {source}")]
    DeleteDependent { kind: String, namespace: String, name: String, source: kube::Error },
    #[error("updating {kind} {namespace}/{name}: {source}")]
    Update { kind: String, namespace: String, name: String, source: kube::Error },
    #[error("looking up owner {kind} {name}: {source}")]
    LookupOwner { kind: String, name: String, source: kube::Error },
}

/// One watched kind: its API resource, whether namespaced, its cache.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
    store: Store<DynamicObject>,
}

struct Gc {
    client: kube::Client,
    registry: Registry,
    kinds: Vec<Kind>,
}

pub async fn run(client: kube::Client) {
    let registry = crate::resources::builtin();
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut kinds = Vec::new();
    for (group, plural) in WATCHED {
        let Some(r) = registry.iter().find(|r| r.group == *group && r.plural == *plural && r.stored_as.is_none()) else { continue };
        let ar = api_resource(r);
        let writer = reflector::store::Writer::new(ar.clone());
        let store = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let changed = changed.clone();
        let stream = reflector::reflector(writer, watcher::watcher(api, watcher::Config::default())).default_backoff();
        tokio::spawn(stream.for_each(move |_| {
            changed.notify_one();
            async {}
        }));
        kinds.push(Kind { ar, namespaced: r.namespaced, store });
    }
    for k in &kinds {
        let _ = k.store.wait_until_ready().await;
    }
    let gc = Gc { client, registry, kinds };
    loop {
        // Debounce a burst of changes into one pass; retry failures within seconds.
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.notified()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for e in gc.pass().await {
            tracing::warn!("garbage collector: {e}");
        }
    }
}

fn api_resource(r: &Resource) -> ApiResource {
    ApiResource { group: r.group.clone(), version: r.version.clone(), api_version: r.api_version(), kind: r.kind.clone(), plural: r.plural.clone() }
}

/// A node of the graph: an object and the index of its kind.
#[derive(Clone)]
struct Node {
    kind: usize,
    object: Arc<DynamicObject>,
}

impl Node {
    fn uid(&self) -> &str {
        self.object.metadata.uid.as_deref().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or("")
    }
    fn namespace(&self) -> &str {
        self.object.metadata.namespace.as_deref().unwrap_or("")
    }
    fn deleting(&self) -> bool {
        self.object.metadata.deletion_timestamp.is_some()
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.object.metadata.finalizers.iter().flatten().any(|x| x == f)
    }
}

impl Gc {
    /// One pass over the whole graph; the errors met (the next pass retries).
    async fn pass(&self) -> Vec<GcError> {
        let nodes: Vec<Node> = self.kinds.iter().enumerate().flat_map(|(i, k)| k.store.state().into_iter().map(move |o| Node { kind: i, object: o })).collect();
        let by_uid: HashMap<&str, &Node> = nodes.iter().map(|n| (n.uid(), n)).collect();
        let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
        for n in &nodes {
            for r in n.object.metadata.owner_references.iter().flatten() {
                dependents.entry(r.uid.as_str()).or_default().push(n);
            }
        }
        let mut errors = Vec::new();
        for n in nodes.iter().filter(|n| n.deleting()) {
            let deps = dependents.get(n.uid()).cloned().unwrap_or_default();
            if n.has_finalizer(ORPHAN) {
                if let Err(e) = self.orphan(n, &deps).await {
                    errors.push(e);
                }
            } else if n.has_finalizer(FOREGROUND)
                && let Err(e) = self.foreground(n, &deps).await
            {
                errors.push(e);
            }
        }
        for n in nodes.iter().filter(|n| !n.deleting() && n.object.metadata.owner_references.as_ref().is_some_and(|r| !r.is_empty())) {
            if let Err(e) = self.collect_if_orphaned(n, &by_uid).await {
                errors.push(e);
            }
        }
        errors
    }

    fn api(&self, node: &Node) -> Api<DynamicObject> {
        let k = &self.kinds[node.kind];
        if k.namespaced { Api::namespaced_with(self.client.clone(), node.namespace(), &k.ar) } else { Api::all_with(self.client.clone(), &k.ar) }
    }

    fn update_error(&self, node: &Node, source: kube::Error) -> GcError {
        GcError::Update { kind: self.kinds[node.kind].ar.kind.clone(), namespace: node.namespace().into(), name: node.name().into(), source }
    }

    /// Replace the object with `change` applied (a conflict means the cache was behind: the
    /// next pass sees the newer object and decides again).
    async fn update(&self, node: &Node, change: impl FnOnce(&mut DynamicObject)) -> Result<(), GcError> {
        let mut object = (*node.object).clone();
        change(&mut object);
        match self.api(node).replace(node.name(), &PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(self.update_error(node, e)),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), GcError> {
        self.update(node, |o| {
            if let Some(f) = o.metadata.finalizers.as_mut() {
                f.retain(|x| x != finalizer);
            }
        })
        .await
    }

    async fn orphan(&self, owner: &Node, deps: &[&Node]) -> Result<(), GcError> {
        for d in deps {
            self.update(d, |o| {
                if let Some(refs) = o.metadata.owner_references.as_mut() {
                    refs.retain(|r| r.uid != owner.uid());
                }
            })
            .await?;
        }
        if deps.is_empty() {
            self.remove_finalizer(owner, ORPHAN).await?;
        }
        Ok(())
    }

    async fn foreground(&self, owner: &Node, deps: &[&Node]) -> Result<(), GcError> {
        for d in deps.iter().filter(|d| !d.deleting()) {
            // Foreground again, so the dependents' own dependents go before them.
            self.delete(d, PropagationPolicy::Foreground).await?;
        }
        let blocking = deps.iter().any(|d| d.object.metadata.owner_references.iter().flatten().any(|r| r.uid == owner.uid() && r.block_owner_deletion == Some(true)));
        if !blocking {
            self.remove_finalizer(owner, FOREGROUND).await?;
        }
        Ok(())
    }

    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> Result<(), GcError> {
        let dp = DeleteParams { propagation_policy: Some(policy), preconditions: Some(Preconditions { uid: Some(node.uid().to_string()), resource_version: None }), ..Default::default() };
        match self.api(node).delete(node.name(), &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => Err(GcError::DeleteDependent { kind: self.kinds[node.kind].ar.kind.clone(), namespace: node.namespace().into(), name: node.name().into(), source }),
        }
    }

    /// A dependent whose owners are all gone is deleted; one that lost only some of them
    /// loses the references to those.
    async fn collect_if_orphaned(&self, node: &Node, by_uid: &HashMap<&str, &Node>) -> Result<(), GcError> {
        let refs = node.object.metadata.owner_references.clone().unwrap_or_default();
        let mut dangling = Vec::new();
        for r in &refs {
            if by_uid.contains_key(r.uid.as_str()) {
                continue;
            }
            // Not in the cache: the cache may be behind, so ask the server.
            if !self.owner_exists(node, r).await? {
                dangling.push(r.uid.clone());
            }
        }
        if dangling.is_empty() {
            return Ok(());
        }
        if dangling.len() == refs.len() {
            return self.delete(node, PropagationPolicy::Background).await;
        }
        self.update(node, |o| {
            if let Some(refs) = o.metadata.owner_references.as_mut() {
                refs.retain(|r| !dangling.contains(&r.uid));
            }
        })
        .await
    }

    /// Whether the owner named by `r` exists with the referenced uid. An owner of a kind the
    /// server does not serve counts as existing: nothing is deleted on a guess.
    async fn owner_exists(&self, dependent: &Node, r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> Result<bool, GcError> {
        let (group, version) = match r.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", r.api_version.as_str()),
        };
        let Some(resource) = self.registry.by_kind(group, version, &r.kind) else { return Ok(true) };
        let ar = api_resource(resource);
        let api: Api<DynamicObject> = if resource.namespaced {
            if dependent.namespace().is_empty() {
                // A cluster-scoped object cannot be owned by a namespaced one: leave it.
                return Ok(true);
            }
            Api::namespaced_with(self.client.clone(), dependent.namespace(), &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        match api.get_opt(&r.name).await {
            Ok(Some(o)) => Ok(o.metadata.uid.as_deref() == Some(r.uid.as_str())),
            Ok(None) => Ok(false),
            Err(source) => Err(GcError::LookupOwner { kind: r.kind.clone(), name: r.name.clone(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_watched_kind_is_served() {
        let registry = crate::resources::builtin();
        for (group, plural) in WATCHED {
            assert!(registry.iter().any(|r| r.group == *group && r.plural == *plural), "{group}/{plural} is not in the registry");
        }
    }
}
