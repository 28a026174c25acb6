//! The kernel-side steps of attaching a pod to the bridge, each over the [`Netlink`] trait so
//! they are unit-tested with the fake: the bridge, the veth pair, the pod's addresses and
//! routes, the gateway addresses on the bridge, and teardown.

use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use ipnet::IpNet;

use super::config::BridgeConf;
use crate::netlink::{self, Link, Netlink, RouteEntry};
use crate::spec::{CniResult, Error};

pub(crate) fn kernel(e: netlink::Error) -> Error {
    Error::kernel(e.to_string())
}

/// The host end of a pod's veth: `veth` and 8 hex digits of a hash of the attachment, so a
/// DEL finds it even when the pod's namespace is gone, and a retried ADD finds its leftover.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("veth{:08x}", (h ^ (h >> 32)) as u32)
}

/// The bridge, created if missing, up; an existing link of that name must be a bridge.
pub fn ensure_bridge(host: &dyn Netlink, conf: &BridgeConf) -> Result<Link, Error> {
    let bridge = match host.link(&conf.bridge).map_err(kernel)? {
        Some(link) if link.kind.as_deref() == Some("bridge") => link,
        Some(link) => {
            return Err(Error::invalid_config(format!(
                "link {:?} exists but is a {} device, not a bridge",
                conf.bridge,
                link.kind.as_deref().unwrap_or("non-virtual")
            )));
        }
        None => match host.create_bridge(&conf.bridge, Some(conf.mtu)) {
            Ok(link) => link,
            // Another ADD made it between our look and our create.
            Err(_) if host.link(&conf.bridge).map_err(kernel)?.is_some() => host.link(&conf.bridge).map_err(kernel)?.expect("just seen"),
            Err(e) => return Err(kernel(e)),
        },
    };
    if conf.promisc_mode && !bridge.promisc {
        host.set_promisc(bridge.index, true).map_err(kernel)?;
    }
    if !bridge.up {
        host.set_up(bridge.index).map_err(kernel)?;
    }
    Ok(host.link_by_index(bridge.index).map_err(kernel)?.unwrap_or(bridge))
}

/// Creates the veth pair, the host end a port of `bridge` (hairpin as configured) and up.
/// Returns (host end, pod end).
pub fn create_pair(
    host: &dyn Netlink,
    pod: &dyn Netlink,
    pod_netns: BorrowedFd<'_>,
    conf: &BridgeConf,
    bridge: &Link,
    ifname: &str,
    host_name: &str,
) -> Result<(Link, Link), Error> {
    if pod.link(ifname).map_err(kernel)?.is_some() {
        return Err(Error::kernel(format!("the container already has an interface named {ifname:?}")));
    }
    // A host end of this name is a leftover of an ADD that failed half-way: its pod end is gone.
    host.delete_link(host_name).map_err(kernel)?;
    let host_end = host.create_veth(host_name, ifname, pod_netns, conf.mtu).map_err(kernel)?;
    let pod_end = pod
        .link(ifname)
        .map_err(kernel)?
        .ok_or_else(|| Error::kernel(format!("veth peer {ifname:?} did not appear in the container's namespace")))?;
    host.set_master(host_end.index, bridge.index).map_err(kernel)?;
    if conf.hairpin_mode {
        host.set_hairpin(host_end.index, true).map_err(kernel)?;
    }
    host.set_up(host_end.index).map_err(kernel)?;
    let host_end = host.link_by_index(host_end.index).map_err(kernel)?.unwrap_or(host_end);
    Ok((host_end, pod_end))
}

/// Gives the bridge each pod subnet's gateway address and turns on forwarding, so the bridge
/// routes for its pods.
pub fn ensure_gateways(host: &dyn Netlink, bridge: &Link, result: &CniResult) -> Result<(), Error> {
    for ip in &result.ips {
        let Some(gw) = ip.gateway else { continue };
        let addr = IpNet::new(gw, ip.address.prefix_len()).map_err(|e| Error::invalid_config(e.to_string()))?;
        if gw.is_ipv6() {
            // The gateway address is ours alone: without DAD it is usable at once.
            host.set_sysctl(&format!("net.ipv6.conf.{}.accept_dad", bridge.name), "0").map_err(kernel)?;
        }
        host.add_address(bridge.index, addr).map_err(kernel)?;
        match gw {
            IpAddr::V4(_) => host.set_sysctl("net.ipv4.ip_forward", "1").map_err(kernel)?,
            IpAddr::V6(_) => host.set_sysctl("net.ipv6.conf.all.forwarding", "1").map_err(kernel)?,
        }
    }
    Ok(())
}

/// The routes the pod gets: IPAM's (a route without `gw` goes via the gateway of its
/// family), plus a default route per family through the gateway when the bridge is the
/// default gateway.
pub fn pod_routes(conf: &BridgeConf, result: &CniResult) -> Vec<(IpNet, Option<IpAddr>)> {
    let gateway_of = |v4: bool| result.ips.iter().filter_map(|ip| ip.gateway).find(|g| g.is_ipv4() == v4);
    let mut routes: Vec<(IpNet, Option<IpAddr>)> = Vec::new();
    if conf.is_default_gateway {
        for v4 in [true, false] {
            if let Some(gw) = gateway_of(v4) {
                let dst: IpNet = if v4 { "0.0.0.0/0".parse().expect("valid") } else { "::/0".parse().expect("valid") };
                routes.push((dst, Some(gw)));
            }
        }
    }
    for r in &result.routes {
        if routes.iter().any(|(dst, _)| *dst == r.dst) {
            continue;
        }
        routes.push((r.dst, r.gw.or_else(|| gateway_of(r.dst.addr().is_ipv4()))));
    }
    routes
}

/// Addresses, the link up, routes, and gratuitous ARP on address changes in the pod.
pub fn configure_pod(pod: &dyn Netlink, link: &Link, conf: &BridgeConf, result: &CniResult) -> Result<(), Error> {
    pod.set_sysctl(&format!("net.ipv4.conf.{}.arp_notify", link.name), "1").map_err(kernel)?;
    if result.ips.iter().any(|ip| ip.address.addr().is_ipv6()) {
        // IPAM made the address unique; duplicate address detection would only hold it
        // "tentative" (unusable) for a second or more after ADD returns, as the reference
        // plugin avoids too unless `enabledad` is set.
        pod.set_sysctl(&format!("net.ipv6.conf.{}.accept_dad", link.name), "0").map_err(kernel)?;
    }
    for ip in &result.ips {
        pod.add_address(link.index, ip.address).map_err(kernel)?;
    }
    pod.set_up(link.index).map_err(kernel)?;
    for (dst, gateway) in pod_routes(conf, result) {
        pod.add_route(&RouteEntry { dst, gateway, link: link.index }).map_err(kernel)?;
    }
    Ok(())
}

/// Removes the pair: through the pod's end when its namespace is still there, else (or as
/// well) the host end by its derived name. Returns the pod end's addresses, if it existed.
pub fn teardown(host: &dyn Netlink, pod: Option<&dyn Netlink>, ifname: &str, host_name: &str) -> Result<Vec<IpNet>, Error> {
    let mut addresses = Vec::new();
    if let Some(pod) = pod
        && let Some(link) = pod.link(ifname).map_err(kernel)? {
            addresses = pod.addresses(link.index).map_err(kernel)?;
            pod.delete_link(ifname).map_err(kernel)?;
        }
    host.delete_link(host_name).map_err(kernel)?;
    Ok(addresses)
}

/// CHECK: the pod end exists with the result's MAC and addresses, the host end is a port of
/// the bridge, and the routes are there.
pub fn check(host: &dyn Netlink, pod: &dyn Netlink, conf: &BridgeConf, ifname: &str, host_name: &str, prev: &CniResult) -> Result<(), Error> {
    let fail = |what: String| Err(Error::kernel(format!("check failed: {what}")));
    let bridge = match host.link(&conf.bridge).map_err(kernel)? {
        Some(b) => b,
        None => return fail(format!("bridge {:?} does not exist", conf.bridge)),
    };
    let Some(link) = pod.link(ifname).map_err(kernel)? else {
        return fail(format!("the container has no interface {ifname:?}"));
    };
    if let Some(expected) = prev.interfaces.iter().find(|i| i.name == ifname && i.sandbox.is_some())
        && !expected.mac.is_empty() && !expected.mac.eq_ignore_ascii_case(&link.mac) {
            return fail(format!("interface {ifname:?} has MAC {} but the result says {}", link.mac, expected.mac));
        }
    let have = pod.addresses(link.index).map_err(kernel)?;
    for ip in &prev.ips {
        if !have.contains(&ip.address) {
            return fail(format!("interface {ifname:?} lacks address {}", ip.address));
        }
    }
    let routes = pod.routes().map_err(kernel)?;
    for (dst, gateway) in pod_routes(conf, prev) {
        if !routes.iter().any(|r| r.dst == dst && r.gateway == gateway) {
            return fail(format!("the container has no route to {dst}"));
        }
    }
    match host.link(host_name).map_err(kernel)? {
        Some(h) if h.master == Some(bridge.index) => Ok(()),
        Some(_) => fail(format!("host veth {host_name:?} is not a port of bridge {:?}", conf.bridge)),
        None => fail(format!("host veth {host_name:?} does not exist")),
    }
}
