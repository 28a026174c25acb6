//! Which finished jobs of a CronJob go: beyond successfulJobsHistoryLimit of the Complete
//! ones and failedJobsHistoryLimit of the Failed ones, oldest start first (a job never
//! started counts as newest), as upstream's cleanupFinishedJobs.

use k8s_openapi::api::batch::v1::Job;

/// The job's finished condition (`Complete` or `Failed`), if it is finished.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    for c in conditions {
        if c.status == "True" && c.type_ == "Complete" {
            return Some("Complete");
        }
        if c.status == "True" && c.type_ == "Failed" {
            return Some("Failed");
        }
    }
    None
}

/// The names of the jobs to delete so that at most `limit` remain.
pub fn beyond_limit(mut jobs: Vec<&Job>, limit: i32) -> Vec<String> {
    let limit = limit.max(0) as usize;
    if jobs.len() <= limit {
        return vec![];
    }
    jobs.sort_by(|a, b| {
        let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        match (start(a), start(b)) {
            (Some(x), Some(y)) if x != y => x.cmp(&y),
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => a.metadata.name.cmp(&b.metadata.name),
        }
    });
    let n = jobs.len() - limit;
    jobs.into_iter().take(n).filter_map(|j| j.metadata.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, start: Option<&str>) -> Job {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "status": {"startTime": start}})).unwrap()
    }

    #[test]
    fn the_oldest_go_first_and_unstarted_count_as_newest() {
        let (a, b, c, d) = (job("a", Some("2025-01-01T00:03:00Z")), job("b", Some("2025-01-01T00:01:00Z")), job("c", None), job("d", Some("2025-01-01T00:02:00Z")));
        assert_eq!(beyond_limit(vec![&a, &b, &c, &d], 2), ["b", "d"]);
        assert_eq!(beyond_limit(vec![&a, &b, &c, &d], 0), ["b", "d", "a", "c"]);
        assert!(beyond_limit(vec![&a, &b], 3).is_empty());
    }
}
