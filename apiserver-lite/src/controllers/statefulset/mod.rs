//! The StatefulSet controller: pods named `<set>-<ordinal>` with a stable hostname, subdomain
//! and claims `<template>-<set>-<ordinal>`, created in ordinal order each after the previous is
//! Ready (OrderedReady) or all at once (Parallel), removed from the highest ordinal down, and
//! updated through ControllerRevisions (RollingUpdate from the highest ordinal down to the
//! partition, or OnDelete). It reports the status fields `kubectl rollout status` reads and
//! keeps revisionHistoryLimit revisions, which `kubectl rollout history` and `undo` use.
//!
//! Each reconcile reads the set, its revisions, pods and claims fresh from the API and follows
//! upstream's sync: adopt, pick the current and update revisions, plan the pass
//! ([`plan`]), carry it out ([`actions`]), write status, trim history. Every step is
//! idempotent, so a pass cut short is simply done again.

mod actions;
mod adoption;
mod claims;
mod history;
pub mod identity;
mod plan;
pub mod revision;
mod status;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::backoff::Backoff;
use super::replicaset::pods::controller_of;
use identity::revision_of;

const COMPONENT: &str = "statefulset-controller";
/// A full resync now and then, so a missed event never leaves a set wrong for long.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("statefulset {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
    #[error("statefulset {namespace}/{name} has a selector that cannot be used: {reason}")]
    Selector { namespace: String, name: String, reason: String },
    #[error("statefulset {namespace}/{name}: {source}")]
    Revision { namespace: String, name: String, source: revision::Error },
    #[error("statefulset {namespace}/{name}: {source}")]
    Step { namespace: String, name: String, source: actions::StepError },
}

pub struct Context {
    pub client: Client,
    backoff: Backoff,
}

/// Run the controller until the process ends.
pub async fn run(client: Client) {
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().touched_objects();
    let controller = Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ControllerRevision>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .watches_stream(pod_events, move |pod: Pod| sets_to_wake(&store, &pod))
        .run(reconcile, error_policy, Arc::new(Context { client, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("statefulset controller: {e}");
            }
        })
        .await;
}

/// The sets a pod event concerns: its controller, or for an orphan every set of its
/// namespace whose selector matches it (one of them adopts it).
fn sets_to_wake(store: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == "StatefulSet" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => vec![],
        None => store
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| selector_of(s).is_ok_and(|sel| sel.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect(),
    }
}

fn selector_of(set: &StatefulSet) -> Result<Selector, Error> {
    let spec = set.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    Selector::try_from(spec).map_err(|e| Error::Selector { namespace: set.namespace().unwrap_or_default(), name: set.name_any(), reason: e.to_string() })
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(statefulset = %set.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&set)))
}

fn key(set: &StatefulSet) -> String {
    format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())
}

async fn reconcile(cached: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&cached, &ctx).await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

async fn sync(cached: &StatefulSet, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api_err = |(action, source): (String, kube::Error)| Error::Api { namespace: ns.clone(), name: name.clone(), action, source: Box::new(source) };
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = sets.get_opt(&name).await.map_err(|e| api_err(("read".into(), e)))? else {
        return Ok(Action::await_change());
    };
    let selector = match selector_of(&set) {
        Ok(s) => s,
        // Not transient: retrying cannot help until the set changes.
        Err(e) => {
            tracing::warn!("{e}");
            return Ok(Action::await_change());
        }
    };
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let listed = rev_api.list(&ListParams::default()).await.map_err(|e| api_err(("list revisions".into(), e)))?.items;
    let mut revisions = adoption::claim_revisions(&rev_api, &set, &selector, listed).await.map_err(api_err)?;
    let listed = pod_api.list(&ListParams::default()).await.map_err(|e| api_err(("list pods".into(), e)))?.items;
    let pods = adoption::claim_pods(&pod_api, &set, &selector, listed).await.map_err(api_err)?;
    revision::sort(&mut revisions);

    let (current, update, collision_count) = history::current_and_update(&rev_api, &set, &revisions).await.map_err(api_err)?;
    let rev_err = |source| Error::Revision { namespace: ns.clone(), name: name.clone(), source };
    let current_set = revision::apply(&set, &current).map_err(rev_err)?;
    let update_set = revision::apply(&set, &update).map_err(rev_err)?;
    let claims: BTreeMap<String, PersistentVolumeClaim> = if identity::templates(&set).is_empty() {
        BTreeMap::new()
    } else {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        api.list(&ListParams::default()).await.map_err(|e| api_err(("list claims".into(), e)))?.items.into_iter().map(|c| (c.name_any(), c)).collect()
    };

    let now = Timestamp::now();
    let (current_name, update_name) = (current.name_any(), update.name_any());
    let input = plan::Input { set: &set, current_set: &current_set, update_set: &update_set, current_revision: &current_name, update_revision: &update_name, pods: &pods, claims: &claims, now };
    let plan = plan::plan(&input);
    let mut status = status::compute(&set, &pods, &current_name, &update_name, collision_count, now);
    *status.current_replicas.get_or_insert(0) -= plan.deletes_for_update();
    let retry = plan.retry;
    let executed = actions::Executor { client: &ctx.client, set: &set }.run(plan.steps).await;

    // The status is written even when a step failed, as upstream does.
    status::complete_rolling_update(&set, &mut status);
    if status::differs(&set, &status) {
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(status::patch(&status))).await.map_err(|e| api_err(("update status".into(), e)))?;
    }
    let mut live: HashSet<String> = pods.iter().map(|p| revision_of(p).to_string()).collect();
    live.insert(current_name);
    live.insert(update_name);
    history::truncate(&rev_api, &set, &revisions, &live).await.map_err(api_err)?;
    executed.map_err(|source| Error::Step { namespace: ns.clone(), name: name.clone(), source })?;
    Ok(Action::requeue(retry.unwrap_or(RESYNC)))
}
