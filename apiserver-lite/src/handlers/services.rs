//! What a Service gets from the API server: a cluster IP from the service CIDR and node ports
//! from 30000-32767, each unique, kept across updates, refused when taken.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::Api;
use super::status::ApiError;
use crate::resources::Resource;

pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

pub(crate) fn allocates(r: &Resource) -> bool {
    r.group.is_empty() && r.plural == "services"
}

fn invalid(svc: &Value, field: &str, message: String) -> ApiError {
    ApiError::invalid("", "Service", svc["metadata"]["name"].as_str().unwrap_or(""), &[("FieldValueInvalid".into(), field.into(), message)])
}

/// Cluster IPs and node ports every other service holds.
async fn in_use(api: &Api, svc: &Value) -> Result<(HashSet<String>, HashSet<u64>), ApiError> {
    let services = api.registry.get("", "v1", "services").expect("services are built in");
    let me = (svc["metadata"]["namespace"].as_str().unwrap_or(""), svc["metadata"]["name"].as_str().unwrap_or(""));
    let list = api.store.list(&services.key_prefix(None), None, 0, 0).await.map_err(|e| ApiError::from_storage(e, "", "services", ""))?;
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    for kv in list.items {
        let o: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if (o["metadata"]["namespace"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or("")) == me {
            continue;
        }
        for ip in o["spec"]["clusterIPs"].as_array().into_iter().flatten().chain(std::iter::once(&o["spec"]["clusterIP"])) {
            if let Some(ip) = ip.as_str() {
                ips.insert(ip.to_string());
            }
        }
        for p in o["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_u64() {
                ports.insert(n);
            }
        }
    }
    Ok((ips, ports))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the kernel's random source");
    u32::from_le_bytes(b)
}

fn in_cidr(ip: Ipv4Addr, (net, bits): (Ipv4Addr, u8)) -> bool {
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// A free address of the CIDR: randomly from the upper band first (the lower one is kept for
/// addresses users pick, such as the DNS service's .10), as kube-apiserver does.
fn pick_ip((net, bits): (Ipv4Addr, u8), used: &HashSet<String>) -> Option<Ipv4Addr> {
    let size = 1u32 << (32 - bits);
    let base = u32::from(net);
    let lower = (size / 16).clamp(16, 256);
    for (from, to) in [(lower, size - 1), (2, lower.min(size - 1))] {
        if to <= from {
            continue;
        }
        let span = to - from;
        let start = random_u32() % span;
        for i in 0..span {
            let ip = Ipv4Addr::from(base + from + (start + i) % span);
            if !used.contains(&ip.to_string()) {
                return Some(ip);
            }
        }
    }
    None
}

/// Give `svc` its cluster IP and node ports (keeping those of `old`), or refuse taken ones.
pub(crate) async fn allocate(api: &Api, svc: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
    let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
    if kind == "ExternalName" {
        return Ok(());
    }
    let (ips, ports) = in_use(api, svc).await?;
    let requested = svc["spec"]["clusterIP"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let previous = old.and_then(|o| o["spec"]["clusterIP"].as_str()).filter(|s| !s.is_empty()).map(str::to_string);
    let ip = match (requested, previous) {
        (Some(r), Some(p)) if r != p => return Err(invalid(svc, "spec.clusterIPs[0]", format!("Invalid value: [\"{r}\"]: may not change once set"))),
        (None, Some(p)) => p,
        (Some(r), _) if r == "None" => r,
        (Some(r), prev) => {
            let parsed: Ipv4Addr = r.parse().map_err(|_| invalid(svc, "spec.clusterIPs[0]", format!("Invalid value: \"{r}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")))?;
            if prev.is_none() {
                if !in_cidr(parsed, api.service_cidr) {
                    let (net, bits) = api.service_cidr;
                    return Err(invalid(svc, "spec.clusterIPs", format!("Invalid value: [\"{r}\"]: failed to allocate IP {r}: the provided IP ({r}) is not in the valid range. The range of valid IPs is {net}/{bits}")));
                }
                if ips.contains(&r) {
                    return Err(invalid(svc, "spec.clusterIPs", format!("Invalid value: [\"{r}\"]: failed to allocate IP {r}: provided IP is already allocated")));
                }
            }
            r
        }
        (None, None) => pick_ip(api.service_cidr, &ips).ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?.to_string(),
    };
    svc["spec"]["clusterIP"] = json!(ip);
    svc["spec"]["clusterIPs"] = json!([ip]);

    let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
    let old_ports: Vec<Value> = old.and_then(|o| o["spec"]["ports"].as_array().cloned()).unwrap_or_default();
    let mut taken = ports;
    let Some(svc_ports) = svc["spec"]["ports"].as_array_mut() else { return Ok(()) };
    for (i, p) in svc_ports.iter_mut().enumerate() {
        if !wants_node_ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
            continue;
        }
        let port = match p["nodePort"].as_u64().filter(|n| *n != 0) {
            Some(n) => {
                let kept = old_ports.iter().any(|o| o["nodePort"].as_u64() == Some(n));
                if !kept {
                    if !NODE_PORTS.contains(&(n as u16)) || n > u16::MAX as u64 {
                        return Err(ApiError::invalid("", "Service", "", &[("FieldValueInvalid".into(), format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is not in the valid range. The range of valid ports is 30000-32767"))]));
                    }
                    if taken.contains(&n) {
                        return Err(ApiError::invalid("", "Service", "", &[("FieldValueInvalid".into(), format!("spec.ports[{i}].nodePort"), format!("Invalid value: {n}: provided port is already allocated"))]));
                    }
                }
                n
            }
            None => {
                let same = old_ports.iter().find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"]).and_then(|o| o["nodePort"].as_u64());
                match same {
                    Some(n) => n,
                    None => {
                        let span = (*NODE_PORTS.end() - *NODE_PORTS.start()) as u32 + 1;
                        let start = random_u32() % span;
                        (0..span)
                            .map(|k| *NODE_PORTS.start() as u64 + ((start + k) % span) as u64)
                            .find(|n| !taken.contains(n))
                            .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?
                    }
                }
            }
        };
        taken.insert(port);
        p["nodePort"] = json!(port);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_come_from_the_upper_band_and_skip_used_ones() {
        let cidr = (Ipv4Addr::new(10, 96, 0, 0), 28);
        let mut used: HashSet<String> = HashSet::new();
        for _ in 0..13 {
            let ip = pick_ip(cidr, &used).expect("room left");
            assert!(in_cidr(ip, cidr));
            assert!(!used.contains(&ip.to_string()));
            assert_ne!(u32::from(ip) & 0xf, 0, "network address never given");
            assert_ne!(u32::from(ip) & 0xf, 0xf, "broadcast address never given");
            used.insert(ip.to_string());
        }
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1), (Ipv4Addr::new(10, 96, 0, 0), 12)));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 255, 1), (Ipv4Addr::new(10, 96, 0, 0), 12)));
    }
}
