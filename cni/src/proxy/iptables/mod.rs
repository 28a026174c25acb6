//! The iptables backend of the service proxy (the fallback for hosts without nftables):
//! chains of our own (`KRS-...`) in the nat and filter tables, reached from the built-in
//! chains by single jump rules we add when missing, loaded with `iptables-restore --noflush`
//! (one call per table per sync) so nothing that is not ours is flushed or rewritten.
//! Later syncs write only the chains whose rules changed since the last successful one.
//! The jump rules and `route_localnet` are checked on full syncs only (each `iptables -C`
//! reads the whole table, which costs seconds at 10,000 services).

mod exec;
mod names;
mod render;

use std::collections::BTreeSet;

pub use exec::Exec;
pub use render::render_restore;

use exec::Tools;
use render::{Chains, Ruleset, restore_input};

use super::backend::{Backend, BackendOptions, ProxyError, SyncReport};
use super::model::ProxyState;

/// The jump rules from built-in chains into ours: (table, built-in chain, rule).
const HOOKS: [(&str, &str, &[&str]); 7] = [
    ("nat", "PREROUTING", &["-j", names::SERVICES]),
    ("nat", "OUTPUT", &["-j", names::SERVICES]),
    ("nat", "POSTROUTING", &["-j", names::POSTROUTING]),
    ("filter", "INPUT", &["-m", "conntrack", "--ctstate", "NEW", "-j", names::FILTER_SERVICES]),
    ("filter", "FORWARD", &["-m", "conntrack", "--ctstate", "NEW", "-j", names::FILTER_SERVICES]),
    ("filter", "OUTPUT", &["-m", "conntrack", "--ctstate", "NEW", "-j", names::FILTER_SERVICES]),
    ("filter", "INPUT", &["-j", names::FILTER_LOCALNET]),
];

pub struct Iptables {
    exec: Box<dyn Exec>,
    /// What the last successful sync left in the kernel; `None`: unknown (nothing synced
    /// yet, or the last sync failed), so the next sync rewrites everything.
    applied: Option<(ProxyState, Ruleset)>,
}

impl Iptables {
    /// The backend over the real tools, acting in `options.netns` when set. Nothing is
    /// touched until the first [`Backend::sync`].
    pub fn new(options: BackendOptions) -> Iptables {
        Iptables::with_exec(Box::new(Tools { netns: options.netns }))
    }

    /// Over another way of running the tools (the unit tests' recorder).
    pub fn with_exec(exec: Box<dyn Exec>) -> Iptables {
        Iptables { exec, applied: None }
    }

    /// Everything ours in one transaction per table, as kube-proxy does. Slow at scale on
    /// iptables-nft (1.8.9): a `--noflush` restore costs about new chains x rules (10,000
    /// services of 5 endpoints: ~140 s, against 3.5 s for the same input without
    /// `--noflush`); loading endpoint chains first in separate batches would cut it, at
    /// the price of atomicity, and is not done.
    fn full_sync(&self, desired: &Ruleset) -> Result<(), ProxyError> {
        for (table, chains) in [("nat", &desired.nat), ("filter", &desired.filter)] {
            let stale: Vec<String> = self.our_chains(table)?.into_iter().filter(|c| !chains.contains_key(c)).collect();
            self.restore(table, &restore_input(table, chains.iter(), &stale))?;
        }
        for (table, chain, rule) in HOOKS {
            if !self.hook_present(table, chain, rule) {
                self.iptables(table, chain, "-I", rule)?;
            }
        }
        // Node ports on 127.0.0.1 are DNATed to pod addresses: the kernel drops such
        // packets unless loopback sources may be routed.
        self.exec.run("sysctl", &["-q", "-w", "net.ipv4.conf.all.route_localnet=1"], None)?;
        Ok(())
    }

    fn partial_sync(&self, applied: &Ruleset, desired: &Ruleset) -> Result<(), ProxyError> {
        for (table, before, after) in [("nat", &applied.nat, &desired.nat), ("filter", &applied.filter, &desired.filter)] {
            let (write, delete) = changes(before, after);
            if write.is_empty() && delete.is_empty() {
                continue;
            }
            self.restore(table, &restore_input(table, write.iter().map(|(c, r)| (*c, *r)), &delete))?;
        }
        Ok(())
    }

    /// Chains of ours now in `table`.
    fn our_chains(&self, table: &str) -> Result<BTreeSet<String>, ProxyError> {
        let saved = self.exec.run("iptables-save", &["-t", table], None)?;
        Ok(saved.lines().filter_map(|l| l.strip_prefix(':')?.split_whitespace().next()).filter(|c| names::is_ours(c)).map(str::to_string).collect())
    }

    fn restore(&self, table: &str, input: &str) -> Result<(), ProxyError> {
        self.exec.run("iptables-restore", &["--noflush"], Some(input)).map(|_| ()).map_err(|e| match e {
            // Name the rule iptables-restore refused ("line N failed"): the input can be
            // megabytes, too much for an error message.
            ProxyError::Command { backend, command, stderr } => {
                let line = failed_line(&stderr).and_then(|n| input.lines().nth(n - 1));
                let command = format!("{command} (table {table}{})", line.map(|l| format!(", rule {l:?}")).unwrap_or_default());
                ProxyError::Command { backend, command, stderr }
            }
            other => other,
        })
    }

    fn hook_present(&self, table: &str, chain: &str, rule: &[&str]) -> bool {
        self.iptables(table, chain, "-C", rule).is_ok()
    }

    fn iptables(&self, table: &str, chain: &str, op: &str, rule: &[&str]) -> Result<String, ProxyError> {
        let mut args = vec!["-w", "5", "-t", table, op, chain];
        args.extend_from_slice(rule);
        self.exec.run("iptables", &args, None)
    }
}

/// The chains to write (new or with other rules) and to delete, from `before` to `after`.
fn changes<'a>(before: &Chains, after: &'a Chains) -> (Vec<(&'a String, &'a Vec<String>)>, Vec<String>) {
    let write = after.iter().filter(|(chain, rules)| before.get(*chain) != Some(*rules)).collect();
    let delete = before.keys().filter(|c| !after.contains_key(*c)).cloned().collect();
    (write, delete)
}

/// `N` from iptables-restore's "line N failed".
fn failed_line(stderr: &str) -> Option<usize> {
    let rest = &stderr[stderr.find("line ")? + 5..];
    rest.split_whitespace().next()?.parse().ok().filter(|n| *n > 0)
}

/// Service ports added, removed or changed from `before` to `after` (all of them when
/// what every rule depends on, the node or the cluster CIDRs, changed).
fn changed_ports(before: &ProxyState, after: &ProxyState) -> usize {
    if before.node_name != after.node_name || before.cluster_cidrs != after.cluster_cidrs {
        return after.services.len() + before.services.keys().filter(|k| !after.services.contains_key(*k)).count();
    }
    let changed = after.services.iter().filter(|(k, v)| before.services.get(*k) != Some(*v)).count();
    changed + before.services.keys().filter(|k| !after.services.contains_key(*k)).count()
}

impl Backend for Iptables {
    fn sync(&mut self, state: &ProxyState) -> Result<SyncReport, ProxyError> {
        let desired = render::render(state);
        // Taken, so a failure leaves `None`: the next sync is a full one.
        let report = match self.applied.take() {
            Some((before, applied)) => {
                self.partial_sync(&applied, &desired)?;
                SyncReport { full: false, changed: changed_ports(&before, state) }
            }
            None => {
                self.full_sync(&desired)?;
                SyncReport { full: true, changed: state.services.len() }
            }
        };
        self.applied = Some((state.clone(), desired));
        Ok(report)
    }

    fn cleanup(&mut self) -> Result<(), ProxyError> {
        self.applied = None;
        for (table, chain, rule) in HOOKS {
            // Several copies could have been added by hand or by a crashed older run.
            while self.hook_present(table, chain, rule) {
                self.iptables(table, chain, "-D", rule)?;
            }
        }
        for table in ["nat", "filter"] {
            let ours: Vec<String> = self.our_chains(table)?.into_iter().collect();
            if !ours.is_empty() {
                self.restore(table, &restore_input(table, std::iter::empty(), &ours))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
