//! Requests and limits as CRI `LinuxContainerResources`, with the upstream kubelet's math:
//! cpu shares from the request (`milli * 1024 / 1000`, at least 2; a limit without a
//! request counts as the request), the CFS quota from the limit (period 100 ms, quota
//! `milli * 100`, at least 1 ms), the memory limit in bytes, hugepage limits, and the OOM
//! score adjustment by QoS class.

use std::collections::BTreeMap;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;
use crate::agent::pods::qos::{QosClass, qos_class};

pub const MIN_SHARES: i64 = 2;
pub const MAX_SHARES: i64 = 262_144;
/// The CFS period the kubelet uses (100 ms, in µs).
pub const CPU_PERIOD: i64 = 100_000;
/// The smallest quota the kernel accepts (1 ms, in µs).
pub const MIN_QUOTA: i64 = 1_000;
pub const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
pub const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// cpu shares for a request in millicores.
pub fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota for a limit in millicores over `period`; 0 (none) for no limit.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * period / 1000).max(MIN_QUOTA)
}

fn get<'a>(list: Option<&'a BTreeMap<String, Quantity>>, name: &str) -> Option<&'a Quantity> {
    list.and_then(|l| l.get(name))
}

/// cpu request and limit (millicores) and memory limit (bytes) as CRI resources.
pub fn linux_resources(
    cpu_request: Option<i64>,
    cpu_limit: Option<i64>,
    memory_limit: i64,
) -> cri::LinuxContainerResources {
    let cpu_shares = match (cpu_request, cpu_limit) {
        (None, Some(limit)) => milli_cpu_to_shares(limit),
        (request, _) => milli_cpu_to_shares(request.unwrap_or(0)),
    };
    let (cpu_period, cpu_quota) = match cpu_limit.filter(|l| *l > 0) {
        Some(limit) => (CPU_PERIOD, milli_cpu_to_quota(limit, CPU_PERIOD)),
        None => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_shares,
        cpu_period,
        cpu_quota,
        memory_limit_in_bytes: memory_limit,
        ..Default::default()
    }
}

/// `hugepages-2Mi` → `2MB`, the page size spelling runtimes expect.
fn page_size(resource: &str) -> Option<String> {
    let size = resource.strip_prefix("hugepages-")?;
    let bytes = quantity::value(&Quantity(size.to_string()));
    if bytes <= 0 {
        return None;
    }
    let units = [("PB", 1i64 << 50), ("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];
    units
        .iter()
        .find(|(_, u)| bytes % u == 0)
        .map(|(name, u)| format!("{}{name}", bytes / u))
        .or(Some(format!("{bytes}B")))
}

/// The container's resources, OOM score included.
pub fn container_resources(
    pod: &Pod,
    container: &Container,
    node_memory_capacity: i64,
) -> cri::LinuxContainerResources {
    let res = container.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let mut r = linux_resources(
        get(requests, "cpu").map(quantity::milli_value),
        get(limits, "cpu").map(quantity::milli_value),
        get(limits, "memory").map(quantity::value).unwrap_or(0),
    );
    r.oom_score_adj = oom_score_adj(pod, container, node_memory_capacity);
    for (name, q) in limits.into_iter().flatten() {
        if let Some(page_size) = page_size(name) {
            r.hugepage_limits.push(cri::HugepageLimit { page_size, limit: quantity::value(q).max(0) as u64 });
        }
    }
    r
}

/// The OOM score adjustment: -997 for Guaranteed and node-critical pods, 1000 for
/// BestEffort, and for Burstable `1000 - 1000 * memory request / node memory`, kept within
/// 3..=999 so that it stays between the other two classes. A sidecar gets no more than the
/// lowest of the pod's app containers, so it is not killed before what it serves.
pub fn oom_score_adj(pod: &Pod, container: &Container, node_memory_capacity: i64) -> i64 {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.priority_class_name.as_deref()) == Some("system-node-critical") {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => return GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => return BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {}
    }
    let burstable = |c: &Container| {
        let request =
            get(c.resources.as_ref().and_then(|r| r.requests.as_ref()), "memory").map(quantity::value).unwrap_or(0);
        let adj = if node_memory_capacity > 0 {
            1000 - (1000 * request as i128 / node_memory_capacity as i128) as i64
        } else {
            BEST_EFFORT_OOM_SCORE_ADJ
        };
        adj.clamp(1000 + GUARANTEED_OOM_SCORE_ADJ, BEST_EFFORT_OOM_SCORE_ADJ - 1)
    };
    let own = burstable(container);
    let is_sidecar = container.restart_policy.as_deref() == Some("Always")
        && spec.is_some_and(|s| s.init_containers.iter().flatten().any(|c| c.name == container.name));
    if is_sidecar && let Some(lowest) = spec.and_then(|s| s.containers.iter().map(burstable).min()) {
        return own.min(lowest);
    }
    own
}

/// What the pod as a whole requests and limits (`LinuxPodSandboxConfig.resources`):
/// the larger of the app containers' (sidecars included) sum and the largest init
/// container's, plus the pod overhead. Only a pod whose every container limits cpu (or
/// memory) gets a pod cpu (or memory) limit.
pub fn pod_resources(pod: &Pod) -> Option<cri::LinuxContainerResources> {
    let spec = pod.spec.as_ref()?;
    let all_limit = |name: &str| {
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).all(|c| {
            get(c.resources.as_ref().and_then(|r| r.limits.as_ref()), name)
                .is_some_and(|q| quantity::milli_value(q) > 0)
        })
    };
    let total = |name: &str, limits: bool, to: fn(&Quantity) -> i64| -> i64 {
        let of = |c: &Container| {
            let r = c.resources.as_ref();
            let list = if limits { r.and_then(|r| r.limits.as_ref()) } else { r.and_then(|r| r.requests.as_ref()) };
            // A request not given is the limit, as the API server defaults it.
            let q =
                get(list, name).or_else(|| if limits { None } else { get(r.and_then(|r| r.limits.as_ref()), name) });
            q.map(to).unwrap_or(0)
        };
        let inits = spec.init_containers.iter().flatten();
        let sidecars: i64 = inits.clone().filter(|c| c.restart_policy.as_deref() == Some("Always")).map(of).sum();
        let apps: i64 = spec.containers.iter().map(of).sum::<i64>() + sidecars;
        let largest_init = inits.filter(|c| c.restart_policy.as_deref() != Some("Always")).map(of).max().unwrap_or(0);
        apps.max(largest_init) + get(spec.overhead.as_ref(), name).map(to).unwrap_or(0)
    };
    let cpu_request = total("cpu", false, quantity::milli_value);
    let cpu_limit = all_limit("cpu").then(|| total("cpu", true, quantity::milli_value));
    let memory_limit = if all_limit("memory") { total("memory", true, quantity::value) } else { 0 };
    Some(linux_resources((cpu_request > 0).then_some(cpu_request), cpu_limit, memory_limit))
}

/// The pod overhead (`spec.overhead`) as resources, when the pod has one.
pub fn overhead(pod: &Pod) -> Option<cri::LinuxContainerResources> {
    let o = pod.spec.as_ref()?.overhead.as_ref()?;
    let cpu = o.get("cpu").map(quantity::milli_value);
    let mut r = linux_resources(cpu, cpu, o.get("memory").map(quantity::value).unwrap_or(0));
    if cpu.is_none() {
        r.cpu_shares = 0;
    }
    Some(r)
}
