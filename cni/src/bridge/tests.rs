//! The bridge plugin's logic against the fake netlink, a fake IPAM and a fake firewall.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;

use ipnet::IpNet;

use super::*;
use crate::firewall::{PortForward, PortmapOptions};
use crate::netlink::fake::FakeNetlink;
use crate::spec::IpConfig;

#[derive(Default, Clone)]
struct FakeFirewall {
    log: Rc<RefCell<Vec<String>>>,
    fail: bool,
}

impl Firewall for FakeFirewall {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn add_masquerade(&self, owner: &Owner, addr: IpNet) -> firewall::Result<()> {
        if self.fail {
            return Err(firewall::Error::NoBackend("fake failure".into()));
        }
        self.log.borrow_mut().push(format!("masq {} {addr}", owner.container_id));
        Ok(())
    }
    fn del_masquerade(&self, owner: &Owner) -> firewall::Result<()> {
        self.log.borrow_mut().push(format!("unmasq {}", owner.container_id));
        Ok(())
    }
    fn check_masquerade(&self, _: &Owner, _: IpNet) -> firewall::Result<()> {
        Ok(())
    }
    fn add_port_forwards(&self, _: &Owner, _: &[PortForward], _: &PortmapOptions) -> firewall::Result<()> {
        unreachable!()
    }
    fn del_port_forwards(&self, _: &Owner) -> firewall::Result<()> {
        unreachable!()
    }
    fn check_port_forwards(&self, _: &Owner, _: &[PortForward]) -> firewall::Result<()> {
        unreachable!()
    }
    fn gc(&self, _: &str, _: &[Owner]) -> firewall::Result<()> {
        Ok(())
    }
}

struct World {
    host: FakeNetlink,
    pod: FakeNetlink,
    fd: File,
    ipam_log: Rc<RefCell<Vec<Command>>>,
    ipam_fails: bool,
    fw: FakeFirewall,
}

impl World {
    fn new() -> World {
        let host = FakeNetlink::new();
        let pod = FakeNetlink::new();
        let fd = File::open("/dev/null").unwrap();
        host.register_peer(fd.as_raw_fd(), &pod);
        World { host, pod, fd, ipam_log: Rc::default(), ipam_fails: false, fw: FakeFirewall::default() }
    }

    fn run<T>(&self, with_pod: bool, f: impl FnOnce(&Deps<'_>) -> T) -> T {
        let log = self.ipam_log.clone();
        let fails = self.ipam_fails;
        let ipam = move |c: Command| {
            log.borrow_mut().push(c);
            if fails {
                return Err(Error::new(ErrorCode::Plugin(101), "range full"));
            }
            Ok((c == Command::Add).then(|| CniResult {
                ips: vec![IpConfig {
                    address: "10.22.0.5/16".parse().unwrap(),
                    gateway: Some("10.22.0.1".parse().unwrap()),
                    interface: None,
                }],
                routes: vec![crate::spec::Route::new("10.99.0.0/16".parse().unwrap(), None)],
                ..Default::default()
            }))
        };
        let fw = self.fw.clone();
        let firewall = move || Ok(Box::new(fw.clone()) as Box<dyn Firewall>);
        let pod = with_pod.then(|| (&self.pod as &dyn Netlink, self.fd.as_fd()));
        f(&Deps { host: &self.host, pod, ipam: &ipam, firewall: &firewall })
    }

    fn link_names(ns: &FakeNetlink) -> Vec<String> {
        ns.links().unwrap().into_iter().map(|l| l.name).collect()
    }
}

fn request(command: Command) -> Request {
    Request {
        command,
        container_id: "c1".into(),
        netns: Some("/run/netns/p".into()),
        ifname: "eth0".into(),
        args: vec![],
        path: vec!["/opt/cni/bin".into()],
    }
}

fn netconf(extra: &str) -> (NetConf, BridgeConf) {
    let json = format!(r#"{{"cniVersion":"1.1.0","name":"krs","type":"krs-bridge","bridge":"krs0","ipam":{{"type":"krs-host-local"}}{extra}}}"#);
    let conf = NetConf::parse(json.as_bytes()).unwrap();
    let bc = BridgeConf::from_netconf(&conf).unwrap();
    (conf, bc)
}

#[test]
fn add_builds_bridge_pair_addresses_routes_and_result() {
    let w = World::new();
    let (conf, bc) = netconf(r#","isDefaultGateway":true,"hairpinMode":true,"ipMasq":true,"mtu":1400"#);
    let result = w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap();

    let bridge = w.host.link("krs0").unwrap().unwrap();
    assert!(bridge.up);
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert_eq!(w.host.addresses(bridge.index).unwrap(), vec!["10.22.0.1/16".parse::<IpNet>().unwrap()]);
    assert_eq!(w.host.state.borrow().sysctls.get("net.ipv4.ip_forward").map(String::as_str), Some("1"));
    let host_name = links::host_veth_name("c1", "eth0");
    let host_end = w.host.link(&host_name).unwrap().unwrap();
    assert_eq!((host_end.master, host_end.up, host_end.mtu), (Some(bridge.index), true, 1400));
    assert_eq!(w.host.state.borrow().hairpin.get(&host_end.index), Some(&true));

    let eth0 = w.pod.link("eth0").unwrap().unwrap();
    assert!(eth0.up);
    assert_eq!(w.pod.addresses(eth0.index).unwrap(), vec!["10.22.0.5/16".parse::<IpNet>().unwrap()]);
    let routes = w.pod.routes().unwrap();
    assert!(routes.iter().any(|r| r.dst.to_string() == "0.0.0.0/0" && r.gateway == Some("10.22.0.1".parse().unwrap())));
    assert!(routes.iter().any(|r| r.dst.to_string() == "10.99.0.0/16" && r.gateway == Some("10.22.0.1".parse().unwrap())));

    assert_eq!(result.interfaces.len(), 3);
    assert_eq!(result.interfaces[2].sandbox.as_deref(), Some("/run/netns/p"));
    assert_eq!(result.interfaces[2].mac, eth0.mac);
    assert_eq!(result.ips[0].interface, Some(2));
    assert_eq!(*w.fw.log.borrow(), vec!["masq c1 10.22.0.5/16".to_string()]);

    let mut checked = conf.clone();
    checked.prev_result = Some(result);
    w.run(true, |d| check(d, &request(Command::Check), &checked, &bc)).unwrap();
    w.pod.delete_link("eth0").unwrap();
    let err = w.run(true, |d| check(d, &request(Command::Check), &checked, &bc)).unwrap_err();
    assert!(err.msg.contains("no interface \"eth0\""), "{}", err.msg);
}

#[test]
fn failed_ipam_removes_the_pair() {
    let mut w = World::new();
    w.ipam_fails = true;
    let (conf, bc) = netconf("");
    let err = w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap_err();
    assert_eq!(err.code, ErrorCode::Plugin(101));
    assert_eq!(World::link_names(&w.pod), vec!["lo"]);
    assert_eq!(World::link_names(&w.host), vec!["lo", "krs0"]);
}

#[test]
fn failure_after_ipam_releases_the_address_and_removes_the_pair() {
    let mut w = World::new();
    w.fw.fail = true;
    let (conf, bc) = netconf(r#","ipMasq":true"#);
    let err = w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap_err();
    assert!(err.msg.contains("fake failure"), "{}", err.msg);
    assert_eq!(*w.ipam_log.borrow(), vec![Command::Add, Command::Del]);
    assert_eq!(World::link_names(&w.pod), vec!["lo"]);
    assert_eq!(World::link_names(&w.host), vec!["lo", "krs0"]);
}

#[test]
fn del_is_idempotent_and_works_without_the_namespace() {
    let w = World::new();
    let (conf, bc) = netconf(r#","ipMasq":true"#);
    w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap();
    w.run(true, |d| del(d, &request(Command::Del), &conf, &bc)).unwrap();
    assert_eq!(World::link_names(&w.pod), vec!["lo"]);
    assert_eq!(World::link_names(&w.host), vec!["lo", "krs0"]);
    w.run(true, |d| del(d, &request(Command::Del), &conf, &bc)).unwrap();
    w.run(false, |d| del(d, &request(Command::Del), &conf, &bc)).unwrap();
    assert_eq!(*w.ipam_log.borrow(), vec![Command::Add, Command::Del, Command::Del, Command::Del]);
    assert_eq!(w.fw.log.borrow().iter().filter(|l| l.starts_with("unmasq")).count(), 3);
}

#[test]
fn del_without_namespace_still_removes_the_host_end() {
    let w = World::new();
    let (conf, bc) = netconf("");
    w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap();
    w.run(false, |d| del(d, &request(Command::Del), &conf, &bc)).unwrap();
    assert_eq!(World::link_names(&w.host), vec!["lo", "krs0"]);
}

#[test]
fn refuses_a_non_bridge_link_and_a_taken_ifname() {
    let w = World::new();
    let (conf, bc) = netconf("");
    w.host.create_veth("krs0", "x", w.fd.as_fd(), 1500).unwrap();
    let err = w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap_err();
    assert!(err.msg.contains("not a bridge"), "{}", err.msg);

    let w = World::new();
    w.pod.create_bridge("eth0", None).unwrap();
    let err = w.run(true, |d| add(d, &request(Command::Add), &conf, &bc)).unwrap_err();
    assert!(err.msg.contains("already has an interface named \"eth0\""), "{}", err.msg);
    assert!(w.ipam_log.borrow().is_empty(), "no address is taken for a refused ADD");
}

#[test]
fn host_veth_names_are_stable_and_distinct() {
    let a = links::host_veth_name("c1", "eth0");
    assert_eq!(a, links::host_veth_name("c1", "eth0"));
    assert_ne!(a, links::host_veth_name("c1", "eth1"));
    assert_ne!(a, links::host_veth_name("c2", "eth0"));
    assert_eq!(a.len(), 12);
}
