//! The backend's logic without root: what it renders, what the incremental sync sends, and
//! which conntrack entries it deletes, against a recording kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::host::Recorder;
use super::*;
use crate::proxy::conntrack::{Flow, RecordingConntrack};
use crate::proxy::model::{Endpoint, Protocol, ServicePort};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ep(last: u8, node: &str) -> Endpoint {
    Endpoint { ip: Ipv4Addr::new(10, 244, 0, last), port: 8080, ready: true, serving: true, terminating: false, node: Some(node.into()) }
}

fn name(svc: &str, protocol: Protocol) -> ServicePortName {
    ServicePortName { namespace: "default".into(), name: svc.into(), port: "p".into(), protocol }
}

fn port(cluster_ip: &str, eps: Vec<Endpoint>) -> ServicePort {
    ServicePort { cluster_ips: vec![ip(cluster_ip)], port: 80, endpoints: eps, ..Default::default() }
}

fn state(services: Vec<(ServicePortName, ServicePort)>) -> ProxyState {
    ProxyState { node_name: "n1".into(), cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()], services: services.into_iter().collect::<BTreeMap<_, _>>() }
}

fn backend() -> (Nftables, Recorder, RecordingConntrack) {
    let host = Recorder::default();
    let ct = RecordingConntrack::default();
    (Nftables::with(Box::new(host.clone()), Box::new(ct.clone())), host, ct)
}

fn last_script(host: &Recorder) -> String {
    host.state.lock().unwrap().scripts.last().cloned().unwrap_or_default()
}

/// The rules of the chains named `prefix...` in a script, written as `add rule` lines or in
/// the full script's block form.
fn rules_of(script: &str, chain_prefix: &str) -> Vec<String> {
    let mut rules = Vec::new();
    let mut in_block = false;
    for line in script.lines() {
        if let Some(rest) = line.strip_prefix("add rule ip krs-proxy ") {
            if rest.starts_with(chain_prefix) {
                rules.push(rest.split_once(' ').unwrap().1.to_string());
            }
        } else if let Some(name) = line.strip_prefix("  chain ") {
            in_block = name.starts_with(chain_prefix);
        } else if line == "  }" {
            in_block = false;
        } else if in_block {
            rules.push(line.trim().to_string());
        }
    }
    rules
}

#[test]
fn the_first_sync_replaces_the_whole_table_atomically() {
    let (mut b, host, _) = backend();
    let st = state(vec![(name("web", Protocol::Tcp), port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n2")]))]);
    let report = b.sync(&st).unwrap();
    assert_eq!(report, SyncReport { full: true, changed: 1 });
    let script = last_script(&host);
    assert!(script.starts_with("add table ip krs-proxy\ndelete table ip krs-proxy\ntable ip krs-proxy {"), "{script}");
    let svc = names::service_chain(&name("web", Protocol::Tcp));
    assert!(script.contains(&format!("add element ip krs-proxy service-ips {{ 10.96.0.10 . tcp . 80 : goto {svc} }}")), "{script}");
    assert!(script.contains("add element ip krs-proxy cluster-cidrs { 10.244.0.0/16 }"));
    assert!(script.contains("add element ip krs-proxy hairpin { 10.244.0.2 . 10.244.0.2, 10.244.0.3 . 10.244.0.3 }"));
    assert_eq!(
        rules_of(&script, "svc-"),
        [
            "ip saddr != @cluster-cidrs jump mark-for-masquerade",
            "numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.2:8080",
            "meta l4proto tcp dnat to 10.244.0.3:8080",
        ]
    );
    // No anonymous sets or maps anywhere (each would be a set of its own in the kernel).
    for rule in rules_of(&script, "") {
        assert!(!rule.contains("{ ") || rule.contains("update @"), "anonymous set in {rule}");
    }
    let sysctls = host.state.lock().unwrap().sysctls.clone();
    assert_eq!(sysctls[0], ("net.ipv4.conf.all.route_localnet".to_string(), "1".to_string()));
    assert_eq!(render_full(&st), script);
}

/// The probability the cascade gives each endpoint: rule i (of n) matches 1/(n-i) of what
/// reaches it.
fn cascade_shares(rules: &[String]) -> Vec<f64> {
    let mut left = 1.0;
    let mut shares = Vec::new();
    for rule in rules.iter().filter(|r| r.contains("dnat to") && !r.starts_with("ip saddr @")) {
        let p = match rule.strip_prefix("numgen random mod ") {
            Some(rest) => 1.0 / rest.split_whitespace().next().unwrap().parse::<f64>().unwrap(),
            None => 1.0,
        };
        shares.push(left * p);
        left *= 1.0 - p;
    }
    assert!(left.abs() < 1e-12, "the last rule must take what is left");
    shares
}

#[test]
fn the_cascade_gives_each_endpoint_an_equal_share() {
    for n in 1..=7u8 {
        let st = state(vec![(name("web", Protocol::Tcp), port("10.96.0.10", (1..=n).map(|i| ep(i, "n1")).collect()))]);
        let shares = cascade_shares(&rules_of(&render_full(&st), "svc-"));
        assert_eq!(shares.len(), n as usize);
        for s in shares {
            assert!((s - 1.0 / f64::from(n)).abs() < 1e-12, "{n} endpoints: share {s}");
        }
    }
}

#[test]
fn unready_endpoints_get_nothing_and_no_endpoints_means_reject() {
    let mut eps = vec![ep(2, "n1"), ep(3, "n1")];
    eps[1].ready = false;
    let mut sp = port("10.96.0.10", eps);
    sp.node_port = Some(30080);
    let script = render_full(&state(vec![(name("web", Protocol::Tcp), sp.clone())]));
    assert_eq!(rules_of(&script, "svc-")[1], "meta l4proto tcp dnat to 10.244.0.2:8080");

    sp.endpoints[0].ready = false;
    let script = render_full(&state(vec![(name("web", Protocol::Tcp), sp)]));
    assert!(script.contains("add element ip krs-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 : goto reject-chain }"), "{script}");
    assert!(script.contains("add element ip krs-proxy no-endpoint-nodeports { tcp . 30080 : goto reject-chain }"), "{script}");
    assert!(!script.contains("add element ip krs-proxy service-ips"));
    assert!(!script.contains("add element ip krs-proxy service-nodeports"));
}

#[test]
fn external_traffic_with_policy_cluster_is_masqueraded_and_spread_over_all_endpoints() {
    let mut sp = port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n2")]);
    sp.node_port = Some(30080);
    sp.external_ips = vec![ip("192.0.2.10")];
    sp.load_balancer_ips = vec![ip("192.0.2.20")];
    let n = name("web", Protocol::Tcp);
    let script = render_full(&state(vec![(n.clone(), sp)]));
    let ext = names::external_chain(&n);
    assert!(script.contains(&format!("add element ip krs-proxy service-nodeports {{ tcp . 30080 : goto {ext} }}")), "{script}");
    assert!(script.contains(&format!("192.0.2.10 . tcp . 80 : goto {ext}")));
    assert!(script.contains(&format!("192.0.2.20 . tcp . 80 : goto {ext}")));
    let rules = rules_of(&script, "ext-");
    assert_eq!(rules[0], "jump mark-for-masquerade");
    assert_eq!(cascade_shares(&rules).len(), 2);
}

#[test]
fn external_traffic_with_policy_local_keeps_to_local_endpoints_and_its_source() {
    let mut sp = port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n2")]);
    sp.node_port = Some(30080);
    sp.external_local = true;
    let n = name("web", Protocol::Tcp);
    let svc = names::service_chain(&n);
    let script = render_full(&state(vec![(n.clone(), sp.clone())]));
    assert_eq!(
        rules_of(&script, "ext-"),
        [
            format!("ip saddr @cluster-cidrs goto {svc}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {svc}"),
            "meta l4proto tcp dnat to 10.244.0.2:8080".to_string(),
        ]
    );
    // No local endpoint: outside clients are dropped, pods and the node still served.
    sp.endpoints.remove(0);
    let script = render_full(&state(vec![(n.clone(), sp)]));
    assert_eq!(rules_of(&script, "ext-").last().unwrap(), "drop");
    assert!(script.contains(&format!("tcp . 30080 : goto {}", names::external_chain(&n))));
}

#[test]
fn internal_policy_local_and_no_cluster_cidrs() {
    let mut sp = port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n2")]);
    sp.internal_local = true;
    let mut st = state(vec![(name("web", Protocol::Udp), sp)]);
    st.cluster_cidrs.clear();
    let script = render_full(&st);
    assert_eq!(rules_of(&script, "svc-"), ["meta l4proto udp dnat to 10.244.0.2:8080"]);
    assert!(script.contains("10.96.0.10 . udp . 80 : goto svc-"));
    assert!(!script.contains("add element ip krs-proxy cluster-cidrs"));
}

#[test]
fn session_affinity_sends_known_clients_back_and_remembers_new_ones() {
    let mut sp = port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n1")]);
    sp.affinity_timeout = Some(600);
    let n = name("web", Protocol::Tcp);
    let script = render_full(&state(vec![(n.clone(), sp)]));
    let a2 = names::affinity_set(&n, ip("10.244.0.2"), 8080, 600);
    let a3 = names::affinity_set(&n, ip("10.244.0.3"), 8080, 600);
    assert!(script.contains(&format!("  set {a2} {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}")));
    let rules = rules_of(&script, "svc-");
    assert_eq!(
        rules[1..],
        [
            format!("ip saddr @{a2} update @{a2} {{ ip saddr }} meta l4proto tcp dnat to 10.244.0.2:8080"),
            format!("ip saddr @{a3} update @{a3} {{ ip saddr }} meta l4proto tcp dnat to 10.244.0.3:8080"),
            format!("numgen random mod 2 == 0 update @{a2} {{ ip saddr }} meta l4proto tcp dnat to 10.244.0.2:8080"),
            format!("update @{a3} {{ ip saddr }} meta l4proto tcp dnat to 10.244.0.3:8080"),
        ]
    );
    assert_eq!(cascade_shares(&rules), [0.5, 0.5]);
}

#[test]
fn a_one_service_change_sends_only_that_service() {
    let (mut b, host, _) = backend();
    let mut services: Vec<_> = (0..50u8).map(|i| (name(&format!("s{i}"), Protocol::Tcp), port(&format!("10.96.1.{i}"), vec![ep(10 + i, "n1")]))).collect();
    b.sync(&state(services.clone())).unwrap();
    // s7 gets a second endpoint.
    services[7].1.endpoints.push(ep(200, "n1"));
    let report = b.sync(&state(services.clone())).unwrap();
    assert_eq!(report, SyncReport { full: false, changed: 1 });
    let svc7 = names::service_chain(&services[7].0);
    let script = last_script(&host);
    assert_eq!(
        script.lines().collect::<Vec<_>>(),
        [
            format!("flush chain ip krs-proxy {svc7}"),
            format!("add rule ip krs-proxy {svc7} ip saddr != @cluster-cidrs jump mark-for-masquerade"),
            format!("add rule ip krs-proxy {svc7} numgen random mod 2 == 0 meta l4proto tcp dnat to 10.244.0.17:8080"),
            format!("add rule ip krs-proxy {svc7} meta l4proto tcp dnat to 10.244.0.200:8080"),
            "add element ip krs-proxy hairpin { 10.244.0.200 . 10.244.0.200 }".to_string(),
        ]
    );
    // Nothing changed: nothing sent.
    let before = host.state.lock().unwrap().scripts.len();
    assert_eq!(b.sync(&state(services.clone())).unwrap(), SyncReport { full: false, changed: 0 });
    assert_eq!(host.state.lock().unwrap().scripts.len(), before);
}

#[test]
fn removing_a_service_deletes_its_elements_before_its_chains() {
    let (mut b, host, _) = backend();
    let mut sp = port("10.96.0.10", vec![ep(2, "n1")]);
    sp.node_port = Some(30080);
    sp.affinity_timeout = Some(60);
    let n = name("web", Protocol::Tcp);
    let keep = (name("other", Protocol::Tcp), port("10.96.0.11", vec![ep(3, "n1")]));
    b.sync(&state(vec![(n.clone(), sp), keep.clone()])).unwrap();
    assert_eq!(b.sync(&state(vec![keep])).unwrap(), SyncReport { full: false, changed: 1 });
    let (svc, ext, aff) = (names::service_chain(&n), names::external_chain(&n), names::affinity_set(&n, ip("10.244.0.2"), 8080, 60));
    let script = last_script(&host);
    let at = |needle: &str| script.find(needle).unwrap_or_else(|| panic!("{needle} missing in {script}"));
    let elements = at("delete element ip krs-proxy service-ips { 10.96.0.10 . tcp . 80 }");
    at("delete element ip krs-proxy service-nodeports { tcp . 30080 }");
    at("delete element ip krs-proxy hairpin { 10.244.0.2 . 10.244.0.2 }");
    assert!(elements < at(&format!("flush chain ip krs-proxy {svc}")));
    assert!(at(&format!("flush chain ip krs-proxy {ext}")) < at(&format!("delete chain ip krs-proxy {svc}")));
    assert!(at(&format!("delete chain ip krs-proxy {ext}")) < at(&format!("delete set ip krs-proxy {aff}")));
    assert!(!script.contains("other"), "{script}");
}

#[test]
fn a_failed_sync_makes_the_next_one_full() {
    let (mut b, host, _) = backend();
    let st = state(vec![(name("web", Protocol::Tcp), port("10.96.0.10", vec![ep(2, "n1")]))]);
    b.sync(&st).unwrap();
    host.state.lock().unwrap().fail_next = Some("Error: Could not process rule: No such file or directory".into());
    let mut st2 = st.clone();
    st2.services.values_mut().next().unwrap().endpoints.push(ep(3, "n1"));
    let err = b.sync(&st2).unwrap_err().to_string();
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(b.sync(&st2).unwrap(), SyncReport { full: true, changed: 1 });
    assert!(last_script(&host).starts_with("add table ip krs-proxy\ndelete table ip krs-proxy\n"));
}

#[test]
fn a_key_claimed_twice_is_written_once() {
    let mut a = port("10.96.0.10", vec![ep(2, "n1")]);
    a.external_ips = vec![ip("192.0.2.1")];
    let mut b = port("10.96.0.11", vec![ep(3, "n1")]);
    b.external_ips = vec![ip("192.0.2.1")];
    let script = render_full(&state(vec![(name("a", Protocol::Tcp), a), (name("b", Protocol::Tcp), b)]));
    assert_eq!(script.matches("192.0.2.1 . tcp . 80").count(), 1);
    assert!(script.contains(&format!("192.0.2.1 . tcp . 80 : goto {}", names::external_chain(&name("a", Protocol::Tcp)))));
}

#[test]
fn cleanup_deletes_the_table_and_tolerates_its_absence() {
    let (mut b, host, _) = backend();
    b.cleanup().unwrap();
    assert_eq!(last_script(&host), "delete table ip krs-proxy\n");
    host.state.lock().unwrap().fail_next = Some("Error: Could not process rule: No such file or directory".into());
    b.cleanup().unwrap();
    host.state.lock().unwrap().fail_next = Some("Error: Operation not permitted".into());
    assert!(b.cleanup().is_err());
}

#[test]
fn udp_entries_to_a_lost_endpoint_or_of_a_port_that_had_none_are_deleted() {
    let (mut b, _, ct) = backend();
    let udp = name("dns", Protocol::Udp);
    let mut sp = port("10.96.0.10", vec![ep(2, "n1"), ep(3, "n1")]);
    sp.port = 53;
    sp.node_port = Some(30053);
    sp.external_ips = vec![ip("192.0.2.1")];
    let tcp = (name("web", Protocol::Tcp), port("10.96.0.11", vec![ep(4, "n1")]));
    b.sync(&state(vec![(udp.clone(), sp.clone()), tcp.clone()])).unwrap();
    assert!(ct.take().is_empty(), "a restart must not delete entries of ports merely seen first");

    // Endpoint .3 goes (and the TCP service loses its endpoint: not our business).
    let mut one = sp.clone();
    one.endpoints.pop();
    let mut tcp_gone = tcp.clone();
    tcp_gone.1.endpoints.clear();
    b.sync(&state(vec![(udp.clone(), one.clone()), tcp_gone])).unwrap();
    let f = |dst: Option<&str>, dport: Option<u16>, reply: Option<&str>| Flow { protocol: Protocol::Udp, orig_dst: dst.map(ip), orig_dst_port: dport, reply_src: reply.map(ip) };
    let mut want = vec![f(Some("10.96.0.10"), None, Some("10.244.0.3")), f(Some("192.0.2.1"), None, Some("10.244.0.3")), f(None, Some(30053), Some("10.244.0.3"))];
    want.sort();
    assert_eq!(ct.take(), want);

    // No endpoints, then one again: entries made while it rejected go.
    let mut none = one.clone();
    none.endpoints.clear();
    b.sync(&state(vec![(udp.clone(), none)])).unwrap();
    assert_eq!(ct.take().len(), 3);
    b.sync(&state(vec![(udp.clone(), one)])).unwrap();
    let mut want = vec![f(Some("10.96.0.10"), Some(53), None), f(Some("192.0.2.1"), Some(53), None), f(None, Some(30053), None)];
    want.sort();
    assert_eq!(ct.take(), want);

    // The service goes: its endpoint's entries go.
    b.sync(&state(vec![])).unwrap();
    assert_eq!(ct.take().len(), 3);
}

#[test]
fn a_shared_key_moves_to_the_next_claimant_when_the_first_goes() {
    let (mut b, host, _) = backend();
    let mut a = port("10.96.0.10", vec![ep(2, "n1")]);
    a.external_ips = vec![ip("192.0.2.1")];
    let mut c = port("10.96.0.11", vec![ep(2, "n1")]);
    c.external_ips = vec![ip("192.0.2.1")];
    let (na, nc) = (name("a", Protocol::Tcp), name("c", Protocol::Tcp));
    b.sync(&state(vec![(na, a), (nc.clone(), c.clone())])).unwrap();
    b.sync(&state(vec![(nc.clone(), c)])).unwrap();
    let script = last_script(&host);
    assert!(script.contains("delete element ip krs-proxy service-ips { 10.96.0.10 . tcp . 80, 192.0.2.1 . tcp . 80 }"), "{script}");
    assert!(script.contains(&format!("add element ip krs-proxy service-ips {{ 192.0.2.1 . tcp . 80 : goto {} }}", names::external_chain(&nc))), "{script}");
    // The endpoint is still c's: its hairpin entry stays.
    assert!(!script.contains("hairpin"), "{script}");
}

#[test]
fn new_cluster_cidrs_rewrite_every_port_incrementally() {
    let (mut b, host, _) = backend();
    let services = vec![(name("a", Protocol::Tcp), port("10.96.0.10", vec![ep(2, "n1")])), (name("b", Protocol::Tcp), port("10.96.0.11", vec![ep(3, "n1")]))];
    let mut st = state(services);
    st.cluster_cidrs.clear();
    b.sync(&st).unwrap();
    st.cluster_cidrs = vec!["10.244.0.0/16".parse().unwrap(), "10.244.1.0/24".parse().unwrap()];
    assert_eq!(b.sync(&st).unwrap(), SyncReport { full: false, changed: 2 });
    let script = last_script(&host);
    assert_eq!(rules_of(&script, "svc-").iter().filter(|r| r.contains("@cluster-cidrs")).count(), 2);
    // Overlapping networks are merged (an interval set refuses overlaps).
    assert!(script.ends_with("add element ip krs-proxy cluster-cidrs { 10.244.0.0/16 }\n"), "{script}");
}
