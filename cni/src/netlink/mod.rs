//! The kernel's network configuration as the plugins need it, behind [`Netlink`]: one handle
//! per network namespace (the host's, or a pod's opened by path). The real implementation
//! talks rtnetlink (`rtnl.rs`); [`fake::FakeNetlink`] keeps an in-memory model so the bridge
//! logic is unit-tested without root.

pub mod fake;
mod rtnl;

pub use rtnl::Rtnl;

use std::net::IpAddr;
use std::os::fd::BorrowedFd;

use ipnet::IpNet;

/// A link as the plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    /// `bridge`, `veth`, ... (`IFLA_INFO_KIND`); `None` for links without one (lo, physical).
    pub kind: Option<String>,
    pub promisc: bool,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output link index.
    pub link: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netlink {op} failed: {source}")]
    Kernel { op: String, source: std::io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    Netns { path: String, source: std::io::Error },
    #[error("no link named {0:?}")]
    NoSuchLink(String),
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Operations in one network namespace. Adds are idempotent where the kernel would answer
/// EEXIST for the same thing (an address or route already present is success); deletes of
/// what is absent answer `Ok(false)`.
pub trait Netlink {
    fn link(&self, name: &str) -> Result<Option<Link>>;
    fn link_by_index(&self, index: u32) -> Result<Option<Link>>;
    fn links(&self) -> Result<Vec<Link>>;
    /// Creates a bridge (down, no addresses) and returns it.
    fn create_bridge(&self, name: &str, mtu: Option<u32>) -> Result<Link>;
    /// Creates a veth pair: `host_name` in this namespace, `peer_name` in the namespace of
    /// `peer_netns` (an open `/proc/<pid>/ns/net` or bind-mounted netns file), both with `mtu`.
    /// Returns the link in this namespace; the peer is looked up through that namespace's handle.
    fn create_veth(&self, host_name: &str, peer_name: &str, peer_netns: BorrowedFd<'_>, mtu: u32) -> Result<Link>;
    fn delete_link(&self, name: &str) -> Result<bool>;
    fn set_up(&self, index: u32) -> Result<()>;
    fn set_mtu(&self, index: u32, mtu: u32) -> Result<()>;
    fn set_promisc(&self, index: u32, on: bool) -> Result<()>;
    /// Makes `index` a port of bridge `master`.
    fn set_master(&self, index: u32, master: u32) -> Result<()>;
    /// The bridge port's hairpin mode (`IFLA_BRPORT_MODE`): traffic may leave by the port it came in.
    fn set_hairpin(&self, index: u32, on: bool) -> Result<()>;
    fn addresses(&self, index: u32) -> Result<Vec<IpNet>>;
    fn add_address(&self, index: u32, addr: IpNet) -> Result<()>;
    fn delete_address(&self, index: u32, addr: IpNet) -> Result<bool>;
    fn routes(&self) -> Result<Vec<RouteEntry>>;
    fn add_route(&self, route: &RouteEntry) -> Result<()>;
    /// Writes `/proc/sys/<key with dots as slashes>` as seen from this namespace.
    fn set_sysctl(&self, key: &str, value: &str) -> Result<()>;
}
