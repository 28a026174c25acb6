//! The Job's accounting, as upstream's syncJob decides it: whether it succeeded (completions
//! reached, or for a work queue any pod succeeded and none runs) or failed (more pod
//! failures than backoffLimit, or active longer than activeDeadlineSeconds), how many pods
//! should run, how long to wait after failures before the next pod, and its conditions.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUSPENDED: &str = "Suspended";

/// What the controller knows of a Job's pods after counting the finished ones.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    pub succeeded: i32,
    pub failed: i32,
    /// Indexed jobs: the indexes that succeeded.
    pub completed: BTreeSet<i32>,
    pub active: usize,
    /// Container restarts in pending and running pods (counted against backoffLimit when
    /// the template's restartPolicy is OnFailure).
    pub restarts: i32,
    pub start_time: Option<Timestamp>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Running,
    Succeeded,
    Failed { reason: &'static str, message: &'static str },
}

pub fn indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

pub fn verdict(spec: &JobSpec, obs: &Observed, now: Timestamp) -> Verdict {
    let limit = spec.backoff_limit.unwrap_or(6);
    let on_failure = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let restarts_past_limit = on_failure && if limit == 0 { obs.restarts > 0 } else { obs.restarts >= limit };
    if obs.failed > limit || restarts_past_limit {
        return Verdict::Failed { reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" };
    }
    if let (Some(deadline), Some(start)) = (spec.active_deadline_seconds, obs.start_time)
        && spec.suspend != Some(true) && start + SignedDuration::from_secs(deadline) <= now {
            return Verdict::Failed { reason: "DeadlineExceeded", message: "Job was active longer than specified deadline" };
        }
    let done = match spec.completions {
        Some(c) if indexed(spec) => obs.completed.len() as i32 >= c,
        Some(c) => obs.succeeded >= c,
        None => obs.succeeded > 0 && obs.active == 0,
    };
    if done { Verdict::Succeeded } else { Verdict::Running }
}

/// How many pods should be running now (NonIndexed; Indexed jobs count missing indexes).
pub fn want_active(spec: &JobSpec, obs: &Observed) -> usize {
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let want = match spec.completions {
        // A work queue: once one pod succeeded, no new ones.
        None => if obs.succeeded > 0 { 0 } else { parallelism },
        Some(c) if indexed(spec) => (c - obs.completed.len() as i32).min(parallelism),
        Some(c) => (c - obs.succeeded).min(parallelism),
    };
    want.max(0) as usize
}

/// The wait before a new pod after `failures` failures since the last success: `base`
/// doubling per failure up to `max` (upstream: 10 s up to 6 min).
pub fn pod_backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    base.saturating_mul(1u32 << (failures - 1).min(20)).min(max)
}

pub fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// The job reached Complete or Failed.
pub fn is_finished(status: &JobStatus) -> bool {
    condition(status, COMPLETE).is_some() || condition(status, FAILED).is_some()
}

/// Set a condition; the transition time changes only when its status does. Whether anything
/// changed.
pub fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str, now: Timestamp) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == value && c.reason.as_deref() == Some(reason) => false,
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(Time(now));
            }
            c.status = value.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(Time(now));
            true
        }
        None => {
            conditions.push(JobCondition {
                type_: type_.into(),
                status: value.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_probe_time: Some(Time(now)),
                last_transition_time: Some(Time(now)),
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(completions: Option<i32>, parallelism: i32, mode: &str) -> JobSpec {
        JobSpec { completions, parallelism: Some(parallelism), completion_mode: Some(mode.into()), backoff_limit: Some(2), ..Default::default() }
    }

    #[test]
    fn completions_and_parallelism_bound_the_pods() {
        let s = spec(Some(3), 2, "NonIndexed");
        let mut obs = Observed::default();
        assert_eq!(want_active(&s, &obs), 2);
        obs.succeeded = 2;
        assert_eq!(want_active(&s, &obs), 1);
        assert_eq!(verdict(&s, &obs, Timestamp::now()), Verdict::Running);
        obs.succeeded = 3;
        assert_eq!(want_active(&s, &obs), 0);
        assert_eq!(verdict(&s, &obs, Timestamp::now()), Verdict::Succeeded);

        let queue = spec(None, 3, "NonIndexed");
        let mut obs = Observed { succeeded: 1, active: 2, ..Default::default() };
        assert_eq!(want_active(&queue, &obs), 0);
        assert_eq!(verdict(&queue, &obs, Timestamp::now()), Verdict::Running, "a work queue waits for its running pods");
        obs.active = 0;
        assert_eq!(verdict(&queue, &obs, Timestamp::now()), Verdict::Succeeded);

        let idx = spec(Some(3), 5, "Indexed");
        let obs = Observed { succeeded: 5, completed: [0, 2].into_iter().collect(), ..Default::default() };
        assert_eq!(want_active(&idx, &obs), 1);
        assert_eq!(verdict(&idx, &obs, Timestamp::now()), Verdict::Running, "indexed jobs count distinct indexes");
    }

    #[test]
    fn failures_past_the_backoff_limit_and_the_deadline_fail_it() {
        let mut s = spec(Some(1), 1, "NonIndexed");
        let now = Timestamp::now();
        assert_eq!(verdict(&s, &Observed { failed: 2, ..Default::default() }, now), Verdict::Running);
        assert!(matches!(verdict(&s, &Observed { failed: 3, ..Default::default() }, now), Verdict::Failed { reason: "BackoffLimitExceeded", .. }));
        s.active_deadline_seconds = Some(10);
        let started = Observed { start_time: Some(now - SignedDuration::from_secs(11)), ..Default::default() };
        assert!(matches!(verdict(&s, &started, now), Verdict::Failed { reason: "DeadlineExceeded", .. }));
        s.suspend = Some(true);
        assert_eq!(verdict(&s, &started, now), Verdict::Running, "the deadline does not run while suspended");
    }

    #[test]
    fn restarts_count_against_the_limit_when_pods_restart_on_failure() {
        let mut s = spec(Some(1), 1, "NonIndexed");
        let obs = Observed { restarts: 2, ..Default::default() };
        assert_eq!(verdict(&s, &obs, Timestamp::now()), Verdict::Running, "restartPolicy Never: restarts do not count");
        s.template.spec = Some(k8s_openapi::api::core::v1::PodSpec { restart_policy: Some("OnFailure".into()), ..Default::default() });
        assert!(matches!(verdict(&s, &obs, Timestamp::now()), Verdict::Failed { reason: "BackoffLimitExceeded", .. }));
        assert_eq!(verdict(&s, &Observed { restarts: 1, ..Default::default() }, Timestamp::now()), Verdict::Running);
    }

    #[test]
    fn the_pod_backoff_doubles_up_to_its_cap() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        assert_eq!(pod_backoff(base, max, 0), Duration::ZERO);
        assert_eq!(pod_backoff(base, max, 1), Duration::from_secs(10));
        assert_eq!(pod_backoff(base, max, 3), Duration::from_secs(40));
        assert_eq!(pod_backoff(base, max, 30), max);
    }

    #[test]
    fn conditions_keep_their_transition_time_until_the_status_changes() {
        let mut status = JobStatus::default();
        let t0 = Timestamp::from_second(1_000).unwrap();
        assert!(set_condition(&mut status, SUSPENDED, "True", "JobSuspended", "Job suspended", t0));
        assert!(!set_condition(&mut status, SUSPENDED, "True", "JobSuspended", "Job suspended", Timestamp::now()));
        assert!(set_condition(&mut status, SUSPENDED, "False", "JobResumed", "Job resumed", Timestamp::now()));
        assert_ne!(status.conditions.as_ref().unwrap()[0].last_transition_time, Some(Time(t0)));
        assert!(condition(&status, SUSPENDED).is_none());
        set_condition(&mut status, COMPLETE, "True", "CompletionsReached", "Reached expected number of succeeded pods", t0);
        assert!(is_finished(&status));
    }
}
