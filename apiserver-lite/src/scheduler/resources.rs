//! Resource arithmetic: quantities ("100m", "1Gi", "2e3") as integers, a pod's effective
//! request (containers summed, init containers as a maximum, sidecars added, overhead on
//! top) and a node's allocatable, the numbers the fit filter and the scores compare.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a pod without a cpu or memory request counts as for scoring (not for fitting), as
/// upstream does, so empty pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a number with an optional suffix (such as 100m, 2Gi, 1e3)")]
    Malformed(String),
}

/// A quantity in thousandths of its unit, rounded up (so "1" cpu is 1000, "1Ki" bytes is
/// 1_024_000).
pub fn parse_milli(q: &str) -> Result<i128, QuantityError> {
    let bad = || QuantityError::Malformed(q.to_string());
    let s = q.trim();
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." {
        return Err(bad());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    if digits.len() > 30 {
        return Err(bad());
    }
    let mantissa: i128 = digits.parse().map_err(|_| bad())?;
    let (exp2, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    // value * 1000 = mantissa * 2^exp2 * 10^(exp10 + 3) / 10^frac_digits
    let scale = exp10 + 3 - frac_part.len() as i32;
    if !(-40..=30).contains(&scale) {
        return Err(bad());
    }
    let mut numerator = mantissa.checked_mul(1i128 << exp2).ok_or_else(bad)?;
    let mut denominator: i128 = 1;
    if scale >= 0 {
        numerator = numerator.checked_mul(10i128.pow(scale as u32)).ok_or_else(bad)?;
    } else {
        denominator = 10i128.pow((-scale) as u32);
    }
    let value = (numerator + denominator - 1) / denominator;
    Ok(if negative { -value } else { value })
}

fn units(q: &Quantity) -> i64 {
    // Rounded up to whole units: a request of 0.5 byte still needs one.
    parse_milli(&q.0).map(|m| ((m + 999).div_euclid(1000)).clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
}

fn millis(q: &Quantity) -> i64 {
    parse_milli(&q.0).map(|m| m.clamp(0, i64::MAX as i128) as i64).unwrap_or(0)
}

/// Resources the scheduler accounts for: cpu (millicores), memory and ephemeral storage
/// (bytes), the pod count, and extended resources (`example.com/gpu`, hugepages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

/// Extended resources are the ones with a domain prefix (`nvidia.com/gpu`) and hugepages;
/// others (e.g. attachable volume counts) are not the fit filter's business.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests."))
}

impl Resources {
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = millis(q),
                "memory" => r.memory = units(q),
                "ephemeral-storage" => r.ephemeral_storage = units(q),
                "pods" => r.pods = units(q),
                n if is_scalar(n) => {
                    r.scalar.insert(n.to_string(), units(q));
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// A container's requests; a resource with only a limit requests its limit (the API's
/// defaulting does the same, this covers objects stored without it).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else { return Resources::default() };
    let mut list = res.limits.clone().unwrap_or_default();
    list.extend(res.requests.clone().unwrap_or_default());
    Resources::from_list(&list)
}

/// The cpu and memory a container counts as for scoring: its request, or the defaults.
fn container_nonzero(c: &Container) -> Resources {
    let r = container_requests(c);
    let requested = |name: &str| {
        c.resources.as_ref().is_some_and(|res| res.requests.as_ref().is_some_and(|m| m.contains_key(name)) || res.limits.as_ref().is_some_and(|m| m.contains_key(name)))
    };
    Resources {
        milli_cpu: if requested("cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU },
        memory: if requested("memory") { r.memory } else { DEFAULT_MEMORY },
        ..Default::default()
    }
}

fn effective(spec: &PodSpec, per_container: fn(&Container) -> Resources) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&per_container(c));
    }
    // Init containers run one at a time, each beside the sidecars (restartPolicy Always
    // init containers) started before it; sidecars also run beside the app containers.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sum.add(&r);
            sidecars.add(&r);
            init_peak.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak.max_with(&during);
        }
    }
    sum.max_with(&init_peak);
    if let Some(overhead) = &spec.overhead {
        sum.add(&Resources::from_list(overhead));
    }
    sum
}

/// What a pod takes from a node for fitting, including one of the node's pod slots.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut r = effective(spec, container_requests);
    r.pods = 1;
    r
}

/// The cpu and memory a pod counts as for scoring.
pub fn pod_nonzero(spec: &PodSpec) -> (i64, i64) {
    let r = effective(spec, container_nonzero);
    (r.milli_cpu, r.memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1").unwrap(), 1000);
        assert_eq!(parse_milli("1.5").unwrap(), 1500);
        assert_eq!(parse_milli("1Ki").unwrap(), 1_024_000);
        assert_eq!(parse_milli("2Gi").unwrap(), 2 * (1i128 << 30) * 1000);
        assert_eq!(parse_milli("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_milli("1k").unwrap(), 1_000_000);
        assert_eq!(parse_milli("0.1m").unwrap(), 1, "rounded up");
        assert_eq!(parse_milli("500n").unwrap(), 1);
        assert!(parse_milli("abc").is_err());
        assert!(parse_milli("1Qi").is_err());
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_requests_sum_containers_max_init_and_add_overhead() {
        let s = spec(serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m", "example.com/gpu": "1"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}],
            "overhead": {"cpu": "10m"},
        }));
        let r = pod_requests(&s);
        assert_eq!(r.milli_cpu, 1010, "the init container's 1 cpu is the peak, plus overhead");
        assert_eq!(r.memory, 64 << 20);
        assert_eq!(r.pods, 1);
        assert_eq!(r.scalar["example.com/gpu"], 1);
    }

    #[test]
    fn sidecars_run_beside_the_app_containers() {
        let s = spec(serde_json::json!({
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "once", "resources": {"requests": {"cpu": "120m"}}},
            ],
        }));
        assert_eq!(pod_requests(&s).milli_cpu, 170, "the one-shot init (120m) runs beside the sidecar (50m)");
    }

    #[test]
    fn empty_pods_count_as_defaults_for_scoring() {
        let s = spec(serde_json::json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}));
        assert_eq!(pod_nonzero(&s), (DEFAULT_MILLI_CPU + 1000, 2 * DEFAULT_MEMORY));
        assert_eq!(pod_requests(&s).memory, 0);
    }
}
