//! Names of the per-service-port objects: readable (`svc-<hash>-default/web/http/tcp`) so
//! `nft list` shows which service a chain belongs to, and stable across runs and versions
//! (`proxy::hash`, not std's hasher) so a restart writes the same names.

use std::net::Ipv4Addr;

use crate::proxy::model::{Protocol, ServicePortName};

/// nft limits chain and set names to 255 bytes; keep well under it.
const MAX_NAME: usize = 200;

pub(crate) fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// 40 bits of the name's stable hash (8 base32 characters): the unique part of every name.
fn hash(text: &str) -> String {
    crate::proxy::hash::base32(text, 8)
}

/// `namespace/name/proto[/port]`: the readable tail of a service port's names. Kubernetes
/// names are DNS labels, so every character is one nft accepts in an identifier.
fn readable(name: &ServicePortName) -> String {
    let mut s = format!("{}/{}/{}", name.namespace, name.name, proto(name.protocol));
    if !name.port.is_empty() {
        s.push('/');
        s.push_str(&name.port);
    }
    s
}

fn named(prefix: &str, name: &ServicePortName) -> String {
    let mut s = format!("{prefix}-{}-{}", hash(&name.to_string()), readable(name));
    // Unique by the hash alone, so a cut tail only costs readability (all ASCII: safe to cut).
    s.truncate(MAX_NAME);
    s
}

/// The chain cluster-IP traffic of a service port goes to.
pub(crate) fn service_chain(name: &ServicePortName) -> String {
    named("svc", name)
}

/// The chain node-port, external-IP and load-balancer traffic of a service port goes to.
pub(crate) fn external_chain(name: &ServicePortName) -> String {
    named("ext", name)
}

/// The session-affinity set of one endpoint of a service port (client addresses recently
/// sent there). The timeout is part of the name: a set's timeout cannot be changed in
/// place, so a new timeout makes a new set.
pub(crate) fn affinity_set(name: &ServicePortName, ip: Ipv4Addr, port: u16, timeout: u32) -> String {
    let mut s = format!("aff-{}-{ip}-{port}-{timeout}s-{}", hash(&name.to_string()), readable(name));
    s.truncate(MAX_NAME);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spn(ns: &str, name: &str, port: &str) -> ServicePortName {
        ServicePortName { namespace: ns.into(), name: name.into(), port: port.into(), protocol: Protocol::Tcp }
    }

    #[test]
    fn names_are_readable_stable_and_distinct() {
        let web = spn("default", "web", "http");
        assert_eq!(service_chain(&web), service_chain(&web.clone()));
        assert!(service_chain(&web).starts_with("svc-") && service_chain(&web).ends_with("-default/web/tcp/http"));
        assert!(external_chain(&web).starts_with("ext-"));
        assert_ne!(service_chain(&web), service_chain(&spn("default", "web", "https")));
        assert_eq!(service_chain(&spn("default", "web", "")).rsplit('-').next().unwrap(), "default/web/tcp");
        // Pinned: a restart with a newer build must produce the same names.
        assert_eq!(hash(""), "FZIECCS4");
    }

    #[test]
    fn long_names_are_cut_to_what_nft_accepts() {
        let long = spn(&"n".repeat(63), &"s".repeat(63), &"p".repeat(63));
        assert_eq!(service_chain(&long).len(), MAX_NAME);
        assert!(affinity_set(&long, Ipv4Addr::new(10, 244, 0, 2), 8080, 10800).len() <= MAX_NAME);
    }
}
