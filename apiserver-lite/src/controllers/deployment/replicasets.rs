//! Pure helpers over a Deployment and its ReplicaSets, named after upstream's deployment
//! utilities: which ReplicaSet is new, revisions, replica sums, surge and unavailability
//! bounds, and the annotations the controller keeps on ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hash;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("invalid value for IntOrString: invalid value {0:?}: must be an integer or a percentage like \"25%\"")]
    BadIntOrPercent(String),
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate"
}

/// `value` of `total`: an int as is, a percentage rounded up or down.
pub fn scaled_value(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> Result<i32, Error> {
    match value {
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => percent_of(s, total, round_up),
        None => percent_of(default, total, round_up),
    }
}

fn percent_of(s: &str, total: i32, round_up: bool) -> Result<i32, Error> {
    let pct: i64 = s.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or_else(|| Error::BadIntOrPercent(s.to_string()))?;
    let scaled = pct * i64::from(total);
    Ok(if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) } as i32)
}

/// (maxSurge, maxUnavailable) resolved against `replicas`: surge rounds up, unavailable
/// down, and if both come to 0 one pod may be unavailable so the rollout can move.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), Error> {
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let total = replicas(d);
    let surge = scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), "25%", total, true)?;
    let unavailable = scaled_value(rolling.and_then(|r| r.max_unavailable.as_ref()), "25%", total, false)?;
    Ok(if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

pub fn max_surge(d: &Deployment) -> Result<i32, Error> {
    if !is_rolling(d) {
        return Ok(0);
    }
    Ok(fenceposts(d)?.0)
}

pub fn max_unavailable(d: &Deployment) -> Result<i32, Error> {
    if !is_rolling(d) || replicas(d) == 0 {
        return Ok(0);
    }
    Ok(fenceposts(d)?.1.min(replicas(d)))
}

fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(hash::LABEL);
    }
    t
}

/// Whether two templates are the same but for the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

pub fn template_of(d: &Deployment) -> PodTemplateSpec {
    d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// The ReplicaSet running the deployment's current template (the oldest if several do).
pub fn find_new(d: &Deployment, all: &[ReplicaSet]) -> Option<ReplicaSet> {
    let template = template_of(d);
    let mut sorted: Vec<&ReplicaSet> = all.iter().collect();
    sorted.sort_by_key(|rs| (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone()));
    sorted.into_iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &template))).cloned()
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn max_revision(all: &[ReplicaSet]) -> i64 {
    all.iter().map(revision).max().unwrap_or(0)
}

pub fn spec_sum(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

pub fn status_sum(rss: &[&ReplicaSet], field: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32) -> i32 {
    rss.iter().filter_map(|rs| rs.status.as_ref()).map(field).sum()
}

pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Set desired-replicas and max-replicas; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        if a.get(k) != Some(&v.to_string()) {
            a.insert(k.to_string(), v.to_string());
            changed = true;
        }
    }
    changed
}

/// Copy the deployment's annotations (but its own bookkeeping ones) to the new ReplicaSet and
/// give it `new_revision` if that is higher than its own, remembering the revisions it had
/// (a rollback reuses an old ReplicaSet); whether anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> Result<bool, Error> {
    let mut changed = false;
    let d_annotations = d.metadata.annotations.clone().unwrap_or_default();
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in &d_annotations {
        if [LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO].contains(&k.as_str()) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_int: i64 = old.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0);
    if old_int < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = match a.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old,
            };
            a.insert(REVISION_HISTORY.into(), history);
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)?) {
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(fenceposts(&deployment(10, json!("25%"), json!("25%"))).unwrap(), (3, 2));
        assert_eq!(fenceposts(&deployment(3, json!(1), json!(0))).unwrap(), (1, 0));
        // Both zero: one unavailable so the rollout can move.
        assert_eq!(fenceposts(&deployment(1, json!("25%"), json!("25%"))).unwrap(), (1, 0));
        assert_eq!(fenceposts(&deployment(3, json!(0), json!("10%"))).unwrap(), (0, 1));
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))).unwrap(), 2);
        assert!(fenceposts(&deployment(3, json!("x%"), json!(0))).is_err());
    }

    #[test]
    fn the_new_replicaset_is_found_ignoring_the_hash_label() {
        let d = deployment(2, json!(1), json!(0));
        let mut t = template_of(&d);
        t.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(hash::LABEL.into(), "abc".into());
        let rs = ReplicaSet { metadata: Default::default(), spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec { template: Some(t), ..Default::default() }), status: None };
        assert!(find_new(&d, &[rs]).is_some());
    }

    #[test]
    fn reusing_an_old_replicaset_records_its_revision_history() {
        let d = deployment(2, json!(1), json!(0));
        let mut rs = ReplicaSet::default();
        rs.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true).unwrap());
        let a = rs.metadata.annotations.unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert!(!a.contains_key(DESIRED_REPLICAS), "an existing replica set keeps its replica annotations");
    }
}
