//! The DaemonSet controller: one pod of the template on every node the template's
//! nodeSelector, required node affinity and tolerations allow, created as upstream does since
//! 1.12 (no nodeName, but a required node affinity on the node's `metadata.name`, so the
//! scheduler binds it), with the default DaemonSet tolerations and the
//! `controller-revision-hash` and `pod-template-generation` labels. Nodes are watched: a new
//! node gets a pod, one that stops matching or takes a NoExecute taint the pod does not
//! tolerate loses it, a deleted node's pods go. Templates are kept as ControllerRevisions
//! (`<daemonset>-<hash>`, trimmed to revisionHistoryLimit) for `kubectl rollout history` and
//! `undo`; RollingUpdate replaces pods within maxUnavailable or maxSurge, OnDelete waits for
//! pods to be deleted. Failed pods are deleted (with a per-node backoff) and replaced, surplus
//! pods on a node pruned, and the status counts reported as upstream does.
//!
//! Each reconcile reads the DaemonSet, the nodes, its pods and revisions fresh from the API
//! and follows upstream's syncDaemonSet; every step is idempotent.

pub mod eligibility;
mod failed_pods;
pub mod history;
pub mod placement;
pub mod rolling;
pub mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::backoff::Backoff;
use super::replicaset::pods::{controller_of, from_template};
use super::workload_events::{self as events, NORMAL, WARNING};
use eligibility::{node_should_run, pin_to_node, target_node};
use failed_pods::FailedPodsBackoff;
use placement::{plan_node, GENERATION_LABEL, HASH_LABEL};

const COMPONENT: &str = "daemonset-controller";
const RESYNC: Duration = Duration::from_secs(300);
/// The template generation the API server of old recorded (pods carry it as a label).
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("daemonset {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
    #[error("daemonset {namespace}/{name} has a selector that cannot be used: {reason}")]
    Selector { namespace: String, name: String, reason: String },
    #[error("daemonset {namespace}/{name}: invalid update strategy: {reason}")]
    Strategy { namespace: String, name: String, reason: String },
    #[error("daemonset {namespace}/{name}: controller revision {revision} already exists with another template; retrying with collision count {count}")]
    Collision { namespace: String, name: String, revision: String, count: i32 },
    #[error("daemonset {namespace}/{name}: deleted {count} failed pods")]
    FailedPods { namespace: String, name: String, count: usize },
}

pub struct Context {
    pub client: Client,
    backoff: Backoff,
    failed: FailedPodsBackoff,
}

/// Run the controller until the process ends.
pub async fn run(client: Client) {
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .owns(Api::<ControllerRevision>::all(client.clone()), watcher::Config::default())
        .watches(Api::<Pod>::all(client.clone()), watcher::Config::default(), move |pod: Pod| owners_to_wake(&store, &pod))
        .reconcile_all_on(node_changes(client.clone()))
        .run(reconcile, error_policy, Arc::new(Context { client, backoff: Backoff::default(), failed: FailedPodsBackoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("daemonset controller: {e}");
            }
        })
        .await;
}

/// A tick whenever a node appears, goes, or changes what decides where daemon pods run
/// (labels, taints); status heartbeats do not count.
fn node_changes(client: Client) -> impl futures_util::Stream<Item = ()> + Send + 'static {
    let mut seen: HashMap<String, String> = HashMap::new();
    watcher(Api::<Node>::all(client), watcher::Config::default()).default_backoff().filter_map(move |event| {
        let fingerprint = |n: &Node| json!([n.metadata.labels, n.spec.as_ref().and_then(|s| s.taints.clone())]).to_string();
        let tick = match event {
            Ok(watcher::Event::Apply(n)) => seen.insert(n.name_any(), fingerprint(&n)) != Some(fingerprint(&n)),
            Ok(watcher::Event::InitApply(n)) => {
                seen.insert(n.name_any(), fingerprint(&n));
                false
            }
            Ok(watcher::Event::Delete(n)) => {
                seen.remove(&n.name_any());
                true
            }
            Ok(watcher::Event::InitDone) => true,
            Ok(watcher::Event::Init) | Err(_) => false,
        };
        std::future::ready(tick.then_some(()))
    })
}

/// The DaemonSets a pod event concerns: its controller, or for an orphan every DaemonSet of
/// its namespace whose selector matches it (one of them adopts it).
fn owners_to_wake(store: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == "DaemonSet" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => vec![],
        None => store
            .state()
            .iter()
            .filter(|ds| ds.namespace().as_deref() == Some(ns.as_str()))
            .filter(|ds| selector_of(ds).is_ok_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))))
            .map(|ds| ObjectRef::from_obj(ds.as_ref()))
            .collect(),
    }
}

fn selector_of(ds: &DaemonSet) -> Result<Selector, Error> {
    let spec = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    Selector::try_from(spec).map_err(|e| Error::Selector { namespace: ds.namespace().unwrap_or_default(), name: ds.name_any(), reason: e.to_string() })
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(daemonset = %ds.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&ds)))
}

fn key(ds: &DaemonSet) -> String {
    format!("{}/{}", ds.namespace().unwrap_or_default(), ds.name_any())
}

async fn reconcile(cached: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let ds = match api.get_opt(&cached.name_any()).await {
        Ok(Some(ds)) => ds,
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Api { namespace: ns, name: cached.name_any(), action: "read".into(), source: Box::new(source) }),
    };
    let mut pass = Pass { ctx: &ctx, api, ns, ds, requeue: None };
    let action = pass.run().await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

/// This DaemonSet as the controller of its pods and revisions.
pub fn owner_reference(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.name_any(),
        uid: ds.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The template generation pods are labelled with: the API server's record if it keeps one,
/// else the DaemonSet's generation (which changes whenever the template does).
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.annotations().get(TEMPLATE_GENERATION).and_then(|g| g.parse().ok()).or(ds.metadata.generation)
}

/// The template daemon pods are made from: the DaemonSet's, with the default tolerations
/// and the revision labels (upstream's CreatePodTemplate).
pub fn daemon_template(ds: &DaemonSet, generation: Option<i64>, hash: &str) -> PodTemplateSpec {
    let mut template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    eligibility::add_default_tolerations(template.spec.get_or_insert_with(Default::default));
    let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    if let Some(g) = generation {
        labels.insert(GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(HASH_LABEL.into(), hash.into());
    }
    template
}

/// Daemon pods by the node they are for, leaving out finished pods already being deleted
/// and pods aimed at no node.
fn by_node(pods: &[Pod]) -> BTreeMap<String, Vec<Pod>> {
    let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() && (phase == "Succeeded" || phase == "Failed") {
            continue;
        }
        if let Some(node) = target_node(pod) {
            out.entry(node).or_default().push(pod.clone());
        }
    }
    out
}

fn is_empty_selector(ds: &DaemonSet) -> bool {
    let s = ds.spec.as_ref().map(|s| &s.selector);
    s.is_none_or(|s| s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()))
}

/// One reconcile of one DaemonSet.
struct Pass<'a> {
    ctx: &'a Context,
    api: Api<DaemonSet>,
    ns: String,
    ds: DaemonSet,
    requeue: Option<Duration>,
}

impl Pass<'_> {
    fn api_err(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let (namespace, name, action) = (self.ns.clone(), self.ds.name_any(), action.into());
        move |source| Error::Api { namespace, name, action, source: Box::new(source) }
    }

    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        events::record(&self.ctx.client, COMPONENT, events::reference(&self.ds), type_, reason, message).await;
    }

    /// Upstream's syncDaemonSet.
    async fn run(&mut self) -> Result<Action, Error> {
        if is_empty_selector(&self.ds) {
            self.event(WARNING, "SelectingAll", "This daemon set is selecting all pods. A non-empty selector is required.".into()).await;
            return Ok(Action::await_change());
        }
        // Its pods and revisions may be going already: the status could not be trusted.
        if self.ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let selector = selector_of(&self.ds)?;
        let nodes = Api::<Node>::all(self.ctx.client.clone()).list(&ListParams::default()).await.map_err(self.api_err("list nodes"))?.items;
        let (hash, old) = self.construct_history(&selector).await?;
        let generation = template_generation(&self.ds);
        let pods = self.claim_pods(&selector).await?;

        let mut changed = false;
        let mut result = self.manage(&nodes, &pods, &hash, generation, &mut changed).await;
        if result.is_ok() && !changed && rolling::is_rolling(&self.ds) {
            result = self.rolling_update(&nodes, &pods, &hash, generation, &mut changed).await;
        }
        if result.is_ok() {
            result = self.cleanup_history(&old, &pods).await;
        }
        let pods = if changed { self.claim_pods(&selector).await? } else { pods };
        self.update_status(&nodes, &pods, &hash, generation).await?;
        result?;
        Ok(Action::requeue(self.requeue.unwrap_or(RESYNC)))
    }

    /// The pods this DaemonSet controls, after adopting matching orphans and releasing owned
    /// pods its selector no longer matches.
    async fn claim_pods(&self, selector: &Selector) -> Result<Vec<Pod>, Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let all = api.list(&ListParams::default()).await.map_err(self.api_err("list pods"))?.items;
        let uid = self.ds.uid().unwrap_or_default();
        let mut owned = Vec::new();
        for pod in all {
            let matches = selector.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()));
            let patch = match controller_of(&pod.metadata) {
                Some(r) if r.uid == uid && matches => {
                    owned.push(pod);
                    continue;
                }
                Some(r) if r.uid == uid && pod.metadata.deletion_timestamp.is_none() => {
                    let refs: Vec<&OwnerReference> = pod.owner_references().iter().filter(|r| r.uid != uid).collect();
                    let refs = if refs.is_empty() { json!(null) } else { json!(refs) };
                    json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}})
                }
                None if matches && pod.metadata.deletion_timestamp.is_none() => {
                    let mut refs = pod.owner_references().to_vec();
                    refs.push(owner_reference(&self.ds));
                    json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}})
                }
                _ => continue,
            };
            match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(p) if controller_of(&p.metadata).is_some_and(|r| r.uid == uid) => owned.push(p),
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(self.api_err(format!("claim pod {}", pod.name_any()))(e)),
            }
        }
        Ok(owned)
    }

    /// The current revision's hash (creating the revision if needed) and the old revisions
    /// (upstream's constructHistory).
    async fn construct_history(&mut self, selector: &Selector) -> Result<(String, Vec<ControllerRevision>), Error> {
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let listed = api.list(&ListParams::default().labels(&selector.to_string())).await.map_err(self.api_err("list controller revisions"))?.items;
        let uid = self.ds.uid().unwrap_or_default();
        let (mut current, mut old) = (vec![], vec![]);
        for rev in listed {
            let rev = match controller_of(&rev.metadata) {
                Some(c) if c.uid == uid => rev,
                Some(_) => continue,
                // An orphan the selector matches (its DaemonSet was deleted orphaning it, and
                // recreated): adopt it, as upstream's ClaimControllerRevisions.
                None => {
                    let mut refs = rev.owner_references().to_vec();
                    refs.push(owner_reference(&self.ds));
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": rev.uid()}});
                    match api.patch(&rev.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                        Ok(adopted) => adopted,
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => continue,
                        Err(e) => return Err(self.api_err(format!("adopt revision {}", rev.name_any()))(e)),
                    }
                }
            };
            if history::matches(&self.ds, &rev) { current.push(rev) } else { old.push(rev) }
        }
        let next = history::max_revision(&old) + 1;
        let cur = if current.is_empty() {
            self.snapshot(&api, next).await?
        } else {
            let (mut cur, duplicates) = history::dedup(current);
            for dup in duplicates {
                match api.delete(&dup.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(self.api_err(format!("delete duplicate revision {}", dup.name_any()))(e)),
                }
            }
            if cur.revision < next {
                // Rolled back to this template: it becomes the newest revision again.
                cur.revision = next;
                cur = api.replace(&cur.name_any(), &PostParams::default(), &cur).await.map_err(self.api_err("update the revision number"))?;
            }
            cur
        };
        let hash = history::hash_of(&cur).map(str::to_string).unwrap_or_else(|| cur.name_any());
        Ok((hash, old))
    }

    /// Create the revision of the current template (upstream's snapshot), resolving a name
    /// taken by another template by bumping status.collisionCount.
    async fn snapshot(&mut self, api: &Api<ControllerRevision>, revision: i64) -> Result<ControllerRevision, Error> {
        let collision_count = self.ds.status.as_ref().and_then(|s| s.collision_count);
        let template = self.ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let hash = history::compute_hash(&template, collision_count);
        let rev = history::snapshot(&self.ds, &hash, revision, owner_reference(&self.ds));
        match api.create(&PostParams::default(), &rev).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = rev.name_any();
                let existing = api.get(&name).await.map_err(self.api_err("read the revision"))?;
                if history::matches(&self.ds, &existing) {
                    return Ok(existing);
                }
                let count = collision_count.unwrap_or(0) + 1;
                let patch = json!({"status": {"collisionCount": count}});
                self.ds = self.api.patch_status(&self.ds.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(self.api_err("update the collision count"))?;
                Err(Error::Collision { namespace: self.ns.clone(), name: self.ds.name_any(), revision: name, count })
            }
            Err(e) => Err(self.api_err("create the revision")(e)),
        }
    }

    /// Create and delete pods so each node has what its eligibility asks for (upstream's
    /// manage).
    async fn manage(&mut self, nodes: &[Node], pods: &[Pod], hash: &str, generation: Option<i64>, changed: &mut bool) -> Result<(), Error> {
        let by_node = by_node(pods);
        let surge = rolling::allows_surge(&self.ds);
        let min_ready = self.ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let now = Timestamp::now();
        let (mut create, mut delete, mut failed_deleted) = (vec![], vec![], 0);
        for node in nodes {
            let name = node.name_any();
            let on_node = by_node.get(&name).map(Vec::as_slice).unwrap_or_default();
            let plan = plan_node(node_should_run(node, &self.ds), on_node, surge, hash, generation, min_ready, now);
            if plan.create {
                create.push(name.clone());
            }
            delete.extend(plan.delete.into_iter().map(|p| (p, false)));
            for pod in plan.failed {
                match self.ctx.failed.try_delete(&format!("{}/{name}", key(&self.ds)), Instant::now()) {
                    Some(wait) => self.requeue_after(wait),
                    None => {
                        self.event(WARNING, "FailedDaemonPod", format!("Found failed daemon pod {}/{pod} on node {name}, will try to kill it", self.ns)).await;
                        delete.push((pod, false));
                        failed_deleted += 1;
                    }
                }
            }
        }
        // Pods for nodes that are gone: no kubelet will ever finish them, so they go at once
        // (upstream's pod garbage collector does this for bound pods).
        let existing: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for (node, pods) in by_node.iter().filter(|(n, _)| !existing.contains(*n)) {
            for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() || p.metadata.deletion_grace_period_seconds != Some(0)) {
                tracing::debug!(pod = %pod.name_any(), node, "daemon pod of a deleted node");
                delete.push((pod.name_any(), true));
            }
        }
        *changed |= !create.is_empty() || !delete.is_empty();
        self.sync_nodes(delete, create, hash, generation).await?;
        if failed_deleted > 0 {
            return Err(Error::FailedPods { namespace: self.ns.clone(), name: self.ds.name_any(), count: failed_deleted });
        }
        Ok(())
    }

    /// The RollingUpdate step within the maxUnavailable/maxSurge budget.
    async fn rolling_update(&mut self, nodes: &[Node], pods: &[Pod], hash: &str, generation: Option<i64>, changed: &mut bool) -> Result<(), Error> {
        let by_node = by_node(pods);
        let mut view = BTreeMap::new();
        let mut desired = 0;
        for node in nodes {
            let name = node.name_any();
            let should_run = node_should_run(node, &self.ds).should_run;
            desired += i32::from(should_run);
            let pods = by_node.get(&name).map(Vec::as_slice).unwrap_or_default();
            if should_run || !pods.is_empty() {
                view.insert(name, rolling::NodePods { should_run, pods });
            }
        }
        let (max_surge, max_unavailable) = rolling::budget(&self.ds, desired).map_err(|reason| Error::Strategy { namespace: self.ns.clone(), name: self.ds.name_any(), reason })?;
        let min_ready = self.ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let step = rolling::step(&view, hash, generation, max_surge, max_unavailable, min_ready, Timestamp::now());
        *changed |= !step.delete.is_empty() || !step.create.is_empty();
        self.sync_nodes(step.delete.into_iter().map(|p| (p, false)).collect(), step.create, hash, generation).await
    }

    /// Delete the named pods (`true`: at once) and create a pod for each named node
    /// (upstream's syncNodes), with upstream's events.
    async fn sync_nodes(&self, delete: Vec<(String, bool)>, create: Vec<String>, hash: &str, generation: Option<i64>) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let template = daemon_template(&self.ds, generation, hash);
        let pod_for = |node: &str| {
            let mut pod = from_template(&template, &self.ns, &self.ds.name_any(), owner_reference(&self.ds));
            let spec = pod.spec.get_or_insert_with(Default::default);
            spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
            pod
        };
        // Slow start, as upstream: batches of 1, 2, 4, ... so a template the server refuses
        // fails once, not once per node.
        let params = PostParams::default();
        let mut remaining: &[String] = &create;
        let mut batch = 1;
        while !remaining.is_empty() {
            let (now, rest) = remaining.split_at(batch.min(remaining.len()));
            let results = futures_util::future::join_all(now.iter().map(|node| {
                let pod = pod_for(node);
                let api = api.clone();
                let params = params.clone();
                async move { api.create(&params, &pod).await }
            }))
            .await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(created) => self.event(NORMAL, "SuccessfulCreate", format!("Created pod: {}", created.name_any())).await,
                    Err(source) => {
                        self.event(WARNING, "FailedCreate", format!("Error creating: {source}")).await;
                        failure = Some(source);
                    }
                }
            }
            if let Some(source) = failure {
                return Err(self.api_err("create pod")(source));
            }
            remaining = rest;
            batch *= 2;
        }
        for (name, now) in delete {
            let params = if now { DeleteParams { grace_period_seconds: Some(0), ..Default::default() } } else { DeleteParams::default() };
            match api.delete(&name, &params).await {
                Ok(_) => self.event(NORMAL, "SuccessfulDelete", format!("Deleted pod: {name}")).await,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    self.event(WARNING, "FailedDelete", format!("Error deleting: {source}")).await;
                    return Err(self.api_err(format!("delete pod {name}"))(source));
                }
            }
        }
        Ok(())
    }

    /// Delete old revisions beyond revisionHistoryLimit that no pod still runs.
    async fn cleanup_history(&self, old: &[ControllerRevision], pods: &[Pod]) -> Result<(), Error> {
        let limit = self.ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        let live: HashSet<String> = pods.iter().filter_map(|p| p.labels().get(HASH_LABEL).cloned()).collect();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        for name in history::to_clean_up(old, limit, &live) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(self.api_err(format!("delete old revision {name}"))(e)),
            }
        }
        Ok(())
    }

    async fn update_status(&mut self, nodes: &[Node], pods: &[Pod], hash: &str, generation: Option<i64>) -> Result<(), Error> {
        let eligible: Vec<(String, bool)> = nodes.iter().map(|n| (n.name_any(), node_should_run(n, &self.ds).should_run)).collect();
        let (status, wait) = status::calculate(&self.ds, &eligible, &by_node(pods), hash, generation, Timestamp::now());
        if let Some(d) = wait {
            self.requeue_after(d + Duration::from_millis(100));
        }
        if self.ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let patch = json!({"status": status});
        self.ds = self.api.patch_status(&self.ds.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(self.api_err("update status"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_get_the_revision_labels_and_tolerations() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a"}]}}},
        }))
        .unwrap();
        let t = daemon_template(&ds, template_generation(&ds), "abc");
        let labels = t.metadata.unwrap().labels.unwrap();
        assert_eq!((labels["app"].as_str(), labels[HASH_LABEL].as_str(), labels[GENERATION_LABEL].as_str()), ("agent", "abc", "3"));
        assert_eq!(t.spec.unwrap().tolerations.unwrap().len(), 6);
        assert!(!is_empty_selector(&ds));
        let everything: DaemonSet = serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"selector": {}, "template": {}}})).unwrap();
        assert!(is_empty_selector(&everything));
    }

    #[test]
    fn pods_are_grouped_by_the_node_they_are_for() {
        let pinned = |name: &str, node: &str| Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(k8s_openapi::api::core::v1::PodSpec { affinity: Some(pin_to_node(None, node)), ..Default::default() }),
            status: None,
        };
        let groups = by_node(&[pinned("a", "n1"), pinned("b", "n2"), pinned("c", "n1"), Pod::default()]);
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["n1", "n2"]);
        assert_eq!(groups["n1"].len(), 2);
    }
}
