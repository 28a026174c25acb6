//! `krs-host-local`: IP address management from ranges kept on the host, compatible with the
//! reference containernetworking host-local plugin's configuration and on-disk state.
//! Configuration in [`config`], ranges in [`range`], the on-disk store and its lock in
//! [`store`], address choice in [`allocator`]; here the CNI operations.
//!
//! Differences from the reference, on purpose: a repeated ADD for an attachment returns the
//! address it holds instead of failing; one lock is held for a whole ADD (all range sets), so
//! a failed ADD rolls back exactly what it reserved; GC (spec 1.1) releases the addresses of
//! attachments not listed as valid.

pub mod allocator;
pub mod config;
pub mod error;
pub mod range;
pub mod resolv;
pub mod store;

use ipnet::IpNet;
use nix::unistd::{AccessFlags, access};

use crate::skel::Plugin;
use crate::spec::{CniResult, Dns, Error, ErrorCode, IpConfig, NetConf, Request};
use allocator::Grant;
use config::IpamConfig;
pub use error::IpamError;
use range::range_for;
use store::Store;

pub struct HostLocal;

impl Plugin for HostLocal {
    fn add(&self, req: &Request, conf: &NetConf) -> Result<CniResult, Error> {
        Ok(add(req, &IpamConfig::parse(conf, &req.args)?)?)
    }

    fn del(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let cfg = IpamConfig::parse(conf, &req.args)?;
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        for a in store.allocations()?.into_iter().filter(|a| a.owner.is(&req.container_id, &req.ifname)) {
            store.release(a.ip)?;
        }
        Ok(())
    }

    fn check(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let cfg = IpamConfig::parse(conf, &req.args)?;
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        let held = store.allocations()?;
        for (set_index, set) in cfg.ranges.iter().enumerate() {
            if !held.iter().any(|a| a.owner.is(&req.container_id, &req.ifname) && range_for(set, a.ip).is_some()) {
                let e = IpamError::NotAllocated { id: req.container_id.clone(), ifname: req.ifname.clone(), set: set_index };
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn status(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        let cfg = IpamConfig::parse(conf, &req.args)?;
        let dir = cfg.data_dir.join(&cfg.network);
        std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|_| access(&dir, AccessFlags::W_OK).map_err(|e| e.to_string()))
            .map_err(|e| Error::new(ErrorCode::NotAvailable, format!("data directory {} is not writable: {e}", dir.display())))
    }

    fn gc(&self, req: &Request, conf: &NetConf) -> Result<(), Error> {
        // Without the list the runtime has said nothing about what is in use: keep everything.
        if conf.raw.get("cni.dev/valid-attachments").is_none() {
            return Ok(());
        }
        let cfg = IpamConfig::parse(conf, &req.args)?;
        let store = Store::open(&cfg.data_dir, &cfg.network)?;
        for a in store.allocations()? {
            if !conf.valid_attachments.iter().any(|v| a.owner.is(&v.container_id, &v.ifname)) {
                store.release(a.ip)?;
            }
        }
        Ok(())
    }
}

fn add(req: &Request, cfg: &IpamConfig) -> Result<CniResult, IpamError> {
    let dns = match &cfg.resolv_conf {
        Some(path) => resolv::read(path)?,
        None => Dns::default(),
    };
    // Each requested address must fall in some range set, and at most one per set.
    let mut requested: Vec<Option<std::net::IpAddr>> = vec![None; cfg.ranges.len()];
    for &ip in &cfg.requested {
        match cfg.ranges.iter().position(|set| range_for(set, ip).is_some()) {
            None => return Err(IpamError::RequestedOutsideRanges { ip }),
            Some(set) => match requested[set] {
                None => requested[set] = Some(ip),
                Some(first) if first == ip => {}
                Some(first) => return Err(IpamError::RequestedTwice { ip, first, set }),
            },
        }
    }
    let store = Store::open(&cfg.data_dir, &cfg.network)?;
    let existing = store.allocations()?;
    let mut grants: Vec<Grant> = Vec::new();
    for (index, set) in cfg.ranges.iter().enumerate() {
        let areq = allocator::Request { id: &req.container_id, ifname: &req.ifname, requested: requested[index] };
        match allocator::allocate(&store, set, index, &areq, &existing) {
            Ok(grant) => grants.push(grant),
            Err(e) => {
                for g in grants.iter().filter(|g| g.fresh) {
                    let _ = store.release(g.ip);
                }
                return Err(e);
            }
        }
    }
    let ips = grants
        .iter()
        .map(|g| IpConfig {
            address: IpNet::new(g.ip, g.range.subnet.prefix_len()).expect("prefix of a valid subnet"),
            gateway: Some(g.range.gateway),
            interface: None,
        })
        .collect();
    Ok(CniResult { ips, routes: cfg.routes.clone(), dns, ..Default::default() })
}
