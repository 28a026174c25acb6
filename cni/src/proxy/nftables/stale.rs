//! Which UDP conntrack entries a sync made stale (kube-proxy's rules): a UDP service port
//! that lost an endpoint leaves entries still sending to it; one that went from no
//! endpoints to some leaves entries created while it had none (rejected or dropped).

use std::collections::BTreeMap;

use super::render::UdpTargets;
use crate::proxy::conntrack::Flow;
use crate::proxy::model::{Protocol, ServicePortName};

/// The entries to delete after `new` was applied over `old`. `old` is `None` when nothing
/// is known of an earlier run (a restart): its entries may be good, so none is deleted for
/// service ports merely seen for the first time.
pub(crate) fn stale_flows(old: Option<&BTreeMap<ServicePortName, UdpTargets>>, new: &BTreeMap<ServicePortName, UdpTargets>) -> Vec<Flow> {
    let Some(old) = old else { return Vec::new() };
    let mut flows = Vec::new();
    for (name, now) in new {
        let before = old.get(name);
        let lost: Vec<_> = before.map(|b| b.endpoints.difference(&now.endpoints).copied().collect()).unwrap_or_default();
        to_endpoints(&mut flows, before.unwrap_or(now), &lost);
        if before.is_none_or(|b| b.endpoints.is_empty()) && !now.endpoints.is_empty() {
            for &addr in &now.addresses {
                flows.push(Flow { protocol: Protocol::Udp, orig_dst: Some(addr), orig_dst_port: Some(now.port), reply_src: None });
            }
            if let Some(np) = now.node_port {
                flows.push(Flow { protocol: Protocol::Udp, orig_dst: None, orig_dst_port: Some(np), reply_src: None });
            }
        }
    }
    for (name, before) in old {
        if !new.contains_key(name) {
            let lost: Vec<_> = before.endpoints.iter().copied().collect();
            to_endpoints(&mut flows, before, &lost);
        }
    }
    flows.sort();
    flows.dedup();
    flows
}

/// Entries through `t`'s addresses (and node port) answered by any of `lost`.
fn to_endpoints(flows: &mut Vec<Flow>, t: &UdpTargets, lost: &[std::net::Ipv4Addr]) {
    for &ep in lost {
        for &addr in &t.addresses {
            flows.push(Flow { protocol: Protocol::Udp, orig_dst: Some(addr), orig_dst_port: None, reply_src: Some(ep) });
        }
        if let Some(np) = t.node_port {
            flows.push(Flow { protocol: Protocol::Udp, orig_dst: None, orig_dst_port: Some(np), reply_src: Some(ep) });
        }
    }
}
