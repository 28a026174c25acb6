//! The incremental sync: from what was last applied and what is wanted, the one transaction
//! that changes only the service ports that differ (and the map elements that moved).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::render::{self, Chain, Desired, Map, TABLE};

pub(crate) struct Delta {
    /// Empty when nothing changed.
    pub script: String,
    /// Service ports written or removed.
    pub changed: usize,
}

pub(crate) fn incremental(old: &Desired, new: &Desired) -> Delta {
    let mut changed = 0;
    let mut new_sets: Vec<(&str, u32)> = Vec::new();
    let mut gone_sets: Vec<&str> = Vec::new();
    let mut new_chains: Vec<&Chain> = Vec::new();
    let mut rewritten: Vec<&Chain> = Vec::new();
    let mut gone_chains: Vec<&str> = Vec::new();

    for (name, want) in &new.ports {
        let had = old.ports.get(name);
        if had == Some(want) {
            continue;
        }
        changed += 1;
        let had_chains: BTreeSet<&str> = had.map(|h| h.chains.iter().map(|c| c.name.as_str()).collect()).unwrap_or_default();
        let had_sets: BTreeSet<&str> = had.map(|h| h.sets.iter().map(|(s, _)| s.as_str()).collect()).unwrap_or_default();
        for chain in &want.chains {
            if had_chains.contains(chain.name.as_str()) {
                if had.is_some_and(|h| !h.chains.contains(chain)) {
                    rewritten.push(chain);
                }
            } else {
                new_chains.push(chain);
            }
        }
        new_sets.extend(want.sets.iter().filter(|(s, _)| !had_sets.contains(s.as_str())).map(|(s, t)| (s.as_str(), *t)));
        if let Some(h) = had {
            let want_chains: BTreeSet<&str> = want.chains.iter().map(|c| c.name.as_str()).collect();
            let want_sets: BTreeSet<&str> = want.sets.iter().map(|(s, _)| s.as_str()).collect();
            gone_chains.extend(h.chains.iter().map(|c| c.name.as_str()).filter(|c| !want_chains.contains(c)));
            gone_sets.extend(h.sets.iter().map(|(s, _)| s.as_str()).filter(|s| !want_sets.contains(s)));
        }
    }
    for (name, had) in &old.ports {
        if !new.ports.contains_key(name) {
            changed += 1;
            gone_chains.extend(had.chains.iter().map(|c| c.name.as_str()));
            gone_sets.extend(had.sets.iter().map(|(s, _)| s.as_str()));
        }
    }
    let (deletes, adds) = element_changes(&old.elements, &new.elements);

    // Order matters within the transaction: elements pointing at a chain go before the
    // chain; every chain exists before a rule jumps to it; rules using a set go before it.
    let mut out = String::new();
    render::elements(&mut out, "delete", deletes);
    for (name, timeout) in new_sets {
        render::add_set(&mut out, name, timeout);
    }
    for chain in &new_chains {
        writeln!(out, "add chain {TABLE} {}", chain.name).unwrap();
    }
    for name in rewritten.iter().map(|c| c.name.as_str()).chain(gone_chains.iter().copied()) {
        writeln!(out, "flush chain {TABLE} {name}").unwrap();
    }
    for chain in new_chains.iter().chain(&rewritten) {
        for rule in &chain.rules {
            writeln!(out, "add rule {TABLE} {} {rule}", chain.name).unwrap();
        }
    }
    for name in gone_chains {
        writeln!(out, "delete chain {TABLE} {name}").unwrap();
    }
    for name in gone_sets {
        writeln!(out, "delete set {TABLE} {name}").unwrap();
    }
    render::elements(&mut out, "add", adds);
    Delta { script: out, changed }
}

type Items<'a> = Vec<(Map, &'a str, &'a str)>;

/// Elements to delete (gone, or with a new value) and to add (new, or with a new value):
/// a map element's value cannot be replaced in place. A merge of the two sorted maps.
fn element_changes<'a>(old: &'a BTreeMap<(Map, String), String>, new: &'a BTreeMap<(Map, String), String>) -> (Items<'a>, Items<'a>) {
    use std::cmp::Ordering;
    let item = |((map, key), value): (&'a (Map, String), &'a String)| (*map, key.as_str(), value.as_str());
    let (mut deletes, mut adds) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => deletes.push(item(a.next().unwrap())),
            (None, Some(_)) => adds.push(item(b.next().unwrap())),
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                Ordering::Less => deletes.push(item(a.next().unwrap())),
                Ordering::Greater => adds.push(item(b.next().unwrap())),
                Ordering::Equal => {
                    let differs = va != vb;
                    let (x, y) = (a.next().unwrap(), b.next().unwrap());
                    if differs {
                        deletes.push(item(x));
                        adds.push(item(y));
                    }
                }
            },
        }
    }
    (deletes, adds)
}
