//! The rtnetlink [`Netlink`] against the kernel. Root-only. Every link lives in a test
//! namespace of its own (the "host" side too), so the host's network is never touched and
//! dropping the namespaces cleans up whatever a failing test left. Extra links are bridges:
//! the test machines' kernels may lack the dummy driver.

use std::io;

use cni::netlink::{Error, Netlink, RouteEntry, Rtnl};
use test_support::netns::TestNetns;
use test_support::{require_root, text};

fn ns() -> (TestNetns, Rtnl) {
    require_root();
    let ns = TestNetns::new();
    let nl = Rtnl::in_netns(&ns.path()).expect("netlink handle in test netns");
    (ns, nl)
}

/// `ip -d link show <name>` in `ns`.
fn ip_link(ns: &TestNetns, name: &str) -> String {
    ns.ip(&["-d", "link", "show", name])
}

fn read_in(ns: &TestNetns, path: &str) -> String {
    let out = ns.exec(&["cat", path]);
    assert!(out.status.success(), "cat {path}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

fn kernel_errno(e: &Error) -> Option<i32> {
    match e {
        Error::Kernel { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

#[test]
#[ignore = "needs root"]
fn bridge_is_created_down_then_set_up_with_an_address() {
    let (ns, nl) = ns();
    let br = nl.create_bridge("krs-br0", Some(1400)).unwrap();
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    assert_eq!(br.mtu, 1400);
    assert!(!br.up);
    assert_eq!(br.mac.len(), 17, "{:?}", br.mac);
    assert_eq!(br.mac, br.mac.to_lowercase());
    assert!(ip_link(&ns, "krs-br0").contains(&br.mac));

    nl.set_up(br.index).unwrap();
    assert!(nl.link("krs-br0").unwrap().unwrap().up);
    assert!(nl.links().unwrap().iter().any(|l| l.name == "krs-br0" && l.index == br.index));
    assert_eq!(nl.link_by_index(br.index).unwrap().unwrap().name, "krs-br0");

    let addr = "10.10.0.1/24".parse().unwrap();
    nl.add_address(br.index, addr).unwrap();
    nl.add_address(br.index, addr).expect("adding the same address again is success");
    // Besides the IPv6 link-local address the kernel gives an up link.
    let v4: Vec<_> = nl.addresses(br.index).unwrap().into_iter().filter(|a| a.addr().is_ipv4()).collect();
    assert_eq!(v4, vec![addr]);
    assert!(ns.ip(&["addr", "show", "krs-br0"]).contains("inet 10.10.0.1/24"));

    // Creating it again is an error that names it.
    let err = nl.create_bridge("krs-br0", None).unwrap_err();
    assert_eq!(kernel_errno(&err), Some(libc::EEXIST));
    assert!(err.to_string().contains("create bridge krs-br0"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn addresses_add_list_delete() {
    let (ns, nl) = ns();
    ns.ip(&["link", "add", "krs-d0", "type", "bridge"]);
    let d = nl.link("krs-d0").unwrap().unwrap();
    let v4 = "10.20.0.5/16".parse().unwrap();
    let v6 = "fd00:20::5/64".parse().unwrap();
    nl.add_address(d.index, v4).unwrap();
    nl.add_address(d.index, v6).unwrap();
    nl.add_address(d.index, v6).unwrap();
    let got = nl.addresses(d.index).unwrap();
    assert!(got.contains(&v4) && got.contains(&v6), "{got:?}");

    // The same IPv6 address with another prefix is not "already there".
    let err = nl.add_address(d.index, "fd00:20::5/80".parse().unwrap()).unwrap_err();
    assert_eq!(kernel_errno(&err), Some(libc::EEXIST));
    assert!(err.to_string().contains("fd00:20::5/80") && err.to_string().contains("krs-d0"), "{err}");

    assert!(nl.delete_address(d.index, v4).unwrap());
    assert!(!nl.delete_address(d.index, v4).unwrap());
    assert!(nl.delete_address(d.index, v6).unwrap());
    assert!(!nl.delete_address(d.index, v6).unwrap());
    assert!(!nl.addresses(d.index).unwrap().iter().any(|a| *a == v4 || *a == v6));
    assert!(!ns.ip(&["addr", "show", "krs-d0"]).contains("10.20.0.5"));
}

#[test]
#[ignore = "needs root"]
fn veth_pair_spans_two_namespaces_with_mtu() {
    let (host_ns, host) = ns();
    let (pod_ns, pod) = ns();
    // A link named like the peer on the host side: the peer is born in the pod namespace,
    // so the names never meet.
    host_ns.ip(&["link", "add", "eth0", "type", "bridge"]);

    let v = host.create_veth("krs-veth0", "eth0", pod.netns_fd().unwrap(), 1450).unwrap();
    assert_eq!((v.name.as_str(), v.kind.as_deref(), v.mtu), ("krs-veth0", Some("veth"), 1450));
    let peer = pod.link("eth0").unwrap().expect("peer in the pod namespace");
    assert_eq!((peer.kind.as_deref(), peer.mtu), (Some("veth"), 1450));
    assert_eq!(host.link("eth0").unwrap().unwrap().kind.as_deref(), Some("bridge"));
    assert!(pod.link("krs-veth0").unwrap().is_none());
    assert!(ip_link(&pod_ns, "eth0").contains("mtu 1450"));

    host.set_mtu(v.index, 1400).unwrap();
    assert_eq!(host.link_by_index(v.index).unwrap().unwrap().mtu, 1400);
    host.set_promisc(v.index, true).unwrap();
    assert!(host.link("krs-veth0").unwrap().unwrap().promisc);
    host.set_promisc(v.index, false).unwrap();
    assert!(!host.link("krs-veth0").unwrap().unwrap().promisc);
}

#[test]
#[ignore = "needs root"]
fn port_of_a_bridge_with_hairpin() {
    let (host_ns, host) = ns();
    let (_pod_ns, pod) = ns();
    let br = host.create_bridge("krs-br1", None).unwrap();
    let v = host.create_veth("krs-veth1", "eth0", pod.netns_fd().unwrap(), 1500).unwrap();
    host.set_master(v.index, br.index).unwrap();
    assert_eq!(host.link("krs-veth1").unwrap().unwrap().master, Some(br.index));

    host.set_hairpin(v.index, true).unwrap();
    let shown = ip_link(&host_ns, "krs-veth1");
    assert!(shown.contains("hairpin on"), "{shown}");
    host.set_hairpin(v.index, false).unwrap();
    let shown = ip_link(&host_ns, "krs-veth1");
    assert!(shown.contains("hairpin off"), "{shown}");

    // Hairpin is a bridge port setting: on a link that is no port it is an error naming it.
    let br2 = host.create_bridge("krs-br2", None).unwrap();
    let err = host.set_hairpin(br2.index, true).unwrap_err();
    assert!(err.to_string().contains("set hairpin true on krs-br2"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn default_routes_via_gateway() {
    let (_host_ns, host) = ns();
    let (pod_ns, pod) = ns();
    let v = host.create_veth("krs-veth2", "eth0", pod.netns_fd().unwrap(), 1500).unwrap();
    host.set_up(v.index).unwrap();
    let eth0 = pod.link("eth0").unwrap().unwrap();
    pod.set_up(eth0.index).unwrap();
    pod.add_address(eth0.index, "10.22.0.2/24".parse().unwrap()).unwrap();
    pod.add_address(eth0.index, "fd00:22::2/64".parse().unwrap()).unwrap();

    let v4 = RouteEntry { dst: "0.0.0.0/0".parse().unwrap(), gateway: Some("10.22.0.1".parse().unwrap()), link: eth0.index };
    let v6 = RouteEntry { dst: "::/0".parse().unwrap(), gateway: Some("fd00:22::1".parse().unwrap()), link: eth0.index };
    let onlink = RouteEntry { dst: "10.99.0.0/16".parse().unwrap(), gateway: None, link: eth0.index };
    for r in [&v4, &v6, &onlink] {
        pod.add_route(r).unwrap();
        pod.add_route(r).expect("adding the same route again is success");
    }
    let routes = pod.routes().unwrap();
    for r in [&v4, &v6, &onlink] {
        assert!(routes.contains(r), "{r:?} not in {routes:?}");
    }
    // The kernel's own prefix route of the address.
    let connected = RouteEntry { dst: "10.22.0.0/24".parse().unwrap(), gateway: None, link: eth0.index };
    assert!(routes.contains(&connected), "{routes:?}");
    assert!(pod_ns.ip(&["route", "show"]).contains("default via 10.22.0.1 dev eth0"));
    assert!(pod_ns.ip(&["route", "show", "10.99.0.0/16"]).contains("scope link"));
    assert!(pod_ns.ip(&["-6", "route", "show"]).contains("default via fd00:22::1 dev eth0"));

    // Another default route is no "same route": the error names the route.
    let other = RouteEntry { gateway: Some("10.22.0.9".parse().unwrap()), ..v4.clone() };
    let err = pod.add_route(&other).unwrap_err();
    assert_eq!(kernel_errno(&err), Some(libc::EEXIST));
    assert!(err.to_string().contains("add route 0.0.0.0/0 via 10.22.0.9 dev eth0"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn delete_link_then_again() {
    let (_host_ns, host) = ns();
    let (_pod_ns, pod) = ns();
    host.create_veth("krs-veth3", "eth0", pod.netns_fd().unwrap(), 1500).unwrap();
    assert!(host.delete_link("krs-veth3").unwrap());
    assert!(!host.delete_link("krs-veth3").unwrap());
    assert!(host.link("krs-veth3").unwrap().is_none());
    // The peer goes with it.
    assert!(pod.link("eth0").unwrap().is_none());
    assert!(!pod.delete_link("eth0").unwrap());
}

#[test]
#[ignore = "needs root"]
fn sysctl_is_written_in_the_handles_namespace() {
    let (ns, nl) = ns();
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string();
    let want = if host_before == "1" { "0" } else { "1" };
    nl.set_sysctl("net.ipv4.ip_forward", want).unwrap();
    assert_eq!(read_in(&ns, "/proc/sys/net/ipv4/ip_forward"), want);
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string();
    assert_eq!(host_after, host_before, "the host's ip_forward changed");

    // A per-interface key, and an interface name with a dot through the slashed form.
    ns.ip(&["link", "add", "krs-d1.5", "type", "bridge"]);
    nl.set_sysctl("net/ipv4/conf/krs-d1.5/arp_notify", "1").unwrap();
    assert_eq!(read_in(&ns, "/proc/sys/net/ipv4/conf/krs-d1.5/arp_notify"), "1");

    let err = nl.set_sysctl("net.ipv4.conf.krs-nope.arp_notify", "1").unwrap_err();
    match &err {
        Error::Sysctl { key, source } => {
            assert_eq!(key, "net.ipv4.conf.krs-nope.arp_notify");
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "needs root"]
fn errors_name_what_failed() {
    let (_ns, nl) = ns();
    let err = nl.set_mtu(99999, 1400).unwrap_err();
    assert_eq!(kernel_errno(&err), Some(libc::ENODEV));
    assert!(err.to_string().contains("set mtu 1400 on #99999"), "{err}");
    assert!(nl.link("krs-nope").unwrap().is_none());
    assert!(nl.link_by_index(99999).unwrap().is_none());

    let err = Rtnl::in_netns(std::path::Path::new("/run/netns/krs-does-not-exist")).err().expect("no such netns");
    assert!(matches!(err, Error::Netns { ref path, .. } if path == "/run/netns/krs-does-not-exist"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn handle_works_from_another_thread() {
    let (_ns, nl) = ns();
    let names = std::thread::spawn(move || nl.links().unwrap().into_iter().map(|l| l.name).collect::<Vec<_>>()).join().unwrap();
    assert_eq!(names, vec!["lo".to_string()]);
}

#[test]
#[ignore = "needs root"]
fn host_handle_reads_the_callers_namespace() {
    require_root();
    // Read-only: the host's links are never changed.
    let nl = Rtnl::host().unwrap();
    let lo = nl.link("lo").unwrap().expect("the host has lo");
    assert_eq!(lo.index, 1);
    assert!(nl.netns_fd().is_none());
}
