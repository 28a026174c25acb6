//! A pod's QoS class (Guaranteed, Burstable, BestEffort) by the upstream rules, and the
//! cgroup the pod's containers go under for it (cgroupfs driver naming: `kubepods/` for
//! Guaranteed pods, `kubepods/burstable/` and `kubepods/besteffort/` for the others).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::cri_config::quantity::parse_milli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// As in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Only these count for QoS: other resources (ephemeral storage, hugepages, devices) have
/// no bearing on which pods the node evicts or OOM-kills first.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

fn positive(q: &Quantity) -> Option<i128> {
    parse_milli(&q.0).filter(|m| *m > 0)
}

/// The container's requests, defaulted from its limits as the API server does (a static
/// pod's spec is not defaulted by anyone), and its limits; positive cpu/memory only.
fn requests_and_limits(c: &Container) -> (BTreeMap<&'static str, i128>, BTreeMap<&'static str, i128>) {
    let res = c.resources.as_ref();
    let get = |list: Option<&BTreeMap<String, Quantity>>, name: &str| list.and_then(|l| l.get(name)).and_then(positive);
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for name in QOS_RESOURCES {
        let limit = get(res.and_then(|r| r.limits.as_ref()), name);
        let explicit = res.and_then(|r| r.requests.as_ref()).is_some_and(|l| l.contains_key(name));
        let request = if explicit { get(res.and_then(|r| r.requests.as_ref()), name) } else { limit };
        if let Some(v) = request {
            requests.insert(name, v);
        }
        if let Some(v) = limit {
            limits.insert(name, v);
        }
    }
    (requests, limits)
}

/// The pod's QoS class: BestEffort when no container (init containers included) requests
/// or limits cpu or memory; Guaranteed when every container limits both and the pod's
/// summed requests equal its summed limits; Burstable otherwise.
pub fn qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let (r, l) = requests_and_limits(c);
        for (k, v) in r {
            *requests.entry(k).or_default() += v;
        }
        if !QOS_RESOURCES.iter().all(|n| l.contains_key(n)) {
            guaranteed = false;
        }
        for (k, v) in l {
            *limits.entry(k).or_default() += v;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The pod's cgroup under the node's cgroup root (`""` or `/` for the top):
/// `<root>/kubepods/pod<uid>`, `<root>/kubepods/burstable/pod<uid>` or
/// `<root>/kubepods/besteffort/pod<uid>`.
pub fn pod_cgroup(root: &str, pod: &Pod) -> String {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let root = root.trim_end_matches('/');
    let root = if root.is_empty() || root.starts_with('/') { root.to_string() } else { format!("/{root}") };
    match qos_class(pod) {
        QosClass::Guaranteed => format!("{root}/kubepods/pod{uid}"),
        QosClass::Burstable => format!("{root}/kubepods/burstable/pod{uid}"),
        QosClass::BestEffort => format!("{root}/kubepods/besteffort/pod{uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn list(items: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!items.is_empty()).then(|| items.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect())
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        let mut p = Pod::default();
        p.metadata.uid = Some("u1".into());
        p.spec =
            Some(PodSpec { containers, init_containers: (!init.is_empty()).then_some(init), ..Default::default() });
        p
    }

    const BOTH: &[(&str, &str)] = &[("cpu", "100m"), ("memory", "64Mi")];

    #[test]
    fn no_resources_is_best_effort() {
        assert_eq!(qos_class(&pod(vec![container(&[], &[])], vec![])), QosClass::BestEffort);
        assert_eq!(qos_class(&pod(vec![Container::default()], vec![])), QosClass::BestEffort);
        // Resources other than cpu and memory do not count.
        assert_eq!(
            qos_class(&pod(vec![container(&[("ephemeral-storage", "1Gi")], &[])], vec![])),
            QosClass::BestEffort
        );
        assert_eq!(qos_class(&pod(vec![container(&[("cpu", "0")], &[])], vec![])), QosClass::BestEffort);
    }

    #[test]
    fn equal_requests_and_limits_everywhere_is_guaranteed() {
        assert_eq!(qos_class(&pod(vec![container(BOTH, BOTH)], vec![])), QosClass::Guaranteed);
        // Requests defaulted from limits.
        assert_eq!(qos_class(&pod(vec![container(&[], BOTH)], vec![])), QosClass::Guaranteed);
        // Same value, different spelling.
        let other = &[("cpu", "0.1"), ("memory", "67108864")];
        assert_eq!(qos_class(&pod(vec![container(BOTH, other)], vec![])), QosClass::Guaranteed);
    }

    #[test]
    fn anything_less_is_burstable() {
        assert_eq!(qos_class(&pod(vec![container(&[("cpu", "100m")], &[])], vec![])), QosClass::Burstable);
        assert_eq!(
            qos_class(&pod(vec![container(&[("cpu", "50m"), ("memory", "64Mi")], BOTH)], vec![])),
            QosClass::Burstable
        );
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[("cpu", "1")])], vec![])),
            QosClass::Burstable,
            "memory not limited"
        );
        // One guaranteed container and one without limits.
        assert_eq!(qos_class(&pod(vec![container(BOTH, BOTH), container(&[], &[])], vec![])), QosClass::Burstable);
        // Init containers count too.
        assert_eq!(qos_class(&pod(vec![container(BOTH, BOTH)], vec![container(&[], &[])])), QosClass::Burstable);
        assert_eq!(
            qos_class(&pod(vec![container(&[], &[])], vec![container(&[("memory", "1Mi")], &[])])),
            QosClass::Burstable
        );
    }

    #[test]
    fn pod_cgroups_by_class() {
        assert_eq!(pod_cgroup("", &pod(vec![container(BOTH, BOTH)], vec![])), "/kubepods/podu1");
        assert_eq!(pod_cgroup("/", &pod(vec![container(&[("cpu", "1")], &[])], vec![])), "/kubepods/burstable/podu1");
        assert_eq!(
            pod_cgroup("/kubelet-rs/", &pod(vec![container(&[], &[])], vec![])),
            "/kubelet-rs/kubepods/besteffort/podu1"
        );
        assert_eq!(pod_cgroup("node", &pod(vec![container(&[], &[])], vec![])), "/node/kubepods/besteffort/podu1");
        assert_eq!(QosClass::Burstable.as_str(), "Burstable");
    }
}
