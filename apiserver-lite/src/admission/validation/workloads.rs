//! Workloads (apps and batch): selectors that match their pod templates, counts that are not
//! negative, strategies, and the fields that may not change on update.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{self, NameRule};
use super::pod::pod_template;
use super::{FieldError, Path, Raw};

const NONNEGATIVE: &str = "must be greater than or equal to 0";
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
const IMMUTABLE: &str = "field is immutable";
/// CronJob names leave room for the 11-character suffix of the jobs they create.
const CRONJOB_NAME_MAX: usize = 52;

/// A Go `%#v` of a string map, as upstream prints template labels.
pub(super) fn go_map(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        None => "map[string]string(nil)".into(),
        Some(m) => format!("map[string]string{{{}}}", m.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect::<Vec<_>>().join(", ")),
    }
}

/// A Go `%#v` of a LabelSelector.
fn go_selector(s: &LabelSelector) -> String {
    let exprs = match &s.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => format!(
            "[]v1.LabelSelectorRequirement{{{}}}",
            list.iter()
                .map(|r| {
                    let values = match &r.values {
                        None => "[]string(nil)".to_string(),
                        Some(v) => format!("[]string{{{}}}", v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")),
                    };
                    format!("v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}", r.key, r.operator)
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!("v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}", go_map(s.match_labels.as_ref()))
}

fn is_empty(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Whether a selector selects a label set.
pub(super) fn matches(s: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_match = s.match_labels.iter().flatten().all(|(k, v)| get(k) == Some(v));
    let exprs_match = s.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" => get(&r.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&r.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&r.key).is_some(),
            "DoesNotExist" => get(&r.key).is_none(),
            _ => false,
        }
    });
    labels_match && exprs_match
}

/// A selector's own grammar: label keys and values, operators and their values.
fn label_selector(s: &LabelSelector, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(labels) = &s.match_labels {
        names::validate_labels(labels, &path.child("matchLabels"), errs);
    }
    for (i, r) in s.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let has_values = r.values.as_ref().is_some_and(|v| !v.is_empty());
        match r.operator.as_str() {
            "In" | "NotIn" if !has_values => errs.push(FieldError::required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'")),
            "Exists" | "DoesNotExist" if has_values => errs.push(FieldError::forbidden(p.child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
            op if !OPERATORS.contains(&op) => errs.push(FieldError::not_supported(p.child("operator"), op, OPERATORS)),
            _ => {}
        }
        for msg in names::qualified_name(&r.key) {
            errs.push(FieldError::invalid(p.child("key"), &r.key, msg));
        }
    }
}

fn nonnegative(value: Option<i32>, path: Path, errs: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        errs.push(FieldError::invalid(path, v, NONNEGATIVE));
    }
}

/// What the apps kinds share: a non-empty selector that matches a template whose pods
/// restart always.
fn replicated(selector: &LabelSelector, template: Option<&PodTemplateSpec>, kind: &str, errs: &mut Vec<FieldError>) {
    let spec = Path::new("spec");
    label_selector(selector, &spec.child("selector"), errs);
    if is_empty(selector) {
        errs.push(FieldError::invalid(spec.child("selector"), Raw(go_selector(selector)), format!("empty selector is invalid for {}", kind.to_lowercase())));
    }
    let Some(template) = template else {
        errs.push(FieldError::required(spec.child("template"), ""));
        return;
    };
    let path = spec.child("template");
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if !is_empty(selector) && !matches(selector, labels) {
        errs.push(FieldError::invalid(path.child("metadata").child("labels"), Raw(go_map(labels)), "`selector` does not match template `labels`"));
    }
    pod_template(template, &path, errs);
    if let Some(pod) = &template.spec {
        let restart = pod.restart_policy.as_deref().unwrap_or_default();
        if !restart.is_empty() && restart != "Always" {
            errs.push(FieldError::not_supported(path.child("spec").child("restartPolicy"), restart, &["Always"]));
        }
        if let Some(deadline) = pod.active_deadline_seconds {
            // Upstream words it so for every kind.
            errs.push(FieldError::invalid(path.child("spec").child("activeDeadlineSeconds"), deadline, "activeDeadlineSeconds in ReplicaSet is not Supported"));
        }
    }
}

fn selector_unchanged(new: &LabelSelector, old: &LabelSelector, errs: &mut Vec<FieldError>) {
    if new != old {
        errs.push(FieldError::invalid(Path::new("spec").child("selector"), Raw(go_selector(new)), IMMUTABLE));
    }
}

/// maxUnavailable/maxSurge: a count or a percentage, not both zero.
fn rolling_update(max_unavailable: Option<&IntOrString>, max_surge: Option<&IntOrString>, path: &Path, errs: &mut Vec<FieldError>) {
    let mut check = |v: Option<&IntOrString>, name: &str| -> Option<i64> {
        let p = path.child(name);
        match v? {
            IntOrString::Int(n) if *n < 0 => {
                errs.push(FieldError::invalid(p, *n, NONNEGATIVE));
                None
            }
            IntOrString::Int(n) => Some((*n).into()),
            IntOrString::String(s) => match s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) {
                Some(n) if n > 100 && name == "maxUnavailable" => {
                    errs.push(FieldError::invalid(p, s, "must not be greater than 100%"));
                    None
                }
                Some(n) => Some(n),
                None => {
                    errs.push(FieldError::invalid(p, s, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                    None
                }
            },
        }
    };
    let unavailable = check(max_unavailable, "maxUnavailable");
    let surge = check(max_surge, "maxSurge");
    if unavailable == Some(0) && surge == Some(0) {
        errs.push(FieldError::invalid(path.child("maxUnavailable"), Raw(go_int_or_string(max_unavailable)), "may not be 0 when `maxSurge` is 0"));
    }
}

fn go_int_or_string(v: Option<&IntOrString>) -> String {
    match v {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => format!("{s:?}"),
        None => "null".into(),
    }
}

pub(super) fn deployment(d: &Deployment, old: Option<&Deployment>, errs: &mut Vec<FieldError>) {
    names::object_meta(&d.metadata, NameRule::Subdomain, errs);
    let Some(spec) = &d.spec else {
        errs.push(FieldError::required(Path::new("spec").child("selector"), ""));
        return;
    };
    let path = Path::new("spec");
    nonnegative(spec.replicas, path.child("replicas"), errs);
    replicated(&spec.selector, Some(&spec.template), "Deployment", errs);
    if let Some(strategy) = &spec.strategy {
        let p = path.child("strategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "Recreate" if strategy.rolling_update.is_some() => errs.push(FieldError::forbidden(p.child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")),
            "Recreate" => {}
            "RollingUpdate" => {
                if let Some(r) = &strategy.rolling_update {
                    rolling_update(r.max_unavailable.as_ref(), r.max_surge.as_ref(), &p.child("rollingUpdate"), errs);
                }
            }
            "" => errs.push(FieldError::required(p.child("type"), "")),
            other => errs.push(FieldError::not_supported(p.child("type"), other, &["Recreate", "RollingUpdate"])),
        }
    }
    nonnegative(spec.min_ready_seconds, path.child("minReadySeconds"), errs);
    nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit"), errs);
    if let Some(deadline) = spec.progress_deadline_seconds {
        nonnegative(Some(deadline), path.child("progressDeadlineSeconds"), errs);
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(path.child("progressDeadlineSeconds"), deadline, "must be greater than minReadySeconds"));
        }
    }
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        selector_unchanged(&spec.selector, &old_spec.selector, errs);
    }
}

pub(super) fn replicaset(rs: &ReplicaSet, old: Option<&ReplicaSet>, errs: &mut Vec<FieldError>) {
    names::object_meta(&rs.metadata, NameRule::Subdomain, errs);
    let Some(spec) = &rs.spec else {
        errs.push(FieldError::required(Path::new("spec").child("selector"), ""));
        return;
    };
    nonnegative(spec.replicas, Path::new("spec").child("replicas"), errs);
    nonnegative(spec.min_ready_seconds, Path::new("spec").child("minReadySeconds"), errs);
    replicated(&spec.selector, spec.template.as_ref(), "ReplicaSet", errs);
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        selector_unchanged(&spec.selector, &old_spec.selector, errs);
    }
}

pub(super) fn statefulset(s: &StatefulSet, old: Option<&StatefulSet>, errs: &mut Vec<FieldError>) {
    names::object_meta(&s.metadata, NameRule::Subdomain, errs);
    let Some(spec) = &s.spec else {
        errs.push(FieldError::required(Path::new("spec").child("selector"), ""));
        return;
    };
    let path = Path::new("spec");
    match spec.pod_management_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(path.child("podManagementPolicy"), "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::not_supported(path.child("podManagementPolicy"), other, &["OrderedReady", "Parallel"])),
    }
    if let Some(strategy) = &spec.update_strategy {
        let p = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "OnDelete" if strategy.rolling_update.is_some() => errs.push(FieldError::invalid(p.child("rollingUpdate"), Raw("v1.RollingUpdateStatefulSetStrategy{...}".into()), "only allowed for updateStrategy 'RollingUpdate'")),
            "OnDelete" => {}
            "RollingUpdate" => {
                nonnegative(strategy.rolling_update.as_ref().and_then(|r| r.partition), p.child("rollingUpdate").child("partition"), errs);
            }
            "" => errs.push(FieldError::required(p.child("type"), "")),
            other => errs.push(FieldError::not_supported(p.child("type"), other, &["OnDelete", "RollingUpdate"])),
        }
    }
    nonnegative(spec.replicas, path.child("replicas"), errs);
    nonnegative(spec.min_ready_seconds, path.child("minReadySeconds"), errs);
    // The controller mounts each claim template as a volume of its name, so the containers
    // may mount those too (upstream checks the template's volumes with the claims' names).
    let mut template = spec.template.clone();
    if let Some(pod) = template.spec.as_mut() {
        let volumes = pod.volumes.get_or_insert_with(Vec::new);
        for claim in spec.volume_claim_templates.iter().flatten() {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if !volumes.iter().any(|v| v.name == name) {
                volumes.push(k8s_openapi::api::core::v1::Volume {
                    name: name.clone(),
                    persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource { claim_name: name, read_only: None }),
                    ..Default::default()
                });
            }
        }
    }
    replicated(&spec.selector, Some(&template), "StatefulSet", errs);
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        // Only these may change; everything else of the spec is fixed at creation.
        let mut fixed = spec.clone();
        fixed.replicas = old_spec.replicas;
        fixed.ordinals = old_spec.ordinals.clone();
        fixed.template = old_spec.template.clone();
        fixed.update_strategy = old_spec.update_strategy.clone();
        fixed.persistent_volume_claim_retention_policy = old_spec.persistent_volume_claim_retention_policy.clone();
        fixed.min_ready_seconds = old_spec.min_ready_seconds;
        fixed.revision_history_limit = old_spec.revision_history_limit;
        if &fixed != old_spec {
            errs.push(FieldError::forbidden(
                path,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

pub(super) fn daemonset(ds: &DaemonSet, old: Option<&DaemonSet>, errs: &mut Vec<FieldError>) {
    names::object_meta(&ds.metadata, NameRule::Subdomain, errs);
    let Some(spec) = &ds.spec else {
        errs.push(FieldError::required(Path::new("spec").child("selector"), ""));
        return;
    };
    let path = Path::new("spec");
    replicated(&spec.selector, Some(&spec.template), "DaemonSet", errs);
    if let Some(strategy) = &spec.update_strategy {
        let p = path.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or_default() {
            "OnDelete" => {}
            "RollingUpdate" => {
                if let Some(r) = &strategy.rolling_update {
                    rolling_update(r.max_unavailable.as_ref(), r.max_surge.as_ref(), &p.child("rollingUpdate"), errs);
                }
            }
            "" => errs.push(FieldError::required(p.child("type"), "")),
            other => errs.push(FieldError::not_supported(p.child("type"), other, &["OnDelete", "RollingUpdate"])),
        }
    }
    nonnegative(spec.min_ready_seconds, path.child("minReadySeconds"), errs);
    nonnegative(spec.revision_history_limit, path.child("revisionHistoryLimit"), errs);
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        selector_unchanged(&spec.selector, &old_spec.selector, errs);
    }
}

/// A JobSpec, of a Job or a CronJob's job template, at `path`.
fn job_spec(spec: &JobSpec, path: &Path, generated_selector: bool, errs: &mut Vec<FieldError>) {
    nonnegative(spec.parallelism, path.child("parallelism"), errs);
    nonnegative(spec.completions, path.child("completions"), errs);
    nonnegative(spec.backoff_limit, path.child("backoffLimit"), errs);
    if let Some(deadline) = spec.active_deadline_seconds.filter(|d| *d < 0) {
        errs.push(FieldError::invalid(path.child("activeDeadlineSeconds"), deadline, NONNEGATIVE));
    }
    if let Some(mode) = spec.completion_mode.as_deref()
        && mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(path.child("completionMode"), mode, &["NonIndexed", "Indexed"]));
        }
    let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    match &spec.selector {
        Some(selector) => {
            label_selector(selector, &path.child("selector"), errs);
            if !is_empty(selector) && !matches(selector, labels) {
                errs.push(FieldError::invalid(path.child("template").child("metadata").child("labels"), Raw(go_map(labels)), "`selector` does not match template `labels`"));
            }
        }
        None if !generated_selector => errs.push(FieldError::required(path.child("selector"), "")),
        None => {}
    }
    let template_path = path.child("template");
    pod_template(&spec.template, &template_path, errs);
    if let Some(pod) = &spec.template.spec {
        let restart = pod.restart_policy.as_deref().unwrap_or_default();
        if restart != "OnFailure" && restart != "Never" {
            errs.push(FieldError::not_supported(template_path.child("spec").child("restartPolicy"), restart, &["OnFailure", "Never"]));
        }
    }
}

/// A Job whose selector the server generates (no `manualSelector: true`) may arrive here
/// without one: the generation needs the uid, which only the stored object has.
pub(super) fn job(j: &Job, old: Option<&Job>, errs: &mut Vec<FieldError>) {
    names::object_meta(&j.metadata, NameRule::Subdomain, errs);
    let Some(spec) = &j.spec else {
        errs.push(FieldError::required(Path::new("spec").child("template"), ""));
        return;
    };
    let manual = spec.manual_selector == Some(true);
    job_spec(spec, &Path::new("spec"), !manual, errs);
    // Once the uid is known the server generates the selector; one the user wrote instead is
    // refused unless they asked to manage it.
    if let (false, Some(uid), Some(selector)) = (manual, j.metadata.uid.as_deref(), spec.selector.as_ref()) {
        let generated = LabelSelector { match_labels: Some([("batch.kubernetes.io/controller-uid".to_string(), uid.to_string())].into()), match_expressions: None };
        if selector != &generated {
            errs.push(FieldError::invalid(Path::new("spec").child("selector"), Raw(go_selector(selector)), "`selector` not auto-generated"));
        }
    }
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        if spec.selector != old_spec.selector {
            let shown = spec.selector.as_ref().map(go_selector).unwrap_or_else(|| "null".into());
            errs.push(FieldError::invalid(Path::new("spec").child("selector"), Raw(shown), IMMUTABLE));
        }
        // A suspended job that never started may get a new template; others may not.
        if spec.template != old_spec.template && old_spec.suspend != Some(true) {
            errs.push(FieldError::invalid(Path::new("spec").child("template"), Raw("core.PodTemplateSpec{...}".into()), IMMUTABLE));
        }
        if spec.completion_mode != old_spec.completion_mode {
            errs.push(FieldError::invalid(Path::new("spec").child("completionMode"), spec.completion_mode.clone().unwrap_or_default(), IMMUTABLE));
        }
    }
}

/// Five space-separated fields, or one of the predefined `@` schedules.
fn valid_schedule(schedule: &str) -> bool {
    let s = schedule.trim();
    let s = match s.strip_prefix("TZ=").or_else(|| s.strip_prefix("CRON_TZ=")) {
        Some(rest) => rest.split_once(' ').map(|(_, r)| r.trim()).unwrap_or(""),
        None => s,
    };
    if let Some(macro_name) = s.strip_prefix('@') {
        return ["yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"].contains(&macro_name) || macro_name.starts_with("every ");
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    fields.len() == 5 && fields.iter().all(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c)))
}

pub(super) fn cronjob(cj: &CronJob, _old: Option<&CronJob>, errs: &mut Vec<FieldError>) {
    names::object_meta(&cj.metadata, NameRule::Subdomain, errs);
    if let Some(name) = cj.metadata.name.as_deref().filter(|n| n.len() > CRONJOB_NAME_MAX) {
        errs.push(FieldError::invalid(Path::new("metadata").child("name"), name, format!("must be no more than {CRONJOB_NAME_MAX} characters")));
    }
    let Some(spec) = &cj.spec else {
        errs.push(FieldError::required(Path::new("spec").child("schedule"), ""));
        return;
    };
    let path = Path::new("spec");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(path.child("schedule"), ""));
    } else if !valid_schedule(&spec.schedule) {
        errs.push(FieldError::invalid(path.child("schedule"), &spec.schedule, "unparseable schedule: expected exactly 5 fields or a descriptor such as @hourly"));
    }
    match spec.concurrency_policy.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(path.child("concurrencyPolicy"), "")),
        "Allow" | "Forbid" | "Replace" => {}
        other => errs.push(FieldError::not_supported(path.child("concurrencyPolicy"), other, &["Allow", "Forbid", "Replace"])),
    }
    nonnegative(spec.successful_jobs_history_limit, path.child("successfulJobsHistoryLimit"), errs);
    nonnegative(spec.failed_jobs_history_limit, path.child("failedJobsHistoryLimit"), errs);
    if let Some(d) = spec.starting_deadline_seconds.filter(|d| *d < 0) {
        errs.push(FieldError::invalid(path.child("startingDeadlineSeconds"), d, NONNEGATIVE));
    }
    let job_path = path.child("jobTemplate").child("spec");
    match &spec.job_template.spec {
        // The jobs it creates get generated selectors.
        Some(job) => job_spec(job, &job_path, true, errs),
        None => errs.push(FieldError::required(job_path.child("template"), "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string()), ("env".to_string(), "prod".to_string())].into();
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement { key: "env".into(), operator: "In".into(), values: Some(vec!["prod".into(), "qa".into()]) },
                LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert!(matches(&s, Some(&labels)));
        assert!(!matches(&s, None));
        let other: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        assert!(!matches(&s, Some(&other)));
    }

    #[test]
    fn go_renderings() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string()), ("tier".to_string(), "fe".to_string())].into();
        assert_eq!(go_map(Some(&labels)), r#"map[string]string{"app":"web", "tier":"fe"}"#);
        assert_eq!(go_map(None), "map[string]string(nil)");
        let s = LabelSelector { match_labels: Some([("app".to_string(), "web".to_string())].into()), match_expressions: None };
        assert_eq!(go_selector(&s), r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"web"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#);
    }

    #[test]
    fn cron_schedules() {
        for ok in ["*/5 * * * *", "0 3 * * 1-5", "@hourly", "TZ=Etc/UTC 0 0 * * *", "0 0 1 JAN *"] {
            assert!(valid_schedule(ok), "{ok}");
        }
        for bad in ["* * * *", "every minute", "@sometimes"] {
            assert!(!valid_schedule(bad), "{bad}");
        }
    }
}
