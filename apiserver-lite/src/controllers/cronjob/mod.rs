//! The CronJob controller: makes a Job from `spec.jobTemplate` at each time of the schedule
//! (in `spec.timeZone`), named `<cronjob>-<minutes since epoch>` and annotated with the
//! scheduled time; honours concurrencyPolicy, startingDeadlineSeconds, suspend and the
//! history limits; and keeps status.active, lastScheduleTime and lastSuccessfulTime, with
//! upstream's events.
//!
//! Each reconcile reads the CronJob and its jobs fresh from the API; it comes back at the
//! next start time (or sooner, capped by `CronJobConfig::max_wait`). The clock is injected,
//! so tests move time instead of waiting for it.

pub mod clock;
pub mod history;
pub mod policy;
pub mod schedule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::backoff::Backoff;
use super::replicaset::pods::controller_of;
use super::workload_events::{self as events, NORMAL, WARNING};
use clock::{Clock, SystemClock};
use policy::Decision;

const COMPONENT: &str = "cronjob-controller";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cronjob {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
}

pub struct CronJobConfig {
    pub clock: Arc<dyn Clock>,
    /// The longest a CronJob goes unlooked-at (its next start time usually comes first).
    pub max_wait: Duration,
}

impl Default for CronJobConfig {
    fn default() -> Self {
        CronJobConfig { clock: Arc::new(SystemClock), max_wait: Duration::from_secs(300) }
    }
}

struct Context {
    client: Client,
    config: CronJobConfig,
    backoff: Backoff,
    /// The start time each CronJob was last warned about (JobAlreadyActive, MissSchedule),
    /// so a warning is recorded once per start time, not on every look.
    warned: Mutex<HashMap<String, (Timestamp, &'static str)>>,
}

pub async fn run(client: Client, config: CronJobConfig) {
    let ctx = Arc::new(Context { client: client.clone(), config, backoff: Backoff::default(), warned: Mutex::default() });
    Controller::new(Api::<CronJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("cronjob controller: {e}");
            }
        })
        .await;
}

fn key(cj: &CronJob) -> String {
    format!("{}/{}", cj.namespace().unwrap_or_default(), cj.name_any())
}

fn error_policy(cj: Arc<CronJob>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cronjob = %cj.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&cj)))
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&cached, &ctx).await?;
    ctx.backoff.succeeded(&key(&cached));
    Ok(action)
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// The Job for the run at `scheduled`: the template's labels, annotations and spec, the
/// scheduled-time annotation, and the CronJob as controller.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, formatted: String) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), formatted);
    Job {
        metadata: ObjectMeta {
            name: Some(policy::job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn sync(cached: &CronJob, ctx: &Context) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api_err = |action: &str| {
        let (namespace, name, action) = (ns.clone(), name.clone(), action.to_string());
        move |source| Error::Api { namespace, name, action, source: Box::new(source) }
    };
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = cronjobs.get_opt(&name).await.map_err(api_err("read"))? else {
        ctx.warned.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(cached));
        return Ok(Action::await_change());
    };
    let reference = events::reference(&cj);
    let uid = cj.uid().unwrap_or_default();
    let jobs: Vec<Job> = jobs_api.list(&ListParams::default()).await.map_err(api_err("list jobs"))?.items;
    let owned: Vec<&Job> = jobs.iter().filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid)).collect();

    let original = cj.status.clone().unwrap_or_default();
    let mut status = original.clone();
    let mut active = status.active.take().unwrap_or_default();
    for job in &owned {
        let in_active = active.iter().any(|r| r.uid == job.metadata.uid);
        if let Some(condition) = history::finished(job) {
            if in_active {
                active.retain(|r| r.uid != job.metadata.uid);
                events::record(&ctx.client, COMPONENT, reference.clone(), NORMAL, "SawCompletedJob", format!("Saw completed job: {}, condition: {condition}", job.name_any())).await;
            }
            if condition == "Complete" {
                let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if done.as_ref().is_some_and(|d| status.last_successful_time.as_ref().is_none_or(|l| l.0 < d.0)) {
                    status.last_successful_time = done;
                }
            }
        }
    }
    let mut gone = Vec::new();
    active.retain(|r| {
        let present = owned.iter().any(|j| j.metadata.uid == r.uid);
        if !present {
            gone.push(r.name.clone().unwrap_or_default());
        }
        present
    });
    for job in gone {
        events::record(&ctx.client, COMPONENT, reference.clone(), NORMAL, "MissingJob", format!("Active job went missing: {job}")).await;
    }

    let spec = cj.spec.clone().unwrap_or_default();
    if cj.metadata.deletion_timestamp.is_none() {
        let successful: Vec<&Job> = owned.iter().copied().filter(|j| history::finished(j) == Some("Complete")).collect();
        let failed: Vec<&Job> = owned.iter().copied().filter(|j| history::finished(j) == Some("Failed")).collect();
        let mut doomed = Vec::new();
        if let Some(limit) = spec.successful_jobs_history_limit {
            doomed.extend(history::beyond_limit(successful, limit));
        }
        if let Some(limit) = spec.failed_jobs_history_limit {
            doomed.extend(history::beyond_limit(failed, limit));
        }
        for job in doomed {
            delete_job(ctx, &jobs_api, &reference, &job).await?;
        }
    }

    let mut action = Action::requeue(ctx.config.max_wait);
    let now = ctx.config.clock.now();
    if cj.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        match schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Err(e) => {
                let (reason, message) = match &e {
                    schedule::Error::TimeZone { name, reason } => ("UnknownTimeZone", format!("invalid timeZone: {name:?}: {reason}")),
                    schedule::Error::Schedule { schedule, reason } => ("UnparseableSchedule", format!("unparseable schedule: {schedule:?} : {reason}")),
                };
                events::record(&ctx.client, COMPONENT, reference.clone(), WARNING, reason, message).await;
                action = Action::await_change();
            }
            Ok(sched) => {
                status.active = Some(active.clone());
                let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
                let plan = policy::plan(&name, &spec, Some(&status), created, &sched, now);
                if plan.missed > schedule::MAX_MISSED {
                    events::record(&ctx.client, COMPONENT, reference.clone(), WARNING, "TooManyMissedTimes", format!("too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew", plan.missed)).await;
                }
                match plan.decision {
                    Decision::Wait | Decision::AlreadyStarted(_) => {}
                    Decision::TooLate(t) => {
                        if ctx.first_warning(&cj, t, "MissSchedule") {
                            let when = t.strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
                            events::record(&ctx.client, COMPONENT, reference.clone(), WARNING, "MissSchedule", format!("Missed scheduled time to start a job: {when}")).await;
                        }
                    }
                    Decision::Forbidden(t) => {
                        if ctx.first_warning(&cj, t, "JobAlreadyActive") {
                            events::record(&ctx.client, COMPONENT, reference.clone(), NORMAL, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()).await;
                        }
                    }
                    Decision::Start { scheduled, replace } => {
                        if replace {
                            for old in std::mem::take(&mut active) {
                                delete_job(ctx, &jobs_api, &reference, old.name.as_deref().unwrap_or_default()).await?;
                            }
                        }
                        let job = job_for(&cj, scheduled, sched.format(scheduled));
                        match jobs_api.create(&PostParams::default(), &job).await {
                            Ok(created) => {
                                events::record(&ctx.client, COMPONENT, reference.clone(), NORMAL, "SuccessfulCreate", format!("Created job {}", created.name_any())).await;
                                active.push(job_reference(&created));
                            }
                            // Made before (a status write was lost): the run is done.
                            Err(kube::Error::Api(s)) if s.code == 409 => {}
                            Err(e) => {
                                events::record(&ctx.client, COMPONENT, reference.clone(), WARNING, "FailedCreate", format!("Error creating job: {e}")).await;
                                return Err(api_err("create job")(e));
                            }
                        }
                        status.last_schedule_time = Some(Time(scheduled));
                    }
                }
                if let Some(next) = plan.next {
                    let wait = next.duration_since(now).unsigned_abs() + Duration::from_millis(100);
                    action = Action::requeue(wait.min(ctx.config.max_wait));
                }
            }
        }
    }

    status.active = if active.is_empty() { None } else { Some(active) };
    if status != original {
        let patch = json!({"status": {
            "active": status.active,
            "lastScheduleTime": status.last_schedule_time,
            "lastSuccessfulTime": status.last_successful_time,
        }});
        cronjobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(api_err("update status"))?;
    }
    Ok(action)
}

impl Context {
    /// Whether this is the first time `reason` comes up for this CronJob's start time `t`.
    fn first_warning(&self, cj: &CronJob, t: Timestamp, reason: &'static str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.insert(key(cj), (t, reason)) != Some((t, reason))
    }
}

/// Delete a job and, in the background, its pods; a job already gone is fine.
async fn delete_job(ctx: &Context, api: &Api<Job>, reference: &ObjectReference, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            events::record(&ctx.client, COMPONENT, reference.clone(), NORMAL, "SuccessfulDelete", format!("Deleted job {name}")).await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => {
            events::record(&ctx.client, COMPONENT, reference.clone(), WARNING, "FailedDelete", format!("Deleted job: {e}")).await;
            Err(Error::Api { namespace: reference.namespace.clone().unwrap_or_default(), name: reference.name.clone().unwrap_or_default(), action: format!("delete job {name}"), source: Box::new(e) })
        }
    }
}
