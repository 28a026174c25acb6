//! The programmed services, made up: service i has cluster IP 10.96.0.0/12 + 1 + i, port 80
//! and `endpoints` ready endpoints at 10.200.0.0/16 addresses (never reached: only the rules
//! are measured). Names are zero-padded so service i sorts i-th, and so is i-th in the rules.

use std::net::Ipv4Addr;

use cni::firewall::Protocol;
use cni::proxy::{Endpoint, ProxyState, ServicePort, ServicePortName};

pub const NODE: &str = "node";

pub fn services(count: usize, endpoints: usize) -> ProxyState {
    let mut state = ProxyState { node_name: NODE.into(), cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()], ..Default::default() };
    for i in 0..count {
        let eps = (0..endpoints).map(|j| endpoint(offset([10, 200, 0, 0], i * endpoints + j + 1), 8080)).collect();
        state.services.insert(name(i), ServicePort { cluster_ips: vec![cluster_ip(i)], port: 80, endpoints: eps, ..Default::default() });
    }
    state
}

pub fn name(i: usize) -> ServicePortName {
    ServicePortName { namespace: "bench".into(), name: format!("svc-{i:06}"), port: String::new(), protocol: Protocol::Tcp }
}

pub fn cluster_ip(i: usize) -> Ipv4Addr {
    offset([10, 96, 0, 0], i + 1)
}

pub fn endpoint(ip: Ipv4Addr, port: u16) -> Endpoint {
    Endpoint { ip, port, ready: true, serving: true, terminating: false, node: Some(NODE.into()) }
}

/// The one-service change: service `i`'s last endpoint moves to another address (one
/// endpoint chain goes, one comes, the service's picker is rewritten).
pub fn change_one(state: &mut ProxyState, i: usize, generation: usize) {
    let sp = state.services.get_mut(&name(i)).expect("service exists");
    let last = sp.endpoints.last_mut().expect("service has endpoints");
    last.ip = offset([10, 201, 0, 0], generation + 1);
}

fn offset(base: [u8; 4], n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + n as u32)
}
