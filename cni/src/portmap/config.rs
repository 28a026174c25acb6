//! The portmap plugin's own configuration and the validation of the `portMappings` it is
//! given, in one pass that reports every bad mapping (error code 7).

use std::net::IpAddr;

use serde::Deserialize;

use crate::firewall::{PortForward, PortmapOptions, Protocol};
use crate::spec::{CniResult, Error, ErrorCode, NetConf, PortMapping};

/// The fields of the plugin's configuration that it reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortmapConf {
    #[serde(default = "yes")]
    pub snat: bool,
    #[serde(default)]
    pub masq_all: bool,
    /// `"nftables"` or `"iptables"`; absent: nftables when `nft` works, else iptables.
    #[serde(default)]
    pub backend: Option<String>,
    // Reference options we do not implement; refused rather than silently ignored, since a
    // user of conditions expects narrower rules than we would write.
    #[serde(default, rename = "conditionsV4")]
    conditions_v4: Option<serde_json::Value>,
    #[serde(default, rename = "conditionsV6")]
    conditions_v6: Option<serde_json::Value>,
    #[serde(default)]
    external_set_mark_chain: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

impl PortmapConf {
    pub fn from_netconf(conf: &NetConf) -> Result<PortmapConf, Error> {
        let pc: PortmapConf = conf.fields()?;
        for (field, value) in [("conditionsV4", &pc.conditions_v4), ("conditionsV6", &pc.conditions_v6), ("externalSetMarkChain", &pc.external_set_mark_chain)] {
            if value.as_ref().is_some_and(|v| !v.is_null()) {
                return Err(Error::new(ErrorCode::UnsupportedField, format!("krs-portmap does not support {field:?}")));
            }
        }
        if let Some(b) = pc.backend.as_deref().filter(|b| !matches!(*b, "nftables" | "iptables")) {
            return Err(Error::invalid_config(format!("invalid \"backend\" {b:?}: expected \"nftables\" or \"iptables\"")));
        }
        Ok(pc)
    }

    pub fn options(&self) -> PortmapOptions {
        PortmapOptions { snat: self.snat, masq_all: self.masq_all }
    }
}

/// The container's addresses from the previous result: those on interfaces inside the
/// sandbox, or with no interface named.
pub fn container_ips(prev: &CniResult) -> Vec<IpAddr> {
    prev.ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| prev.interfaces.get(i).is_some_and(|iface| iface.sandbox.is_some())))
        .map(|ip| ip.address.addr())
        .collect()
}

/// Every mapping checked, then each paired with each container address of its family.
pub fn forwards(mappings: &[PortMapping], container_ips: &[IpAddr]) -> Result<Vec<PortForward>, Error> {
    let mut problems = Vec::new();
    let mut parsed = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        let at = format!("portMappings[{i}]");
        if m.host_port == 0 {
            problems.push(format!("{at}: hostPort must be 1-65535"));
        }
        if m.container_port == 0 {
            problems.push(format!("{at}: containerPort must be 1-65535"));
        }
        let protocol = match m.protocol.to_ascii_lowercase().as_str() {
            "tcp" | "" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "sctp" => Some(Protocol::Sctp),
            other => {
                problems.push(format!("{at}: unknown protocol {other:?}: expected tcp, udp or sctp"));
                None
            }
        };
        let host_ip = match m.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => Some(None),
            s => match s.parse::<IpAddr>() {
                Ok(ip) => Some(Some(ip)),
                Err(_) => {
                    problems.push(format!("{at}: hostIP {s:?} is not an IP address"));
                    None
                }
            },
        };
        if let (Some(protocol), Some(host_ip)) = (protocol, host_ip) {
            parsed.push((m, protocol, host_ip));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid_config(format!("invalid port mappings: {}", problems.join("; "))));
    }
    let mut out = Vec::new();
    for (m, protocol, host_ip) in parsed {
        for &container_ip in container_ips {
            if host_ip.is_some_and(|h| h.is_ipv4() != container_ip.is_ipv4()) {
                continue;
            }
            out.push(PortForward { host_ip, host_port: m.host_port, container_ip, container_port: m.container_port, protocol });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: u16, container: u16, protocol: &str, host_ip: &str) -> PortMapping {
        PortMapping { host_port: host, container_port: container, protocol: protocol.into(), host_ip: host_ip.into() }
    }

    fn netconf(extra: &str) -> NetConf {
        NetConf::parse(format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"krs-portmap"{extra}}}"#).as_bytes()).unwrap()
    }

    #[test]
    fn defaults_and_refusals() {
        let pc = PortmapConf::from_netconf(&netconf("")).unwrap();
        assert_eq!((pc.snat, pc.masq_all, pc.backend), (true, false, None));
        let pc = PortmapConf::from_netconf(&netconf(r#","snat":false,"masqAll":true,"backend":"iptables""#)).unwrap();
        assert_eq!(pc.options(), PortmapOptions { snat: false, masq_all: true });
        assert_eq!(PortmapConf::from_netconf(&netconf(r#","backend":"pf""#)).unwrap_err().code, ErrorCode::InvalidNetworkConfig);
        assert_eq!(PortmapConf::from_netconf(&netconf(r#","conditionsV4":["-s","1.2.3.4"]"#)).unwrap_err().code, ErrorCode::UnsupportedField);
    }

    #[test]
    fn every_bad_mapping_is_reported_at_once() {
        let err = forwards(&[mapping(0, 80, "tcp", ""), mapping(80, 80, "icmp", "nope"), mapping(1, 2, "udp", "")], &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig);
        for needle in ["portMappings[0]: hostPort", "portMappings[1]: unknown protocol \"icmp\"", "portMappings[1]: hostIP \"nope\""] {
            assert!(err.msg.contains(needle), "{} lacks {needle}", err.msg);
        }
    }

    #[test]
    fn pairs_mappings_with_addresses_of_their_family() {
        let ips: Vec<IpAddr> = vec!["10.22.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        let f = forwards(&[mapping(8080, 80, "TCP", ""), mapping(53, 53, "udp", "10.0.0.1")], &ips).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!((f[2].host_ip, f[2].container_ip, f[2].protocol), (Some("10.0.0.1".parse().unwrap()), ips[0], Protocol::Udp));
    }

    #[test]
    fn container_ips_skip_host_side_interfaces() {
        let prev = CniResult::from_json(&serde_json::json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.22.0.1/16","interface":0},{"address":"10.22.0.5/16","interface":1},{"address":"fd00::5/64"}]}))
        .unwrap()
        .1;
        assert_eq!(container_ips(&prev), vec!["10.22.0.5".parse::<IpAddr>().unwrap(), "fd00::5".parse().unwrap()]);
    }
}
