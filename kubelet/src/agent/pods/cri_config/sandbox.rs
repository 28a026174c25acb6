//! The sandbox config: metadata, hostname, log directory, DNS, host port mappings, labels
//! and annotations, and the Linux part (cgroup parent, sysctls, security context, resources).

use std::collections::HashMap;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::{ConfigError, SandboxContext, dns, invalid, labels, resources, security};

/// The longest hostname the kernel takes.
const MAX_HOSTNAME: usize = 63;

pub fn sandbox_config(pod: &Pod, ctx: &SandboxContext) -> Result<cri::PodSandboxConfig, ConfigError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if name.is_empty() || uid.is_empty() {
        return Err(invalid("metadata", "the pod needs a name and a uid"));
    }
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    Ok(cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: ctx.attempt,
        }),
        // A host-network pod keeps the node's hostname.
        hostname: if host_network { String::new() } else { hostname(pod, &ctx.dns.cluster_domain)? },
        log_directory: ctx.log_directory.to_string_lossy().into_owned(),
        dns_config: Some(dns::pod_dns(pod, &ctx.dns)?),
        port_mappings: port_mappings(pod)?,
        labels: sandbox_labels(pod),
        annotations: pod.metadata.annotations.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: ctx.cgroup_parent.clone(),
            security_context: Some(security::sandbox_security_context(pod, &ctx.seccomp_root)?),
            sysctls: sysctls(pod),
            overhead: resources::overhead(pod),
            resources: resources::pod_resources(pod),
        }),
        windows: None,
    })
}

/// The pod's labels and the kubelet's (which win).
fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut out: HashMap<String, String> =
        pod.metadata.labels.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(labels::POD_NAME.into(), pod.metadata.name.clone().unwrap_or_default());
    out.insert(labels::POD_NAMESPACE.into(), pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()));
    out.insert(labels::POD_UID.into(), pod.metadata.uid.clone().unwrap_or_default());
    out
}

/// `spec.hostname`, else the pod's name cut to 63 characters (without a trailing `-` or
/// `.`); with setHostnameAsFQDN and a subdomain, `<hostname>.<subdomain>.<ns>.svc.<domain>`.
pub fn hostname(pod: &Pod, cluster_domain: &str) -> Result<String, ConfigError> {
    let spec = pod.spec.as_ref();
    let mut host = match spec.and_then(|s| s.hostname.as_deref()).filter(|h| !h.is_empty()) {
        Some(h) => h.to_string(),
        None => {
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let cut = &name[..name.len().min(MAX_HOSTNAME)];
            cut.trim_end_matches(['-', '.']).to_string()
        }
    };
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or_default();
    let domain = cluster_domain.trim_end_matches('.');
    if spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false) && !subdomain.is_empty() && !domain.is_empty() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        host = format!("{host}.{subdomain}.{ns}.svc.{domain}");
        if host.len() > 64 {
            return Err(invalid("spec.setHostnameAsFQDN", format!("the FQDN {host:?} is longer than 64 characters")));
        }
    }
    Ok(host)
}

/// The app containers' ports that ask for a host port.
fn port_mappings(pod: &Pod) -> Result<Vec<cri::PortMapping>, ConfigError> {
    let mut out: Vec<cri::PortMapping> = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => cri::Protocol::Tcp,
                "UDP" => cri::Protocol::Udp,
                "SCTP" => cri::Protocol::Sctp,
                other => {
                    return Err(invalid(
                        format!("container {:?} ports.protocol", c.name),
                        format!("{other:?} is not TCP, UDP or SCTP"),
                    ));
                }
            };
            let mapping = cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            };
            // The same port twice (two containers declaring it) is one mapping.
            if !out.contains(&mapping) {
                out.push(mapping);
            }
        }
    }
    Ok(out)
}

/// `securityContext.sysctls`, names in dotted form (`net/ipv4/ip_forward` is accepted as
/// the kernel's path spelling, as upstream).
fn sysctls(pod: &Pod) -> HashMap<String, String> {
    let list = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|s| s.sysctls.as_ref());
    list.into_iter().flatten().map(|s| (dotted(&s.name), s.value.clone())).collect()
}

/// When the first separator is `/`, the name is in path form: `/` and `.` swap.
fn dotted(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}
