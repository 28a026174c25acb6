//! Kernel messages into the plugins' types: a link dump entry into [`Link`], a route into
//! [`RouteEntry`], an address into its [`IpNet`]. Pure, so unit-tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType, RouteVia};

use crate::netlink::{Link, RouteEntry};

/// `aa:bb:cc:dd:ee:ff`, lowercase; empty for a link without a hardware address.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mac: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        master: None,
        kind: None,
        promisc: msg.header.flags.contains(LinkFlags::Promisc),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(mac) => link.mac = format_mac(mac),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            // IFLA_MASTER; 0 would mean "no master" but the kernel omits it then.
            LinkAttribute::Controller(master) if *master != 0 => link.master = Some(*master),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// The address of an `RTM_NEWADDR`: `IFA_LOCAL` when present (on point-to-point links
/// `IFA_ADDRESS` is the peer's), else `IFA_ADDRESS` (IPv6 sends only that one).
pub fn address(msg: &AddressMessage) -> Option<IpNet> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    IpNet::new(addr, msg.header.prefix_len).ok()
}

/// A unicast route of the main table; `None` for every other route (local, broadcast,
/// multicast, other tables), which the plugins do not manage.
pub fn route(msg: &RouteMessage) -> Option<RouteEntry> {
    // Table ids above 255 only come in RTA_TABLE; the header then says RT_TABLE_COMPAT.
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || msg.header.kind != RouteType::Unicast {
        return None;
    }
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut dst = unspecified;
    let mut gateway = None;
    let mut link = 0;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = ip(a)?,
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(index) => link = *index,
            _ => {}
        }
    }
    let dst = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
    Some(RouteEntry { dst, gateway, link })
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoKind;

    #[test]
    fn mac_is_lowercase_colon_separated() {
        assert_eq!(format_mac(&[0xAA, 0x0b, 0, 1, 0xfe, 0x10]), "aa:0b:00:01:fe:10");
        assert_eq!(format_mac(&[]), "");
    }

    #[test]
    fn link_fields_come_from_header_and_attributes() {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.flags = LinkFlags::Up | LinkFlags::Promisc;
        msg.attributes = vec![
            LinkAttribute::IfName("veth0".into()),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 0x1f]),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Controller(3),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth)]),
        ];
        let got = link(&msg);
        assert_eq!(
            got,
            Link {
                index: 7,
                name: "veth0".into(),
                mac: "02:00:00:00:00:1f".into(),
                mtu: 1450,
                up: true,
                master: Some(3),
                kind: Some("veth".into()),
                promisc: true,
            }
        );
    }

    #[test]
    fn link_without_kind_or_master() {
        let mut msg = LinkMessage::default();
        msg.header.index = 1;
        msg.attributes = vec![LinkAttribute::IfName("lo".into()), LinkAttribute::Mtu(65536)];
        let got = link(&msg);
        assert_eq!((got.kind, got.master, got.up, got.promisc), (None, None, false, false));
    }

    #[test]
    fn address_prefers_local_over_peer() {
        let mut msg = AddressMessage::default();
        msg.header.prefix_len = 24;
        msg.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().unwrap()),
            AddressAttribute::Local("10.0.0.1".parse().unwrap()),
        ];
        assert_eq!(address(&msg), Some("10.0.0.1/24".parse().unwrap()));
        msg.header.prefix_len = 64;
        msg.attributes = vec![AddressAttribute::Address("fd00::5".parse().unwrap())];
        assert_eq!(address(&msg), Some("fd00::5/64".parse().unwrap()));
    }

    fn route_msg(family: AddressFamily, table: u8, kind: RouteType) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family;
        msg.header.table = table;
        msg.header.kind = kind;
        msg
    }

    #[test]
    fn default_route_has_unspecified_dst() {
        let mut msg = route_msg(AddressFamily::Inet, RouteHeader::RT_TABLE_MAIN, RouteType::Unicast);
        msg.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet("10.1.0.1".parse().unwrap())), RouteAttribute::Oif(4)];
        let r = route(&msg).unwrap();
        assert_eq!(r, RouteEntry { dst: "0.0.0.0/0".parse().unwrap(), gateway: Some("10.1.0.1".parse().unwrap()), link: 4 });

        let mut msg = route_msg(AddressFamily::Inet6, RouteHeader::RT_TABLE_MAIN, RouteType::Unicast);
        msg.attributes = vec![RouteAttribute::Oif(2)];
        assert_eq!(route(&msg).unwrap().dst, "::/0".parse::<IpNet>().unwrap());
    }

    #[test]
    fn prefix_route_without_gateway() {
        let mut msg = route_msg(AddressFamily::Inet, RouteHeader::RT_TABLE_MAIN, RouteType::Unicast);
        msg.header.destination_prefix_length = 16;
        msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet("10.244.0.0".parse().unwrap())), RouteAttribute::Oif(9)];
        assert_eq!(route(&msg), Some(RouteEntry { dst: "10.244.0.0/16".parse().unwrap(), gateway: None, link: 9 }));
    }

    #[test]
    fn only_unicast_routes_of_the_main_table() {
        assert_eq!(route(&route_msg(AddressFamily::Inet, 255, RouteType::Local)), None);
        assert_eq!(route(&route_msg(AddressFamily::Inet, 100, RouteType::Unicast)), None);
        let mut msg = route_msg(AddressFamily::Inet, 252, RouteType::Unicast);
        msg.attributes = vec![RouteAttribute::Table(1000)];
        assert_eq!(route(&msg), None);
    }
}
