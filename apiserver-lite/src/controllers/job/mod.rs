//! The Job controller: runs pods from the template until `completions` succeed (NonIndexed,
//! or once per index for Indexed jobs), at most `parallelism` at once, waiting after pod
//! failures (10 s doubling) and failing the Job past `backoffLimit` failures or
//! `activeDeadlineSeconds`; deletes its pods while suspended; reports status and the
//! conditions and events of upstream 1.33 (FailureTarget / SuccessCriteriaMet first, then
//! Failed / Complete once no pod is left terminating).
//!
//! Pods carry the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod is counted
//! before it can vanish: its uid first goes into status.uncountedTerminatedPods, then the
//! finalizer comes off, then it moves into the succeeded / failed counters. Each step is
//! written before the next, so a crash between them neither loses nor double counts a pod.
//! Each reconcile reads the Job and its pods fresh from the API.

pub mod indexes;
pub mod pods;
pub mod status;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::backoff::Backoff;
use super::replicaset::pods::{controller_of, is_ready};
use super::workload_events::{self as events, NORMAL, WARNING};
use pods::Outcome;
use status::{Observed, Verdict};

const COMPONENT: &str = "job-controller";
const RESYNC: Duration = Duration::from_secs(300);
/// The spec.managedBy value (or none) under which this controller runs a job.
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
    #[error("job {namespace}/{name} has a selector that cannot be used: {reason}")]
    Selector { namespace: String, name: String, reason: String },
}

pub struct JobConfig {
    /// The wait before a new pod after the first failure; doubled per further failure.
    pub pod_backoff_base: Duration,
    pub pod_backoff_max: Duration,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig { pod_backoff_base: Duration::from_secs(10), pod_backoff_max: Duration::from_secs(600) }
    }
}

struct Context {
    client: Client,
    config: JobConfig,
    backoff: Backoff,
    /// Per job: pod failures since its last success, and when the last was counted.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

pub async fn run(client: Client, config: JobConfig) {
    let ctx = Arc::new(Context { client: client.clone(), config, backoff: Backoff::default(), failures: Mutex::default() });
    let orphans = release_orphans(client.clone());
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("job controller: {e}");
            }
        });
    futures_util::future::join(orphans, controller).await;
}

/// Pods being deleted whose Job is gone (deleted, or replaced by another of the same name)
/// lose the tracking finalizer, so they can go: no reconcile of that Job will count them.
async fn release_orphans(client: Client) {
    let stream = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().touched_objects();
    stream
        .for_each(|pod| {
            let client = client.clone();
            async move {
                let Ok(pod) = pod else { return };
                if !pods::has_finalizer(&pod) || pod.metadata.deletion_timestamp.is_none() {
                    return;
                }
                let ns = pod.namespace().unwrap_or_default();
                if let Some(owner) = controller_of(&pod.metadata).filter(|r| r.kind == "Job") {
                    match Api::<Job>::namespaced(client.clone(), &ns).get_opt(&owner.name).await {
                        Ok(Some(job)) if job.uid().as_deref() == Some(owner.uid.as_str()) => return,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!("job controller: looking up the job of pod {}: {e}", pod.name_any());
                            return;
                        }
                    }
                }
                if let Err(e) = remove_finalizer(&Api::namespaced(client, &ns), &pod).await {
                    tracing::warn!("job controller: releasing orphaned pod {ns}/{}: {e}", pod.name_any());
                }
            }
        })
        .await;
}

/// status.uncountedTerminatedPods as the server stores it (empty lists dropped), so an
/// unchanged one compares equal to what was read.
fn uncounted_pods(succeeded: Vec<String>, failed: Vec<String>) -> Option<UncountedTerminatedPods> {
    let non_empty = |v: Vec<String>| Some(v).filter(|v| !v.is_empty());
    Some(UncountedTerminatedPods { succeeded: non_empty(succeeded), failed: non_empty(failed) })
}

/// Take the tracking finalizer off a pod; a pod gone or changed meanwhile is left alone.
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let finalizers: Vec<&String> = pod.finalizers().iter().filter(|f| *f != pods::TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": if finalizers.is_empty() { json!(null) } else { json!(finalizers) }, "uid": pod.uid()}});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn key(job: &Job) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&job)))
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&cached, &ctx).await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

/// One reconcile of one Job.
struct Run<'a> {
    ctx: &'a Context,
    jobs: Api<Job>,
    pods: Api<Pod>,
    job: Job,
    requeue: Duration,
}

async fn sync(cached: &Job, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let job = match jobs.get_opt(&cached.name_any()).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(cached));
            return Ok(Action::await_change());
        }
        Err(source) => return Err(Error::Api { namespace: ns, name: cached.name_any(), action: "read".into(), source: Box::new(source) }),
    };
    // A job another controller manages (spec.managedBy) is left to it, as upstream.
    if job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGED_BY) {
        return Ok(Action::await_change());
    }
    let mut run = Run { ctx, jobs, pods, job, requeue: RESYNC };
    run.sync().await?;
    Ok(Action::requeue(run.requeue))
}

impl Run<'_> {
    fn err(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let (namespace, name, action) = (self.job.namespace().unwrap_or_default(), self.job.name_any(), action.into());
        move |source| Error::Api { namespace, name, action, source: Box::new(source) }
    }

    fn requeue_after(&mut self, d: Duration) {
        self.requeue = self.requeue.min(d);
    }

    async fn event(&self, type_: &str, reason: &str, message: String) {
        events::record(&self.ctx.client, COMPONENT, events::reference(&self.job), type_, reason, message).await;
    }

    /// The pods this Job controls (its selector matches them and it is their controller).
    async fn owned_pods(&self) -> Result<Vec<Pod>, Error> {
        let selector = self.job.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        let selector = Selector::try_from(selector).map_err(|e| Error::Selector { namespace: self.job.namespace().unwrap_or_default(), name: self.job.name_any(), reason: e.to_string() })?;
        let uid = self.job.uid().unwrap_or_default();
        let listed = self.pods.list(&ListParams::default().labels_from(&selector)).await.map_err(self.err("list pods"))?.items;
        Ok(listed.into_iter().filter(|p| controller_of(&p.metadata).is_some_and(|r| r.kind == "Job" && r.uid == uid)).collect())
    }

    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), Error> {
        remove_finalizer(&self.pods, pod).await.map_err(self.err(format!("remove finalizer of pod {}", pod.name_any())))
    }

    async fn write_status(&mut self, status: &JobStatus) -> Result<(), Error> {
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let patch = json!({"status": {
            "active": status.active,
            "ready": status.ready,
            "terminating": status.terminating,
            "succeeded": status.succeeded,
            "failed": status.failed,
            "startTime": status.start_time,
            "completionTime": status.completion_time,
            "completedIndexes": status.completed_indexes,
            "conditions": status.conditions,
            "uncountedTerminatedPods": {"succeeded": uncounted.succeeded, "failed": uncounted.failed},
        }});
        self.job = self.jobs.patch_status(&self.job.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await.map_err(self.err("update status"))?;
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), Error> {
        let spec = self.job.spec.clone().unwrap_or_default();
        let original = self.job.status.clone().unwrap_or_default();
        let mut st = original.clone();
        let indexed = status::indexed(&spec);
        let completions = spec.completions.unwrap_or(0);
        let suspended = spec.suspend == Some(true);
        let finishing = status::is_finished(&st) || self.job.metadata.deletion_timestamp.is_some() || status::condition(&st, status::SUCCESS_CRITERIA_MET).is_some();
        let all = self.owned_pods().await?;

        // 1. Finished pods not yet counted go into uncountedTerminatedPods (or, for an
        // Indexed job's successes, completedIndexes).
        let uncounted = st.uncounted_terminated_pods.clone().unwrap_or_default();
        let (mut u_succeeded, mut u_failed) = (uncounted.succeeded.unwrap_or_default(), uncounted.failed.unwrap_or_default());
        let mut completed = indexes::parse(st.completed_indexes.as_deref().unwrap_or_default(), completions);
        let mut release = Vec::new();
        for pod in all.iter().filter(|p| pods::has_finalizer(p)) {
            let Some(outcome) = pods::outcome(pod) else { continue };
            let uid = pod.uid().unwrap_or_default();
            // Pods deleted because the job is done or suspended are not failures.
            let deleted_by_us = suspended && outcome == Outcome::Failed && pods::phase(pod) != "Failed";
            match outcome {
                _ if finishing || deleted_by_us => {}
                Outcome::Succeeded if indexed => {
                    if let Some(i) = pods::index_of(pod).filter(|i| *i < completions) {
                        completed.insert(i);
                    }
                }
                Outcome::Succeeded if !u_succeeded.contains(&uid) => u_succeeded.push(uid),
                Outcome::Failed if !u_failed.contains(&uid) => u_failed.push(uid),
                _ => {}
            }
            release.push(pod);
        }
        let completed_str = |c: &BTreeSet<i32>| if indexed && !c.is_empty() { Some(indexes::format(c)) } else { None };
        st.uncounted_terminated_pods = uncounted_pods(u_succeeded.clone(), u_failed.clone());
        if indexed {
            st.completed_indexes = completed_str(&completed);
            st.succeeded = Some(completed.len() as i32).filter(|n| *n > 0);
        }
        if st.uncounted_terminated_pods.clone().unwrap_or_default() != original.uncounted_terminated_pods.clone().unwrap_or_default() || st.completed_indexes != original.completed_indexes {
            self.write_status(&st).await?;
        }

        // 2. Their finalizers come off.
        for pod in &release {
            self.remove_finalizer(pod).await?;
        }

        // 3. Counted: out of uncountedTerminatedPods into the counters.
        let released: BTreeSet<String> = release.iter().filter_map(|p| p.uid()).collect();
        let still_held = |uid: &String| all.iter().any(|p| p.uid().as_ref() == Some(uid) && pods::has_finalizer(p) && !released.contains(uid));
        let (new_succeeded, keep_s): (Vec<String>, Vec<String>) = u_succeeded.into_iter().partition(|u| !still_held(u));
        let (new_failed, keep_f): (Vec<String>, Vec<String>) = u_failed.into_iter().partition(|u| !still_held(u));
        if !indexed {
            st.succeeded = Some(st.succeeded.unwrap_or(0) + new_succeeded.len() as i32).filter(|n| *n > 0);
        }
        st.failed = Some(st.failed.unwrap_or(0) + new_failed.len() as i32).filter(|n| *n > 0);
        st.uncounted_terminated_pods = uncounted_pods(keep_s, keep_f);
        self.note_failures(new_succeeded.len(), new_failed.len());

        // 4. Decide.
        let now = Timestamp::now();
        let mut active: Vec<Pod> = all.iter().filter(|p| pods::is_active(p)).cloned().collect();
        // A released pod being deleted with no other finalizer is gone now.
        let gone = |p: &Pod| p.uid().is_some_and(|u| released.contains(&u)) && p.finalizers().iter().all(|f| f == pods::TRACKING_FINALIZER);
        let mut terminating = all.iter().filter(|p| pods::is_terminating(p) && !gone(p)).count();
        if !status::is_finished(&st) && self.job.metadata.deletion_timestamp.is_none() {
            if suspended {
                if status::set_condition(&mut st, status::SUSPENDED, "True", "JobSuspended", "Job suspended", now) {
                    self.event(NORMAL, "Suspended", "Job suspended".into()).await;
                }
            } else {
                if status::condition(&st, status::SUSPENDED).is_some() {
                    status::set_condition(&mut st, status::SUSPENDED, "False", "JobResumed", "Job resumed", now);
                    self.event(NORMAL, "Resumed", "Job resumed".into()).await;
                    // The deadline counts from the resumption.
                    st.start_time = Some(Time(now));
                }
                if st.start_time.is_none() {
                    st.start_time = Some(Time(now));
                }
            }
            let obs = Observed { succeeded: st.succeeded.unwrap_or(0), failed: st.failed.unwrap_or(0), completed: completed.clone(), active: active.len(), restarts: active.iter().map(pods::restarts).sum(), start_time: st.start_time.as_ref().map(|t| t.0) };
            let verdict = match (status::condition(&st, status::FAILURE_TARGET), status::condition(&st, status::SUCCESS_CRITERIA_MET)) {
                (Some(c), _) => Some((false, c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())),
                (None, Some(c)) => Some((true, c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())),
                (None, None) => match status::verdict(&spec, &obs, now) {
                    Verdict::Running => None,
                    Verdict::Succeeded => Some((true, "CompletionsReached".to_string(), "Reached expected number of succeeded pods".to_string())),
                    Verdict::Failed { reason, message } => Some((false, reason.to_string(), message.to_string())),
                },
            };
            match verdict {
                Some((succeeded, reason, message)) => {
                    let target = if succeeded { status::SUCCESS_CRITERIA_MET } else { status::FAILURE_TARGET };
                    status::set_condition(&mut st, target, "True", &reason, &message, now);
                    terminating += self.delete_pods(&mut active, usize::MAX).await?;
                    if active.is_empty() && terminating == 0 {
                        if succeeded {
                            status::set_condition(&mut st, status::COMPLETE, "True", &reason, &message, now);
                            st.completion_time = Some(Time(now));
                            self.event(NORMAL, "Completed", "Job completed".into()).await;
                        } else {
                            status::set_condition(&mut st, status::FAILED, "True", &reason, &message, now);
                            self.event(WARNING, &reason, message.clone()).await;
                        }
                    }
                }
                None if suspended => terminating += self.delete_pods(&mut active, usize::MAX).await?,
                None => {
                    if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, obs.start_time) {
                        let left = (start + SignedDuration::from_secs(deadline)).duration_since(now).unsigned_abs();
                        self.requeue_after(left + Duration::from_millis(50));
                    }
                    terminating += self.manage_pods(&spec, &obs, &completed, &mut active).await?;
                }
            }
        }

        if status::is_finished(&st) {
            self.ctx.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(&self.job));
        }
        st.active = Some(active.len() as i32).filter(|n| *n > 0);
        st.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
        st.terminating = Some(terminating as i32);
        if st != original {
            self.write_status(&st).await?;
        }
        Ok(())
    }

    /// Remember counted failures for the pod backoff; a success resets it.
    fn note_failures(&self, succeeded: usize, failed: usize) {
        let mut map = self.ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        if succeeded > 0 {
            map.remove(&key(&self.job));
        }
        if failed > 0 {
            let entry = map.entry(key(&self.job)).or_insert((0, Instant::now()));
            *entry = (entry.0 + failed as u32, Instant::now());
        }
    }

    /// How long new pods must still wait after the recent failures.
    fn backoff_left(&self) -> Duration {
        let map = self.ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some((n, at)) = map.get(&key(&self.job)) else { return Duration::ZERO };
        let wait = status::pod_backoff(self.ctx.config.pod_backoff_base, self.ctx.config.pod_backoff_max, *n);
        wait.saturating_sub(at.elapsed())
    }

    /// Create or delete pods towards what the job needs now; how many it deleted.
    async fn manage_pods(&mut self, spec: &k8s_openapi::api::batch::v1::JobSpec, obs: &Observed, completed: &BTreeSet<i32>, active: &mut Vec<Pod>) -> Result<usize, Error> {
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
        let mut deleted = 0;
        let to_make: Vec<Option<i32>> = if status::indexed(spec) {
            let completions = spec.completions.unwrap_or(0);
            // Pods for indexes already done, out of range, or doubled go.
            let mut seen = BTreeSet::new();
            let mut extra: Vec<Pod> = Vec::new();
            active.retain(|p| match pods::index_of(p) {
                Some(i) if i < completions && !completed.contains(&i) && seen.insert(i) => true,
                _ => {
                    extra.push(p.clone());
                    false
                }
            });
            deleted += self.delete_pods(&mut extra, usize::MAX).await?;
            if active.len() > parallelism {
                deleted += self.delete_pods(active, active.len() - parallelism).await?;
            }
            let room = parallelism.saturating_sub(active.len());
            indexes::to_create(completions, completed, &seen, room).into_iter().map(Some).collect()
        } else {
            let want = status::want_active(spec, obs);
            if active.len() > want {
                let n = active.len() - want;
                deleted += self.delete_pods(active, n).await?;
            }
            vec![None; want.saturating_sub(active.len())]
        };
        if to_make.is_empty() {
            return Ok(deleted);
        }
        let wait = self.backoff_left();
        if !wait.is_zero() {
            self.requeue_after(wait + Duration::from_millis(20));
            return Ok(deleted);
        }
        for index in to_make {
            let pod = pods::from_template(&self.job, index);
            match self.pods.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    self.event(NORMAL, "SuccessfulCreate", format!("Created pod: {}", created.name_any())).await;
                    active.push(created);
                }
                Err(e) => {
                    self.event(WARNING, "FailedCreate", format!("Error creating: {e}")).await;
                    return Err(self.err("create pod")(e));
                }
            }
        }
        Ok(deleted)
    }

    /// Delete up to `n` of the active pods, those not ready and the newest first; how many
    /// were deleted. They leave `active`.
    async fn delete_pods(&self, active: &mut Vec<Pod>, n: usize) -> Result<usize, Error> {
        active.sort_by_key(|p| (is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))));
        let victims: Vec<Pod> = active.iter().take(n).cloned().collect();
        let mut deleted = 0;
        for pod in victims {
            match self.pods.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(NORMAL, "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any())).await;
                    deleted += 1;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    self.event(WARNING, "FailedDelete", format!("Error deleting: {e}")).await;
                    return Err(self.err(format!("delete pod {}", pod.name_any()))(e));
                }
            }
            active.retain(|p| p.metadata.uid != pod.metadata.uid);
        }
        Ok(deleted)
    }
}
