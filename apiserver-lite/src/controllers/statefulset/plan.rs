//! What one pass of the controller does to a StatefulSet's pods, decided without the API
//! (upstream's updateStatefulSet): replicas in ordinal order (replace finished pods, create
//! missing ones, fix identity and claims), then pods beyond the wanted ordinals from the
//! highest down, then the rolling update from the highest ordinal down to the partition.
//!
//! OrderedReady ("monotonic") stops at the first pod that is not yet Running, Ready and
//! available, and makes one creation or deletion per pass; Parallel goes on past them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::claims;
use super::identity::{self, claims_for, identity_matches, new_versioned_pod, revision_of};
use crate::controllers::replicaset::pods::{availability, is_ready, Availability};

/// One change to make, in order; a failure stops the pass.
#[derive(Debug)]
pub enum Step {
    /// Create the claims the pod lacks, then the pod. `deleting` names claims of the pod that
    /// are being deleted: the pod cannot be created until they are gone.
    CreatePod { pod: Pod, claims: Vec<PersistentVolumeClaim>, deleting: Vec<String> },
    /// A Pending pod's missing claims.
    CreateClaims { pod: String, claims: Vec<PersistentVolumeClaim> },
    /// Fix a pod's identity labels and its claims' owner references (recorded as a pod update).
    UpdatePod { pod: Pod, fix_labels: bool, claims: Vec<PersistentVolumeClaim> },
    /// Claims of a pod scaled away, given to the pod per the retention policy.
    UpdateClaims { claims: Vec<PersistentVolumeClaim> },
    /// Delete a pod: finished (it comes back under its name), scaled away, or to update it.
    DeletePod { pod: Pod, why: Why },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Why {
    Finished,
    ScaleDown,
    Update,
}

pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// The set with the current and the update revision's template.
    pub current_set: &'a StatefulSet,
    pub update_set: &'a StatefulSet,
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    /// The set's pods (claimed members).
    pub pods: &'a [Pod],
    /// The namespace's claims by name (empty without claim templates).
    pub claims: &'a BTreeMap<String, PersistentVolumeClaim>,
    pub now: Timestamp,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Look again after this long (a pod becoming available, a stale claim being collected).
    pub retry: Option<Duration>,
}

impl Plan {
    fn retry_after(&mut self, d: Duration) {
        self.retry = Some(self.retry.map_or(d, |r| r.min(d)));
    }

    pub fn deletes_for_update(&self) -> i32 {
        self.steps.iter().filter(|s| matches!(s, Step::DeletePod { why: Why::Update, .. })).count() as i32
    }
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Created: the API server has given it a phase (a pod this pass would make has none).
pub fn is_created(p: &Pod) -> bool {
    !phase(p).is_empty()
}

pub fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

pub fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

pub fn available(p: &Pod, min_ready: i32, now: Timestamp) -> bool {
    availability(p, min_ready, now) == Availability::Available
}

fn unavailable(p: &Pod, min_ready: i32, now: Timestamp) -> bool {
    !running_and_ready(p) || is_terminating(p) || !available(p, min_ready, now)
}

fn monotonic(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel")
}

/// The wanted ordinals' pods (existing, or the pod this pass would create), and the others
/// (condemned), highest ordinal first.
pub fn split<'a>(inp: &Input<'a>) -> (Vec<Pod>, Vec<&'a Pod>) {
    let set = inp.set;
    let start = identity::start_ordinal(set);
    let n = identity::replicas(set) as usize;
    let mut slots: Vec<Option<&Pod>> = vec![None; n];
    let mut condemned = Vec::new();
    for pod in inp.pods {
        match identity::ordinal(pod) {
            Some(o) if identity::in_range(set, o) => slots[(o - start) as usize] = Some(pod),
            Some(_) => condemned.push(pod),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(identity::ordinal(p)));
    let replicas = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.cloned().unwrap_or_else(|| new_versioned_pod(inp.current_set, inp.update_set, inp.current_revision, inp.update_revision, start + i as i32)))
        .collect();
    (replicas, condemned)
}

pub fn plan(inp: &Input) -> Plan {
    let mut plan = Plan::default();
    let set = inp.set;
    let min_ready = min_ready_seconds(set);
    let now = inp.now;
    // Ready pods not yet available become so later without any event: look again then.
    for p in inp.pods {
        if let Availability::ReadyFor(d) = availability(p, min_ready, now) {
            plan.retry_after(d + Duration::from_millis(100));
        }
    }
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let (replicas, condemned) = split(inp);
    let first_unavailable = replicas.iter().chain(condemned.iter().rev().copied()).find(|p| unavailable(p, min_ready, now)).map(|p| p.name_any());
    let monotonic = monotonic(set);

    for pod in &replicas {
        if process_replica(inp, pod, monotonic, &mut plan) && monotonic {
            return plan;
        }
    }
    for pod in &condemned {
        let updates = claims::updates_for(inp.update_set, pod, inp.claims);
        if !updates.is_empty() {
            plan.steps.push(Step::UpdateClaims { claims: updates });
        }
    }
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first = first_unavailable.as_deref() == Some(pod.name_any().as_str());
        if monotonic && !first && (!running_and_ready(pod) || !available(pod, min_ready, now)) {
            return plan;
        }
        plan.steps.push(Step::DeletePod { pod: (*pod).clone(), why: Why::ScaleDown });
        if monotonic {
            return plan;
        }
    }
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.clone()).unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return plan;
    }
    let rolling = strategy.rolling_update.unwrap_or_default();
    let update_min = rolling.partition.unwrap_or(0).max(0) as usize;
    let outdated = |p: &Pod| revision_of(p) != inp.update_revision && !is_terminating(p);
    match rolling.max_unavailable {
        // maxUnavailable set: upstream's MaxUnavailableStatefulSet behaviour.
        Some(max) => {
            let max = scaled_max_unavailable(&max, replicas.len() as i32);
            let down = replicas.iter().filter(|p| unavailable(p, min_ready, now)).count() as i32;
            let mut budget = max - down;
            for pod in replicas.iter().skip(update_min).rev() {
                if budget <= 0 {
                    break;
                }
                if outdated(pod) {
                    plan.steps.push(Step::DeletePod { pod: pod.clone(), why: Why::Update });
                    budget -= 1;
                }
            }
        }
        None => {
            for pod in replicas.iter().skip(update_min).rev() {
                if outdated(pod) {
                    plan.steps.push(Step::DeletePod { pod: pod.clone(), why: Why::Update });
                    break;
                }
                if unavailable(pod, min_ready, now) {
                    break;
                }
            }
        }
    }
    plan
}

/// maxUnavailable as a count of `replicas`, percentages rounded down, at least 1.
pub fn scaled_max_unavailable(v: &IntOrString, replicas: i32) -> i32 {
    let n = match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => s.trim_end_matches('%').parse::<i64>().map(|p| (p * i64::from(replicas) / 100) as i32).unwrap_or(1),
    };
    n.max(1)
}

/// One wanted pod; true when the pass must stop here in OrderedReady mode.
fn process_replica(inp: &Input, pod: &Pod, monotonic: bool, plan: &mut Plan) -> bool {
    let set = inp.set;
    let min_ready = min_ready_seconds(set);
    let ph = phase(pod);
    if ph == "Failed" || ph == "Succeeded" {
        if !is_terminating(pod) {
            plan.steps.push(Step::DeletePod { pod: pod.clone(), why: Why::Finished });
        }
        return true;
    }
    if !is_created(pod) {
        if claims::is_stale(set, pod, inp.claims) {
            plan.retry_after(Duration::from_secs(1));
            return true;
        }
        let ordinal = identity::ordinal(pod).unwrap_or(0);
        let mut missing = Vec::new();
        let mut deleting = Vec::new();
        for mut claim in claims_for(set, ordinal) {
            match inp.claims.get(&claim.name_any()) {
                None => {
                    claims::update_owner_refs(&mut claim, set, pod);
                    missing.push(claim);
                }
                Some(c) if c.metadata.deletion_timestamp.is_some() => deleting.push(c.name_any()),
                Some(_) => {}
            }
        }
        plan.steps.push(Step::CreatePod { pod: pod.clone(), claims: missing, deleting });
        return monotonic;
    }
    if ph == "Pending" {
        let ordinal = identity::ordinal(pod).unwrap_or(0);
        let missing: Vec<PersistentVolumeClaim> = claims_for(set, ordinal).into_iter().filter(|c| !inp.claims.contains_key(&c.name_any())).collect();
        if !missing.is_empty() {
            plan.steps.push(Step::CreateClaims { pod: pod.name_any(), claims: missing });
        }
    }
    if monotonic && (is_terminating(pod) || !running_and_ready(pod) || !available(pod, min_ready, inp.now)) {
        return true;
    }
    // Volumes of an existing pod cannot change (the pod spec is immutable): only labels and
    // claims are fixed.
    let claim_updates = claims::updates_for(inp.update_set, pod, inp.claims);
    let fix_labels = !identity_matches(set, pod);
    if fix_labels || !claim_updates.is_empty() {
        let mut fixed = pod.clone();
        identity::update_identity(set, &mut fixed);
        plan.steps.push(Step::UpdatePod { pod: fixed, fix_labels, claims: claim_updates });
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::identity::tests::set;
    use crate::controllers::statefulset::identity::{POD_NAME_LABEL, REVISION_LABEL};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    /// A pod of `s` at `ordinal` on `revision`, in `phase`, Ready or not.
    fn pod(s: &StatefulSet, ordinal: i32, revision: &str, phase: &str, ready: bool) -> Pod {
        let mut p = identity::new_versioned_pod(s, s, revision, revision, ordinal);
        p.metadata.uid = Some(format!("uid-{ordinal}"));
        let conditions = ready.then(|| vec![PodCondition { type_: "Ready".into(), status: "True".into(), last_transition_time: Some(Time(Timestamp::now() - Duration::from_secs(60))), ..Default::default() }]);
        p.status = Some(PodStatus { phase: Some(phase.into()), conditions, ..Default::default() });
        p
    }

    fn steps(s: &StatefulSet, pods: &[Pod], update_revision: &str) -> Vec<String> {
        let claims = BTreeMap::new();
        let inp = Input { set: s, current_set: s, update_set: s, current_revision: "rev-1", update_revision, pods, claims: &claims, now: Timestamp::now() };
        plan(&inp)
            .steps
            .iter()
            .map(|st| match st {
                Step::CreatePod { pod, .. } => format!("create {}", pod.name_any()),
                Step::CreateClaims { pod, .. } => format!("claims {pod}"),
                Step::UpdatePod { pod, .. } => format!("update {}", pod.name_any()),
                Step::UpdateClaims { .. } => "update claims".into(),
                Step::DeletePod { pod, why } => format!("delete {} {why:?}", pod.name_any()),
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_pod_after_its_predecessors_are_ready() {
        let s = set(json!({}));
        assert_eq!(steps(&s, &[], "rev-1"), ["create web-0"]);
        assert!(steps(&s, &[pod(&s, 0, "rev-1", "Pending", false)], "rev-1").is_empty());
        assert!(steps(&s, &[pod(&s, 0, "rev-1", "Running", false)], "rev-1").is_empty());
        assert_eq!(steps(&s, &[pod(&s, 0, "rev-1", "Running", true)], "rev-1"), ["create web-1"]);
        // A gap is filled before anything higher.
        assert_eq!(steps(&s, &[pod(&s, 0, "rev-1", "Running", true), pod(&s, 2, "rev-1", "Running", true)], "rev-1"), ["create web-1"]);
    }

    #[test]
    fn min_ready_seconds_holds_the_next_pod_back() {
        let s = set(json!({"minReadySeconds": 3600}));
        let claims = BTreeMap::new();
        let pods = [pod(&s, 0, "rev-1", "Running", true)];
        let inp = Input { set: &s, current_set: &s, update_set: &s, current_revision: "rev-1", update_revision: "rev-1", pods: &pods, claims: &claims, now: Timestamp::now() };
        let p = plan(&inp);
        assert!(p.steps.is_empty());
        assert!(p.retry.is_some_and(|d| d > Duration::from_secs(3000)));
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let s = set(json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(steps(&s, &[pod(&s, 1, "rev-1", "Pending", false)], "rev-1"), ["create web-0", "create web-2"]);
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let s = set(json!({"replicas": 1}));
        let ready: Vec<Pod> = (0..3).map(|i| pod(&s, i, "rev-1", "Running", true)).collect();
        assert_eq!(steps(&s, &ready, "rev-1"), ["delete web-2 ScaleDown"]);
        // Wait while the highest terminates.
        let mut terminating = ready.clone();
        terminating[2].metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert!(steps(&s, &terminating, "rev-1").is_empty());
        // An unready pod is deleted only if it is the first unavailable one (lowest ordinal).
        let mut blocked = ready.clone();
        blocked[1] = pod(&s, 1, "rev-1", "Running", false);
        assert_eq!(steps(&s, &blocked, "rev-1"), ["delete web-2 ScaleDown"]);
        blocked[2] = pod(&s, 2, "rev-1", "Running", false);
        assert!(steps(&s, &blocked, "rev-1").is_empty());
        let mut first = ready.clone();
        first[2] = pod(&s, 2, "rev-1", "Running", false);
        assert_eq!(steps(&s, &first, "rev-1"), ["delete web-2 ScaleDown"]);
        let parallel = set(json!({"replicas": 1, "podManagementPolicy": "Parallel"}));
        assert_eq!(steps(&parallel, &ready, "rev-1"), ["delete web-2 ScaleDown", "delete web-1 ScaleDown"]);
    }

    #[test]
    fn a_failed_pod_is_deleted_to_be_recreated() {
        let s = set(json!({}));
        let pods = [pod(&s, 0, "rev-1", "Failed", false)];
        assert_eq!(steps(&s, &pods, "rev-1"), ["delete web-0 Finished"]);
    }

    #[test]
    fn rolling_update_replaces_the_highest_outdated_pod_and_honours_the_partition() {
        let s = set(json!({}));
        let old: Vec<Pod> = (0..3).map(|i| pod(&s, i, "rev-1", "Running", true)).collect();
        assert_eq!(steps(&s, &old, "rev-2"), ["delete web-2 Update"]);
        let mut mid = old.clone();
        mid[2] = pod(&s, 2, "rev-2", "Running", false);
        // The updated pod must be Ready first (it also blocks in OrderedReady anyway).
        assert!(steps(&s, &mid, "rev-2").is_empty());
        mid[2] = pod(&s, 2, "rev-2", "Running", true);
        assert_eq!(steps(&s, &mid, "rev-2"), ["delete web-1 Update"]);
        let partitioned = set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        assert!(steps(&partitioned, &mid, "rev-2").is_empty());
        let on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert!(steps(&on_delete, &old, "rev-2").is_empty());
        let wide = set(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}));
        assert_eq!(steps(&wide, &old, "rev-2"), ["delete web-2 Update", "delete web-1 Update"]);
    }

    #[test]
    fn a_pod_missing_its_identity_label_is_fixed() {
        let s = set(json!({}));
        let mut p = pod(&s, 0, "rev-1", "Running", true);
        p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        let plan = plan(&Input { set: &s, current_set: &s, update_set: &s, current_revision: "rev-1", update_revision: "rev-1", pods: &[p], claims: &BTreeMap::new(), now: Timestamp::now() });
        match &plan.steps[..] {
            [Step::UpdatePod { pod, fix_labels: true, .. }, Step::CreatePod { .. }] => {
                assert_eq!(pod.labels()[POD_NAME_LABEL], "web-0");
                assert_eq!(pod.labels()[REVISION_LABEL], "rev-1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn percentages_of_max_unavailable_round_down_to_at_least_one() {
        assert_eq!(scaled_max_unavailable(&IntOrString::String("50%".into()), 5), 2);
        assert_eq!(scaled_max_unavailable(&IntOrString::String("10%".into()), 5), 1);
        assert_eq!(scaled_max_unavailable(&IntOrString::Int(3), 5), 3);
    }
}
