//! The TTL-after-finished controller: a Job with `spec.ttlSecondsAfterFinished` is deleted
//! that long after it finished (its Complete or Failed condition), in the background, so the
//! garbage collector takes its pods too. The Job is read fresh before deleting, and the
//! delete is conditional on its uid, so a Job changed or replaced meanwhile is spared.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::backoff::Backoff;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("job {namespace}/{name}: {action}: {source}")]
    Api { namespace: String, name: String, action: String, source: Box<kube::Error> },
}

struct Context {
    client: Client,
    backoff: Backoff,
}

pub async fn run(client: Client) {
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Context { client, backoff: Backoff::default() }))
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("ttl-after-finished controller: {e}");
            }
        })
        .await;
}

fn key(job: &Job) -> String {
    format!("{}/{}", job.namespace().unwrap_or_default(), job.name_any())
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), "{err}");
    Action::requeue(ctx.backoff.failed(&key(&job)))
}

/// When the job finished: the transition time of its Complete or Failed condition.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

/// When the job is due for deletion, if it has a TTL and finished.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    Some(finished_at(job)? + SignedDuration::from_secs(ttl.into()))
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cached.metadata.deletion_timestamp.is_some() || expires_at(&cached).is_none() {
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |action: &str| {
        let (namespace, name, action) = (ns.clone(), cached.name_any(), action.to_string());
        move |source| Error::Api { namespace, name, action, source: Box::new(source) }
    };
    let Some(job) = api.get_opt(&cached.name_any()).await.map_err(err("read"))? else { return Ok(Action::await_change()) };
    let Some(expires) = expires_at(&job).filter(|_| job.metadata.deletion_timestamp.is_none()) else { return Ok(Action::await_change()) };
    let now = Timestamp::now();
    if expires > now {
        return Ok(Action::requeue(expires.duration_since(now).unsigned_abs() + Duration::from_millis(50)));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions { uid: job.uid(), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => tracing::info!(job = %key(&job), "deleted finished job after its ttlSecondsAfterFinished"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(err("delete")(e)),
    }
    ctx.backoff.succeeded(&key(&job));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_expires_ttl_seconds_after_its_final_condition() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T00:00:05Z"},
            ]},
        }))
        .unwrap();
        assert_eq!(expires_at(&job), Some("2025-01-01T00:00:35Z".parse().unwrap()));
        let mut running = job.clone();
        running.status = None;
        assert_eq!(expires_at(&running), None);
        let mut no_ttl = job;
        no_ttl.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(expires_at(&no_ttl), None);
    }
}
