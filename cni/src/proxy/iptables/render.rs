//! The rules, as text: a [`ProxyState`] rendered into the chains of the nat and filter
//! tables (kube-proxy's iptables-mode layout, with our own names), and those chains into
//! `iptables-restore --noflush` input. Pure.
//!
//! Packet path: PREROUTING/OUTPUT jump to `KRS-SERVICES`, which holds one rule per service
//! IP and port (walked in order: the linear cost of this mode) and, last, a jump to
//! `KRS-NODEPORTS` for local destinations. A `KRS-SVC-` chain picks an endpoint at random
//! (`statistic` cascades, `recent` for session affinity) and jumps to its `KRS-SEP-` chain,
//! which DNATs. Traffic needing source NAT is marked 0x4000 and masqueraded in
//! `KRS-POSTROUTING`. Service ports without endpoints are refused in the filter table.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::names::{self, FILTER_LOCALNET, FILTER_SERVICES, MARK_MASQ, NODEPORTS, OFF_CLUSTER, POSTROUTING, SERVICES};
use crate::firewall::Protocol;
use crate::proxy::model::{Endpoint, ProxyState, ServicePort, ServicePortName};

/// The mark on packets to masquerade (kube-proxy's bit, so the two never disagree on it).
const MASQ_MARK: &str = "0x4000";

/// One table's chains: name to rules, each rule a whole `-A <chain> ...` line.
pub type Chains = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub nat: Chains,
    pub filter: Chains,
}

/// The complete `iptables-restore --noflush` input for `state`: both tables, every chain of
/// ours declared (so flushed) and refilled; other chains are left alone.
pub fn render_restore(state: &ProxyState) -> String {
    let rules = render(state);
    let mut out = restore_input("nat", rules.nat.iter(), &[]);
    out.push_str(&restore_input("filter", rules.filter.iter(), &[]));
    out
}

/// One table's `iptables-restore --noflush` input: `write` chains are declared (created, or
/// flushed if they exist) and filled; `delete` chains are flushed and then deleted, in the
/// same transaction, so rules that referred to them must be among those rewritten.
pub fn restore_input<'a>(table: &str, write: impl Iterator<Item = (&'a String, &'a Vec<String>)> + Clone, delete: &[String]) -> String {
    let mut out = format!("*{table}\n");
    for (chain, _) in write.clone() {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for chain in delete {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for (_, rules) in write {
        for rule in rules {
            out.push_str(rule);
            out.push('\n');
        }
    }
    for chain in delete {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    out
}

/// Every chain of ours, in both tables, for `state`.
pub fn render(state: &ProxyState) -> Ruleset {
    let mut r = Renderer { state, out: Ruleset::default(), services: Vec::new(), nodeports: Vec::new(), rejects: Vec::new() };
    r.fixed();
    for (name, sp) in &state.services {
        r.service_port(name, sp);
    }
    let Renderer { mut out, mut services, nodeports, rejects, .. } = r;
    services.push(format!("-A {SERVICES} -m addrtype --dst-type LOCAL -j {NODEPORTS}"));
    out.nat.insert(SERVICES.into(), services);
    out.nat.insert(NODEPORTS.into(), nodeports);
    out.filter.insert(FILTER_SERVICES.into(), rejects);
    out
}

struct Renderer<'a> {
    state: &'a ProxyState,
    out: Ruleset,
    /// `KRS-SERVICES`, `KRS-NODEPORTS` and `KRS-FILTER-SERVICES`, filled service by service.
    services: Vec<String>,
    nodeports: Vec<String>,
    rejects: Vec<String>,
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

impl Renderer<'_> {
    fn fixed(&mut self) {
        let nat = &mut self.out.nat;
        nat.insert(MARK_MASQ.into(), vec![format!("-A {MARK_MASQ} -j MARK --or-mark {MASQ_MARK}")]);
        nat.insert(
            POSTROUTING.into(),
            vec![
                format!("-A {POSTROUTING} -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
                // Cleared so a packet that comes around again is not masqueraded twice.
                format!("-A {POSTROUTING} -j MARK --xor-mark {MASQ_MARK}"),
                format!("-A {POSTROUTING} -j MASQUERADE --random-fully"),
            ],
        );
        if self.state.cluster_cidrs.len() > 1 {
            let mut rules: Vec<String> = self.state.cluster_cidrs.iter().map(|c| format!("-A {OFF_CLUSTER} -s {c} -j RETURN")).collect();
            rules.push(format!("-A {OFF_CLUSTER} -j {MARK_MASQ}"));
            nat.insert(OFF_CLUSTER.into(), rules);
        }
        self.out.filter.insert(
            FILTER_LOCALNET.into(),
            vec![format!("-A {FILTER_LOCALNET} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")],
        );
    }

    fn service_port(&mut self, name: &ServicePortName, sp: &ServicePort) {
        let node = self.state.node_name.as_str();
        let p = proto(name.protocol);
        let port = sp.port;
        let cluster = sp.cluster_endpoints(node);
        let external = sp.external_endpoints(node);
        // No endpoint at all: refuse (the client learns at once); endpoints elsewhere but
        // none allowed by a Local policy: drop, as kube-proxy does.
        let verdict = || {
            let any = ServicePort { internal_local: false, external_local: false, ..sp.clone() };
            if any.cluster_endpoints(node).is_empty() { "REJECT" } else { "DROP" }
        };
        let svc = names::service(name);

        if cluster.is_empty() {
            let v = verdict();
            for ip in &sp.cluster_ips {
                self.rejects.push(format!("-A {FILTER_SERVICES} -d {ip}/32 -p {p} -m {p} --dport {port} -j {v}"));
            }
        } else {
            let mut rules = Vec::new();
            for ip in &sp.cluster_ips {
                self.services.push(format!("-A {SERVICES} -d {ip}/32 -p {p} -m {p} --dport {port} -j {svc}"));
                // From outside the pod network: masquerade, so the reply comes back here.
                match self.state.cluster_cidrs.as_slice() {
                    [] => {}
                    [one] => rules.push(format!("-A {svc} ! -s {one} -d {ip}/32 -p {p} -m {p} --dport {port} -j {MARK_MASQ}")),
                    _ => rules.push(format!("-A {svc} -d {ip}/32 -p {p} -m {p} --dport {port} -j {OFF_CLUSTER}")),
                }
            }
            self.picker(&svc, rules, name, sp, &cluster);
        }

        if !sp.has_external() {
            return;
        }
        let external_ips = sp.external_ips.iter().chain(&sp.load_balancer_ips);
        if external.is_empty() {
            let v = verdict();
            for ip in external_ips {
                self.rejects.push(format!("-A {FILTER_SERVICES} -d {ip}/32 -p {p} -m {p} --dport {port} -j {v}"));
            }
            if let Some(np) = sp.node_port {
                self.rejects.push(format!("-A {FILTER_SERVICES} -m addrtype --dst-type LOCAL -p {p} -m {p} --dport {np} -j {v}"));
            }
            return;
        }
        let target = if external == cluster {
            svc.clone()
        } else {
            let svl = names::service_external_picker(name);
            self.picker(&svl, Vec::new(), name, sp, &external);
            svl
        };
        let ext = names::external(name);
        let mut rules = Vec::new();
        if !sp.external_local {
            rules.push(format!("-A {ext} -j {MARK_MASQ}"));
        } else if !cluster.is_empty() {
            // Local policy keeps the client's address, except for traffic that starts on
            // this node or in a pod: it may go to any endpoint, as to the cluster IP.
            for cidr in &self.state.cluster_cidrs {
                rules.push(format!("-A {ext} -s {cidr} -j {svc}"));
            }
            rules.push(format!("-A {ext} -m addrtype --src-type LOCAL -j {MARK_MASQ}"));
            rules.push(format!("-A {ext} -m addrtype --src-type LOCAL -j {svc}"));
        }
        rules.push(format!("-A {ext} -j {target}"));
        self.out.nat.insert(ext.clone(), rules);
        for ip in external_ips {
            self.services.push(format!("-A {SERVICES} -d {ip}/32 -p {p} -m {p} --dport {port} -j {ext}"));
        }
        if let Some(np) = sp.node_port {
            self.nodeports.push(format!("-A {NODEPORTS} -p {p} -m {p} --dport {np} -j {ext}"));
        }
    }

    /// `chain` (after `rules`) picks one of `endpoints`: an affine client's last endpoint
    /// first, then each with probability 1/(endpoints left); each endpoint's chain DNATs.
    fn picker(&mut self, chain: &str, mut rules: Vec<String>, name: &ServicePortName, sp: &ServicePort, endpoints: &[&Endpoint]) {
        let p = proto(name.protocol);
        let seps: Vec<String> = endpoints.iter().map(|ep| names::endpoint(name, ep)).collect();
        if let Some(seconds) = sp.affinity_timeout {
            for sep in &seps {
                rules.push(format!("-A {chain} -m recent --name {sep} --rcheck --seconds {seconds} --reap -j {sep}"));
            }
        }
        let k = seps.len();
        for (i, sep) in seps.iter().enumerate() {
            if i + 1 < k {
                let probability = 1.0 / (k - i) as f64;
                rules.push(format!("-A {chain} -m statistic --mode random --probability {probability:.10} -j {sep}"));
            } else {
                rules.push(format!("-A {chain} -j {sep}"));
            }
        }
        self.out.nat.insert(chain.to_string(), rules);
        for (ep, sep) in endpoints.iter().zip(&seps) {
            let affinity = if sp.affinity_timeout.is_some() { format!(" -m recent --name {sep} --set") } else { String::new() };
            let rules = vec![
                // Hairpin: an endpoint reaching itself through the service must see the
                // node as the source, or it would answer itself directly.
                format!("-A {sep} -s {}/32 -j {MARK_MASQ}", ep.ip),
                format!("-A {sep} -p {p}{affinity} -j DNAT --to-destination {}:{}", ep.ip, ep.port),
            ];
            self.out.nat.insert(sep.clone(), rules);
        }
    }
}
