//! The Job, CronJob and TTL-after-finished controllers against the server's router (in
//! process, the test acting as the kubelet by setting pod phases, the CronJob controller on
//! a clock the test moves), and with the real kubectl against the real binary.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver_lite::controllers::cronjob::clock::FakeClock;
use apiserver_lite::controllers::{cronjob, garbage_collector, job, ttl_after_finished};
use common::{event_messages, event_messages_until, eventually, wait_for, Kubectl, ServerProcess, TestServer};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

const NS: &str = "default";

/// A server with the job, cronjob, TTL and garbage collector controllers on in-process
/// clients (the pod backoff shortened, the CronJob controller on `clock`), and a client for
/// the test.
async fn cluster(clock: Arc<FakeClock>) -> (TestServer, Client) {
    cluster_with_backoff(clock, Duration::from_millis(20)).await
}

async fn cluster_with_backoff(clock: Arc<FakeClock>, pod_backoff: Duration) -> (TestServer, Client) {
    let s = TestServer::new().await;
    let cm = apiserver_lite::controllers::in_process_client(s.app.clone(), apiserver_lite::controllers::CONTROLLER_MANAGER_USER);
    let config = job::JobConfig { pod_backoff_base: pod_backoff, pod_backoff_max: pod_backoff * 10 };
    tokio::spawn(job::run(cm.clone(), config));
    tokio::spawn(cronjob::run(cm.clone(), cronjob::CronJobConfig { clock, max_wait: Duration::from_millis(100) }));
    tokio::spawn(ttl_after_finished::run(cm.clone()));
    tokio::spawn(garbage_collector::run(cm));
    let client = apiserver_lite::controllers::in_process_client(s.app.clone(), "test-kubelet");
    (s, client)
}

async fn jobs_cluster() -> (TestServer, Client) {
    cluster(Arc::new(FakeClock::new(Timestamp::now()))).await
}

fn job_object(name: &str, spec: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn create_job(client: &Client, name: &str, spec: Value) -> Job {
    Api::<Job>::namespaced(client.clone(), NS).create(&PostParams::default(), &job_object(name, spec)).await.unwrap()
}

async fn get_job(client: &Client, name: &str) -> Job {
    Api::<Job>::namespaced(client.clone(), NS).get(name).await.unwrap()
}

async fn job_pods(client: &Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"))).await.unwrap().items
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
}

async fn active_pods(client: &Client, job: &str) -> Vec<Pod> {
    job_pods(client, job).await.into_iter().filter(is_active).collect()
}

/// What a kubelet reports when the pod's container exits.
async fn finish(client: &Client, pod: &Pod, phase: &str) {
    let code = if phase == "Succeeded" { 0 } else { 1 };
    let now = Timestamp::now().to_string();
    let status = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "work", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "startedAt": now, "finishedAt": now, "reason": if code == 0 { "Completed" } else { "Error" }}},
    }]}});
    Api::<Pod>::namespaced(client.clone(), NS).patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status)).await.expect("the kubelet writes pod status");
}

/// The condition's status and reason.
fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    let c = job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn condition_becomes(client: &Client, name: &str, type_: &str, secs: u64) -> Job {
    eventually(&format!("job {name} {type_}"), secs, || async {
        let j = get_job(client, name).await;
        if condition(&j, type_).is_some_and(|c| c.0 == "True") { Ok(j) } else { Err(format!("{:?}", j.status)) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_completions_two_at_a_time_complete_the_job() {
    let (_s, client) = jobs_cluster().await;
    let created = create_job(&client, "pi", json!({"completions": 3, "parallelism": 2})).await;
    let uid = created.uid().unwrap();
    assert_eq!(created.spec.as_ref().unwrap().selector.as_ref().unwrap().match_labels.as_ref().unwrap()["batch.kubernetes.io/controller-uid"], uid);
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while finished < 3 {
        assert!(Instant::now() < deadline, "the job did not run its three pods");
        let active = active_pods(&client, "pi").await;
        assert!(active.len() <= 2, "more than parallelism pods at once: {}", active.len());
        if active.len() == (3 - finished).min(2) {
            finish(&client, &active[0], "Succeeded").await;
            finished += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let j = condition_becomes(&client, "pi", "Complete", 15).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_job(&client, "pi").await.resource_version(), j.resource_version(), "a finished job is left alone");
    let status = j.status.clone().unwrap();
    assert_eq!((status.succeeded, status.failed, status.active), (Some(3), None, None));
    assert_eq!((status.ready, status.terminating), (Some(0), Some(0)));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    assert_eq!(condition(&j, "SuccessCriteriaMet"), Some(("True".into(), "CompletionsReached".into())));
    assert_eq!(condition(&j, "Complete"), Some(("True".into(), "CompletionsReached".into())));
    let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty() && uncounted.failed.unwrap_or_default().is_empty());

    let pods = job_pods(&client, "pi").await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert!(p.name_any().starts_with("pi-") && p.name_any().len() == "pi-".len() + 5, "{}", p.name_any());
        let labels = p.labels();
        assert_eq!((labels["batch.kubernetes.io/controller-uid"].as_str(), labels["controller-uid"].as_str()), (uid.as_str(), uid.as_str()));
        assert_eq!((labels["batch.kubernetes.io/job-name"].as_str(), labels["job-name"].as_str()), ("pi", "pi"));
        let owner = &p.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller, owner.block_owner_deletion), ("Job", uid.as_str(), Some(true), Some(true)));
        assert!(p.finalizers().is_empty(), "counted pods lose the tracking finalizer: {:?}", p.finalizers());
    }
    let created = event_messages_until(&client, "SuccessfulCreate", |m| m.iter().filter(|m| m.starts_with("Created pod: pi-")).count() >= 3).await;
    assert_eq!(created.iter().filter(|m| m.starts_with("Created pod: pi-")).count(), 3, "{created:?}");
    event_messages_until(&client, "Completed", |m| m == ["Job completed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_pods_reach_the_backoff_limit() {
    let (_s, client) = jobs_cluster().await;
    create_job(&client, "flaky", json!({"backoffLimit": 2})).await;
    let mut failed = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed.len() < 3 {
        assert!(Instant::now() < deadline, "expected three pods to fail; failed {failed:?}");
        for p in active_pods(&client, "flaky").await {
            assert!(p.finalizers().iter().any(|f| f == "batch.kubernetes.io/job-tracking"));
            if failed.insert(p.name_any()) {
                finish(&client, &p, "Failed").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let j = condition_becomes(&client, "flaky", "Failed", 15).await;
    assert_eq!(condition(&j, "Failed"), Some(("True".into(), "BackoffLimitExceeded".into())));
    assert_eq!(condition(&j, "FailureTarget"), Some(("True".into(), "BackoffLimitExceeded".into())));
    let status = j.status.clone().unwrap();
    assert_eq!((status.failed, status.succeeded, status.active), (Some(3), None, None));
    assert!(status.completion_time.is_none());
    assert!(active_pods(&client, "flaky").await.is_empty());
    assert_eq!(job_pods(&client, "flaky").await.len(), 3, "no pod after the limit");
    event_messages_until(&client, "BackoffLimitExceeded", |m| m == ["Job has reached the specified backoff limit"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pod_is_replaced_only_after_the_backoff() {
    let (_s, client) = cluster_with_backoff(Arc::new(FakeClock::new(Timestamp::now())), Duration::from_millis(600)).await;
    create_job(&client, "patient", json!({"backoffLimit": 5})).await;
    let mut delays = Vec::new();
    for _ in 0..2 {
        let pod = eventually("a pod", 10, || async { active_pods(&client, "patient").await.pop().ok_or_else(|| "none".to_string()) }).await;
        finish(&client, &pod, "Failed").await;
        let failed_at = Instant::now();
        eventually("a replacement", 10, || async { if active_pods(&client, "patient").await.is_empty() { Err("none".to_string()) } else { Ok(()) } }).await;
        delays.push(failed_at.elapsed());
    }
    // 600 ms after the first failure, 1.2 s after the second (the waits are lower bounds).
    assert!(delays[0] >= Duration::from_millis(500), "{delays:?}");
    assert!(delays[1] >= Duration::from_millis(1100), "{delays:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_completes_each_index_once() {
    let (_s, client) = jobs_cluster().await;
    create_job(&client, "idx", json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"})).await;
    let pods = eventually("three indexed pods", 10, || async {
        let pods = active_pods(&client, "idx").await;
        if pods.len() == 3 { Ok(pods) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    let mut indexes = BTreeSet::new();
    for p in &pods {
        let index = p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(p.labels()["batch.kubernetes.io/job-completion-index"], index);
        assert!(p.name_any().starts_with(&format!("idx-{index}-")), "{}", p.name_any());
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{index}").as_str()));
        let env = spec.containers[0].env.as_ref().unwrap().iter().find(|e| e.name == "JOB_COMPLETION_INDEX").expect("JOB_COMPLETION_INDEX");
        assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        indexes.insert(index);
    }
    assert_eq!(indexes, BTreeSet::from(["0".to_string(), "1".into(), "2".into()]));
    // Index 1 fails once and gets a new pod; 0 and 2 succeed.
    for p in &pods {
        let index = p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        finish(&client, p, if index == "1" { "Failed" } else { "Succeeded" }).await;
    }
    let retry = eventually("a new pod for index 1", 10, || async {
        let active = active_pods(&client, "idx").await;
        match active.as_slice() {
            [p] if p.annotations()["batch.kubernetes.io/job-completion-index"] == "1" => Ok(p.clone()),
            _ => Err(format!("{:?}", active.iter().map(|p| p.name_any()).collect::<Vec<_>>())),
        }
    })
    .await;
    let j = eventually("completedIndexes 0,2", 10, || async {
        let j = get_job(&client, "idx").await;
        if j.status.as_ref().and_then(|s| s.completed_indexes.as_deref()) == Some("0,2") { Ok(j) } else { Err(format!("{:?}", j.status)) }
    })
    .await;
    assert_eq!(j.status.as_ref().unwrap().succeeded, Some(2));
    finish(&client, &retry, "Succeeded").await;
    let j = condition_becomes(&client, "idx", "Complete", 15).await;
    let status = j.status.unwrap();
    assert_eq!((status.completed_indexes.as_deref(), status.succeeded, status.failed), (Some("0-2"), Some(3), Some(1)));
    let succeeded: Vec<String> = job_pods(&client, "idx").await.iter().filter(|p| phase(p) == "Succeeded").map(|p| p.annotations()["batch.kubernetes.io/job-completion-index"].clone()).collect();
    assert_eq!(succeeded.iter().cloned().collect::<BTreeSet<_>>().len(), 3, "each index succeeded once: {succeeded:?}");
    assert_eq!(succeeded.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_active_past_its_deadline_fails() {
    let (_s, client) = jobs_cluster().await;
    create_job(&client, "slow", json!({"activeDeadlineSeconds": 1})).await;
    eventually("a pod", 10, || async { if active_pods(&client, "slow").await.len() == 1 { Ok(()) } else { Err("none".into()) } }).await;
    let j = condition_becomes(&client, "slow", "Failed", 15).await;
    assert_eq!(condition(&j, "Failed"), Some(("True".into(), "DeadlineExceeded".into())));
    assert_eq!(condition(&j, "FailureTarget"), Some(("True".into(), "DeadlineExceeded".into())));
    assert!(job_pods(&client, "slow").await.is_empty(), "its running pod was deleted");
    event_messages_until(&client, "DeadlineExceeded", |m| m == ["Job was active longer than specified deadline"]).await;
    // A job another controller manages is left alone.
    create_job(&client, "elsewhere", json!({"managedBy": "example.com/other-controller"})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(job_pods(&client, "elsewhere").await.is_empty());
    assert_eq!(get_job(&client, "elsewhere").await.status.and_then(|s| s.start_time), None);
    event_messages_until(&client, "SuccessfulDelete", |m| m.iter().any(|m| m.starts_with("Deleted pod: slow-"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_runs_only_when_resumed() {
    let (_s, client) = jobs_cluster().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    create_job(&client, "later", json!({"suspend": true, "parallelism": 2, "completions": 2})).await;
    let j = condition_becomes(&client, "later", "Suspended", 10).await;
    assert_eq!(condition(&j, "Suspended"), Some(("True".into(), "JobSuspended".into())));
    assert!(j.status.as_ref().unwrap().start_time.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(job_pods(&client, "later").await.is_empty(), "a suspended job makes no pods");

    let suspend = |on: bool| Patch::Merge(json!({"spec": {"suspend": on}}));
    jobs.patch("later", &PatchParams::default(), &suspend(false)).await.unwrap();
    eventually("two pods after resuming", 10, || async { if active_pods(&client, "later").await.len() == 2 { Ok(()) } else { Err("not yet".into()) } }).await;
    let j = eventually("Suspended False", 10, || async {
        let j = get_job(&client, "later").await;
        if condition(&j, "Suspended") == Some(("False".into(), "JobResumed".into())) { Ok(j) } else { Err(format!("{:?}", j.status)) }
    })
    .await;
    assert!(j.status.as_ref().unwrap().start_time.is_some());

    jobs.patch("later", &PatchParams::default(), &suspend(true)).await.unwrap();
    eventually("pods gone when suspended again", 10, || async {
        let pods = job_pods(&client, "later").await;
        if pods.is_empty() { Ok(()) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    let j = condition_becomes(&client, "later", "Suspended", 10).await;
    assert_eq!(j.status.as_ref().unwrap().failed, None, "pods deleted for suspension are not failures");

    jobs.patch("later", &PatchParams::default(), &suspend(false)).await.unwrap();
    let pods = eventually("two pods again", 10, || async {
        let pods = active_pods(&client, "later").await;
        if pods.len() == 2 { Ok(pods) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    for p in &pods {
        finish(&client, p, "Succeeded").await;
    }
    condition_becomes(&client, "later", "Complete", 15).await;
    event_messages_until(&client, "Suspended", |m| m.len() == 2).await;
    event_messages_until(&client, "Resumed", |m| m == ["Job resumed", "Job resumed"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_goes_with_its_pods_after_its_ttl() {
    let (_s, client) = jobs_cluster().await;
    // Condition times have whole seconds, so a TTL of 1 s may expire at once after
    // the Complete condition; 3 s leaves the check below at least 2 s.
    create_job(&client, "brief", json!({"ttlSecondsAfterFinished": 3})).await;
    let pod = eventually("a pod", 10, || async { active_pods(&client, "brief").await.pop().ok_or_else(|| "none".to_string()) }).await;
    finish(&client, &pod, "Succeeded").await;
    condition_becomes(&client, "brief", "Complete", 10).await;
    assert_eq!(job_pods(&client, "brief").await.len(), 1, "the pod stays until the TTL");
    eventually("the job and its pod deleted", 20, || async {
        let job = Api::<Job>::namespaced(client.clone(), NS).get_opt("brief").await.unwrap();
        let pods = job_pods(&client, "brief").await;
        if job.is_none() && pods.is_empty() { Ok(()) } else { Err(format!("job present: {}, pods: {}", job.is_some(), pods.len())) }
    })
    .await;
}

fn cronjob_object(name: &str, schedule: &str, extra: Value) -> CronJob {
    let mut spec = json!({
        "schedule": schedule,
        "jobTemplate": {"metadata": {"labels": {"app": name}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}}}},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Creates the CronJob; the first five-minute boundary after its creation.
async fn create_cronjob(client: &Client, cj: CronJob) -> Timestamp {
    let created = Api::<CronJob>::namespaced(client.clone(), NS).create(&PostParams::default(), &cj).await.unwrap();
    let t = created.metadata.creation_timestamp.unwrap().0.as_second();
    Timestamp::from_second((t / 300 + 1) * 300).unwrap()
}

/// The names of the CronJob's jobs (its template labels them `app=<cronjob>`), sorted.
async fn cron_jobs(client: &Client, cronjob: &str) -> Vec<String> {
    let api: Api<Job> = Api::namespaced(client.clone(), NS);
    let mut names: Vec<String> = api.list(&ListParams::default().labels(&format!("app={cronjob}"))).await.unwrap().items.into_iter().filter(|j| j.metadata.deletion_timestamp.is_none()).map(|j| j.name_any()).collect();
    names.sort();
    names
}

async fn jobs_become(client: &Client, cronjob: &str, want: &[String]) {
    eventually(&format!("jobs {want:?}"), 10, || async {
        let names = cron_jobs(client, cronjob).await;
        if names == want { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
}

fn name_at(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second() / 60)
}

async fn complete_job(client: &Client, name: &str) {
    let pod = eventually(&format!("a pod of {name}"), 10, || async { active_pods(client, name).await.pop().ok_or_else(|| "none".to_string()) }).await;
    finish(client, &pod, "Succeeded").await;
    condition_becomes(client, name, "Complete", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_makes_jobs_at_its_times_on_an_injected_clock() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let (_s, client) = cluster(clock.clone()).await;
    let t1 = create_cronjob(&client, cronjob_object("tick", "*/5 * * * *", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cron_jobs(&client, "tick").await.is_empty(), "nothing before the first time");

    clock.set(t1 + Duration::from_secs(1));
    jobs_become(&client, "tick", &[name_at("tick", t1)]).await;
    let job = get_job(&client, &name_at("tick", t1)).await;
    assert_eq!(job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"], t1.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let owner = &job.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CronJob", "tick", Some(true)));
    let cj = eventually("status.active", 10, || async {
        let cj = Api::<CronJob>::namespaced(client.clone(), NS).get("tick").await.unwrap();
        let active = cj.status.as_ref().and_then(|s| s.active.clone()).unwrap_or_default();
        if active.len() == 1 { Ok(cj) } else { Err(format!("{:?}", cj.status)) }
    })
    .await;
    let status = cj.status.unwrap();
    assert_eq!(status.active.unwrap()[0].name.as_deref(), Some(name_at("tick", t1).as_str()));
    assert_eq!(status.last_schedule_time.unwrap().0, t1);
    event_messages_until(&client, "SuccessfulCreate", |m| m.iter().filter(|m| m.starts_with("Created job")).cloned().collect::<Vec<_>>() == [format!("Created job {}", name_at("tick", t1))]).await;

    // Allow: the next time runs beside the active one; nothing in between.
    clock.set(t1 + Duration::from_secs(299));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(cron_jobs(&client, "tick").await.len(), 1);
    let t2 = t1 + Duration::from_secs(300);
    clock.set(t2);
    jobs_become(&client, "tick", &[name_at("tick", t1), name_at("tick", t2)]).await;

    // A finished job leaves status.active and sets lastSuccessfulTime.
    complete_job(&client, &name_at("tick", t1)).await;
    eventually("SawCompletedJob", 10, || async {
        let seen = event_messages(&client, "SawCompletedJob").await;
        let cj = Api::<CronJob>::namespaced(client.clone(), NS).get("tick").await.unwrap();
        let st = cj.status.clone().unwrap_or_default();
        let ok = seen == [format!("Saw completed job: {}, condition: Complete", name_at("tick", t1))] && st.active.unwrap_or_default().len() == 1 && st.last_successful_time.is_some();
        if ok { Ok(()) } else { Err(format!("{seen:?} {:?}", cj.status)) }
    })
    .await;

    // Suspended: times pass without jobs.
    Api::<CronJob>::namespaced(client.clone(), NS).patch("tick", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.set(t2 + Duration::from_secs(300));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cron_jobs(&client, "tick").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_far_behind_warns_and_runs_only_the_latest_time() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let (_s, client) = cluster(clock.clone()).await;
    let t1 = create_cronjob(&client, cronjob_object("behind", "* * * * *", json!({}))).await;
    // 200 start times missed (the controller was down): one job, for the latest, and a warning.
    let latest = t1 + Duration::from_secs(200 * 60);
    clock.set(latest + Duration::from_secs(20));
    jobs_become(&client, "behind", &[name_at("behind", latest)]).await;
    let warnings = event_messages_until(&client, "TooManyMissedTimes", |m| !m.is_empty()).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("too many missed start times: ") && warnings[0].ends_with(". Set or decrease .spec.startingDeadlineSeconds or check clock skew"), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_runs_in_its_time_zone() {
    if !std::path::Path::new("/usr/share/zoneinfo/Asia/Kolkata").exists() {
        eprintln!("SKIPPED a_cronjob_runs_in_its_time_zone: no /usr/share/zoneinfo (install tzdata)");
        return;
    }
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let (_s, client) = cluster(clock.clone()).await;
    // Kolkata is UTC+05:30: its full hours are at half past in UTC.
    let cj = cronjob_object("kolkata", "0 * * * *", json!({"timeZone": "Asia/Kolkata"}));
    let created = Api::<CronJob>::namespaced(client.clone(), NS).create(&PostParams::default(), &cj).await.unwrap();
    let c = created.metadata.creation_timestamp.unwrap().0.as_second();
    let next = Timestamp::from_second(((c - 1800) / 3600 + 1) * 3600 + 1800).unwrap();
    clock.set(next + Duration::from_secs(5));
    jobs_become(&client, "kolkata", &[name_at("kolkata", next)]).await;
    let job = get_job(&client, &name_at("kolkata", next)).await;
    let stamp = &job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    assert!(stamp.ends_with(":00:00+05:30"), "{stamp}");
    assert_eq!(stamp.parse::<Timestamp>().unwrap(), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_while_a_job_runs_and_history_limits_trim() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let (_s, client) = cluster(clock.clone()).await;
    let policy = json!({"concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1});
    let t1 = create_cronjob(&client, cronjob_object("once", "*/5 * * * *", policy)).await;
    let at = |n: u64| t1 + Duration::from_secs(300 * n);
    clock.set(at(0));
    jobs_become(&client, "once", &[name_at("once", at(0))]).await;
    clock.set(at(1));
    eventually("JobAlreadyActive", 10, || async {
        let e = event_messages(&client, "JobAlreadyActive").await;
        if e == ["Not starting job because prior execution is running and concurrency policy is Forbid"] { Ok(()) } else { Err(format!("{e:?}")) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cron_jobs(&client, "once").await, [name_at("once", at(0))], "Forbid starts nothing while one runs");

    // Once it finished, the held-back time still runs (no startingDeadlineSeconds), as upstream.
    complete_job(&client, &name_at("once", at(0))).await;
    jobs_become(&client, "once", &[name_at("once", at(0)), name_at("once", at(1))]).await;
    complete_job(&client, &name_at("once", at(1))).await;
    // One successful job kept: the older goes.
    jobs_become(&client, "once", &[name_at("once", at(1))]).await;
    event_messages_until(&client, "SuccessfulDelete", |m| m.contains(&format!("Deleted job {}", name_at("once", at(0))))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job_for_the_new_one() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let (_s, client) = cluster(clock.clone()).await;
    let t1 = create_cronjob(&client, cronjob_object("swap", "*/5 * * * *", json!({"concurrencyPolicy": "Replace"}))).await;
    clock.set(t1);
    jobs_become(&client, "swap", &[name_at("swap", t1)]).await;
    eventually("a pod of the first job", 10, || async { if active_pods(&client, &name_at("swap", t1)).await.is_empty() { Err("none".to_string()) } else { Ok(()) } }).await;
    let t2 = t1 + Duration::from_secs(300);
    clock.set(t2);
    jobs_become(&client, "swap", &[name_at("swap", t2)]).await;
    event_messages_until(&client, "SuccessfulDelete", |m| m.contains(&format!("Deleted job {}", name_at("swap", t1)))).await;
    eventually("the replaced job's pods gone", 15, || async {
        let pods = job_pods(&client, &name_at("swap", t1)).await;
        if pods.is_empty() { Ok(()) } else { Err(format!("{}", pods.len())) }
    })
    .await;
    eventually("only the new job active", 10, || async {
        let cj = Api::<CronJob>::namespaced(client.clone(), NS).get("swap").await.unwrap();
        let active: Vec<String> = cj.status.unwrap_or_default().active.unwrap_or_default().into_iter().filter_map(|r| r.name).collect();
        if active == [name_at("swap", t2)] { Ok(()) } else { Err(format!("{active:?}")) }
    })
    .await;
}

/// A kubelet stand-in: every pod that has not finished succeeds.
fn test_kubelet(kubeconfig: &std::path::Path) -> common::KubeletStandIn {
    common::KubeletStandIn::start(kubeconfig, |client| async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for p in list.items.iter().filter(|p| is_active(p)) {
                finish(&client, p, "Succeeded").await;
            }
        }
    })
}

#[test]
fn kubectl_runs_jobs_and_cronjobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    let _kubelet = test_kubelet(&server.kubeconfig());

    // The CronJob first: its first run comes at the next minute, real time.
    assert!(k.ok(&["create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *"]).contains("cronjob.batch/tick created"));
    let created = Instant::now();

    assert!(k.ok(&["create", "job", "hello", "--image=busybox", "--", "echo", "hi"]).contains("job.batch/hello created"));
    let waited = k.ok(&["wait", "--for=condition=complete", "job/hello", "--timeout=60s"]);
    assert!(waited.contains("job.batch/hello condition met"), "{waited}");
    let out = k.ok(&["get", "jobs", "hello"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], "{out}");
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["hello", "Complete", "1/1"], "{out}");
    assert!(row[3].ends_with('s'), "a duration: {out}");
    let wide = k.ok(&["get", "jobs", "hello", "-o", "wide"]);
    assert!(wide.contains("batch.kubernetes.io/controller-uid="), "{wide}");
    let pods = k.ok(&["get", "pods", "-l", "job-name=hello", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(pods, "Succeeded");
    let describe = k.ok(&["describe", "job", "hello"]);
    assert!(describe.contains("Created pod: hello-") && describe.contains("Completed"), "{describe}");

    assert!(k.ok(&["create", "job", "manual", "--from=cronjob/tick"]).contains("job.batch/manual created"));
    let waited = k.ok(&["wait", "--for=condition=complete", "job/manual", "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    assert_eq!(k.ok(&["get", "job", "manual", "-o", "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"]), "manual");

    wait_for("a scheduled job of tick", 75u64.saturating_sub(created.elapsed().as_secs()).max(5), || {
        let names = k.ok(&["get", "jobs", "-o", "name"]);
        if names.lines().any(|n| n.starts_with("job.batch/tick-")) { Ok(()) } else { Err(names) }
    });
    let name = k.ok(&["get", "jobs", "-o", "name"]).lines().find(|n| n.starts_with("job.batch/tick-")).unwrap().to_string();
    let minutes: i64 = name.trim_start_matches("job.batch/tick-").parse().expect("minutes since the epoch");
    assert_eq!(minutes * 60 % 60, 0);
    assert!((minutes * 60 - Timestamp::now().as_second()).abs() < 120, "{name}");
    let waited = k.ok(&["wait", "--for=condition=complete", &name, "--timeout=60s"]);
    assert!(waited.contains("condition met"), "{waited}");
    wait_for("LAST SCHEDULE set", 20, || {
        let out = k.ok(&["get", "cronjob", "tick", "--no-headers"]);
        let cols: Vec<&str> = out.split_whitespace().collect();
        // NAME, five schedule fields, TIMEZONE, SUSPEND, ACTIVE, LAST SCHEDULE, AGE.
        if cols.get(1..6) == Some(&["*/1", "*", "*", "*", "*"]) && cols.get(9).is_some_and(|c| *c != "<none>") { Ok(()) } else { Err(out) }
    });
    let describe = k.ok(&["describe", "cronjob", "tick"]);
    assert!(describe.contains(&format!("Created job {}", name.trim_start_matches("job.batch/"))), "{describe}");

    assert!(k.ok(&["delete", "cronjob", "tick"]).contains("cronjob.batch \"tick\" deleted"));
    wait_for("tick's jobs gone with it", 30, || {
        let names = k.ok(&["get", "jobs", "-o", "name"]);
        if names.lines().any(|n| n.starts_with("job.batch/tick-") || n == "job.batch/manual") { Err(names) } else { Ok(()) }
    });
    assert!(k.ok(&["delete", "job", "hello"]).contains("job.batch \"hello\" deleted"));
    wait_for("hello's pod gone", 30, || {
        let pods = k.ok(&["get", "pods", "-o", "name"]);
        if pods.is_empty() { Ok(()) } else { Err(pods) }
    });
}
