//! Root tests of the node's masquerade rule on the real kernel, each in a test namespace of
//! its own: written, found, removed by someone else, and written again by its keeper.

use std::time::{Duration, Instant};

use cni::node_services::masquerade::{self, Filter, MasqueradeConfig};
use test_support::netns::TestNetns;

fn config() -> MasqueradeConfig {
    MasqueradeConfig { pod_cidr: "10.244.1.0/24".parse().unwrap(), cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()] }
}

/// Writes the rule, removes it with `removal` (commands run in the namespace), and waits
/// for the keeper to write it back.
fn comes_back_after(filter: Filter, removal: &[&[&str]]) {
    test_support::require_root();
    let ns = TestNetns::new();
    let (config, name) = (config(), Some(ns.name.as_str()));
    masquerade::apply(filter, &config, name).unwrap();
    assert!(masquerade::in_place(filter, &config, name).unwrap(), "the rule just written is not found");
    // Writing it twice leaves one rule (a restart of kubelet-rs).
    masquerade::apply(filter, &config, name).unwrap();
    if filter == Filter::Iptables {
        let rules = ns.exec(&["iptables", "-t", "nat", "-S", "POSTROUTING"]);
        let jumps = String::from_utf8_lossy(&rules.stdout).matches("-j KRS-NODE-MASQ").count();
        assert_eq!(jumps, 1, "{}", String::from_utf8_lossy(&rules.stdout));
    }
    for command in removal {
        let out = ns.exec(command);
        assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(!masquerade::in_place(filter, &config, name).unwrap(), "the rule is still found after {removal:?}");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let keeper = runtime.spawn(masquerade::keep(filter, config.clone(), Some(ns.name.clone()), Duration::from_millis(100)));
    let start = Instant::now();
    while !masquerade::in_place(filter, &config, name).unwrap() {
        assert!(start.elapsed() < Duration::from_secs(20), "the keeper did not write the rule again");
        std::thread::sleep(Duration::from_millis(100));
    }
    keeper.abort();
}

#[test]
#[ignore = "needs root"]
fn the_nftables_rule_comes_back_after_its_table_is_deleted() {
    comes_back_after(Filter::Nftables, &[&["nft", "delete", "table", "ip", masquerade::NFT_TABLE]]);
}

#[test]
#[ignore = "needs root"]
fn the_nftables_rule_comes_back_after_its_chain_is_flushed() {
    comes_back_after(Filter::Nftables, &[&["nft", "flush", "chain", "ip", masquerade::NFT_TABLE, "postrouting"]]);
}

#[test]
#[ignore = "needs root"]
fn the_iptables_rule_comes_back_after_the_nat_table_is_flushed() {
    comes_back_after(Filter::Iptables, &[&["iptables", "-t", "nat", "-F"]]);
}

#[test]
#[ignore = "needs root"]
fn the_iptables_rule_comes_back_after_the_jump_to_it_is_deleted() {
    comes_back_after(Filter::Iptables, &[&["iptables", "-t", "nat", "-D", "POSTROUTING", "-j", masquerade::IPTABLES_CHAIN]]);
}
