//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector, made
//! from the template. It adopts orphans the selector matches, releases owned pods it no longer
//! matches, replaces pods that are deleted or fail, deletes surplus pods in upstream's order,
//! and reports replicas, fullyLabeledReplicas, readyReplicas and availableReplicas.
//!
//! A reconcile first looks at a watch cache of pods: most triggers (a pod's status changed)
//! need no write, and the cache shows that cheaply. Anything it would write (pods created,
//! deleted, adopted, released, a new status) it decides from the ReplicaSet and pods read
//! fresh from the API instead (the server's writes are read-your-own), so a lagging cache
//! never double creates nor reports a deleted pod available, and upstream's "expectations"
//! bookkeeping is not needed.

pub mod pods;
pub mod rank;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::backoff::Backoff;
use super::workload_events::{self as events, NORMAL, WARNING};
use pods::{availability, controller_of, is_active, Availability};

const COMPONENT: &str = "replicaset-controller";
/// A full resync now and then, so a missed event never leaves a ReplicaSet wrong for long.
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("replicaset {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
    #[error("replicaset {namespace}/{name} has a selector that cannot be used: {reason}")]
    Selector { namespace: String, name: String, reason: String },
}

pub struct Context {
    pub client: Client,
    /// Every pod, as the watch last showed it.
    pub pods: Store<Pod>,
    backoff: Backoff,
}

/// Run the controller until the process ends.
pub async fn run(client: Client) {
    let (pods, writer) = reflector::store();
    let pod_events = reflector(writer, watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())).default_backoff().touched_objects();
    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    controller
        .watches_stream(pod_events, move |pod: Pod| owners_to_wake(&store, &pod))
        .run(reconcile, error_policy, Arc::new(Context { client, pods, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("replicaset controller: {e}");
            }
        })
        .await;
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every ReplicaSet of
/// its namespace whose selector matches it (one of them adopts it).
fn owners_to_wake(store: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(r) if r.kind == "ReplicaSet" => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => vec![],
        None => store
            .state()
            .iter()
            .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
            .filter(|rs| selector_of(rs).is_ok_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))))
            .map(|rs| ObjectRef::from_obj(rs.as_ref()))
            .collect(),
    }
}

fn selector_of(rs: &ReplicaSet) -> Result<Selector, Error> {
    let spec = rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    Selector::try_from(spec).map_err(|e| Error::Selector { namespace: rs.namespace().unwrap_or_default(), name: rs.name_any(), reason: e.to_string() })
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(replicaset = %rs.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&rs)))
}

fn key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

/// This ReplicaSet as the controller of the pods it makes.
pub fn owner_reference(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.name_any(),
        uid: rs.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn reconcile(cached: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&cached, &ctx).await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

async fn sync(cached: &ReplicaSet, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api_err = |action: &str| {
        let (ns, name, action) = (ns.clone(), name.clone(), action.to_string());
        move |source| Error::Api { namespace: ns, name, action, source: Box::new(source) }
    };
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(rs) = rs_api.get_opt(&name).await.map_err(api_err("read"))? else {
        return Ok(Action::await_change());
    };
    let selector = selector_of(&rs)?;
    if let Some(action) = nothing_to_do(&rs, &selector, &ctx.pods, Timestamp::now()) {
        return Ok(action);
    }
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let all = pod_api.list(&ListParams::default()).await.map_err(api_err("list pods"))?.items;
    let owned = claim_pods(&ctx.client, &rs, &selector, all).await?;

    let mut active: Vec<Pod> = owned.into_iter().filter(is_active).collect();
    let mut failure = None;
    if rs.metadata.deletion_timestamp.is_none() {
        let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        let reason = if active.len() < want { "FailedCreate" } else { "FailedDelete" };
        if let Err(e) = manage_replicas(&ctx.client, &rs, &mut active).await {
            failure = Some((reason, e));
        }
    }
    let now = Timestamp::now();
    let (mut status, wait) = calculate_status(&rs, &active, now);
    set_replica_failure(&mut status, failure.as_ref().map(|(reason, e)| (*reason, e.to_string())), now);
    if rs.status.as_ref() != Some(&status) {
        rs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
            .await
            .map_err(api_err("update status"))?;
    }
    if let Some((_, e)) = failure {
        return Err(e);
    }
    // A pod Ready but not yet for minReadySeconds becomes available later without any event.
    Ok(wait.map(|d| Action::requeue(d + Duration::from_millis(100))).unwrap_or_else(|| Action::requeue(RESYNC)))
}

/// If the cached pods show nothing to adopt, release, create or delete and the status as
/// recorded, when to look again; None when the fresh path must decide.
fn nothing_to_do(rs: &ReplicaSet, selector: &Selector, cache: &Store<Pod>, now: Timestamp) -> Option<Action> {
    let ns = rs.namespace();
    let uid = rs.uid().unwrap_or_default();
    let mut active = Vec::new();
    for pod in cache.state() {
        if pod.namespace() != ns {
            continue;
        }
        let matches = selector.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()));
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid && matches && is_active(&pod) => active.push(pod.as_ref().clone()),
            Some(r) if r.uid == uid && matches => {}
            Some(r) if r.uid == uid && pod.metadata.deletion_timestamp.is_none() => return None,
            None if matches && pod.metadata.deletion_timestamp.is_none() && rs.metadata.deletion_timestamp.is_none() => return None,
            _ => {}
        }
    }
    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    if active.len() != want && rs.metadata.deletion_timestamp.is_none() {
        return None;
    }
    let (status, wait) = calculate_status(rs, &active, now);
    let failing = status.conditions.iter().flatten().any(|c| c.type_ == REPLICA_FAILURE);
    if rs.status.as_ref() != Some(&status) || failing {
        return None;
    }
    Some(wait.map(|d| Action::requeue(d + Duration::from_millis(100))).unwrap_or_else(|| Action::requeue(RESYNC)))
}

/// The pods this ReplicaSet controls after adopting matching orphans and releasing owned
/// pods its selector no longer matches.
async fn claim_pods(client: &Client, rs: &ReplicaSet, selector: &Selector, all: Vec<Pod>) -> Result<Vec<Pod>, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let uid = rs.uid().unwrap_or_default();
    let mut owned = Vec::new();
    for pod in all {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = selector.matches(&labels);
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    let refs: Vec<&OwnerReference> = pod.owner_references().iter().filter(|r| r.uid != uid).collect();
                    let refs = if refs.is_empty() { json!(null) } else { json!(refs) };
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}});
                    release_or_adopt(&api, &pod, patch, rs, "release").await?;
                }
            }
            Some(_) => {}
            None if matches && rs.metadata.deletion_timestamp.is_none() && pod.metadata.deletion_timestamp.is_none() => {
                let mut refs = pod.owner_references().to_vec();
                refs.push(owner_reference(rs));
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}});
                if let Some(adopted) = release_or_adopt(&api, &pod, patch, rs, "adopt").await? {
                    owned.push(adopted);
                }
            }
            None => {}
        }
    }
    Ok(owned)
}

/// Patch a pod's owner references; a pod gone meanwhile is simply skipped.
async fn release_or_adopt(api: &Api<Pod>, pod: &Pod, patch: serde_json::Value, rs: &ReplicaSet, action: &str) -> Result<Option<Pod>, Error> {
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(p) => Ok(Some(p)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(source) => Err(Error::Api { namespace: rs.namespace().unwrap_or_default(), name: rs.name_any(), action: format!("{action} pod {}", pod.name_any()), source: Box::new(source) }),
    }
}

/// The ReplicaFailure condition: set (once) when creating or deleting pods failed, removed
/// when it worked again, as upstream reports a quota or admission refusal.
fn set_replica_failure(status: &mut ReplicaSetStatus, failure: Option<(&str, String)>, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let existing = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some((reason, message)) if !existing => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        }),
        None if existing => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
}

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Create or delete pods so that `spec.replicas` are active; `active` is kept up to date
/// with what was done, even when a step fails.
async fn manage_replicas(client: &Client, rs: &ReplicaSet, active: &mut Vec<Pod>) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let reference = events::reference(rs);
    if active.len() < want {
        let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
        let pod = pods::from_template(&template, &ns, &rs.name_any(), owner_reference(rs));
        let params = PostParams::default();
        // Slow start, as upstream: batches of 1, 2, 4, ... so a template the server refuses
        // fails once, not `replicas` times.
        let mut remaining = want - active.len();
        let mut batch = 1;
        while remaining > 0 {
            let n = batch.min(remaining);
            let results = futures_util::future::join_all((0..n).map(|_| api.create(&params, &pod))).await;
            let mut failure = None;
            for result in results {
                match result {
                    Ok(created) => {
                        events::record(client, COMPONENT, reference.clone(), NORMAL, "SuccessfulCreate", format!("Created pod: {}", created.name_any())).await;
                        active.push(created);
                    }
                    Err(source) => {
                        events::record(client, COMPONENT, reference.clone(), WARNING, "FailedCreate", format!("Error creating: {source}")).await;
                        failure = Some(source);
                    }
                }
            }
            if let Some(source) = failure {
                return Err(Error::Api { namespace: ns, name: rs.name_any(), action: "create pod".into(), source: Box::new(source) });
            }
            remaining -= n;
            batch *= 2;
        }
    } else if active.len() > want {
        let victims = rank::pods_to_delete(active.clone(), active.len() - want);
        for pod in &victims {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    active.retain(|p| p.metadata.uid != pod.metadata.uid);
                    events::record(client, COMPONENT, reference.clone(), NORMAL, "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any())).await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => active.retain(|p| p.metadata.uid != pod.metadata.uid),
                Err(source) => {
                    events::record(client, COMPONENT, reference.clone(), WARNING, "FailedDelete", format!("Error deleting: {source}")).await;
                    return Err(Error::Api { namespace: ns, name: rs.name_any(), action: format!("delete pod {}", pod.name_any()), source: Box::new(source) });
                }
            }
        }
    }
    Ok(())
}

/// The status the active pods give, and how long until a Ready pod becomes available.
pub fn calculate_status(rs: &ReplicaSet, active: &[Pod], now: Timestamp) -> (ReplicaSetStatus, Option<Duration>) {
    let spec = rs.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let template_labels = spec.template.and_then(|t| t.metadata).and_then(|m| m.labels).unwrap_or_default();
    let (mut ready, mut available, mut wait) = (0, 0, None::<Duration>);
    for pod in active {
        match availability(pod, min_ready, now) {
            Availability::NotReady => {}
            Availability::ReadyFor(d) => {
                ready += 1;
                wait = Some(wait.map_or(d, |w| w.min(d)));
            }
            Availability::Available => {
                ready += 1;
                available += 1;
            }
        }
    }
    let status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(active.iter().filter(|p| pods::fully_labeled(p, &template_labels)).count() as i32),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    };
    (status, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_failure_is_set_once_and_cleared_when_it_works() {
        let now = Timestamp::now();
        let mut status = ReplicaSetStatus::default();
        set_replica_failure(&mut status, Some(("FailedCreate", "quota exceeded".into())), now);
        set_replica_failure(&mut status, Some(("FailedCreate", "again".into())), now);
        let conditions = status.conditions.clone().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!((conditions[0].reason.as_deref(), conditions[0].message.as_deref()), (Some("FailedCreate"), Some("quota exceeded")));
        set_replica_failure(&mut status, None, now);
        assert_eq!(status.conditions, None);
    }
}
