//! What pod affinity, anti-affinity and topology spread need to know about the pods already
//! placed, computed once per scheduled pod: which topology domains (values of a node label
//! such as `kubernetes.io/hostname`) hold matching pods, and how many.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;

use super::cache::{Cache, PodInfo};
use super::matching::{node_selection_matches, selector_matches};

/// A required or preferred pod (anti-)affinity term of the incoming pod, resolved.
#[derive(Debug, Default)]
pub struct TermDomains {
    pub key: String,
    /// Domain value → matching pods in it.
    pub counts: HashMap<String, i64>,
    pub weight: i64,
}

#[derive(Debug)]
pub struct Spread {
    pub key: String,
    pub max_skew: i64,
    /// DoNotSchedule (a filter) rather than ScheduleAnyway (a score).
    pub hard: bool,
    pub counts: HashMap<String, i64>,
    pub min: i64,
    pub self_match: bool,
}

#[derive(Debug, Default)]
pub struct Topology {
    pub affinity: Vec<TermDomains>,
    /// No placed pod matches the required affinity and the pod matches its own terms: the
    /// first pod of a group may go anywhere (as upstream).
    pub affinity_bypass: bool,
    pub anti_affinity: Vec<TermDomains>,
    /// (topology key, value) domains closed by placed pods' required anti-affinity.
    pub existing_anti: HashSet<(String, String)>,
    pub spread: Vec<Spread>,
    pub preferred: Vec<TermDomains>,
}

/// A term's namespaces: its list, all of them for an empty namespaceSelector, otherwise the
/// owner's namespace (namespace label selectors are not resolved here).
fn term_matches(term: &PodAffinityTerm, owner_namespace: &str, candidate: &PodInfo) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let all = term.namespace_selector.as_ref().is_some_and(|s| s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()));
    let ns_ok = all || namespaces.contains(&candidate.namespace) || (namespaces.is_empty() && term.namespace_selector.is_none() && candidate.namespace == owner_namespace);
    ns_ok && selector_matches(term.label_selector.as_ref(), &candidate.labels)
}

fn domains(cache: &Cache, pod: &PodInfo, term: &PodAffinityTerm, weight: i64) -> TermDomains {
    let mut d = TermDomains { key: term.topology_key.clone(), counts: HashMap::new(), weight };
    for info in cache.nodes.values() {
        let Some(value) = info.labels().and_then(|l| l.get(&term.topology_key)) else { continue };
        let n = info.pods.values().filter(|p| p.key != pod.key && term_matches(term, &pod.namespace, p)).count() as i64;
        if n > 0 {
            *d.counts.entry(value.clone()).or_default() += n;
        }
    }
    d
}

impl Topology {
    /// Whether anything here applies to the pod (most pods skip the whole computation).
    pub fn needed(cache: &Cache, pod: &PodInfo) -> bool {
        let spec = pod.pod.spec.as_ref();
        !cache.anti_affinity_pods.is_empty()
            || spec.is_some_and(|s| {
                s.topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty())
                    || s.affinity.as_ref().is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
            })
    }

    pub fn compute(cache: &Cache, pod: &PodInfo) -> Topology {
        let mut t = Topology::default();
        for (other, node) in cache.anti_affinity_pods.values() {
            if other.key == pod.key {
                continue;
            }
            let Some(labels) = cache.nodes.get(node).and_then(|n| n.labels()) else { continue };
            for term in &other.required_anti_affinity {
                if let Some(v) = labels.get(&term.topology_key).filter(|_| term_matches(term, &other.namespace, pod)) {
                    t.existing_anti.insert((term.topology_key.clone(), v.clone()));
                }
            }
        }
        let Some(spec) = pod.pod.spec.as_ref() else { return t };
        if let Some(aff) = spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref()) {
            let required = aff.required_during_scheduling_ignored_during_execution.as_deref().unwrap_or_default();
            t.affinity = required.iter().map(|term| domains(cache, pod, term, 1)).collect();
            t.affinity_bypass = !t.affinity.is_empty() && t.affinity.iter().all(|d| d.counts.is_empty()) && required.iter().all(|term| term_matches(term, &pod.namespace, pod));
            for w in aff.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                t.preferred.push(domains(cache, pod, &w.pod_affinity_term, w.weight as i64));
            }
        }
        if let Some(anti) = spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()) {
            let required = anti.required_during_scheduling_ignored_during_execution.as_deref().unwrap_or_default();
            t.anti_affinity = required.iter().map(|term| domains(cache, pod, term, 1)).collect();
            for w in anti.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                t.preferred.push(domains(cache, pod, &w.pod_affinity_term, -(w.weight as i64)));
            }
        }
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut counts: HashMap<String, i64> = HashMap::new();
            // Domains are those of the nodes the pod could go to by node selection (the
            // default nodeAffinityPolicy Honor); pods of the pod's namespace are counted.
            for info in cache.nodes.values() {
                let Some(node) = &info.node else { continue };
                let Some(value) = info.labels().and_then(|l| l.get(&c.topology_key)) else { continue };
                if c.node_affinity_policy.as_deref() != Some("Ignore") && !node_selection_matches(&pod.pod, node) {
                    continue;
                }
                let n = info.pods.values().filter(|p| p.key != pod.key && p.namespace == pod.namespace && selector_matches(c.label_selector.as_ref(), &p.labels)).count() as i64;
                *counts.entry(value.clone()).or_default() += n;
            }
            let mut min = counts.values().copied().min().unwrap_or(0);
            if c.min_domains.is_some_and(|m| (counts.len() as i64) < m as i64) {
                min = 0;
            }
            t.spread.push(Spread {
                key: c.topology_key.clone(),
                max_skew: c.max_skew as i64,
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                counts,
                min,
                self_match: selector_matches(c.label_selector.as_ref(), &pod.labels),
            });
        }
        t
    }
}
