//! Chain names: fixed ones for the entry points, and per service port and endpoint a prefix
//! plus a stable hash of what the chain is for (iptables limits names to 28 characters, and
//! a name must not change between runs so a restarted proxy recognises its own chains).

use crate::proxy::model::ServicePortName;
use crate::proxy::Endpoint;

pub const SERVICES: &str = "KRS-SERVICES";
pub const NODEPORTS: &str = "KRS-NODEPORTS";
pub const POSTROUTING: &str = "KRS-POSTROUTING";
pub const MARK_MASQ: &str = "KRS-MARK-MASQ";
/// Masquerades sources outside every cluster CIDR (only when there are several CIDRs; one
/// fits in a single `! -s` match).
pub const OFF_CLUSTER: &str = "KRS-OFF-CLUSTER";
/// Filter table: rejects or drops new connections to service ports without endpoints.
pub const FILTER_SERVICES: &str = "KRS-FILTER-SERVICES";
/// Filter table: drops outside packets to 127.0.0.0/8, which `route_localnet` (needed for
/// node ports on localhost) would otherwise let in.
pub const FILTER_LOCALNET: &str = "KRS-FILTER-LOCALNET";

/// The nat chains every ruleset has, whatever its services.
pub const NAT_FIXED: [&str; 4] = [SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ];
pub const FILTER_FIXED: [&str; 2] = [FILTER_SERVICES, FILTER_LOCALNET];

/// Prefixes of the per service port and per endpoint chains. `KRS-CNI-` (the CNI plugins'
/// own chains) is deliberately not among them.
const HASHED: [&str; 4] = ["KRS-SVC-", "KRS-SVL-", "KRS-EXT-", "KRS-SEP-"];

/// The picker among the endpoints for cluster IP traffic.
pub fn service(name: &ServicePortName) -> String {
    format!("KRS-SVC-{}", hash(&name.to_string()))
}

/// The picker among the endpoints for external traffic, when they differ from the cluster
/// ones (a Local traffic policy on one side only).
pub fn service_external_picker(name: &ServicePortName) -> String {
    format!("KRS-SVL-{}", hash(&name.to_string()))
}

/// Node port, external IP and load balancer traffic: masquerade decision, then a picker.
pub fn external(name: &ServicePortName) -> String {
    format!("KRS-EXT-{}", hash(&name.to_string()))
}

/// One endpoint of one service port: hairpin masquerade and the DNAT.
pub fn endpoint(name: &ServicePortName, ep: &Endpoint) -> String {
    format!("KRS-SEP-{}", hash(&format!("{name} {}:{}", ep.ip, ep.port)))
}

/// Whether a chain found in the kernel is one this backend makes (and so may delete).
pub fn is_ours(chain: &str) -> bool {
    NAT_FIXED.contains(&chain) || FILTER_FIXED.contains(&chain) || chain == OFF_CLUSTER || HASHED.iter().any(|p| chain.starts_with(p))
}

/// The stable hash (`proxy::hash`) in 13 base32 characters: with a `KRS-XXX-` prefix, it
/// fits iptables' 28-character chain names.
fn hash(text: &str) -> String {
    crate::proxy::hash::base32(text, 13)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Protocol;

    fn name(n: &str) -> ServicePortName {
        ServicePortName { namespace: "default".into(), name: n.into(), port: String::new(), protocol: Protocol::Tcp }
    }

    #[test]
    fn names_are_stable_short_and_distinct() {
        let a = service(&name("a"));
        assert_eq!(a, service(&name("a")));
        assert_ne!(a, service(&name("b")));
        assert!(a.len() <= 28, "{a}");
        assert_eq!(a, "KRS-SVC-".to_string() + &hash("default/a/tcp"));
        // Pinned: a change would orphan the chains of a running node on upgrade.
        assert_eq!(hash(""), "FZIECCS44U4XM");
    }

    #[test]
    fn only_our_chains_are_ours() {
        assert!(is_ours("KRS-SERVICES") && is_ours("KRS-SEP-ABC") && is_ours("KRS-FILTER-SERVICES"));
        assert!(!is_ours("KRS-CNI-HOSTPORTS") && !is_ours("KUBE-SERVICES") && !is_ours("PREROUTING"));
    }
}
