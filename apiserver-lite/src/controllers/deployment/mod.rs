//! The Deployment controller: runs the pod template through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, rolling (maxSurge/maxUnavailable, readiness) or
//! recreating, keeps revision annotations and a bounded history of old ReplicaSets, scales in
//! proportion when resized mid-rollout, holds still while paused, and reports status and the
//! Available/Progressing conditions as upstream does, so `kubectl rollout` works.
//!
//! Each reconcile reads the Deployment and its ReplicaSets fresh from the API and follows
//! upstream's syncDeployment step by step; every step is idempotent.

pub(crate) mod hash;
mod recreate;
pub mod replicasets;
mod rolling;
mod scale;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::replicaset::pods::controller_of;
use super::backoff::Backoff;
use super::workload_events::{self as events, NORMAL};
use replicasets as util;

const COMPONENT: &str = "deployment-controller";
const RESYNC: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
    #[error("deployment {namespace}/{name}: {source}")]
    Spec { namespace: String, name: String, source: util::Error },
    #[error("deployment {namespace}/{name} has a selector that cannot be used: {reason}")]
    Selector { namespace: String, name: String, reason: String },
    #[error("deployment {namespace}/{name}: replica set {rs} already exists with another template; retrying with collision count {count}")]
    Collision { namespace: String, name: String, rs: String, count: i32 },
}

pub struct Context {
    pub client: Client,
    backoff: Backoff,
}

pub async fn run(client: Client) {
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Context { client, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("deployment controller: {e}");
            }
        })
        .await;
}

fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(deployment = %d.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&d)))
}

fn key(d: &Deployment) -> String {
    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
}

async fn reconcile(cached: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&cached, &ctx).await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

async fn sync(cached: &Deployment, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let d = match deployments.get_opt(&cached.name_any()).await {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Api { namespace: ns, name: cached.name_any(), action: "read".into(), source: Box::new(source) }),
    };
    let mut run = Rollout { client: ctx.client.clone(), rs_api: Api::namespaced(ctx.client.clone(), &ns), deployments, d, requeue: None };
    let all = run.claim_replica_sets().await?;
    run.sync_deployment(all).await?;
    Ok(Action::requeue(run.requeue.unwrap_or(RESYNC)))
}

/// One reconcile of one Deployment: the object as this pass last wrote it, and when to look
/// again.
pub(crate) struct Rollout {
    client: Client,
    rs_api: Api<ReplicaSet>,
    deployments: Api<Deployment>,
    d: Deployment,
    requeue: Option<Duration>,
}

impl Rollout {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn api_err(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let (namespace, name, action) = (self.ns(), self.d.name_any(), action.into());
        move |source| Error::Api { namespace, name, action, source: Box::new(source) }
    }

    fn spec_err(&self) -> impl FnOnce(util::Error) -> Error {
        let (namespace, name) = (self.ns(), self.d.name_any());
        move |source| Error::Spec { namespace, name, source }
    }

    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    /// The ReplicaSets this Deployment controls, after adopting matching orphans and releasing
    /// owned ones its selector no longer matches.
    async fn claim_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let selector = Selector::try_from(selector).map_err(|e| Error::Selector { namespace: self.ns(), name: self.d.name_any(), reason: e.to_string() })?;
        let uid = self.d.uid().unwrap_or_default();
        let listed = self.rs_api.list(&ListParams::default()).await.map_err(self.api_err("list replica sets"))?.items;
        let mut owned = Vec::new();
        for rs in listed {
            let matches = selector.matches(rs.metadata.labels.as_ref().unwrap_or(&Default::default()));
            match controller_of(&rs.metadata) {
                Some(r) if r.uid == uid && matches => owned.push(rs),
                Some(r) if r.uid == uid && rs.metadata.deletion_timestamp.is_none() => {
                    let refs: Vec<&OwnerReference> = rs.owner_references().iter().filter(|r| r.uid != uid).collect();
                    let refs = if refs.is_empty() { json!(null) } else { json!(refs) };
                    self.patch_owners(&rs, json!({"metadata": {"ownerReferences": refs, "uid": rs.uid()}}), "release").await?;
                }
                None if matches && self.d.metadata.deletion_timestamp.is_none() && rs.metadata.deletion_timestamp.is_none() => {
                    let mut refs = rs.owner_references().to_vec();
                    refs.push(self.owner_reference());
                    if let Some(adopted) = self.patch_owners(&rs, json!({"metadata": {"ownerReferences": refs, "uid": rs.uid()}}), "adopt").await? {
                        owned.push(adopted);
                    }
                }
                _ => {}
            }
        }
        Ok(owned)
    }

    async fn patch_owners(&self, rs: &ReplicaSet, patch: serde_json::Value, action: &str) -> Result<Option<ReplicaSet>, Error> {
        match self.rs_api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(rs) => Ok(Some(rs)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(self.api_err(format!("{action} replica set {}", rs.name_any()))(e)),
        }
    }

    fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.d.name_any(),
            uid: self.d.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn paused(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
    }

    /// Upstream's syncDeployment: status only while deleting, Progressing=Unknown while
    /// paused, scaling only while paused or resized, else a rollout step.
    async fn sync_deployment(&mut self, mut all: Vec<ReplicaSet>) -> Result<(), Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, old) = self.new_and_old(&all, false).await?;
            return self.sync_status(new.as_ref(), &old).await;
        }
        self.check_paused_conditions().await?;
        if self.paused() || self.is_scaling_event(&mut all).await? {
            return self.sync(all).await;
        }
        if util::is_rolling(&self.d) {
            self.rollout_rolling(all).await
        } else {
            self.rollout_recreate(all).await
        }
    }

    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !status::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let mut s = self.d.status.clone().unwrap_or_default();
        let cond = status::get(&s, status::PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(status::TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(status::PAUSED));
        let now = Timestamp::now();
        if self.paused() && !paused_cond {
            status::set(&mut s, status::condition(status::PROGRESSING, "Unknown", status::PAUSED, "Deployment is paused".into(), now));
        } else if !self.paused() && paused_cond {
            status::set(&mut s, status::condition(status::PROGRESSING, "Unknown", status::RESUMED, "Deployment is resumed".into(), now));
        } else {
            return Ok(());
        }
        self.write_status(s).await
    }

    /// Resized since the active ReplicaSets were last sized (their desired-replicas annotation).
    /// `all` is refreshed with what this wrote (the new ReplicaSet's annotations), so later
    /// steps do not write from a stale copy.
    async fn is_scaling_event(&mut self, all: &mut Vec<ReplicaSet>) -> Result<bool, Error> {
        let (new, old) = self.new_and_old(all, false).await?;
        let want = util::replicas(&self.d);
        let scaling = new.iter().chain(old.iter()).filter(|rs| util::rs_replicas(rs) > 0).any(|rs| util::annotation_i32(rs, util::DESIRED_REPLICAS).is_some_and(|a| a != want));
        *all = old.into_iter().chain(new).collect();
        Ok(scaling)
    }

    /// The new ReplicaSet (created if `create` and missing) and the others, with the
    /// deployment's revision brought up to date.
    async fn new_and_old(&mut self, all: &[ReplicaSet], create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let existing = util::find_new(&self.d, all);
        let old: Vec<ReplicaSet> = all.iter().filter(|rs| existing.as_ref().is_none_or(|n| n.metadata.uid != rs.metadata.uid)).cloned().collect();
        let new = self.get_new_rs(existing, &old, create).await?;
        Ok((new, old))
    }

    async fn get_new_rs(&mut self, existing: Option<ReplicaSet>, old: &[ReplicaSet], create: bool) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = util::max_revision(old) + 1;
        if let Some(mut rs) = existing {
            let annotations_changed = util::set_new_rs_annotations(&self.d, &mut rs, new_revision, true).map_err(self.spec_err())?;
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let min_ready_changed = rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready;
            if annotations_changed || min_ready_changed {
                if let Some(spec) = rs.spec.as_mut() {
                    spec.min_ready_seconds = min_ready;
                }
                let updated = self.rs_api.replace(&rs.name_any(), &PostParams::default(), &rs).await.map_err(self.api_err("update the new replica set"))?;
                return Ok(Some(updated));
            }
            let revision = rs.annotations().get(util::REVISION).cloned().unwrap_or_default();
            self.set_revision(&revision).await?;
            let mut s = self.d.status.clone().unwrap_or_default();
            if status::has_progress_deadline(&self.d) && status::get(&s, status::PROGRESSING).is_none() {
                status::set(&mut s, status::condition(status::PROGRESSING, "True", "FoundNewReplicaSet", format!("Found new replica set \"{}\"", rs.name_any()), Timestamp::now()));
                self.write_status(s).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        self.create_new_rs(old, new_revision).await.map(Some)
    }

    async fn create_new_rs(&mut self, old: &[ReplicaSet], new_revision: i64) -> Result<ReplicaSet, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let pod_hash = hash::compute(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
        labels.insert(hash::LABEL.into(), pod_hash.clone());
        let labels = labels.clone();
        let mut selector: LabelSelector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(hash::LABEL.into(), pod_hash.clone());
        let name = format!("{}-{}", self.d.name_any(), pod_hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(self.ns()), owner_references: Some(vec![self.owner_reference()]), labels: Some(labels), ..Default::default() },
            spec: Some(ReplicaSetSpec { replicas: Some(0), min_ready_seconds: spec.min_ready_seconds, selector, template: Some(template) }),
            status: None,
        };
        let mut all: Vec<ReplicaSet> = old.to_vec();
        all.push(rs.clone());
        let replicas = rolling::new_rs_replicas(&self.d, &all, &rs).map_err(self.spec_err())?;
        rs.spec.as_mut().unwrap().replicas = Some(replicas);
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false).map_err(self.spec_err())?;
        let (created, already_existed) = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Ours from an earlier pass (same template): use it. Another template under
                // this name: a hash collision, so bump the count and try another name.
                let found = self.rs_api.get(&name).await.map_err(self.api_err("read the new replica set"))?;
                let ours = controller_of(&found.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = found.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| util::equal_ignore_hash(t, &spec.template));
                if ours && same {
                    (found, true)
                } else {
                    let mut s = self.d.status.clone().unwrap_or_default();
                    let count = s.collision_count.unwrap_or(0) + 1;
                    s.collision_count = Some(count);
                    self.write_status(s).await?;
                    return Err(Error::Collision { namespace: self.ns(), name: self.d.name_any(), rs: name, count });
                }
            }
            Err(e) => return Err(self.api_err("create the new replica set")(e)),
        };
        if replicas > 0 && !already_existed {
            self.event(format!("Scaled up replica set {} from 0 to {}", created.name_any(), replicas)).await;
        }
        self.set_revision(&new_revision.to_string()).await?;
        if !already_existed && status::has_progress_deadline(&self.d) {
            let mut s = self.d.status.clone().unwrap_or_default();
            status::set(&mut s, status::condition(status::PROGRESSING, "True", "NewReplicaSetCreated", format!("Created new replica set \"{}\"", created.name_any()), Timestamp::now()));
            self.write_status(s).await?;
        }
        Ok(created)
    }

    async fn event(&self, message: String) {
        events::record(&self.client, COMPONENT, events::reference(&self.d), NORMAL, "ScalingReplicaSet", message).await;
    }

    /// The deployment's own revision annotation (a metadata write: the status subresource
    /// would drop it).
    async fn set_revision(&mut self, revision: &str) -> Result<(), Error> {
        if self.d.annotations().get(util::REVISION).map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision}}});
        self.d = self.deployments.patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(self.api_err("set the revision"))?;
        Ok(())
    }

    async fn write_status(&mut self, s: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&s) {
            return Ok(());
        }
        let patch = json!({"status": s});
        self.d = self.deployments.patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(self.api_err("update status"))?;
        // A merge patch cannot drop list items; conditions are written whole above.
        Ok(())
    }

    /// Resize a ReplicaSet (and its replica annotations), with the ScalingReplicaSet event.
    async fn scale_rs(&mut self, rs: &ReplicaSet, to: i32) -> Result<ReplicaSet, Error> {
        let from = util::rs_replicas(rs);
        let mut updated = rs.clone();
        let max = util::replicas(&self.d) + util::max_surge(&self.d).map_err(self.spec_err())?;
        let annotations_changed = util::set_replicas_annotations(&mut updated, util::replicas(&self.d), max);
        if from == to && !annotations_changed {
            return Ok(rs.clone());
        }
        updated.spec.get_or_insert_with(Default::default).replicas = Some(to);
        let updated = self.rs_api.replace(&rs.name_any(), &PostParams::default(), &updated).await.map_err(self.api_err(format!("scale replica set {}", rs.name_any())))?;
        if from != to {
            let direction = if to > from { "up" } else { "down" };
            self.event(format!("Scaled {direction} replica set {} from {from} to {to}", rs.name_any())).await;
        }
        Ok(updated)
    }

    /// Scaling without a rollout (paused, or resized): upstream's sync.
    async fn sync(&mut self, all: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, mut old) = self.new_and_old(&all, false).await?;
        let new = self.scale(new, &mut old).await?;
        if self.paused() {
            self.cleanup(&old).await?;
        }
        self.sync_status(new.as_ref(), &old).await
    }

    async fn scale(&mut self, new: Option<ReplicaSet>, old: &mut [ReplicaSet]) -> Result<Option<ReplicaSet>, Error> {
        let want = util::replicas(&self.d);
        old.sort_by_key(|rs| std::cmp::Reverse(rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        let active: Vec<ReplicaSet> = new.iter().chain(old.iter()).filter(|rs| util::rs_replicas(rs) > 0).cloned().collect();
        // One active (or none: the newest) takes the whole size.
        let target = match active.len() {
            0 => new.clone().or_else(|| old.first().cloned()),
            1 => Some(active[0].clone()),
            _ => None,
        };
        if let Some(rs) = target {
            let scaled = self.scale_rs(&rs, want).await?;
            return Ok(self.replace_in(new, old, scaled));
        }
        let saturated = new.as_ref().is_some_and(|n| util::rs_replicas(n) == want && util::annotation_i32(n, util::DESIRED_REPLICAS) == Some(want) && util::available(n) == want);
        if saturated {
            for rs in old.iter_mut() {
                if util::rs_replicas(rs) > 0 {
                    *rs = self.scale_rs(&rs.clone(), 0).await?;
                }
            }
            return Ok(new);
        }
        if util::is_rolling(&self.d) {
            let sizes = scale::proportional(&self.d, &active).map_err(self.spec_err())?;
            let mut new = new;
            for (rs, size) in active.iter().zip(sizes) {
                let scaled = self.scale_rs(rs, size).await?;
                new = self.replace_in(new, old, scaled);
            }
            return Ok(new);
        }
        Ok(new)
    }

    /// Put an updated ReplicaSet back where it came from (new or one of the old).
    fn replace_in(&self, new: Option<ReplicaSet>, old: &mut [ReplicaSet], rs: ReplicaSet) -> Option<ReplicaSet> {
        if new.as_ref().is_some_and(|n| n.metadata.uid == rs.metadata.uid) {
            return Some(rs);
        }
        if let Some(slot) = old.iter_mut().find(|o| o.metadata.uid == rs.metadata.uid) {
            *slot = rs;
        }
        new
    }

    /// Status without touching Progressing (upstream's syncDeploymentStatus).
    async fn sync_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let s = status::calculate(&self.d, &all, new, Timestamp::now()).map_err(self.spec_err())?;
        self.write_status(s).await
    }

    /// Status after a rollout step, Progressing included (upstream's syncRolloutStatus).
    async fn sync_rollout_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let (s, requeue) = status::rollout(&self.d, &all, new, Timestamp::now()).map_err(self.spec_err())?;
        if let Some(r) = requeue {
            self.requeue_after(r);
        }
        self.write_status(s).await
    }

    /// Delete the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (util::revision(rs), rs.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        for rs in cleanable.into_iter().take(diff as usize) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0 || util::rs_replicas(rs) != 0 || rs.metadata.generation > st.observed_generation {
                continue;
            }
            match self.rs_api.delete(&rs.name_any(), &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(self.api_err(format!("delete old replica set {}", rs.name_any()))(e)),
            }
        }
        Ok(())
    }
}
