//! The incremental sync: brings what was last applied to what `state` wants, re-rendering
//! only the service ports whose input changed, and writes the one transaction that changes
//! just their chains, sets and elements.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use ipnet::Ipv4Net;

use super::render::{self, Chain, Desired, Map, PortObjects, TABLE};
use crate::proxy::model::{ProxyState, ServicePortName};

pub(crate) struct Delta {
    /// Empty when nothing changed.
    pub script: String,
    /// Service ports written or removed.
    pub changed: usize,
}

/// Updates `applied` to what `state` wants and returns the script that does the same to the
/// kernel (`applied` is only meaningful once that script succeeded).
pub(crate) fn update(applied: &mut Desired, state: &ProxyState) -> Delta {
    let cidrs = Ipv4Net::aggregate(&state.cluster_cidrs);
    // Every rendering depends on these: when they change, every port is looked at again.
    let context_changed = applied.node != state.node_name || applied.cluster_cidrs != cidrs;

    let mut out = Plan::default();
    let mut touched: BTreeMap<(Map, String), Option<String>> = BTreeMap::new();
    let mut remember = |d: &Desired, map: Map, key: &str| {
        touched.entry((map, key.to_string())).or_insert_with(|| d.elements.written(map, key).map(str::to_string));
    };

    let gone: Vec<ServicePortName> = applied.ports.keys().filter(|n| !state.services.contains_key(*n)).cloned().collect();
    for name in gone {
        let old = applied.ports.remove(&name).expect("listed above");
        for (map, key, _) in &old.objects.elements {
            remember(applied, *map, key);
            applied.elements.release(&name, *map, key);
        }
        out.remove(&old.objects);
    }
    for (name, sp) in &state.services {
        let old = applied.ports.get(name);
        if !context_changed && old.is_some_and(|p| &p.input == sp) {
            continue;
        }
        let new = render::render_port(name, sp, &state.node_name, &cidrs);
        let old = applied.ports.insert(name.clone(), new).map(|p| p.objects);
        let new = &applied.ports[name].objects;
        if old.as_ref() == Some(new) {
            continue;
        }
        let new = new.clone();
        for (map, key, _) in old.iter().flat_map(|o| &o.elements) {
            remember(applied, *map, key);
            applied.elements.release(name, *map, key);
        }
        for (map, key, value) in &new.elements {
            remember(applied, *map, key);
            applied.elements.claim(name, *map, key, value);
        }
        out.change(old.as_ref(), &new);
    }

    let mut deletes: Vec<(Map, String, String)> = Vec::new();
    let mut adds: Vec<(Map, String, String)> = Vec::new();
    for ((map, key), before) in touched {
        let after = applied.elements.written(map, &key);
        if before.as_deref() == after {
            continue;
        }
        if let Some(v) = before {
            deletes.push((map, key.clone(), v));
        }
        if let Some(v) = after {
            adds.push((map, key, v.to_string()));
        }
    }
    for cidr in applied.cluster_cidrs.iter().filter(|c| !cidrs.contains(c)) {
        deletes.push((Map::ClusterCidrs, cidr.to_string(), String::new()));
    }
    for cidr in cidrs.iter().filter(|c| !applied.cluster_cidrs.contains(c)) {
        adds.push((Map::ClusterCidrs, cidr.to_string(), String::new()));
    }
    applied.node = state.node_name.clone();
    applied.cluster_cidrs = cidrs;
    Delta { script: out.script(&deletes, &adds), changed: out.changed }
}

/// The chain and set operations of one sync, gathered so they go out in a safe order.
#[derive(Default)]
struct Plan {
    changed: usize,
    new_sets: Vec<(String, u32)>,
    gone_sets: Vec<String>,
    new_chains: Vec<Chain>,
    rewritten: Vec<Chain>,
    gone_chains: Vec<String>,
}

impl Plan {
    fn remove(&mut self, old: &PortObjects) {
        self.changed += 1;
        self.gone_chains.extend(old.chains.iter().map(|c| c.name.clone()));
        self.gone_sets.extend(old.sets.iter().map(|(s, _)| s.clone()));
    }

    fn change(&mut self, old: Option<&PortObjects>, new: &PortObjects) {
        self.changed += 1;
        let old_chains: BTreeMap<&str, &Chain> = old.map(|o| o.chains.iter().map(|c| (c.name.as_str(), c)).collect()).unwrap_or_default();
        let old_sets: BTreeSet<&str> = old.map(|o| o.sets.iter().map(|(s, _)| s.as_str()).collect()).unwrap_or_default();
        for chain in &new.chains {
            match old_chains.get(chain.name.as_str()) {
                Some(had) if *had == chain => {}
                Some(_) => self.rewritten.push(chain.clone()),
                None => self.new_chains.push(chain.clone()),
            }
        }
        self.new_sets.extend(new.sets.iter().filter(|(s, _)| !old_sets.contains(s.as_str())).cloned());
        if let Some(old) = old {
            let new_chains: BTreeSet<&str> = new.chains.iter().map(|c| c.name.as_str()).collect();
            let new_sets: BTreeSet<&str> = new.sets.iter().map(|(s, _)| s.as_str()).collect();
            self.gone_chains.extend(old.chains.iter().map(|c| c.name.clone()).filter(|c| !new_chains.contains(c.as_str())));
            self.gone_sets.extend(old.sets.iter().map(|(s, _)| s.clone()).filter(|s| !new_sets.contains(s.as_str())));
        }
    }

    /// Order matters within the transaction: elements pointing at a chain go before the
    /// chain; every chain exists before a rule jumps to it; rules using a set go before it.
    fn script(&self, deletes: &[(Map, String, String)], adds: &[(Map, String, String)]) -> String {
        let mut out = String::new();
        render::elements(&mut out, "delete", deletes.iter().map(item));
        for (name, timeout) in &self.new_sets {
            render::add_set(&mut out, name, *timeout);
        }
        for chain in &self.new_chains {
            writeln!(out, "add chain {TABLE} {}", chain.name).unwrap();
        }
        for name in self.rewritten.iter().map(|c| &c.name).chain(&self.gone_chains) {
            writeln!(out, "flush chain {TABLE} {name}").unwrap();
        }
        for chain in self.new_chains.iter().chain(&self.rewritten) {
            for rule in &chain.rules {
                writeln!(out, "add rule {TABLE} {} {rule}", chain.name).unwrap();
            }
        }
        for name in &self.gone_chains {
            writeln!(out, "delete chain {TABLE} {name}").unwrap();
        }
        for name in &self.gone_sets {
            writeln!(out, "delete set {TABLE} {name}").unwrap();
        }
        render::elements(&mut out, "add", adds.iter().map(item));
        out
    }
}

fn item((map, key, value): &(Map, String, String)) -> (Map, &str, &str) {
    (*map, key.as_str(), value.as_str())
}
