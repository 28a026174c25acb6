//! `route_localnet`: the kernel drops packets with a 127/8 source leaving a non-loopback
//! interface, so localhost access to a hostPort (DNAT in nat output, then masquerade) needs
//! `net.ipv4.conf.<if>.route_localnet=1` on the host interface that routes to the pod (the
//! bridge). The portmap plugin sets it at ADD, as the reference plugin does; it is left set
//! at DEL because other pods on the same bridge may rely on it.

use std::net::IpAddr;

use crate::netlink::{self, Netlink};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no route to {0} in the main table, so no interface to allow localhost traffic on")]
    NoRoute(IpAddr),
    #[error("cannot allow localhost traffic towards {addr}: {source}")]
    Netlink { addr: IpAddr, source: netlink::Error },
}

/// Sets `route_localnet=1` on the interface `net`'s namespace routes `addr` through (the
/// longest matching prefix of the main table, as `ip route get` would pick).
pub fn enable_for(net: &dyn Netlink, addr: IpAddr) -> Result<(), Error> {
    let nl = |source| Error::Netlink { addr, source };
    let routes = net.routes().map_err(nl)?;
    let best = routes.iter().filter(|r| r.dst.contains(&addr)).max_by_key(|r| r.dst.prefix_len()).ok_or(Error::NoRoute(addr))?;
    let link = net.link_by_index(best.link).map_err(nl)?.ok_or(Error::NoRoute(addr))?;
    // The slash form keeps an interface name with dots one path component.
    net.set_sysctl(&format!("net/ipv4/conf/{}/route_localnet", link.name), "1").map_err(nl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::RouteEntry;
    use crate::netlink::fake::FakeNetlink;

    #[test]
    fn sets_it_on_the_interface_of_the_longest_matching_route() {
        let net = FakeNetlink::new();
        let uplink = net.create_bridge("uplink", None).unwrap();
        let cni0 = net.create_bridge("cni0", None).unwrap();
        net.add_route(&RouteEntry { dst: "0.0.0.0/0".parse().unwrap(), gateway: Some("192.0.2.254".parse().unwrap()), link: uplink.index }).unwrap();
        net.add_route(&RouteEntry { dst: "10.22.0.0/16".parse().unwrap(), gateway: None, link: cni0.index }).unwrap();
        enable_for(&net, "10.22.0.5".parse().unwrap()).unwrap();
        let sysctls = net.state.borrow().sysctls.clone();
        assert_eq!(sysctls.keys().collect::<Vec<_>>(), vec!["net/ipv4/conf/cni0/route_localnet"]);
        assert!(matches!(enable_for(&FakeNetlink::new(), "10.22.0.5".parse().unwrap()), Err(Error::NoRoute(_))));
    }
}
