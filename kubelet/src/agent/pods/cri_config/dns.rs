//! A pod's DNS config by its dnsPolicy, as the upstream kubelet builds it:
//! - `ClusterFirst` (the default): the cluster DNS servers only, the searches
//!   `<ns>.svc.<domain> svc.<domain> <domain>` then the host's, and `ndots:5`. A pod on
//!   the host network, or a node without cluster DNS, gets `Default` instead;
//!   `ClusterFirstWithHostNet` keeps cluster DNS on the host network.
//! - `Default`: the node's resolv.conf (servers, searches, options).
//! - `None`: nothing but the pod's `dnsConfig`.
//!
//! The pod's `dnsConfig` is then merged in (servers and searches appended without
//! duplicates, options overriding by name), and the result cut to what resolvers accept:
//! 3 nameservers, 32 search domains of at most 253 characters, 2048 characters in all.

use std::path::Path;

use cri_api::runtime::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::{ConfigError, DnsSettings};

pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;
/// A search domain longer than a DNS name makes some resolvers (glibc 2.28) abort.
const MAX_SEARCH_DOMAIN_LEN: usize = 253;

/// The resolver settings in a resolv.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf text: `nameserver` lines add a server, the last `search` (or
/// `domain`) line gives the searches, `options` lines add options; comments start with
/// `#` or `;`. A nameserver line without an address is an error.
pub fn parse_resolv_conf(text: &str) -> Result<ResolvConf, String> {
    let mut out = ResolvConf::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some((&key, rest)) = fields.split_first() else {
            continue;
        };
        match key {
            "nameserver" => match rest.first() {
                Some(s) => out.servers.push(s.to_string()),
                None => {
                    return Err(format!("line {}: a nameserver line without an address", n + 1));
                }
            },
            "search" | "domain" => {
                out.searches =
                    rest.iter().filter(|s| **s != ".").map(|s| s.trim_end_matches('.').to_string()).collect();
            }
            "options" => {
                for o in rest {
                    merge_option(&mut out.options, o);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read_host(path: &Path) -> Result<ResolvConf, ConfigError> {
    if path.as_os_str().is_empty() {
        return Ok(ResolvConf::default());
    }
    let err = |message: String| ConfigError::ResolvConf { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("reading the node's DNS settings: {e}")))?;
    parse_resolv_conf(&text).map_err(err)
}

/// The option's name: `ndots` of `ndots:5`.
fn option_name(o: &str) -> &str {
    o.split_once(':').map_or(o, |(n, _)| n)
}

/// Adds `option`, replacing one of the same name in place.
fn merge_option(options: &mut Vec<String>, option: &str) {
    match options.iter_mut().find(|o| option_name(o) == option_name(option)) {
        Some(existing) => *existing = option.to_string(),
        None => options.push(option.to_string()),
    }
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

enum Kind {
    Cluster,
    Host,
    None,
}

fn kind(pod: &Pod) -> Result<Kind, ConfigError> {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst") {
        "None" => Ok(Kind::None),
        "ClusterFirstWithHostNet" => Ok(Kind::Cluster),
        "ClusterFirst" if !host_network => Ok(Kind::Cluster),
        "ClusterFirst" | "Default" => Ok(Kind::Host),
        other => Err(super::invalid(
            "spec.dnsPolicy",
            format!("{other:?} is not one of ClusterFirst, ClusterFirstWithHostNet, Default, None"),
        )),
    }
}

/// The pod's DNS config.
pub fn pod_dns(pod: &Pod, settings: &DnsSettings) -> Result<cri::DnsConfig, ConfigError> {
    let mut kind = kind(pod)?;
    if matches!(kind, Kind::Cluster) && settings.cluster_dns.is_empty() {
        // Upstream reports MissingClusterDNS and falls back to the node's settings.
        kind = Kind::Host;
    }
    let mut conf = match kind {
        Kind::None => ResolvConf::default(),
        Kind::Host => read_host(&settings.host_resolv_conf)?,
        Kind::Cluster => {
            let host = read_host(&settings.host_resolv_conf)?;
            let mut searches = Vec::new();
            let domain = settings.cluster_domain.trim_end_matches('.');
            if !domain.is_empty() {
                let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                searches = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_string()];
            }
            push_unique(&mut searches, host.searches);
            ResolvConf {
                servers: settings.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(dc) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut conf.servers, dc.nameservers.iter().flatten().cloned());
        push_unique(&mut conf.searches, dc.searches.iter().flatten().cloned());
        for o in dc.options.iter().flatten() {
            let Some(name) = o.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let option = match o.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            merge_option(&mut conf.options, &option);
        }
    }
    conf.servers.truncate(MAX_NAMESERVERS);
    Ok(cri::DnsConfig { servers: conf.servers, searches: fit_searches(conf.searches), options: conf.options })
}

/// The searches cut to the limits: at most 32, none longer than a DNS name, and the
/// line within 2048 characters (dropping from the end).
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    const HOST: &str = "# generated\nnameserver 192.168.1.1\nnameserver 8.8.8.8 ; second\nsearch home.lan. corp.example\noptions edns0 ndots:2\n";

    fn settings(dir: &tempfile::TempDir, cluster: bool) -> DnsSettings {
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, HOST).unwrap();
        DnsSettings {
            cluster_dns: if cluster { vec!["10.96.0.10".parse().unwrap()] } else { vec![] },
            cluster_domain: "cluster.local".into(),
            host_resolv_conf: path,
        }
    }

    fn pod(policy: Option<&str>, host_network: bool, dns_config: Option<PodDNSConfig>) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("shop".into());
        p.spec = Some(PodSpec {
            dns_policy: policy.map(String::from),
            host_network: Some(host_network),
            dns_config,
            ..Default::default()
        });
        p
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolv_conf_parsing() {
        let c = parse_resolv_conf(HOST).unwrap();
        assert_eq!(c.servers, strings(&["192.168.1.1", "8.8.8.8"]));
        assert_eq!(c.searches, strings(&["home.lan", "corp.example"]));
        assert_eq!(c.options, strings(&["edns0", "ndots:2"]));
        let last = parse_resolv_conf("search a b\nsearch c\noptions ndots:1\noptions ndots:3\n").unwrap();
        assert_eq!(last.searches, strings(&["c"]));
        assert_eq!(last.options, strings(&["ndots:3"]));
        assert!(parse_resolv_conf("nameserver\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn cluster_first_uses_cluster_dns_and_the_namespace_searches() {
        let dir = tempfile::tempdir().unwrap();
        let dns = pod_dns(&pod(None, false, None), &settings(&dir, true)).unwrap();
        assert_eq!(dns.servers, strings(&["10.96.0.10"]));
        assert_eq!(
            dns.searches,
            strings(&["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "home.lan", "corp.example"])
        );
        assert_eq!(dns.options, strings(&["ndots:5"]));
        let explicit = pod_dns(&pod(Some("ClusterFirst"), false, None), &settings(&dir, true)).unwrap();
        assert_eq!(explicit, dns);
    }

    #[test]
    fn host_network_and_missing_cluster_dns_fall_back_to_default() {
        let dir = tempfile::tempdir().unwrap();
        let host = cri::DnsConfig {
            servers: strings(&["192.168.1.1", "8.8.8.8"]),
            searches: strings(&["home.lan", "corp.example"]),
            options: strings(&["edns0", "ndots:2"]),
        };
        assert_eq!(pod_dns(&pod(None, true, None), &settings(&dir, true)).unwrap(), host);
        assert_eq!(pod_dns(&pod(None, false, None), &settings(&dir, false)).unwrap(), host);
        assert_eq!(pod_dns(&pod(Some("Default"), false, None), &settings(&dir, true)).unwrap(), host);
        let with_host_net = pod_dns(&pod(Some("ClusterFirstWithHostNet"), true, None), &settings(&dir, true)).unwrap();
        assert_eq!(with_host_net.servers, strings(&["10.96.0.10"]));
    }

    #[test]
    fn none_is_the_dns_config_only_and_the_dns_config_merges_into_all() {
        let dir = tempfile::tempdir().unwrap();
        let dc = PodDNSConfig {
            nameservers: Some(strings(&["1.1.1.1", "10.96.0.10"])),
            searches: Some(strings(&["extra.example"])),
            options: Some(vec![
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) },
                PodDNSConfigOption { name: Some("edns0".into()), value: None },
            ]),
        };
        let none = pod_dns(&pod(Some("None"), false, Some(dc.clone())), &settings(&dir, true)).unwrap();
        assert_eq!(none.servers, strings(&["1.1.1.1", "10.96.0.10"]));
        assert_eq!(none.searches, strings(&["extra.example"]));
        assert_eq!(none.options, strings(&["ndots:2", "edns0"]));
        let cluster = pod_dns(&pod(None, false, Some(dc)), &settings(&dir, true)).unwrap();
        assert_eq!(cluster.servers, strings(&["10.96.0.10", "1.1.1.1"]), "no duplicates");
        assert_eq!(cluster.searches.last().unwrap(), "extra.example");
        assert_eq!(cluster.options, strings(&["ndots:2", "edns0"]), "the pod's ndots overrides");
    }

    #[test]
    fn limits_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let dc = PodDNSConfig {
            nameservers: Some(strings(&["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"])),
            searches: Some(many.clone()),
            options: None,
        };
        let dns = pod_dns(&pod(Some("None"), false, Some(dc)), &settings(&dir, true)).unwrap();
        assert_eq!(dns.servers.len(), 3);
        assert_eq!(dns.searches, many[..32].to_vec());
        let long: Vec<String> = (0..20).map(|i| format!("{i:0>200}")).collect();
        let fitted = fit_searches(long);
        assert!(fitted.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(fitted.len(), 10);
        assert!(fit_searches(vec!["x".repeat(254), "ok".into()]) == vec!["ok".to_string()]);
    }

    #[test]
    fn unreadable_host_file_names_the_file_and_no_file_means_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(&dir, false);
        s.host_resolv_conf = dir.path().join("missing.conf");
        let err = pod_dns(&pod(None, false, None), &s).unwrap_err();
        assert!(err.to_string().contains("missing.conf"), "{err}");
        s.host_resolv_conf = Default::default();
        assert_eq!(pod_dns(&pod(Some("Default"), false, None), &s).unwrap(), cri::DnsConfig::default());
        let bad = pod(Some("Sometimes"), false, None);
        assert!(pod_dns(&bad, &s).unwrap_err().to_string().starts_with("spec.dnsPolicy"));
    }
}
