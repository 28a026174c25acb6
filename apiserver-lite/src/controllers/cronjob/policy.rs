//! What a CronJob should do now, as upstream's syncCronJob decides it: whether a start time
//! is due, too late (startingDeadlineSeconds), already handled, held back by
//! `concurrencyPolicy: Forbid`, or to run (replacing the active jobs under `Replace`).

use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::schedule::Schedule;

#[derive(Debug, PartialEq)]
pub enum Decision {
    /// No start time is due.
    Wait,
    /// The latest start time is past its starting deadline.
    TooLate(Timestamp),
    /// The job for this start time was already made.
    AlreadyStarted(Timestamp),
    /// A job is still running and the policy is Forbid.
    Forbidden(Timestamp),
    /// Make the job for `scheduled`, deleting the active ones first if `replace`.
    Start { scheduled: Timestamp, replace: bool },
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    pub decision: Decision,
    /// Start times missed since the last one handled (only counted up to 101).
    pub missed: u64,
    /// The next start time after now.
    pub next: Option<Timestamp>,
}

/// The job name upstream gives the run at `scheduled`: `<cronjob>-<minutes since epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

pub fn plan(name: &str, spec: &CronJobSpec, status: Option<&CronJobStatus>, created: Timestamp, schedule: &Schedule, now: Timestamp) -> Plan {
    let next = schedule.next_after(now);
    let last = status.and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
    let mut earliest = last.unwrap_or(created);
    if let Some(deadline) = spec.starting_deadline_seconds {
        let window_start = now - SignedDuration::from_secs(deadline);
        if window_start > earliest {
            earliest = window_start;
        }
    }
    let (latest, missed) = if earliest > now { (None, 0) } else { schedule.most_recent(earliest, now) };
    let Some(scheduled) = latest else { return Plan { decision: Decision::Wait, missed, next } };
    let decision = if spec.starting_deadline_seconds.is_some_and(|d| scheduled + SignedDuration::from_secs(d) < now) {
        Decision::TooLate(scheduled)
    } else if last == Some(scheduled) || active_names(status).any(|n| n == job_name(name, scheduled)) {
        Decision::AlreadyStarted(scheduled)
    } else {
        let running = active_names(status).count() > 0;
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if running => Decision::Forbidden(scheduled),
            Some("Replace") => Decision::Start { scheduled, replace: running },
            _ => Decision::Start { scheduled, replace: false },
        }
    };
    Plan { decision, missed, next }
}

fn active_names(status: Option<&CronJobStatus>) -> impl Iterator<Item = String> + '_ {
    status.and_then(|s| s.active.as_ref()).into_iter().flatten().filter_map(|r| r.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::cronjob::schedule::parse;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec(policy: &str, deadline: Option<i64>) -> CronJobSpec {
        CronJobSpec { schedule: "*/5 * * * *".into(), concurrency_policy: Some(policy.into()), starting_deadline_seconds: deadline, ..Default::default() }
    }

    fn status(last: Option<&str>, active: &[&str]) -> CronJobStatus {
        CronJobStatus {
            last_schedule_time: last.map(|l| Time(ts(l))),
            active: Some(active.iter().map(|n| ObjectReference { name: Some(n.to_string()), ..Default::default() }).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_due_start_time_runs_once() {
        let s = parse("*/5 * * * *", None).unwrap();
        let created = ts("2025-01-01T10:01:00Z");
        let p = plan("c", &spec("Allow", None), None, created, &s, ts("2025-01-01T10:04:00Z"));
        assert_eq!(p, Plan { decision: Decision::Wait, missed: 0, next: Some(ts("2025-01-01T10:05:00Z")) });
        let p = plan("c", &spec("Allow", None), None, created, &s, ts("2025-01-01T10:05:01Z"));
        assert_eq!(p.decision, Decision::Start { scheduled: ts("2025-01-01T10:05:00Z"), replace: false });
        assert_eq!(job_name("c", ts("2025-01-01T10:05:00Z")), "c-28928765");
        let done = status(Some("2025-01-01T10:05:00Z"), &[]);
        assert_eq!(plan("c", &spec("Allow", None), Some(&done), created, &s, ts("2025-01-01T10:06:00Z")).decision, Decision::Wait);
        // Several missed: only the latest runs.
        let p = plan("c", &spec("Allow", None), Some(&done), created, &s, ts("2025-01-01T10:21:00Z"));
        assert_eq!((p.decision, p.missed), (Decision::Start { scheduled: ts("2025-01-01T10:20:00Z"), replace: false }, 3));
    }

    #[test]
    fn concurrency_policies_decide_about_running_jobs() {
        let s = parse("*/5 * * * *", None).unwrap();
        let created = ts("2025-01-01T10:01:00Z");
        let now = ts("2025-01-01T10:10:00Z");
        let running = status(Some("2025-01-01T10:05:00Z"), &["c-28928765"]);
        let at = ts("2025-01-01T10:10:00Z");
        assert_eq!(plan("c", &spec("Allow", None), Some(&running), created, &s, now).decision, Decision::Start { scheduled: at, replace: false });
        assert_eq!(plan("c", &spec("Forbid", None), Some(&running), created, &s, now).decision, Decision::Forbidden(at));
        assert_eq!(plan("c", &spec("Replace", None), Some(&running), created, &s, now).decision, Decision::Start { scheduled: at, replace: true });
        let idle = status(Some("2025-01-01T10:05:00Z"), &[]);
        assert_eq!(plan("c", &spec("Forbid", None), Some(&idle), created, &s, now).decision, Decision::Start { scheduled: at, replace: false });
        // The job of this very time already active (status written before lastScheduleTime).
        let same = status(None, &["c-28928770"]);
        assert_eq!(plan("c", &spec("Allow", None), Some(&same), created, &s, now).decision, Decision::AlreadyStarted(at));
    }

    #[test]
    fn starting_deadline_limits_how_late_and_how_far_back() {
        let s = parse("*/5 * * * *", None).unwrap();
        let created = ts("2025-01-01T00:00:30Z");
        // Many missed without a deadline: counted past the warning threshold.
        let p = plan("c", &spec("Allow", None), None, created, &s, ts("2025-01-02T00:00:10Z"));
        assert!(p.missed > super::super::schedule::MAX_MISSED, "{p:?}");
        // With a deadline only the window counts.
        let p = plan("c", &spec("Allow", Some(600)), None, created, &s, ts("2025-01-02T00:00:10Z"));
        assert_eq!((p.decision, p.missed), (Decision::Start { scheduled: ts("2025-01-02T00:00:00Z"), replace: false }, 2));
        // 10 s deadline, 30 s late: missed, and nothing inside the window.
        let p = plan("c", &spec("Allow", Some(10)), None, created, &s, ts("2025-01-02T00:00:30Z"));
        assert_eq!(p.decision, Decision::Wait);
        let p = plan("c", &spec("Allow", Some(60)), None, created, &s, ts("2025-01-02T00:00:30Z"));
        assert_eq!(p.decision, Decision::Start { scheduled: ts("2025-01-02T00:00:00Z"), replace: false });
    }
}
