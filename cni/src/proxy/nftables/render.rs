//! The desired objects, as data: per service port its chains (with their rules) and
//! affinity sets, and the elements of the global maps and sets that lead to them. The full
//! script and the incremental one are both written from this, so they cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::elements::Elements;
use super::names;
use crate::proxy::model::{Endpoint, ProxyState, ServicePort, ServicePortName};

pub(crate) const TABLE: &str = "ip krs-proxy";

/// The global maps and sets whose elements carry per-service data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Map {
    /// address . proto . port : goto svc-/ext- chain
    ServiceIps,
    /// proto . node port : goto ext- chain
    ServiceNodeports,
    /// address . proto . port : goto reject-chain (nothing to send it to)
    NoEndpointServices,
    /// proto . node port : goto reject-chain
    NoEndpointNodeports,
    /// pod networks (interval set)
    ClusterCidrs,
    /// endpoint . endpoint: a pod reaching itself through a service
    Hairpin,
}

impl Map {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Map::ServiceIps => "service-ips",
            Map::ServiceNodeports => "service-nodeports",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::NoEndpointNodeports => "no-endpoint-nodeports",
            Map::ClusterCidrs => "cluster-cidrs",
            Map::Hairpin => "hairpin",
        }
    }
}

/// One chain of a service port and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub name: String,
    pub rules: Vec<String>,
}

/// What one service port owns. Equal when nothing about the port's rules changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PortObjects {
    /// Affinity sets (name, timeout in seconds); declared before the chains using them.
    pub sets: Vec<(String, u32)>,
    /// Chains in dependency order: the service chain before the external chain that jumps to it.
    pub chains: Vec<Chain>,
    /// The elements this port claims: (map, key, value; empty for a set element).
    pub elements: Vec<(Map, String, String)>,
}

/// One service port as last rendered, with what it was rendered from (so an unchanged port
/// is recognised without rendering it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub input: ServicePort,
    pub objects: PortObjects,
}

/// Everything the table should hold beyond its fixed skeleton.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    /// What every port's rendering depends on besides the port itself.
    pub node: String,
    pub cluster_cidrs: Vec<Ipv4Net>,
    pub ports: BTreeMap<ServicePortName, Port>,
    /// Elements of the per-service maps and the hairpin set (cluster CIDRs apart).
    pub elements: Elements,
}

pub(crate) fn desired(state: &ProxyState) -> Desired {
    let mut out = Desired { node: state.node_name.clone(), cluster_cidrs: Ipv4Net::aggregate(&state.cluster_cidrs), ..Default::default() };
    for (name, sp) in &state.services {
        let port = render_port(name, sp, &out.node, &out.cluster_cidrs);
        for (map, key, value) in &port.objects.elements {
            out.elements.claim(name, *map, key, value);
        }
        out.ports.insert(name.clone(), port);
    }
    out
}

pub(crate) fn render_port(name: &ServicePortName, sp: &ServicePort, node: &str, cidrs: &[Ipv4Net]) -> Port {
    Port { input: sp.clone(), objects: port_objects(name, sp, node, !cidrs.is_empty()) }
}

fn port_objects(name: &ServicePortName, sp: &ServicePort, node: &str, have_cidrs: bool) -> PortObjects {
    let proto = names::proto(name.protocol);
    let svc = names::service_chain(name);
    let cluster = sp.cluster_endpoints(node);
    let external = if sp.has_external() { sp.external_endpoints(node) } else { Vec::new() };
    let mut objects = PortObjects::default();

    if let Some(timeout) = sp.affinity_timeout {
        let mut eps: Vec<&Endpoint> = cluster.iter().chain(external.iter()).copied().collect();
        eps.sort();
        eps.dedup();
        objects.sets = eps.iter().map(|e| (names::affinity_set(name, e.ip, e.port, timeout), timeout)).collect();
    }

    let mut svc_rules = Vec::new();
    if have_cidrs {
        svc_rules.push("ip saddr != @cluster-cidrs jump mark-for-masquerade".to_string());
    }
    choose(&mut svc_rules, name, sp, &cluster);
    objects.chains.push(Chain { name: svc.clone(), rules: svc_rules });

    let to_svc = format!("goto {svc}");
    let reject = "goto reject-chain".to_string();
    for ip in &sp.cluster_ips {
        let (map, value) = if cluster.is_empty() { (Map::NoEndpointServices, reject.clone()) } else { (Map::ServiceIps, to_svc.clone()) };
        objects.elements.push((map, format!("{ip} . {proto} . {}", sp.port), value));
    }

    for ep in &sp.endpoints {
        objects.elements.push((Map::Hairpin, format!("{0} . {0}", ep.ip), String::new()));
    }

    if sp.has_external() {
        let ext = names::external_chain(name);
        let mut rules = Vec::new();
        if sp.external_local {
            // Pods and the node itself are cluster traffic: every endpoint will do, and the
            // node's own traffic (127.0.0.0/8 included: localhost node ports) is masqueraded
            // so replies come back through the node rather than to 127.0.0.1 on the pod's side.
            if have_cidrs {
                rules.push(format!("ip saddr @cluster-cidrs goto {svc}"));
            }
            rules.push("fib saddr type local jump mark-for-masquerade".to_string());
            rules.push(format!("fib saddr type local goto {svc}"));
        } else {
            // Policy Cluster: everything is masqueraded (localhost node ports included).
            rules.push("jump mark-for-masquerade".to_string());
        }
        choose(&mut rules, name, sp, &external);
        objects.chains.push(Chain { name: ext.clone(), rules });

        // With policy Local and no local endpoint, pods and the node still have somewhere to
        // go (the service chain); outside clients are dropped there, as kube-proxy does.
        let served = !external.is_empty() || (sp.external_local && !cluster.is_empty());
        let (ip_map, port_map, value) = if served {
            (Map::ServiceIps, Map::ServiceNodeports, format!("goto {ext}"))
        } else {
            (Map::NoEndpointServices, Map::NoEndpointNodeports, reject)
        };
        for ip in sp.external_ips.iter().chain(&sp.load_balancer_ips) {
            objects.elements.push((ip_map, format!("{ip} . {proto} . {}", sp.port), value.clone()));
        }
        if let Some(np) = sp.node_port {
            objects.elements.push((port_map, format!("{proto} . {np}"), value));
        }
    }
    objects
}

/// Endpoint choice: sticky clients first (session affinity), then a cascade giving each of
/// the n endpoints 1/n: the i-th rule (0-based) matches with probability 1/(n-i) of what
/// reached it, the last one always. Plain rules rather than a `numgen` map, which nft would
/// create as one anonymous set per chain (slow to create by the thousand).
fn choose(rules: &mut Vec<String>, name: &ServicePortName, sp: &ServicePort, eps: &[&Endpoint]) {
    let proto = names::proto(name.protocol);
    if eps.is_empty() {
        rules.push("drop".to_string());
        return;
    }
    let affinity = |e: &Endpoint| sp.affinity_timeout.map(|t| names::affinity_set(name, e.ip, e.port, t));
    for e in eps {
        if let Some(set) = affinity(e) {
            rules.push(format!("ip saddr @{set} update @{set} {{ ip saddr }} meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
        }
    }
    let n = eps.len();
    for (i, e) in eps.iter().enumerate() {
        let mut rule = String::new();
        if i + 1 < n {
            write!(rule, "numgen random mod {} == 0 ", n - i).unwrap();
        }
        if let Some(set) = affinity(e) {
            write!(rule, "update @{set} {{ ip saddr }} ").unwrap();
        }
        write!(rule, "meta l4proto {proto} dnat to {}:{}", e.ip, e.port).unwrap();
        rules.push(rule);
    }
}

/// The body of the table's fixed skeleton: maps, sets and base chains. Service ports hang
/// off the maps.
fn skeleton() -> &'static str {
    "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
  map service-nodeports { type inet_proto . inet_service : verdict; }
  map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
  map no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
  set cluster-cidrs { type ipv4_addr; flags interval; }
  set hairpin { type ipv4_addr . ipv4_addr; }
  chain mark-for-masquerade { meta mark set meta mark | 0x4000; }
  chain reject-chain { reject; }
  chain services {
    ip daddr . meta l4proto . th dport vmap @service-ips
    fib daddr type local meta l4proto . th dport vmap @service-nodeports
  }
  chain no-endpoints {
    ip daddr . meta l4proto . th dport vmap @no-endpoint-services
    fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
  }
  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }
  chain nat-output { type nat hook output priority -100; policy accept; jump services; }
  chain nat-postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip saddr . ip daddr @hairpin masquerade
    meta mark & 0x4000 == 0 return
    meta mark set meta mark ^ 0x4000
    masquerade fully-random
  }
  chain filter-input { type filter hook input priority filter - 10; policy accept; ct state new jump no-endpoints; }
  chain filter-forward { type filter hook forward priority filter - 10; policy accept; ct state new jump no-endpoints; }
  chain filter-output { type filter hook output priority filter - 10; policy accept; ct state new jump no-endpoints; }
"
}

/// `add set` for one affinity set.
pub(crate) fn add_set(out: &mut String, name: &str, timeout: u32) {
    writeln!(out, "add set {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}").unwrap();
}

/// `add element` / `delete element` statements, one per map, for `(map, key, value)` items.
pub(crate) fn elements<'a>(out: &mut String, verb: &str, items: impl IntoIterator<Item = (Map, &'a str, &'a str)>) {
    let mut by_map: BTreeMap<Map, Vec<String>> = BTreeMap::new();
    for (map, key, value) in items {
        let item = if value.is_empty() || verb == "delete" { key.to_string() } else { format!("{key} : {value}") };
        by_map.entry(map).or_default().push(item);
    }
    for (map, items) in by_map {
        // Bounded statements: one huge line costs nft nothing more, but errors stay readable.
        for chunk in items.chunks(1000) {
            writeln!(out, "{verb} element {TABLE} {} {{ {} }}", map.name(), chunk.join(", ")).unwrap();
        }
    }
}

/// The whole table in one script: creating the table before deleting it makes the delete
/// succeed whether or not an earlier run left one, so one transaction replaces whatever is
/// there (connections already set up keep their NAT: conntrack holds it).
pub(crate) fn full_script(d: &Desired) -> String {
    let mut out = format!("add table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{\n");
    out.push_str(skeleton());
    // Block syntax: nft reads it faster than as many `add` commands.
    for port in d.ports.values() {
        for (name, timeout) in &port.objects.sets {
            writeln!(out, "  set {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}").unwrap();
        }
        for chain in &port.objects.chains {
            writeln!(out, "  chain {} {{", chain.name).unwrap();
            for rule in &chain.rules {
                writeln!(out, "    {rule}").unwrap();
            }
            out.push_str("  }\n");
        }
    }
    out.push_str("}\n");
    let cidrs: Vec<String> = d.cluster_cidrs.iter().map(|c| c.to_string()).collect();
    elements(&mut out, "add", cidrs.iter().map(|c| (Map::ClusterCidrs, c.as_str(), "")).chain(d.elements.iter()));
    out
}

/// The full `nft -f` script for `state` (what the first sync sends).
pub fn render_full(state: &ProxyState) -> String {
    full_script(&desired(state))
}

/// Addresses a UDP service port is reached at, and where it sends traffic: what stale
/// conntrack entries are looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UdpTargets {
    pub addresses: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: BTreeSet<Ipv4Addr>,
}

pub(crate) fn udp_targets(state: &ProxyState) -> BTreeMap<ServicePortName, UdpTargets> {
    use crate::proxy::model::Protocol;
    let node = &state.node_name;
    state
        .services
        .iter()
        .filter(|(name, _)| name.protocol == Protocol::Udp)
        .map(|(name, sp)| {
            let mut endpoints: BTreeSet<Ipv4Addr> = sp.cluster_endpoints(node).iter().map(|e| e.ip).collect();
            if sp.has_external() {
                endpoints.extend(sp.external_endpoints(node).iter().map(|e| e.ip));
            }
            let addresses = sp.cluster_ips.iter().chain(&sp.external_ips).chain(&sp.load_balancer_ips).copied().collect();
            (name.clone(), UdpTargets { addresses, port: sp.port, node_port: sp.node_port, endpoints })
        })
        .collect()
}
