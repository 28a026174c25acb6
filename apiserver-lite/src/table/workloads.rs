//! Columns of pods and of the workload kinds that own pods (apps and batch), as
//! kube-apiserver 1.33 prints them.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::selector::{format_label_selector, format_labels};
use super::{age_of, array_at, col, container_cells, int_at, since, str_at, wide, Column, Row, AGE, NAME};

const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");
const SELECTOR: Column = wide("Selector", "string", "The label selector of the pods this object manages.");

pub(crate) const POD_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "IP address allocated to the pod. Routable at least within the cluster."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

fn condition_is_true(conditions: &[Value], kind: &str) -> bool {
    conditions.iter().any(|c| str_at(c, "/type") == kind && str_at(c, "/status") == "True")
}

/// The most recent `lastState.terminated.finishedAt` seen so far, kept as text and time.
#[derive(Default)]
struct LastRestart(Option<(OffsetDateTime, String)>);

impl LastRestart {
    fn see(&mut self, status: &Value) {
        let Some(finished) = status.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str) else { return };
        let Some(t) = super::age::parse_timestamp(finished) else { return };
        if self.0.as_ref().is_none_or(|(seen, _)| *seen < t) {
            self.0 = Some((t, finished.to_string()));
        }
    }
}

/// The STATUS and RESTARTS of a pod follow kubectl's long-standing rules: the reason of a
/// waiting or terminated container wins over the phase, init containers show progress as
/// `Init:i/n`, and a pod being deleted shows `Terminating`.
pub(crate) fn pod(pod: &Value, now: OffsetDateTime) -> Row {
    let containers = array_at(pod, "/spec/containers");
    let init_containers = array_at(pod, "/spec/initContainers");
    let conditions = array_at(pod, "/status/conditions");
    let phase = str_at(pod, "/status/phase");
    let mut reason = if str_at(pod, "/status/reason").is_empty() { phase.to_string() } else { str_at(pod, "/status/reason").to_string() };
    if conditions.iter().any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    // Sidecars (init containers that restart always) count among the pod's containers.
    let is_sidecar = |name: &str| init_containers.iter().any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always");
    let total = containers.len() + init_containers.iter().filter(|c| str_at(c, "/restartPolicy") == "Always").count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = LastRestart::default();
    let mut last_sidecar_restart = LastRestart::default();

    let mut initializing = false;
    for (i, status) in array_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let name = str_at(status, "/name");
        restarts += int_at(status, "/restartCount");
        last_restart.see(status);
        if is_sidecar(name) {
            sidecar_restarts += int_at(status, "/restartCount");
            last_sidecar_restart.see(status);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = str_at(status, "/state/waiting/reason");
        if terminated.is_some() && int_at(status, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if is_sidecar(name) && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = str_at(t, "/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if int_at(t, "/signal") != 0 {
                format!("Init:Signal:{}", int_at(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", int_at(t, "/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in array_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += int_at(status, "/restartCount");
            last_restart.see(status);
            let waiting = str_at(status, "/state/waiting/reason");
            let terminated = status.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                let r = str_at(t, "/reason");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if int_at(t, "/signal") != 0 {
                    format!("Signal:{}", int_at(t, "/signal"))
                } else {
                    format!("ExitCode:{}", int_at(t, "/exitCode"))
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true) && status.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is still running.
        if reason == "Completed" && has_running {
            reason = if condition_is_true(conditions, "Ready") { "Running".into() } else { "NotReady".into() };
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null());
    if deleting && str_at(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match &last_restart.0 {
        Some((_, at)) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(at), now)),
        _ => restarts.to_string(),
    };

    let ip = array_at(pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).filter(|s| !s.is_empty()).unwrap_or_else(|| str_at(pod, "/status/podIP"));
    let or_none = |s: &str| if s.is_empty() { "<none>".to_string() } else { s.to_string() };
    let gates = array_at(pod, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ready_gates = gates
            .iter()
            .filter(|g| conditions.iter().find(|c| str_at(c, "/type") == str_at(g, "/conditionType")).is_some_and(|c| str_at(c, "/status") == "True"))
            .count();
        format!("{ready_gates}/{}", gates.len())
    };

    let mut row = Row::new(vec![
        json!(str_at(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age_of(pod, now),
        json!(or_none(ip)),
        json!(or_none(str_at(pod, "/spec/nodeName"))),
        json!(or_none(str_at(pod, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]);
    // Finished pods carry a Completed condition so clients can tell them apart.
    row.conditions = match phase {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])),
        "Failed" => Some(json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}])),
        _ => None,
    };
    row
}

pub(crate) const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

/// Desired replicas default to 1 when absent (as the API defaults them).
fn desired(v: &Value) -> i64 {
    v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)
}

pub(crate) fn deployment(d: &Value, now: OffsetDateTime) -> Row {
    let (names, images) = container_cells(d.pointer("/spec/template/spec"));
    Row::new(vec![
        json!(str_at(d, "/metadata/name")),
        json!(format!("{}/{}", int_at(d, "/status/readyReplicas"), desired(d))),
        json!(int_at(d, "/status/updatedReplicas")),
        json!(int_at(d, "/status/availableReplicas")),
        age_of(d, now),
        names,
        images,
        json!(format_label_selector(d.pointer("/spec/selector"))),
    ])
}

pub(crate) const REPLICASET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired pods."),
    col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(crate) fn replicaset(rs: &Value, now: OffsetDateTime) -> Row {
    let (names, images) = container_cells(rs.pointer("/spec/template/spec"));
    Row::new(vec![
        json!(str_at(rs, "/metadata/name")),
        json!(desired(rs)),
        json!(int_at(rs, "/status/replicas")),
        json!(int_at(rs, "/status/readyReplicas")),
        age_of(rs, now),
        names,
        images,
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ])
}

pub(crate) const STATEFULSET_COLUMNS: &[Column] = &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES];

pub(crate) fn statefulset(s: &Value, now: OffsetDateTime) -> Row {
    let (names, images) = container_cells(s.pointer("/spec/template/spec"));
    Row::new(vec![json!(str_at(s, "/metadata/name")), json!(format!("{}/{}", int_at(s, "/status/readyReplicas"), desired(s))), age_of(s, now), names, images])
}

pub(crate) const DAEMONSET_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(crate) fn daemonset(ds: &Value, now: OffsetDateTime) -> Row {
    let (names, images) = container_cells(ds.pointer("/spec/template/spec"));
    Row::new(vec![
        json!(str_at(ds, "/metadata/name")),
        json!(int_at(ds, "/status/desiredNumberScheduled")),
        json!(int_at(ds, "/status/currentNumberScheduled")),
        json!(int_at(ds, "/status/numberReady")),
        json!(int_at(ds, "/status/updatedNumberScheduled")),
        json!(int_at(ds, "/status/numberAvailable")),
        json!(format_labels(ds.pointer("/spec/template/spec/nodeSelector"))),
        age_of(ds, now),
        names,
        images,
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ])
}

pub(crate) const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col("Completions", "string", "The completion status of the job"),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(crate) fn job(j: &Value, now: OffsetDateTime) -> Row {
    let succeeded = int_at(j, "/status/succeeded");
    let completions = match j.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match j.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = j.pointer("/status/startTime").and_then(Value::as_str).and_then(super::age::parse_timestamp);
    let end = j.pointer("/status/completionTime").and_then(Value::as_str).and_then(super::age::parse_timestamp);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => super::human_duration(now - s),
        (Some(s), Some(e)) => super::human_duration(e - s),
    };
    let conditions = array_at(j, "/status/conditions");
    let deleting = j.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null());
    let status = if condition_is_true(conditions, "Complete") {
        "Complete"
    } else if condition_is_true(conditions, "Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if condition_is_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_is_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else if condition_is_true(conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = container_cells(j.pointer("/spec/template/spec"));
    Row::new(vec![
        json!(str_at(j, "/metadata/name")),
        json!(status),
        json!(completions),
        json!(duration),
        age_of(j, now),
        names,
        images,
        json!(format_label_selector(j.pointer("/spec/selector"))),
    ])
}

pub(crate) const CRONJOB_COLUMNS: &[Column] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format."),
    col("Timezone", "string", "The time zone name for the given schedule."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(crate) fn cronjob(cj: &Value, now: OffsetDateTime) -> Row {
    let last = match cj.pointer("/status/lastScheduleTime").and_then(Value::as_str) {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    let timezone = cj.pointer("/spec/timeZone").and_then(Value::as_str).unwrap_or("<none>");
    let suspend = match cj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(b) => b.to_string(),
        None => "<unset>".into(),
    };
    let (names, images) = container_cells(cj.pointer("/spec/jobTemplate/spec/template/spec"));
    Row::new(vec![
        json!(str_at(cj, "/metadata/name")),
        json!(str_at(cj, "/spec/schedule")),
        json!(timezone),
        json!(suspend),
        json!(array_at(cj, "/status/active").len()),
        json!(last),
        age_of(cj, now),
        names,
        images,
        json!(format_label_selector(cj.pointer("/spec/jobTemplate/spec/selector"))),
    ])
}

pub(crate) const CONTROLLERREVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col("Revision", "integer", "Revision indicates the revision of the state represented by Data."),
    AGE,
];

/// CONTROLLER is the owner marked `controller: true`, as `kind.group/name` in lower case.
pub(crate) fn controllerrevision(cr: &Value, now: OffsetDateTime) -> Row {
    let controller = array_at(cr, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let api_version = str_at(o, "/apiVersion");
            let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
            let kind = str_at(o, "/kind").to_lowercase();
            let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
            format!("{kind}/{}", str_at(o, "/name"))
        })
        .unwrap_or_else(|| "<none>".into());
    Row::new(vec![json!(str_at(cr, "/metadata/name")), json!(controller), json!(int_at(cr, "/revision")), age_of(cr, now)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2025-01-01 12:00:00 UTC);

    fn pod_with(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:55:00Z"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": status,
        })
    }

    fn cells(row: &Row) -> Vec<String> {
        row.cells.iter().map(|c| c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string())).collect()
    }

    #[test]
    fn a_new_pod_is_pending_with_none_in_the_wide_columns() {
        let row = pod(&pod_with(json!({"phase": "Pending"})), NOW);
        assert_eq!(cells(&row), ["web", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]);
        assert!(row.conditions.is_none());
    }

    #[test]
    fn a_running_pod_shows_ready_ip_node_and_restarts_with_when() {
        let mut p = pod_with(json!({
            "phase": "Running",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 3,
                "state": {"running": {"startedAt": "2025-01-01T11:58:00Z"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:58:00Z"}}
            }]
        }));
        p["spec"]["nodeName"] = json!("node-1");
        let row = pod(&p, NOW);
        assert_eq!(cells(&row), ["web", "1/1", "Running", "3 (2m ago)", "5m", "10.0.0.5", "node-1", "<none>", "<none>"]);
    }

    #[test]
    fn waiting_reasons_show_as_the_status() {
        for reason in ["ContainerCreating", "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"] {
            let p = pod_with(json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}}]}));
            assert_eq!(cells(&pod(&p, NOW))[2], reason);
        }
    }

    #[test]
    fn finished_pods_show_completed_or_error_and_carry_a_condition() {
        let p = pod_with(json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        let row = pod(&p, NOW);
        assert_eq!(cells(&row)[2], "Completed");
        assert_eq!(row.conditions.unwrap()[0]["reason"], "Succeeded");
        let p = pod_with(json!({"phase": "Failed", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}));
        assert_eq!(cells(&pod(&p, NOW))[2], "Error");
        let p = pod_with(json!({"phase": "Failed", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}]}));
        assert_eq!(cells(&pod(&p, NOW))[2], "ExitCode:137");
    }

    #[test]
    fn init_containers_show_progress_and_failures() {
        let mut p = pod_with(json!({"phase": "Pending", "initContainerStatuses": [{"name": "init", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        assert_eq!(cells(&pod(&p, NOW))[2], "Init:0/1");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(cells(&pod(&p, NOW))[2], "Init:Error");
        p["status"]["initContainerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(cells(&pod(&p, NOW))[2], "Init:CrashLoopBackOff");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let mut p = pod_with(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1, "state": {"running": {}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]);
        let c = cells(&pod(&p, NOW));
        assert_eq!(&c[1..4], ["2/2", "Running", "1"]);
    }

    #[test]
    fn deleted_pods_show_terminating_or_unknown_when_the_node_is_lost() {
        let mut p = pod_with(json!({"phase": "Running"}));
        p["metadata"]["deletionTimestamp"] = json!("2025-01-01T11:59:00Z");
        assert_eq!(cells(&pod(&p, NOW))[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&pod(&p, NOW))[2], "Unknown");
        let lost = pod_with(json!({"phase": "Running", "reason": "NodeLost"}));
        assert_eq!(cells(&pod(&lost, NOW))[2], "NodeLost");
    }

    #[test]
    fn readiness_gates_count_true_conditions() {
        let mut p = pod_with(json!({"phase": "Running", "conditions": [{"type": "example.com/lb", "status": "True"}]}));
        p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        assert_eq!(cells(&pod(&p, NOW))[8], "1/2");
    }

    #[test]
    fn deployments_and_replicasets_print_counts_containers_and_selector() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2, "replicas": 3}
        });
        assert_eq!(deployment(&d, NOW).cells, vec![json!("web"), json!("2/3"), json!(3), json!(2), json!("3h"), json!("app,log"), json!("nginx:1.27,busybox"), json!("app=web")]);
        assert_eq!(replicaset(&d, NOW).cells[..4], [json!("web"), json!(3), json!(3), json!(2)]);
        assert_eq!(statefulset(&d, NOW).cells, vec![json!("web"), json!("2/3"), json!("3h"), json!("app,log"), json!("nginx:1.27,busybox")]);
    }

    #[test]
    fn daemonsets_print_node_selector() {
        let ds = json!({
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent"}]}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}
        });
        assert_eq!(
            daemonset(&ds, NOW).cells,
            vec![json!("agent"), json!(2), json!(2), json!(1), json!(2), json!(1), json!("kubernetes.io/os=linux"), json!("<unknown>"), json!("a"), json!("agent"), json!("app=agent")]
        );
    }

    #[test]
    fn jobs_print_status_completions_and_duration() {
        let mut j = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2025-01-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"startTime": "2025-01-01T11:00:00Z", "completionTime": "2025-01-01T11:00:42Z", "succeeded": 1,
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let c = job(&j, NOW).cells;
        assert_eq!(c[..5], [json!("pi"), json!("Complete"), json!("1/1"), json!("42s"), json!("60m")]);
        j["status"] = json!({"startTime": "2025-01-01T11:59:00Z"});
        j["spec"] = json!({"parallelism": 3});
        let c = job(&j, NOW).cells;
        assert_eq!(c[1..4], [json!("Running"), json!("0/1 of 3"), json!("60s")]);
        j["status"]["conditions"] = json!([{"type": "Failed", "status": "True"}]);
        assert_eq!(job(&j, NOW).cells[1], json!("Failed"));
    }

    #[test]
    fn cronjobs_print_schedule_suspend_and_last_schedule() {
        let cj = json!({
            "metadata": {"name": "hello"},
            "spec": {"schedule": "*/1 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2025-01-01T11:59:30Z"}
        });
        assert_eq!(
            cronjob(&cj, NOW).cells,
            vec![json!("hello"), json!("*/1 * * * *"), json!("<none>"), json!("false"), json!(1), json!("30s"), json!("<unknown>"), json!("hello"), json!("busybox"), json!("<none>")]
        );
    }

    #[test]
    fn controller_revisions_name_their_controller() {
        let cr = json!({
            "metadata": {"name": "web-6d4b", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
            "revision": 2
        });
        assert_eq!(controllerrevision(&cr, NOW).cells[..3], [json!("web-6d4b"), json!("statefulset.apps/web"), json!(2)]);
        assert_eq!(controllerrevision(&json!({"metadata": {"name": "x"}}), NOW).cells[1], json!("<none>"));
    }
}
