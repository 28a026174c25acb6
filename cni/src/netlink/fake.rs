//! An in-memory [`Netlink`] for unit tests: links, addresses, routes and sysctls of one
//! namespace, with veth peers landing in a second fake registered by fd number.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;

use ipnet::IpNet;

use super::{Error, Link, Netlink, Result, RouteEntry};

#[derive(Debug, Default)]
pub struct State {
    pub links: Vec<Link>,
    pub addresses: BTreeMap<u32, Vec<IpNet>>,
    pub routes: Vec<RouteEntry>,
    pub sysctls: BTreeMap<String, String>,
    pub hairpin: BTreeMap<u32, bool>,
    next_index: u32,
}

/// A fake namespace. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeNetlink {
    pub state: Rc<RefCell<State>>,
    /// Namespaces a veth peer can be sent to, by the raw fd the caller passes.
    pub peers: Rc<RefCell<BTreeMap<i32, FakeNetlink>>>,
}

impl FakeNetlink {
    pub fn new() -> FakeNetlink {
        let fake = FakeNetlink::default();
        fake.state.borrow_mut().next_index = 1;
        fake.insert("lo", None);
        fake
    }

    /// Registers `peer` as the namespace that fd number `fd` stands for.
    pub fn register_peer(&self, fd: i32, peer: &FakeNetlink) {
        self.peers.borrow_mut().insert(fd, peer.clone());
    }

    fn insert(&self, name: &str, kind: Option<&str>) -> Link {
        let mut s = self.state.borrow_mut();
        s.next_index += 1;
        let index = s.next_index;
        let link = Link {
            index,
            name: name.to_string(),
            mac: format!("02:00:00:00:{:02x}:{:02x}", index >> 8, index & 0xff),
            mtu: 1500,
            up: false,
            master: None,
            kind: kind.map(str::to_string),
            promisc: false,
        };
        s.links.push(link.clone());
        link
    }

    fn update(&self, index: u32, f: impl FnOnce(&mut Link)) -> Result<()> {
        let mut s = self.state.borrow_mut();
        let link = s.links.iter_mut().find(|l| l.index == index).ok_or_else(|| Error::NoSuchLink(format!("#{index}")))?;
        f(link);
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        self.state.borrow().links.iter().any(|l| l.name == name)
    }
}

fn eexist(op: &str) -> Error {
    Error::Kernel { op: op.to_string(), source: std::io::Error::from_raw_os_error(libc::EEXIST) }
}

impl Netlink for FakeNetlink {
    fn link(&self, name: &str) -> Result<Option<Link>> {
        Ok(self.state.borrow().links.iter().find(|l| l.name == name).cloned())
    }

    fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        Ok(self.state.borrow().links.iter().find(|l| l.index == index).cloned())
    }

    fn links(&self) -> Result<Vec<Link>> {
        Ok(self.state.borrow().links.clone())
    }

    fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<Link> {
        if self.exists(name) {
            return Err(eexist("create bridge"));
        }
        let link = self.insert(name, Some("bridge"));
        if let Some(mtu) = mtu {
            self.set_mtu(link.index, mtu)?;
        }
        Ok(self.link_by_index(link.index)?.expect("just made"))
    }

    fn create_veth(&self, host_name: &str, peer_name: &str, peer_netns: BorrowedFd<'_>, mtu: u32) -> Result<Link> {
        let peer = self.peers.borrow().get(&peer_netns.as_raw_fd()).cloned().expect("fake peer namespace registered");
        if self.exists(host_name) || peer.exists(peer_name) {
            return Err(eexist("create veth"));
        }
        let host = self.insert(host_name, Some("veth"));
        let inner = peer.insert(peer_name, Some("veth"));
        self.set_mtu(host.index, mtu)?;
        peer.set_mtu(inner.index, mtu)?;
        Ok(self.link_by_index(host.index)?.expect("just made"))
    }

    fn delete_link(&self, name: &str) -> Result<bool> {
        let mut s = self.state.borrow_mut();
        let before = s.links.len();
        s.links.retain(|l| l.name != name);
        Ok(s.links.len() != before)
    }

    fn set_up(&self, index: u32) -> Result<()> {
        self.update(index, |l| l.up = true)
    }

    fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.update(index, |l| l.mtu = mtu)
    }

    fn set_promisc(&self, index: u32, on: bool) -> Result<()> {
        self.update(index, |l| l.promisc = on)
    }

    fn set_master(&self, index: u32, master: u32) -> Result<()> {
        self.update(index, |l| l.master = Some(master))
    }

    fn set_hairpin(&self, index: u32, on: bool) -> Result<()> {
        self.state.borrow_mut().hairpin.insert(index, on);
        Ok(())
    }

    fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        Ok(self.state.borrow().addresses.get(&index).cloned().unwrap_or_default())
    }

    fn add_address(&self, index: u32, addr: IpNet) -> Result<()> {
        let mut s = self.state.borrow_mut();
        let list = s.addresses.entry(index).or_default();
        if !list.contains(&addr) {
            list.push(addr);
        }
        Ok(())
    }

    fn delete_address(&self, index: u32, addr: IpNet) -> Result<bool> {
        let mut s = self.state.borrow_mut();
        let list = s.addresses.entry(index).or_default();
        let before = list.len();
        list.retain(|a| *a != addr);
        Ok(list.len() != before)
    }

    fn routes(&self) -> Result<Vec<RouteEntry>> {
        Ok(self.state.borrow().routes.clone())
    }

    fn add_route(&self, route: &RouteEntry) -> Result<()> {
        let mut s = self.state.borrow_mut();
        if !s.routes.contains(route) {
            s.routes.push(route.clone());
        }
        Ok(())
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.state.borrow_mut().sysctls.insert(key.to_string(), value.to_string());
        Ok(())
    }
}
