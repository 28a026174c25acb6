//! Unit tests of the rendering and of the sync logic, over a recording [`Exec`] (no root).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use super::*;
use crate::firewall::Protocol;
use crate::proxy::model::{Endpoint, ServicePort, ServicePortName};

fn name(n: &str) -> ServicePortName {
    ServicePortName { namespace: "default".into(), name: n.into(), port: String::new(), protocol: Protocol::Tcp }
}

fn ep(last: u8, node: &str) -> Endpoint {
    Endpoint { ip: Ipv4Addr::new(10, 244, 0, last), port: 8080, ready: true, serving: true, terminating: false, node: Some(node.into()) }
}

fn web(endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort { cluster_ips: vec![Ipv4Addr::new(10, 96, 0, 10)], port: 80, endpoints, ..Default::default() }
}

fn state(services: Vec<(&str, ServicePort)>) -> ProxyState {
    ProxyState {
        node_name: "a".into(),
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        services: services.into_iter().map(|(n, sp)| (name(n), sp)).collect::<BTreeMap<_, _>>(),
    }
}

fn nat(state: &ProxyState, chain: &str) -> Vec<String> {
    render::render(state).nat.get(chain).cloned().unwrap_or_else(|| panic!("no chain {chain}"))
}

#[test]
fn a_cluster_ip_picks_among_its_endpoints_and_dnats() {
    let s = state(vec![("web", web(vec![ep(1, "a"), ep(2, "b")]))]);
    let svc = names::service(&name("web"));
    let services = nat(&s, "KRS-SERVICES");
    assert_eq!(services[0], format!("-A KRS-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j {svc}"));
    assert_eq!(services.last().unwrap(), "-A KRS-SERVICES -m addrtype --dst-type LOCAL -j KRS-NODEPORTS");
    let sep1 = names::endpoint(&name("web"), &ep(1, "a"));
    let sep2 = names::endpoint(&name("web"), &ep(2, "b"));
    assert_eq!(
        nat(&s, &svc),
        [
            format!("-A {svc} ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KRS-MARK-MASQ"),
            format!("-A {svc} -m statistic --mode random --probability 0.5000000000 -j {sep1}"),
            format!("-A {svc} -j {sep2}"),
        ]
    );
    assert_eq!(nat(&s, &sep1), [format!("-A {sep1} -s 10.244.0.1/32 -j KRS-MARK-MASQ"), format!("-A {sep1} -p tcp -j DNAT --to-destination 10.244.0.1:8080")]);
    assert!(render::render(&s).filter["KRS-FILTER-SERVICES"].is_empty());
}

#[test]
fn three_endpoints_cascade_a_third_then_a_half() {
    let s = state(vec![("web", web(vec![ep(1, "a"), ep(2, "a"), ep(3, "a")]))]);
    let rules = nat(&s, &names::service(&name("web")));
    assert!(rules[1].contains("--probability 0.3333333333"), "{rules:?}");
    assert!(rules[2].contains("--probability 0.5000000000"), "{rules:?}");
    assert!(!rules[3].contains("statistic"));
}

#[test]
fn no_endpoints_is_refused_in_the_filter_table_and_not_natted() {
    let mut sp = web(Vec::new());
    sp.node_port = Some(30080);
    let s = state(vec![("web", sp)]);
    let r = render::render(&s);
    assert_eq!(r.nat["KRS-SERVICES"].len(), 1, "only the node-port jump");
    assert!(r.nat["KRS-NODEPORTS"].is_empty());
    assert_eq!(
        r.filter["KRS-FILTER-SERVICES"],
        [
            "-A KRS-FILTER-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j REJECT",
            "-A KRS-FILTER-SERVICES -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT",
        ]
    );
}

#[test]
fn node_ports_masquerade_unless_the_external_policy_is_local() {
    let mut sp = web(vec![ep(1, "a"), ep(2, "b")]);
    sp.node_port = Some(30080);
    sp.external_ips = vec![Ipv4Addr::new(192, 0, 2, 1)];
    let s = state(vec![("web", sp.clone())]);
    let (svc, ext) = (names::service(&name("web")), names::external(&name("web")));
    assert_eq!(nat(&s, "KRS-NODEPORTS"), [format!("-A KRS-NODEPORTS -p tcp -m tcp --dport 30080 -j {ext}")]);
    assert!(nat(&s, "KRS-SERVICES").contains(&format!("-A KRS-SERVICES -d 192.0.2.1/32 -p tcp -m tcp --dport 80 -j {ext}")));
    assert_eq!(nat(&s, &ext), [format!("-A {ext} -j KRS-MARK-MASQ"), format!("-A {ext} -j {svc}")]);

    // Local: only this node's endpoint, through a picker of its own; the client keeps its
    // address unless it is on this node or in a pod.
    sp.external_local = true;
    let s = state(vec![("web", sp)]);
    let svl = names::service_external_picker(&name("web"));
    assert_eq!(
        nat(&s, &ext),
        [
            format!("-A {ext} -s 10.244.0.0/16 -j {svc}"),
            format!("-A {ext} -m addrtype --src-type LOCAL -j KRS-MARK-MASQ"),
            format!("-A {ext} -m addrtype --src-type LOCAL -j {svc}"),
            format!("-A {ext} -j {svl}"),
        ]
    );
    assert_eq!(nat(&s, &svl), [format!("-A {svl} -j {}", names::endpoint(&name("web"), &ep(1, "a")))]);
}

#[test]
fn local_policy_without_local_endpoints_drops() {
    let mut sp = web(vec![ep(2, "b")]);
    sp.node_port = Some(30080);
    sp.external_local = true;
    let r = render::render(&state(vec![("web", sp)]));
    assert_eq!(r.filter["KRS-FILTER-SERVICES"], ["-A KRS-FILTER-SERVICES -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j DROP"]);
    assert!(!r.nat.contains_key(&names::external(&name("web"))));
}

#[test]
fn session_affinity_checks_then_sets_the_recent_list() {
    let mut sp = web(vec![ep(1, "a")]);
    sp.affinity_timeout = Some(10800);
    let s = state(vec![("web", sp)]);
    let (svc, sep) = (names::service(&name("web")), names::endpoint(&name("web"), &ep(1, "a")));
    assert!(nat(&s, &svc).contains(&format!("-A {svc} -m recent --name {sep} --rcheck --seconds 10800 --reap -j {sep}")));
    assert_eq!(nat(&s, &sep)[1], format!("-A {sep} -p tcp -m recent --name {sep} --set -j DNAT --to-destination 10.244.0.1:8080"));
}

#[test]
fn several_cluster_cidrs_go_through_one_off_cluster_chain() {
    let mut s = state(vec![("web", web(vec![ep(1, "a")]))]);
    s.cluster_cidrs.push("10.245.0.0/16".parse().unwrap());
    assert_eq!(nat(&s, "KRS-OFF-CLUSTER"), ["-A KRS-OFF-CLUSTER -s 10.244.0.0/16 -j RETURN", "-A KRS-OFF-CLUSTER -s 10.245.0.0/16 -j RETURN", "-A KRS-OFF-CLUSTER -j KRS-MARK-MASQ"]);
    let svc = names::service(&name("web"));
    assert_eq!(nat(&s, &svc)[0], format!("-A {svc} -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KRS-OFF-CLUSTER"));
}

#[test]
fn restore_input_declares_fills_then_deletes_in_one_commit() {
    let text = render_restore(&state(vec![("web", web(vec![ep(1, "a")]))]));
    assert!(text.starts_with("*nat\n:KRS-"));
    assert_eq!(text.matches("COMMIT\n").count(), 2);
    assert!(text.contains("*filter\n:KRS-FILTER-LOCALNET - [0:0]\n"));
    let chains: Chains = [("KRS-A".to_string(), vec!["-A KRS-A -j RETURN".to_string()])].into();
    assert_eq!(restore_input("nat", chains.iter(), &["KRS-B".into()]), "*nat\n:KRS-A - [0:0]\n:KRS-B - [0:0]\n-A KRS-A -j RETURN\n-X KRS-B\nCOMMIT\n");
}

/// A command line and its stdin.
type Call = (String, Option<String>);

/// Records every command; `-C` checks fail (hooks missing) unless listed in `present`;
/// `iptables-save` answers with `saved`; a command containing `fail` fails.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    saved: Arc<Mutex<String>>,
    present: Arc<Mutex<usize>>,
    fail: Arc<Mutex<Option<String>>>,
}

impl Exec for Recorder {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ProxyError> {
        let line = format!("{program} {}", args.join(" "));
        self.calls.lock().unwrap().push((line.clone(), stdin.map(str::to_string)));
        let err = || Err(ProxyError::Command { backend: "iptables", command: line.clone(), stderr: "iptables-restore: line 2 failed".into() });
        if self.fail.lock().unwrap().as_deref().is_some_and(|f| line.contains(f) || stdin.is_some_and(|s| s.contains(f))) {
            return err();
        }
        if args.contains(&"-C") {
            let mut present = self.present.lock().unwrap();
            return if *present > 0 {
                *present -= 1;
                Ok(String::new())
            } else {
                err()
            };
        }
        if program == "iptables-save" {
            return Ok(self.saved.lock().unwrap().clone());
        }
        Ok(String::new())
    }
}

impl Recorder {
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

fn restores(calls: &[Call]) -> Vec<String> {
    calls.iter().filter(|(c, _)| c.starts_with("iptables-restore --noflush")).map(|(_, s)| s.clone().unwrap()).collect()
}

#[test]
fn first_sync_writes_everything_removes_stale_chains_and_hooks_in() {
    let rec = Recorder::default();
    *rec.saved.lock().unwrap() = "*nat\n:PREROUTING ACCEPT [0:0]\n:KRS-SVC-OLD - [0:0]\n:KRS-CNI-HOSTPORTS - [0:0]\nCOMMIT\n".into();
    let mut b = Iptables::with_exec(Box::new(rec.clone()));
    let s = state(vec![("web", web(vec![ep(1, "a")]))]);
    assert_eq!(b.sync(&s).unwrap(), SyncReport { full: true, changed: 1 });
    let calls = rec.take();
    let inputs = restores(&calls);
    assert_eq!(inputs.len(), 2, "one restore per table");
    assert!(inputs[0].starts_with("*nat\n") && inputs[0].contains("-X KRS-SVC-OLD\n"));
    assert!(!inputs[0].contains("KRS-CNI-"), "the CNI plugins' chains are not ours");
    assert!(inputs[1].starts_with("*filter\n"));
    let inserted: Vec<&str> = calls.iter().map(|(c, _)| c.as_str()).filter(|c| c.contains(" -I ")).collect();
    assert_eq!(inserted.len(), HOOKS.len());
    assert!(inserted.contains(&"iptables -w 5 -t nat -I PREROUTING -j KRS-SERVICES"));
    assert!(calls.iter().any(|(c, _)| c == "sysctl -q -w net.ipv4.conf.all.route_localnet=1"));
    assert!(!calls.iter().any(|(c, _)| c.contains(" -F") || c.contains("-t nat -D")), "built-in chains are never flushed");
}

#[test]
fn later_syncs_write_only_the_chains_that_changed() {
    let rec = Recorder::default();
    let mut b = Iptables::with_exec(Box::new(rec.clone()));
    let mut s = state(vec![("web", web(vec![ep(1, "a"), ep(2, "a")])), ("db", web(vec![ep(9, "a")]))]);
    s.services.get_mut(&name("db")).unwrap().cluster_ips = vec![Ipv4Addr::new(10, 96, 0, 11)];
    b.sync(&s).unwrap();
    rec.take();

    assert_eq!(b.sync(&s).unwrap(), SyncReport { full: false, changed: 0 });
    assert!(rec.take().is_empty(), "nothing changed, nothing run");

    s.services.get_mut(&name("web")).unwrap().endpoints = vec![ep(1, "a"), ep(3, "a")];
    assert_eq!(b.sync(&s).unwrap(), SyncReport { full: false, changed: 1 });
    let calls = rec.take();
    assert_eq!(calls.len(), 1, "one restore, nat only: {calls:?}");
    let input = calls[0].1.clone().unwrap();
    let (svc, old, new) = (names::service(&name("web")), names::endpoint(&name("web"), &ep(2, "a")), names::endpoint(&name("web"), &ep(3, "a")));
    assert!(input.contains(&format!(":{svc} - [0:0]")) && input.contains(&format!(":{new} - [0:0]")));
    assert!(input.contains(&format!("-X {old}\n")));
    assert!(!input.contains("KRS-SERVICES"), "the service list did not change");
    assert!(!input.contains(&names::service(&name("db"))));
    assert!(!input.contains(&format!(":{} ", names::endpoint(&name("web"), &ep(1, "a")))), "an unchanged endpoint chain is left alone");

    s.services.remove(&name("db"));
    assert_eq!(b.sync(&s).unwrap(), SyncReport { full: false, changed: 1 });
    let input = rec.take()[0].1.clone().unwrap();
    assert!(input.contains(":KRS-SERVICES - [0:0]") && input.contains(&format!("-X {}\n", names::service(&name("db")))));
}

#[test]
fn a_failed_sync_makes_the_next_one_full_and_names_the_refused_rule() {
    let rec = Recorder::default();
    let mut b = Iptables::with_exec(Box::new(rec.clone()));
    let mut s = state(vec![("web", web(vec![ep(1, "a")]))]);
    b.sync(&s).unwrap();
    s.services.get_mut(&name("web")).unwrap().port = 81;
    *rec.fail.lock().unwrap() = Some("--dport 81".into());
    let err = b.sync(&s).unwrap_err().to_string();
    assert!(err.contains("table nat") && err.contains("rule"), "{err}");
    *rec.fail.lock().unwrap() = None;
    rec.take();
    assert!(b.sync(&s).unwrap().full);
    assert_eq!(restores(&rec.take()).len(), 2);
}

#[test]
fn cleanup_unhooks_and_deletes_only_our_chains() {
    let rec = Recorder::default();
    *rec.saved.lock().unwrap() = ":KRS-SERVICES - [0:0]\n:KRS-SEP-X - [0:0]\n:KRS-CNI-MASQ - [0:0]\n:KUBE-SERVICES - [0:0]\n".into();
    *rec.present.lock().unwrap() = 1;
    let mut b = Iptables::with_exec(Box::new(rec.clone()));
    b.cleanup().unwrap();
    let calls = rec.take();
    let deleted: Vec<&str> = calls.iter().map(|(c, _)| c.as_str()).filter(|c| c.contains(" -D ")).collect();
    assert_eq!(deleted, ["iptables -w 5 -t nat -D PREROUTING -j KRS-SERVICES"]);
    let inputs = restores(&calls);
    assert_eq!(inputs[0], "*nat\n:KRS-SEP-X - [0:0]\n:KRS-SERVICES - [0:0]\n-X KRS-SEP-X\n-X KRS-SERVICES\nCOMMIT\n");
}

#[test]
fn failed_line_is_read_from_iptables_restore_errors() {
    assert_eq!(failed_line("iptables-restore: line 12 failed"), Some(12));
    assert_eq!(failed_line("iptables-restore v1.8.9 (nf_tables): Couldn't load match `foo'"), None);
}
