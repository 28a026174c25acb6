//! The nftables backend of the service proxy: one table of our own, `ip krs-proxy`, and
//! nothing else is touched.
//!
//! Per-packet cost stays flat in the number of services: a packet to a service address
//! meets one lookup in a global verdict map (`service-ips`, `service-nodeports`) leading to
//! the service port's own chain (`svc-...` for cluster-IP traffic, `ext-...` for node-port,
//! external and load-balancer traffic), which picks an endpoint with a short cascade of
//! `numgen` rules. Programming stays fast by keeping the number of sets small: nft makes
//! every set (named, or anonymous `{ ... }` literal in a rule) in a cost that grows with the
//! number of sets in the table, so per-service data lives in the ELEMENTS of a handful of
//! global maps; only session-affinity services get sets of their own.
//!
//! Ports with no endpoint are listed in `no-endpoint-*` maps that filter chains reject
//! (`connection refused`, as with kube-proxy; reject is not allowed in prerouting).
//! Masquerade: traffic marked 0x4000 (from outside the cluster CIDRs to a cluster IP; all
//! node-port, external and load-balancer traffic with policy Cluster, only the node's own
//! with policy Local) and hairpin traffic (a pod reaching itself through its service).
//!
//! The first sync (and the one after a failure) replaces the whole table in one transaction;
//! later ones send only what changed since the last success.

mod diff;
mod elements;
mod host;
mod names;
mod render;
mod stale;

use std::collections::BTreeMap;

pub use host::{Host, System};
pub use render::render_full;

use super::conntrack::{Conntrack, ConntrackCli};
use super::model::{ProxyState, ServicePortName};
use super::{Backend, BackendOptions, ProxyError, SyncReport};
use render::{Desired, TABLE, UdpTargets};

pub struct Nftables {
    host: Box<dyn Host>,
    conntrack: Box<dyn Conntrack>,
    /// What the kernel holds since the last successful sync; `None`: unknown, so the next
    /// sync rewrites everything.
    applied: Option<Desired>,
    /// The UDP service ports as of the last successful sync (kept across a failure, for
    /// stale conntrack entries); `None` before the first.
    udp: Option<BTreeMap<ServicePortName, UdpTargets>>,
    sysctls_set: bool,
}

impl Nftables {
    /// Acts in `options.netns` when set, else in the caller's namespace.
    pub fn new(options: BackendOptions) -> Nftables {
        let host = System { netns: options.netns.clone() };
        Nftables::with(Box::new(host), Box::new(ConntrackCli { netns: options.netns }))
    }

    /// With a given kernel and conntrack (tests).
    pub fn with(host: Box<dyn Host>, conntrack: Box<dyn Conntrack>) -> Nftables {
        Nftables { host, conntrack, applied: None, udp: None, sysctls_set: false }
    }

    /// Localhost node ports need 127.0.0.0/8 to be routable off `lo`; pod-to-service-to-pod
    /// on one bridge needs bridged replies to see the NAT (when br_netfilter is there).
    fn set_sysctls(&mut self) -> Result<(), ProxyError> {
        if !self.host.sysctl("net.ipv4.conf.all.route_localnet", "1")? {
            return Err(ProxyError::Setup("sysctl net.ipv4.conf.all.route_localnet does not exist".into()));
        }
        self.host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
        self.sysctls_set = true;
        Ok(())
    }

    fn clear_stale(&mut self, udp: &BTreeMap<ServicePortName, UdpTargets>) {
        for flow in stale::stale_flows(self.udp.as_ref(), udp) {
            // The rules are in; a leftover entry only delays the move of one UDP flow, so
            // this is logged rather than failing the sync (which would rewrite everything).
            if let Err(e) = self.conntrack.delete(&flow) {
                tracing::warn!(%flow, error = %e, "cannot delete stale conntrack entries");
            }
        }
    }
}

impl Backend for Nftables {
    fn sync(&mut self, state: &ProxyState) -> Result<SyncReport, ProxyError> {
        if !self.sysctls_set {
            self.set_sysctls()?;
        }
        let (script, applied, report) = match self.applied.take() {
            None => {
                let want = render::desired(state);
                (render::full_script(&want), want, SyncReport { full: true, changed: state.services.len() })
            }
            Some(mut applied) => {
                let delta = diff::update(&mut applied, state);
                (delta.script, applied, SyncReport { full: false, changed: delta.changed })
            }
        };
        if !script.is_empty() {
            // On failure `applied` stays `None`: the next sync starts over with the whole table.
            self.host.nft(&script)?;
        }
        self.applied = Some(applied);
        let udp = render::udp_targets(state);
        self.clear_stale(&udp);
        self.udp = Some(udp);
        Ok(report)
    }

    fn cleanup(&mut self) -> Result<(), ProxyError> {
        self.applied = None;
        match self.host.nft(&format!("delete table {TABLE}\n")) {
            Err(ProxyError::Command { stderr, .. }) if stderr.contains("No such file or directory") => Ok(()),
            other => other,
        }
    }
}


#[cfg(test)]
mod tests;
