//! [`Netlink`] over rtnetlink: one netlink socket per handle, bound to the namespace it was
//! created in, driven by a current-thread tokio runtime the handle owns (the trait is
//! synchronous, so each call blocks on its request). Do not call it from inside another
//! tokio runtime.

mod decode;
mod netns;

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_core::DefaultNla;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage, LinkProtoInfoBridge};
use netlink_packet_route::route::RouteScope;
use rtnetlink::{AddressMessageBuilder, Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::runtime::Runtime;

use super::{Error, Link, Netlink, Result, RouteEntry};

/// `IFLA_BRPORT_MODE` in `IFLA_PROTINFO`: the bridge port's hairpin flag.
const IFLA_BRPORT_MODE: u16 = 4;

pub struct Rtnl {
    rt: Runtime,
    handle: Handle,
    /// The namespace of an `in_netns` handle; `None` for the caller's own.
    netns: Option<File>,
}

impl Rtnl {
    /// A handle on the calling thread's network namespace.
    pub fn host() -> Result<Rtnl> {
        let (rt, handle) = connect().map_err(|source| kernel("open netlink socket".into(), source))?;
        Ok(Rtnl { rt, handle, netns: None })
    }

    /// A handle on the namespace of the netns file at `path` (`/proc/<pid>/ns/net` or a
    /// bind mount such as `/run/netns/<name>`), usable from any thread.
    pub fn in_netns(path: &Path) -> Result<Rtnl> {
        let netns_err = |source| Error::Netns { path: path.display().to_string(), source };
        let file = File::open(path).map_err(netns_err)?;
        let (rt, handle) = netns::run_in(&file, connect)
            .map_err(netns_err)?
            .map_err(|source| kernel(format!("open netlink socket in {}", path.display()), source))?;
        Ok(Rtnl { rt, handle, netns: Some(file) })
    }

    /// The namespace of an `in_netns` handle, for `create_veth` of another handle.
    pub fn netns_fd(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(|f| f.as_fd())
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A name for link `index` in an error message: its name, or `#index` if it has none
    /// (gone, or the lookup failing too).
    fn describe(&self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(link)) => link.name,
            _ => format!("#{index}"),
        }
    }

    fn get_link(&self, msg: rtnetlink::LinkGetRequest) -> std::result::Result<Option<Link>, rtnetlink::Error> {
        match self.block_on(msg.execute().try_next()) {
            Ok(found) => Ok(found.as_ref().map(decode::link)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends an `RTM_SETLINK` for `index`; `what` says what for the error (built only then:
    /// it may look links up).
    fn set_link(&self, msg: LinkMessage, index: u32, what: impl FnOnce() -> String) -> Result<()> {
        self.block_on(self.handle.link().set(msg).execute())
            .map_err(|e| kernel(format!("{} on {}", what(), self.describe(index)), io_error(e)))
    }

    fn fetch_created(&self, name: &str) -> Result<Link> {
        self.link(name)?.ok_or_else(|| Error::NoSuchLink(name.to_string()))
    }
}

/// A netlink socket in the calling thread's namespace, with the runtime that drives it.
fn connect() -> io::Result<(Runtime, Handle)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    // The socket registers with the runtime's reactor, so it is made inside it.
    let (conn, handle, _) = {
        let _guard = rt.enter();
        rtnetlink::new_connection()?
    };
    // Runs whenever a request blocks on the runtime.
    rt.spawn(conn);
    Ok((rt, handle))
}

fn kernel(op: String, source: io::Error) -> Error {
    Error::Kernel { op, source }
}

/// The errno of a kernel error answer.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

fn io_error(e: rtnetlink::Error) -> io::Error {
    match errno(&e) {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::other(e.to_string()),
    }
}

fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr {
        IpNet::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a.addr(), a.prefix_len()).build(),
        IpNet::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(a.addr(), a.prefix_len()).build(),
    }
}

fn describe_route(route: &RouteEntry) -> String {
    match route.gateway {
        Some(gw) => format!("{} via {gw}", route.dst),
        None => route.dst.to_string(),
    }
}

impl Netlink for Rtnl {
    fn link(&self, name: &str) -> Result<Option<Link>> {
        self.get_link(self.handle.link().get().match_name(name))
            .map_err(|e| kernel(format!("get link {name}"), io_error(e)))
    }

    fn link_by_index(&self, index: u32) -> Result<Option<Link>> {
        self.get_link(self.handle.link().get().match_index(index))
            .map_err(|e| kernel(format!("get link #{index}"), io_error(e)))
    }

    fn links(&self) -> Result<Vec<Link>> {
        let msgs: Vec<LinkMessage> = self
            .block_on(self.handle.link().get().execute().try_collect())
            .map_err(|e| kernel("list links".into(), io_error(e)))?;
        Ok(msgs.iter().map(decode::link).collect())
    }

    fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<Link> {
        // Not `LinkBridge::new`, which also sets the bridge up: the trait promises it down.
        let mut msg = LinkMessageBuilder::<LinkBridge>::new(name);
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        self.block_on(self.handle.link().add(msg.build()).execute())
            .map_err(|e| kernel(format!("create bridge {name}"), io_error(e)))?;
        self.fetch_created(name)
    }

    fn create_veth(&self, host_name: &str, peer_name: &str, peer_netns: BorrowedFd<'_>, mtu: u32) -> Result<Link> {
        // The peer is born in its namespace (IFLA_NET_NS_FD on the peer), so its name never
        // has to be free in this one, and nothing is left half-moved if a step fails.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_string())
            .mtu(mtu)
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host_name, peer_name).set_info_data(InfoData::Veth(InfoVeth::Peer(peer))).mtu(mtu).build();
        self.block_on(self.handle.link().add(msg).execute())
            .map_err(|e| kernel(format!("create veth {host_name} (peer {peer_name})"), io_error(e)))?;
        self.fetch_created(host_name)
    }

    fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(link) = self.link(name)? else {
            return Ok(false);
        };
        match self.block_on(self.handle.link().del(link.index).execute()) {
            Ok(()) => Ok(true),
            // Gone between the lookup and the delete (a veth whose peer was deleted).
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(kernel(format!("delete link {name}"), io_error(e))),
        }
    }

    fn set_up(&self, index: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).up().build(), index, || "set up".into())
    }

    fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).mtu(mtu).build(), index, || format!("set mtu {mtu}"))
    }

    fn set_promisc(&self, index: u32, on: bool) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).promiscuous(on).build(), index, || format!("set promisc {on}"))
    }

    fn set_master(&self, index: u32, master: u32) -> Result<()> {
        self.set_link(LinkUnspec::new_with_index(index).controller(master).build(), index, || {
            format!("set master {}", self.describe(master))
        })
    }

    fn set_hairpin(&self, index: u32, on: bool) -> Result<()> {
        // What `bridge link set hairpin on` and the reference CNI plugins send: an AF_BRIDGE
        // RTM_SETLINK, which the kernel hands to the bridge as port settings.
        let mode = LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![u8::from(on)]));
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![mode]));
        self.set_link(msg, index, || format!("set hairpin {on}"))
    }

    fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        let msgs: Vec<AddressMessage> = self
            .block_on(self.handle.address().get().set_link_index_filter(index).execute().try_collect())
            .map_err(|e| kernel(format!("list addresses of {}", self.describe(index)), io_error(e)))?;
        Ok(msgs.iter().filter_map(decode::address).collect())
    }

    fn add_address(&self, index: u32, addr: IpNet) -> Result<()> {
        let req = self.handle.address().add(index, addr.addr(), addr.prefix_len());
        match self.block_on(req.execute()) {
            Ok(()) => Ok(()),
            // EEXIST also answers a different prefix length of the same IPv6 address: only
            // the very same address counts as done.
            Err(e) if errno(&e) == Some(libc::EEXIST) && self.addresses(index)?.contains(&addr) => Ok(()),
            Err(e) => Err(kernel(format!("add address {addr} to {}", self.describe(index)), io_error(e))),
        }
    }

    fn delete_address(&self, index: u32, addr: IpNet) -> Result<bool> {
        match self.block_on(self.handle.address().del(address_message(index, addr)).execute()) {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(false),
            Err(e) => Err(kernel(format!("delete address {addr} from {}", self.describe(index)), io_error(e))),
        }
    }

    fn routes(&self) -> Result<Vec<RouteEntry>> {
        let mut routes = Vec::new();
        let queries = [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()];
        for query in queries {
            let msgs: Vec<_> = self
                .block_on(self.handle.route().get(query).execute().try_collect())
                .map_err(|e| kernel("list routes".into(), io_error(e)))?;
            routes.extend(msgs.iter().filter_map(decode::route));
        }
        Ok(routes)
    }

    fn add_route(&self, route: &RouteEntry) -> Result<()> {
        let op = || format!("add route {} dev {}", describe_route(route), self.describe(route.link));
        let invalid = |e: &dyn std::fmt::Display| kernel(op(), io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
        let mut msg = RouteMessageBuilder::<IpAddr>::new().destination_prefix(route.dst.addr(), route.dst.prefix_len()).map_err(|e| invalid(&e))?;
        if let Some(gw) = route.gateway {
            msg = msg.gateway(gw).map_err(|e| invalid(&e))?;
        } else if route.dst.addr().is_ipv4() {
            // A gatewayless IPv4 route is on-link, as `ip route add <net> dev <link>` makes it.
            msg = msg.scope(RouteScope::Link);
        }
        if route.link != 0 {
            msg = msg.output_interface(route.link);
        }
        match self.block_on(self.handle.route().add(msg.build()).execute()) {
            Ok(()) => Ok(()),
            // EEXIST also answers another route to the same destination and metric.
            Err(e) if errno(&e) == Some(libc::EEXIST) && self.routes()?.contains(route) => Ok(()),
            Err(e) => Err(kernel(op(), io_error(e))),
        }
    }

    fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let sysctl_err = |source| Error::Sysctl { key: key.to_string(), source };
        let path = netns::sysctl_path(key).map_err(sysctl_err)?;
        let write = || std::fs::write(&path, value);
        match &self.netns {
            // /proc/sys/net resolves in the opener's namespace, so the write happens there.
            Some(ns) => netns::run_in(ns, write).and_then(|r| r).map_err(sysctl_err),
            None => write().map_err(sysctl_err),
        }
    }
}
