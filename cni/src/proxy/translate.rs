//! Services and EndpointSlices, as the API server has them, to the proxy's [`ProxyState`]:
//! one [`ServicePort`] per port of every service that has a cluster IP (headless and
//! ExternalName services are DNS's business, not the proxy's), with the endpoints of every
//! IPv4 slice labelled with the service's name merged, their port resolved by port name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Service, ServicePort as ApiPort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::model::{Endpoint, ProxyState, ServicePort, ServicePortName};
use crate::firewall::Protocol;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (3 hours, as upstream).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The state for `node` from every Service and EndpointSlice the API server has.
pub fn proxy_state<'a>(node: &str, cluster_cidrs: &[Ipv4Net], services: impl IntoIterator<Item = &'a Service>, slices: impl IntoIterator<Item = &'a EndpointSlice>) -> ProxyState {
    let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let (Some(ns), Some(name)) = (slice.metadata.namespace.as_deref(), slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL))) else { continue };
        if slice.address_type == "IPv4" {
            by_service.entry((ns, name.as_str())).or_default().push(slice);
        }
    }
    let mut state = ProxyState { node_name: node.to_string(), cluster_cidrs: cluster_cidrs.to_vec(), services: BTreeMap::new() };
    for service in services {
        let (Some(ns), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else { continue };
        let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or_default();
        for (key, port) in service_ports(ns, name, service, slices) {
            state.services.insert(key, port);
        }
    }
    state
}

fn service_ports(namespace: &str, name: &str, service: &Service, slices: &[&EndpointSlice]) -> Vec<(ServicePortName, ServicePort)> {
    let Some(spec) = &service.spec else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ips: Vec<Ipv4Addr> = match (&spec.cluster_ips, &spec.cluster_ip) {
        (Some(ips), _) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        (_, Some(ip)) => ip.parse().ok().into_iter().collect(),
        _ => Vec::new(),
    };
    // Headless ("None") or not yet allocated: nothing to proxy.
    if cluster_ips.is_empty() {
        return Vec::new();
    }
    let external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    let load_balancer_ips: Vec<Ipv4Addr> = match spec.type_.as_deref() {
        Some("LoadBalancer") => service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref()).into_iter().flatten().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect(),
        _ => Vec::new(),
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let configured = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
        configured.and_then(|t| u32::try_from(t).ok()).filter(|t| *t > 0).unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let node_port_type = matches!(spec.type_.as_deref(), Some("NodePort") | Some("LoadBalancer"));
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = protocol(port) else { continue };
        let Ok(number) = u16::try_from(port.port) else { continue };
        let port_name = port.name.clone().unwrap_or_default();
        let key = ServicePortName { namespace: namespace.into(), name: name.into(), port: port_name.clone(), protocol };
        let value = ServicePort {
            cluster_ips: cluster_ips.clone(),
            port: number,
            node_port: port.node_port.filter(|_| node_port_type).and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            affinity_timeout,
            external_local,
            internal_local,
            endpoints: endpoints(slices, &port_name, protocol),
        };
        out.push((key, value));
    }
    out
}

fn protocol(port: &ApiPort) -> Option<Protocol> {
    match port.protocol.as_deref().unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The endpoints of one service port over all its slices: a slice port of the same name
/// and protocol gives the target port; the same address in two slices counts once.
fn endpoints(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    for slice in slices {
        let target = slice.ports.iter().flatten().find(|p| p.name.as_deref().unwrap_or("") == port_name && p.protocol.as_deref().unwrap_or("TCP") == protocol_name(protocol));
        let Some(port) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for e in &slice.endpoints {
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
            let c = e.conditions.as_ref();
            // Unset conditions mean: ready, serving as ready, not terminating (the API's rules).
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            seen.insert(Endpoint { ip, port, ready, serving, terminating, node: e.node_name.clone() });
        }
    }
    // One entry per address and port: a pod listed twice (slices being rewritten) with
    // different conditions keeps its first, most-ready form.
    let mut out: Vec<Endpoint> = Vec::new();
    for e in seen.into_iter().rev() {
        if !out.iter().any(|o| o.ip == e.ip && o.port == e.port) {
            out.push(e);
        }
    }
    out.sort_by_key(|e| (e.ip, e.port));
    out
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web_slice(endpoints: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints,
        }))
    }

    #[test]
    fn a_cluster_ip_service_gives_one_entry_per_port_with_its_endpoints_target_ports() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]},
        }));
        let slices = [web_slice(json!([
            {"addresses": ["10.244.0.6"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.244.0.5"], "conditions": {"ready": false, "serving": true, "terminating": true}, "nodeName": "n2"},
        ]))];
        let state = proxy_state("n1", &[], [&svc], &slices);
        assert_eq!(state.services.len(), 2);
        let http = &state.services[&ServicePortName { namespace: "default".into(), name: "web".into(), port: "http".into(), protocol: Protocol::Tcp }];
        assert_eq!((http.cluster_ips.as_slice(), http.port, http.node_port), (&[Ipv4Addr::new(10, 96, 0, 20)][..], 80, None));
        assert_eq!(http.endpoints.iter().map(|e| (e.ip.to_string(), e.port, e.ready, e.terminating)).collect::<Vec<_>>(), [("10.244.0.5".to_string(), 8080, false, true), ("10.244.0.6".to_string(), 8080, true, false)]);
        let dns = state.services.iter().find(|(k, _)| k.protocol == Protocol::Udp).unwrap().1;
        assert_eq!(dns.endpoints[0].port, 5353);
    }

    #[test]
    fn headless_external_name_and_unallocated_services_are_not_proxied() {
        let headless = service(json!({"metadata": {"name": "h", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}));
        let external = service(json!({"metadata": {"name": "e", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.org"}}));
        let pending = service(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"ports": [{"port": 80}]}}));
        assert!(proxy_state("n1", &[], [&headless, &external, &pending], []).services.is_empty());
    }

    #[test]
    fn node_ports_external_and_load_balancer_addresses_affinity_and_policies_are_read() {
        let svc = service(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21", "externalIPs": ["192.0.2.10"],
                     "ports": [{"port": 80, "nodePort": 30080}], "sessionAffinity": "ClientIP",
                     "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}]}},
        }));
        let state = proxy_state("n1", &[], [&svc], []);
        let (key, port) = state.services.iter().next().unwrap();
        assert_eq!(key.to_string(), "shop/web/tcp");
        assert_eq!(port.node_port, Some(30080));
        assert_eq!(port.external_ips, [Ipv4Addr::new(192, 0, 2, 10)]);
        assert_eq!(port.load_balancer_ips, [Ipv4Addr::new(192, 168, 1, 5)]);
        assert_eq!(port.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert!(port.external_local && port.internal_local);
        assert!(port.endpoints.is_empty());
    }

    #[test]
    fn unset_conditions_mean_ready_and_duplicates_across_slices_count_once() {
        let svc = service(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}}));
        let a = web_slice(json!([{"addresses": ["10.244.0.7"]}]));
        let mut b = web_slice(json!([{"addresses": ["10.244.0.7"], "conditions": {"ready": false}}, {"addresses": ["fd00::1"]}]));
        b.metadata.name = Some("web-def".into());
        let v6 = slice(json!({"metadata": {"name": "web-v6", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}}, "addressType": "IPv6", "ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["fd00::2"]}]}));
        let other_ns = slice(json!({"metadata": {"name": "web-x", "namespace": "other", "labels": {SERVICE_NAME_LABEL: "web"}}, "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["10.244.0.9"]}]}));
        let state = proxy_state("n1", &[], [&svc], [&a, &b, &v6, &other_ns]);
        let port = state.services.values().next().unwrap();
        assert_eq!(port.endpoints.len(), 1, "{:?}", port.endpoints);
        assert!(port.endpoints[0].ready && port.endpoints[0].serving && !port.endpoints[0].terminating);
    }
}
