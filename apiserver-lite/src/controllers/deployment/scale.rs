//! Proportional scaling: when a Deployment is resized in the middle of a rollout, the change is
//! spread over its active ReplicaSets in proportion to their sizes (using the max-replicas
//! each was last sized for), the rounding leftover going to the largest, as upstream does.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::replicasets::{self as util, Error};

/// The new size of each active ReplicaSet (same order as given).
pub fn proportional(d: &Deployment, active: &[ReplicaSet]) -> Result<Vec<i32>, Error> {
    let refs: Vec<&ReplicaSet> = active.iter().collect();
    let current = util::spec_sum(&refs);
    let replicas = util::replicas(d);
    let allowed = if replicas > 0 { replicas + util::max_surge(d)? } else { 0 };
    let to_add = allowed - current;
    // Grow the biggest (then newest) first, shrink the biggest (then oldest) first.
    let mut order: Vec<usize> = (0..active.len()).collect();
    let created = |i: usize| active[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    order.sort_by(|&a, &b| {
        let by_size = util::rs_replicas(&active[b]).cmp(&util::rs_replicas(&active[a]));
        if to_add > 0 { by_size.then(created(b).cmp(&created(a))) } else { by_size.then(created(a).cmp(&created(b))) }
    });
    let mut sizes: Vec<i32> = active.iter().map(util::rs_replicas).collect();
    let mut added = 0;
    if to_add != 0 {
        for &i in &order {
            let proportion = proportion(d, &active[i], to_add, added)?;
            sizes[i] += proportion;
            added += proportion;
        }
    }
    if let Some(&first) = order.first() {
        let leftover = to_add - added;
        sizes[first] = (sizes[first] + leftover).max(0);
    }
    Ok(sizes)
}

fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> Result<i32, Error> {
    if util::rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return Ok(0);
    }
    let fraction = fraction(d, rs)?;
    let allowed = to_add - added;
    Ok(if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) })
}

/// How many replicas this ReplicaSet gains (or loses) for the deployment's new size.
fn fraction(d: &Deployment, rs: &ReplicaSet) -> Result<i32, Error> {
    let replicas = util::replicas(d);
    let size = util::rs_replicas(rs);
    if replicas == 0 {
        return Ok(-size);
    }
    let deployment_replicas = replicas + util::max_surge(d)?;
    let annotated = util::annotation_i32(rs, util::MAX_REPLICAS).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return Ok(0);
    }
    let new_size = (f64::from(size) * f64::from(deployment_replicas) / f64::from(annotated)).round() as i32;
    Ok(new_size - size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, replicas: i32, max: i32, age_s: i64) -> ReplicaSet {
        let created = k8s_openapi::jiff::Timestamp::now() - std::time::Duration::from_secs(age_s as u64);
        serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created.to_string(),
            "annotations": {util::MAX_REPLICAS: max.to_string()}}, "spec": {"replicas": replicas, "selector": {}}}))
        .unwrap()
    }

    #[test]
    fn growth_mid_rollout_is_shared_in_proportion() {
        // 10 replicas, surge 3: old 8 and new 5 were sized for max 13; scaled to 20 (max 23).
        let d: Deployment = serde_json::from_value(json!({"spec": {"replicas": 20, "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}}})).unwrap();
        let sizes = proportional(&d, &[rs("old", 8, 13, 100), rs("new", 5, 13, 10)]).unwrap();
        assert_eq!(sizes.iter().sum::<i32>(), 23);
        assert_eq!(sizes, vec![14, 9]);
    }

    #[test]
    fn scaling_to_zero_empties_everything() {
        let d: Deployment = serde_json::from_value(json!({"spec": {"replicas": 0, "selector": {}, "template": {}}})).unwrap();
        assert_eq!(proportional(&d, &[rs("old", 3, 5, 100), rs("new", 2, 5, 10)]).unwrap(), vec![0, 0]);
    }
}
