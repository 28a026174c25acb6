//! status of a StatefulSet from its pods, as upstream counts: replicas (pods created),
//! readyReplicas (Running and Ready), availableReplicas (Ready for minReadySeconds),
//! currentReplicas and updatedReplicas (not terminating, at the current or update revision);
//! a finished rolling update makes the update revision current.

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::identity::{self, revision_of};
use super::plan::{available, is_created, is_terminating, min_ready_seconds, running_and_ready};

pub fn compute(set: &StatefulSet, pods: &[Pod], current_revision: &str, update_revision: &str, collision_count: i32, now: Timestamp) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(set);
    let (mut replicas, mut ready, mut avail, mut current, mut updated) = (0, 0, 0, 0, 0);
    // Pods without an ordinal are no members; the ones counted are the wanted and condemned.
    for p in pods.iter().filter(|p| identity::ordinal(p).is_some()) {
        if is_created(p) {
            replicas += 1;
        }
        if running_and_ready(p) {
            ready += 1;
            if available(p, min_ready, now) {
                avail += 1;
            }
        }
        if is_created(p) && !is_terminating(p) {
            if revision_of(p) == current_revision {
                current += 1;
            }
            if revision_of(p) == update_revision {
                updated += 1;
            }
        }
    }
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        collision_count: Some(collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// Every wanted pod updated and Ready: the update revision becomes the current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()) == Some("RollingUpdate");
    let want = identity::replicas(set);
    if rolling && status.updated_replicas == Some(want) && status.ready_replicas == Some(want) && status.replicas == want {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether the recorded status differs from `status` (what upstream compares, and the
/// collision count).
pub fn differs(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || n(status.current_replicas) != n(old.current_replicas)
        || n(status.ready_replicas) != n(old.ready_replicas)
        || n(status.updated_replicas) != n(old.updated_replicas)
        || n(status.available_replicas) != n(old.available_replicas)
        || n(status.collision_count) != n(old.collision_count)
        || status.current_revision.as_deref().unwrap_or("") != old.current_revision.as_deref().unwrap_or("")
        || status.update_revision.as_deref().unwrap_or("") != old.update_revision.as_deref().unwrap_or("")
}

/// A merge patch that writes every counted field (zeros included, so counts can drop).
pub fn patch(status: &StatefulSetStatus) -> Value {
    json!({"status": {
        "observedGeneration": status.observed_generation,
        "replicas": status.replicas,
        "readyReplicas": status.ready_replicas,
        "availableReplicas": status.available_replicas,
        "currentReplicas": status.current_replicas,
        "updatedReplicas": status.updated_replicas,
        "currentRevision": status.current_revision,
        "updateRevision": status.update_revision,
        "collisionCount": status.collision_count,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::set;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use serde_json::json;

    fn pod(s: &StatefulSet, ordinal: i32, revision: &str, phase: &str, ready: bool) -> Pod {
        let mut p = identity::new_versioned_pod(s, s, revision, revision, ordinal);
        let conditions = ready.then(|| vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]);
        p.status = Some(PodStatus { phase: Some(phase.into()), conditions, ..Default::default() });
        p
    }

    #[test]
    fn counts_and_the_end_of_a_rolling_update() {
        let s = set(json!({}));
        let pods = [pod(&s, 0, "a", "Running", true), pod(&s, 1, "a", "Running", true), pod(&s, 2, "b", "Pending", false)];
        let mut st = compute(&s, &pods, "a", "b", 0, Timestamp::now());
        assert_eq!((st.replicas, st.ready_replicas, st.available_replicas, st.current_replicas, st.updated_replicas), (3, Some(2), Some(2), Some(2), Some(1)));
        complete_rolling_update(&s, &mut st);
        assert_eq!(st.current_revision.as_deref(), Some("a"));
        let pods = [pod(&s, 0, "b", "Running", true), pod(&s, 1, "b", "Running", true), pod(&s, 2, "b", "Running", true)];
        let mut st = compute(&s, &pods, "a", "b", 0, Timestamp::now());
        complete_rolling_update(&s, &mut st);
        assert_eq!((st.current_revision.as_deref(), st.current_replicas), (Some("b"), Some(3)));
        assert!(differs(&s, &st));
        let mut recorded = s.clone();
        recorded.status = Some(st.clone());
        assert!(!differs(&recorded, &st));
    }
}
