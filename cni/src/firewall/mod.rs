//! Packet rewriting for pods: masquerade of pod traffic leaving the pod network (the bridge's
//! `ipMasq`) and hostPort DNAT (the portmap plugin), behind [`Firewall`] with an nftables
//! backend (a table of our own) and an iptables fallback (chains of our own). Every rule is
//! tagged with its [`Owner`] so DEL and GC remove exactly what one attachment added.

mod exec;
pub mod iptables;
pub mod nftables;
pub mod tag;

use std::net::IpAddr;

use ipnet::IpNet;

pub use iptables::Iptables;
pub use nftables::Nftables;

/// Who a rule belongs to: one attachment of one container to one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

/// One hostPort mapping, resolved: the pod address it goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortForward {
    /// Only traffic to this host address is forwarded; `None`: any host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// How port mappings treat traffic that needs source NAT to come back the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortmapOptions {
    /// Masquerade hairpin traffic (a pod reaching its own hostPort) and traffic from
    /// localhost (`snat` in the reference portmap; default true).
    pub snat: bool,
    /// Masquerade all forwarded traffic, not only hairpin and localhost (`masqAll`).
    pub masq_all: bool,
}

impl Default for PortmapOptions {
    fn default() -> PortmapOptions {
        PortmapOptions { snat: true, masq_all: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{backend} backend: cannot run {program}: {source}")]
    Spawn { backend: &'static str, program: String, source: std::io::Error },
    #[error("{backend} backend: {command} failed: {stderr}")]
    Command { backend: &'static str, command: String, stderr: String },
    #[error("{backend} backend: cannot read its output: {detail}")]
    Output { backend: &'static str, detail: String },
    #[error("unknown firewall backend {0:?}: expected \"nftables\" or \"iptables\"")]
    UnknownBackend(String),
    #[error("no firewall backend works here: {0}")]
    NoBackend(String),
    #[error("cannot lock {path}: {source}")]
    Lock { path: String, source: std::io::Error },
    #[error("rules for {owner} are missing or differ: {detail}")]
    Check { owner: String, detail: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A firewall backend. Adds are idempotent (adding what is there replaces it), deletes of
/// what is absent succeed.
pub trait Firewall {
    fn name(&self) -> &'static str;
    /// Masquerade traffic from `addr` (a pod address with its prefix) to anything outside
    /// its subnet, except multicast.
    fn add_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()>;
    fn del_masquerade(&self, owner: &Owner) -> Result<()>;
    fn check_masquerade(&self, owner: &Owner, addr: IpNet) -> Result<()>;
    fn add_port_forwards(&self, owner: &Owner, forwards: &[PortForward], options: &PortmapOptions) -> Result<()>;
    fn del_port_forwards(&self, owner: &Owner) -> Result<()>;
    fn check_port_forwards(&self, owner: &Owner, forwards: &[PortForward]) -> Result<()>;
    /// Removes every rule of `network` whose owner is not in `keep` (CNI GC).
    fn gc(&self, network: &str, keep: &[Owner]) -> Result<()>;
}

/// The backend to use: `"nftables"`, `"iptables"`, or `None` for nftables when `nft` works
/// here, else iptables.
pub fn backend(preference: Option<&str>) -> Result<Box<dyn Firewall>> {
    backend_in(preference, None)
}

/// [`backend`] acting inside the named network namespace instead of the caller's.
pub fn backend_in(preference: Option<&str>, netns: Option<&str>) -> Result<Box<dyn Firewall>> {
    let nft = || netns.map_or_else(Nftables::new, Nftables::in_netns);
    let ipt = || netns.map_or_else(Iptables::new, Iptables::in_netns);
    match preference {
        Some("nftables") => Ok(Box::new(nft())),
        Some("iptables") => Ok(Box::new(ipt())),
        Some(other) => Err(Error::UnknownBackend(other.to_string())),
        None => {
            let nft_err = match nft().works() {
                Ok(()) => return Ok(Box::new(nft())),
                Err(e) => e,
            };
            match ipt().works() {
                Ok(()) => Ok(Box::new(ipt())),
                Err(ipt_err) => Err(Error::NoBackend(format!("{nft_err}; {ipt_err}"))),
            }
        }
    }
}
