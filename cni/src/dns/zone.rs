//! The cluster zone (`cluster.local` by default): its apex, TTL and SOA, and the names the
//! Kubernetes DNS specification gives services and endpoints inside it.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::ProtoError;
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};

use super::DnsError;

/// The kubelet's default `clusterDomain`.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// CoreDNS's kubernetes plugin answers with 5 s: short, because endpoints churn.
pub const DEFAULT_TTL: u32 = 5;

/// The zone the cluster DNS is authoritative for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    apex: Name,
    ttl: u32,
}

impl Zone {
    /// `domain` as the kubelet's `clusterDomain` spells it (`cluster.local`, a trailing dot
    /// allowed); answers carry `ttl` seconds.
    pub fn new(domain: &str, ttl: u32) -> Result<Self, DnsError> {
        let invalid = |reason: String| DnsError::InvalidDomain { domain: domain.to_string(), reason };
        let trimmed = domain.trim().trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(invalid("it is empty".to_string()));
        }
        let mut apex = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?.to_lowercase();
        apex.set_fqdn(true);
        Ok(Self { apex, ttl })
    }

    /// The zone's apex, lowercase and fully qualified (`cluster.local.`).
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// `<svc>.<ns>.svc.<zone>`.
    pub fn service_name(&self, namespace: &str, service: &str) -> Result<Name, ProtoError> {
        Name::from_labels([service, namespace, "svc"])?.append_domain(&self.apex)
    }

    /// The SOA that goes in the authority section of negative answers; its minimum (the
    /// negative-caching TTL) is the zone's TTL so a new service is found within seconds.
    pub(crate) fn soa(&self, serial: u32) -> Record {
        let label = |l: &str| Name::from_labels([l]).and_then(|n| n.append_domain(&self.apex));
        let mname = Name::from_labels(["ns", "dns"]).and_then(|n| n.append_domain(&self.apex)).unwrap_or_else(|_| self.apex.clone());
        let rname = label("hostmaster").unwrap_or_else(|_| self.apex.clone());
        let soa = SOA::new(mname, rname, serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(self.apex.clone(), self.ttl, RData::SOA(soa))
    }
}

/// An address as one DNS label, as CoreDNS spells endpoint and pod names: `10-1-2-3`,
/// `fd00--1`.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The inverse of [`dashed`]; `None` when the label is not an address.
pub fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse() {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse().ok().map(IpAddr::V6)
}

/// A serial that grows with each rebuild of the records, as the SOA wants.
pub(crate) fn serial_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_is_lowercase_fqdn_with_or_without_trailing_dot() {
        assert_eq!(Zone::new("Cluster.Local", 5).unwrap().apex().to_ascii(), "cluster.local.");
        assert_eq!(Zone::new("cluster.local.", 5).unwrap().apex().to_ascii(), "cluster.local.");
        assert!(Zone::new("", 5).is_err());
        assert!(Zone::new(" . ", 5).is_err());
    }

    #[test]
    fn service_name_follows_the_spec() {
        let zone = Zone::new("cluster.local", 5).unwrap();
        assert_eq!(zone.service_name("default", "web").unwrap().to_ascii(), "web.default.svc.cluster.local.");
    }

    #[test]
    fn dashed_round_trips() {
        for ip in ["10.1.2.3", "fd00::1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed(&dashed(ip)), Some(ip));
        }
        assert_eq!(dashed("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(undashed("web"), None);
    }
}
