//! The `krs-bridge` plugin: a veth pair from the pod's network namespace to a Linux bridge on
//! the host, the pod's addresses from the IPAM plugin named in `ipam` (run from `CNI_PATH`),
//! the bridge as the pods' gateway, and masquerade of pod traffic leaving the pod network.
//!
//! ADD rolls back what it did when a later step fails; DEL is idempotent and works when the
//! pod's namespace is already gone (the host end of the pair has a name derived from the
//! attachment, see [`links::host_veth_name`]).

pub mod config;
pub mod links;

use std::os::fd::BorrowedFd;

use config::BridgeConf;
use links::kernel;

use crate::firewall::{self, Firewall, Owner};
use crate::invoke::{self, Invocation};
use crate::netlink::{Netlink, Rtnl};
use crate::skel::Plugin;
use crate::spec::{CniResult, Command, Error, ErrorCode, Interface, NetConf, Request};

pub struct Bridge;

/// What one invocation acts on. The plugin builds real ones from the request; unit tests
/// pass fakes.
pub struct Deps<'a> {
    pub host: &'a dyn Netlink,
    /// The pod's namespace; `None` on a DEL whose namespace is gone.
    pub pod: Option<(&'a dyn Netlink, BorrowedFd<'a>)>,
    /// Runs the IPAM plugin with a command (ADD returns its result).
    pub ipam: &'a dyn Fn(Command) -> Result<Option<CniResult>, Error>,
    /// The masquerade backend, made only when `ipMasq` is on.
    pub firewall: &'a dyn Fn() -> Result<Box<dyn Firewall>, Error>,
}

fn owner(req: &Request, conf: &NetConf) -> Owner {
    Owner { network: conf.name.clone(), container_id: req.container_id.clone(), ifname: req.ifname.clone() }
}

pub fn add(deps: &Deps<'_>, req: &Request, conf: &NetConf, bc: &BridgeConf) -> Result<CniResult, Error> {
    let Some((pod, pod_fd)) = deps.pod else {
        return Err(Error::new(ErrorCode::UnknownContainer, "the container's network namespace is not there"));
    };
    let host_name = links::host_veth_name(&req.container_id, &req.ifname);
    let bridge = links::ensure_bridge(deps.host, bc)?;
    let (host_end, pod_end) = links::create_pair(deps.host, pod, pod_fd, bc, &bridge, &req.ifname, &host_name)?;
    let undo_links = || {
        let _ = links::teardown(deps.host, Some(pod), &req.ifname, &host_name);
    };
    let ipam_result = match conf.ipam_type() {
        None => CniResult::default(),
        Some(_) => match (deps.ipam)(Command::Add) {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                undo_links();
                return Err(e);
            }
        },
    };
    let configured = (|| {
        if bc.is_gateway {
            links::ensure_gateways(deps.host, &bridge, &ipam_result)?;
        }
        links::configure_pod(pod, &pod_end, bc, &ipam_result)?;
        if bc.ip_masq {
            let fw = (deps.firewall)()?;
            for ip in &ipam_result.ips {
                fw.add_masquerade(&owner(req, conf), ip.address).map_err(|e| Error::kernel(e.to_string()))?;
            }
        }
        Ok::<(), Error>(())
    })();
    if let Err(e) = configured {
        if bc.ip_masq
            && let Ok(fw) = (deps.firewall)() {
                let _ = fw.del_masquerade(&owner(req, conf));
            }
        if conf.ipam_type().is_some() {
            let _ = (deps.ipam)(Command::Del);
        }
        undo_links();
        return Err(e);
    }
    let bridge = deps.host.link_by_index(bridge.index).map_err(kernel)?.unwrap_or(bridge);
    let netns = req.netns.as_ref().map(|p| p.display().to_string());
    let mut result = ipam_result;
    result.interfaces = vec![
        Interface { name: bridge.name, mac: bridge.mac, ..Default::default() },
        Interface { name: host_end.name, mac: host_end.mac, ..Default::default() },
        Interface { name: pod_end.name, mac: pod_end.mac, mtu: Some(pod_end.mtu), sandbox: netns, ..Default::default() },
    ];
    for ip in &mut result.ips {
        ip.interface = Some(2);
    }
    result.routes = links::pod_routes(bc, &result).into_iter().map(|(dst, gw)| crate::spec::Route::new(dst, gw)).collect();
    if let Some(dns) = &conf.dns
        && result.dns.is_empty() {
            result.dns = dns.clone();
        }
    Ok(result)
}

/// Releases the addresses, removes the pair and the masquerade rules. Every step runs even
/// when an earlier one failed; the first error is returned.
pub fn del(deps: &Deps<'_>, req: &Request, conf: &NetConf, bc: &BridgeConf) -> Result<(), Error> {
    let mut first: Option<Error> = None;
    if conf.ipam_type().is_some()
        && let Err(e) = (deps.ipam)(Command::Del) {
            first.get_or_insert(e);
        }
    let host_name = links::host_veth_name(&req.container_id, &req.ifname);
    if let Err(e) = links::teardown(deps.host, deps.pod.map(|(p, _)| p), &req.ifname, &host_name) {
        first.get_or_insert(e);
    }
    if bc.ip_masq {
        let res = (deps.firewall)().and_then(|fw| fw.del_masquerade(&owner(req, conf)).map_err(|e| Error::kernel(e.to_string())));
        if let Err(e) = res {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

pub fn check(deps: &Deps<'_>, req: &Request, conf: &NetConf, bc: &BridgeConf) -> Result<(), Error> {
    let Some(prev) = &conf.prev_result else {
        return Err(Error::invalid_config("CHECK needs the ADD result in \"prevResult\""));
    };
    let Some((pod, _)) = deps.pod else {
        return Err(Error::new(ErrorCode::UnknownContainer, "the container's network namespace is not there"));
    };
    if conf.ipam_type().is_some() {
        (deps.ipam)(Command::Check)?;
    }
    let host_name = links::host_veth_name(&req.container_id, &req.ifname);
    links::check(deps.host, pod, bc, &req.ifname, &host_name, prev)?;
    if bc.ip_masq {
        let fw = (deps.firewall)()?;
        for ip in &prev.ips {
            fw.check_masquerade(&owner(req, conf), ip.address).map_err(|e| Error::kernel(e.to_string()))?;
        }
    }
    Ok(())
}

fn invocation<'a>(req: &'a Request, command: Command) -> Invocation<'a> {
    Invocation {
        command,
        container_id: &req.container_id,
        netns: req.netns.as_deref(),
        ifname: &req.ifname,
        args: &req.args,
        path: &req.path,
    }
}

fn make_firewall(bc: &BridgeConf) -> Result<Box<dyn Firewall>, Error> {
    firewall::backend(bc.ip_masq_backend.as_deref()).map_err(|e| Error::kernel(e.to_string()))
}

/// Runs `f` with real dependencies: the host's netlink, the pod's (when its namespace can be
/// opened; a DEL tolerates its absence), the IPAM plugin from `CNI_PATH`.
fn with_deps<T>(req: &Request, conf: &NetConf, bc: &BridgeConf, f: impl FnOnce(&Deps<'_>) -> Result<T, Error>) -> Result<T, Error> {
    let host = Rtnl::host().map_err(kernel)?;
    let pod = match &req.netns {
        Some(path) => match Rtnl::in_netns(path) {
            Ok(pod) => Some(pod),
            Err(_) if req.command == Command::Del => None,
            Err(e) => return Err(Error::new(ErrorCode::UnknownContainer, e.to_string())),
        },
        None => None,
    };
    let ipam = |command: Command| match conf.ipam_type() {
        Some(t) => invoke::delegate(t, &invocation(req, command), &conf.raw),
        None => Ok(None),
    };
    let fw = || make_firewall(bc);
    let pod_ref = pod.as_ref().and_then(|p| p.netns_fd().map(|fd| (p as &dyn Netlink, fd)));
    f(&Deps { host: &host, pod: pod_ref, ipam: &ipam, firewall: &fw })
}

impl Plugin for Bridge {
    fn add(&self, req: &Request, conf: &NetConf) -> Result<CniResult, Error> {
        let bc = BridgeConf::from_netconf(conf)?;
        with_deps(req, conf, &bc, |d| add(d, req, conf, &bc))
    }

    fn del(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let bc = BridgeConf::from_netconf(conf)?;
        with_deps(req, conf, &bc, |d| del(d, req, conf, &bc))
    }

    fn check(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let bc = BridgeConf::from_netconf(conf)?;
        with_deps(req, conf, &bc, |d| check(d, req, conf, &bc))
    }

    fn status(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        match conf.ipam_type() {
            Some(t) => invoke::delegate(t, &invocation(req, Command::Status), &conf.raw).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Releases addresses of attachments no longer valid (through IPAM's GC) and their
    /// masquerade rules. Links need no GC: a pod's end goes with its namespace, and with it
    /// the host end.
    fn gc(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let bc = BridgeConf::from_netconf(conf)?;
        if let Some(t) = conf.ipam_type() {
            invoke::delegate(t, &invocation(req, Command::Gc), &conf.raw)?;
        }
        if bc.ip_masq {
            let keep: Vec<Owner> = conf
                .valid_attachments
                .iter()
                .map(|a| Owner { network: conf.name.clone(), container_id: a.container_id.clone(), ifname: a.ifname.clone() })
                .collect();
            make_firewall(&bc)?.gc(&conf.name, &keep).map_err(|e| Error::kernel(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
