//! The kubelet flags that shape the Node, parsed as upstream writes them:
//! `--node-labels=k=v,k2=v2`, `--register-with-taints=key=value:Effect,key2:Effect`,
//! `--system-reserved` / `--kube-reserved` `cpu=500m,memory=1Gi,ephemeral-storage=1Gi,pid=100`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

use super::object::Reserved;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("{flag}: {item:?} is not key=value")]
    NotKeyValue { flag: &'static str, item: String },
    #[error("--register-with-taints: {0:?} is not key[=value]:Effect with Effect NoSchedule, PreferNoSchedule or NoExecute")]
    Taint(String),
    #[error("{flag}: {value:?} is not a quantity (like 500m, 2, 100Mi, 1G)")]
    Quantity { flag: &'static str, value: String },
    #[error("{flag}: unknown resource {name:?} (cpu, memory, ephemeral-storage, pid)")]
    Resource { flag: &'static str, name: String },
}

fn pairs<'a>(flag: &'static str, value: &'a str) -> impl Iterator<Item = Result<(&'a str, &'a str), FlagError>> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(move |item| {
        item.split_once('=').map(|(k, v)| (k.trim(), v.trim())).filter(|(k, _)| !k.is_empty()).ok_or(FlagError::NotKeyValue { flag, item: item.to_string() })
    })
}

/// `--node-labels`.
pub fn labels(value: &str) -> Result<BTreeMap<String, String>, FlagError> {
    pairs("--node-labels", value).map(|p| p.map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// `--register-with-taints`.
pub fn taints(value: &str) -> Result<Vec<Taint>, FlagError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let bad = || FlagError::Taint(item.to_string());
            let (kv, effect) = item.rsplit_once(':').ok_or_else(bad)?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                return Err(bad());
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                return Err(bad());
            }
            Ok(Taint { key: key.to_string(), value, effect: effect.to_string(), time_added: None })
        })
        .collect()
}

/// A quantity in its base unit (bytes, or millicores when `millis`), as Kubernetes writes
/// them: binary (Ki, Mi, Gi, Ti) and decimal (k, M, G, T) suffixes, `m` for thousandths.
pub fn quantity(value: &str, millis: bool) -> Option<u64> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    let base = n * mult * if millis { 1000.0 } else { 1.0 };
    (base >= 0.0).then(|| base.round() as u64)
}

/// `--system-reserved` or `--kube-reserved` (`flag` names which, for errors).
pub fn reserved(flag: &'static str, value: &str) -> Result<Reserved, FlagError> {
    let mut r = Reserved::default();
    for pair in pairs(flag, value) {
        let (name, v) = pair?;
        let q = |millis| quantity(v, millis).ok_or(FlagError::Quantity { flag, value: v.to_string() });
        match name {
            "cpu" => r.cpu_millis = q(true)?,
            "memory" => r.memory_bytes = q(false)?,
            "ephemeral-storage" => r.ephemeral_storage_bytes = q(false)?,
            "pid" => r.pids = q(false)?,
            other => return Err(FlagError::Resource { flag, name: other.to_string() }),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_taints() {
        let l = labels("node-role.kubernetes.io/worker=, zone=a").unwrap();
        assert_eq!(l["node-role.kubernetes.io/worker"], "");
        assert_eq!(l["zone"], "a");
        assert!(labels("novalue").is_err());
        let t = taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap();
        assert_eq!((t[0].key.as_str(), t[0].value.as_deref(), t[0].effect.as_str()), ("dedicated", Some("gpu"), "NoSchedule"));
        assert_eq!((t[1].key.as_str(), t[1].value.as_deref()), ("spot", None));
        assert!(taints("x=y:Sometimes").is_err());
        assert!(taints("x=y").is_err());
    }

    #[test]
    fn quantities_and_reservations() {
        assert_eq!(quantity("500m", true), Some(500));
        assert_eq!(quantity("2", true), Some(2000));
        assert_eq!(quantity("1.5", true), Some(1500));
        assert_eq!(quantity("100Mi", false), Some(100 << 20));
        assert_eq!(quantity("1G", false), Some(1_000_000_000));
        assert_eq!(quantity("lots", false), None);
        let r = reserved("--system-reserved", "cpu=250m,memory=1Gi,ephemeral-storage=2Gi,pid=100").unwrap();
        assert_eq!(r, Reserved { cpu_millis: 250, memory_bytes: 1 << 30, ephemeral_storage_bytes: 2 << 30, pids: 100 });
        assert!(matches!(reserved("--kube-reserved", "gpu=1"), Err(FlagError::Resource { .. })));
        assert!(matches!(reserved("--kube-reserved", "memory=much"), Err(FlagError::Quantity { .. })));
    }
}
