//! What the proxy programs: the node's view of Services and their endpoints, reduced to
//! plain data (no Kubernetes types), one entry per service port. Built from Service and
//! EndpointSlice objects by `translate`; rendered into rules by a backend. Pure.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use crate::firewall::Protocol;

/// The desired state of the proxy on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// This node's name: endpoints with this `nodeName` are local (traffic policy Local).
    pub node_name: String,
    /// The pod network(s) of the cluster: traffic from elsewhere to a cluster IP is
    /// masqueraded so replies come back through this node (kube-proxy's `--cluster-cidr`).
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// Every service port this node serves, keyed for stable ordering and diffing.
    pub services: BTreeMap<ServicePortName, ServicePort>,
}

/// `namespace/name:port` (the port's name, empty when the service has one unnamed port) and
/// its protocol: one entry per service port, as kube-proxy keys them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        };
        if self.port.is_empty() { write!(f, "{}/{}/{proto}", self.namespace, self.name) } else { write!(f, "{}/{}:{}/{proto}", self.namespace, self.name, self.port) }
    }
}

/// One port of one Service, with everything that reaches it and everything it reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePort {
    /// `spec.clusterIPs` (IPv4 ones); never empty for a proxied service.
    pub cluster_ips: Vec<Ipv4Addr>,
    /// `spec.ports[].port`.
    pub port: u16,
    /// `spec.ports[].nodePort` (NodePort and LoadBalancer services): reached on every local
    /// address of the node, 127.0.0.1 included.
    pub node_port: Option<u16>,
    /// `spec.externalIPs`: reached at `port`.
    pub external_ips: Vec<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip`: reached at `port`.
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: its timeout in seconds (default 10800).
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local`: node port, external and load-balancer traffic goes
    /// only to endpoints on this node (and keeps its source address: no masquerade).
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`: cluster IP traffic goes only to endpoints on this node.
    pub internal_local: bool,
    /// Every endpoint of the port, in a stable order (by address), ready or not.
    pub endpoints: Vec<Endpoint>,
}

/// One endpoint address of a service port, as its EndpointSlice says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// The target port, resolved by the EndpointSlice controller.
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `nodeName`, when the slice says.
    pub node: Option<String>,
}

impl ServicePort {
    /// Whether this port has any address beyond its cluster IP (so an external chain).
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// The endpoints traffic to the cluster IP goes to: ready ones; when none is ready, the
    /// serving ones that are terminating (so connections drain rather than fail); only local
    /// ones with `internalTrafficPolicy: Local`.
    pub fn cluster_endpoints(&self, node: &str) -> Vec<&Endpoint> {
        usable(self.endpoints.iter().filter(|e| !self.internal_local || e.node.as_deref() == Some(node)))
    }

    /// The endpoints node-port, external and load-balancer traffic goes to: as
    /// [`cluster_endpoints`](Self::cluster_endpoints) but, with `externalTrafficPolicy: Local`,
    /// only local ones (and regardless of `internalTrafficPolicy`).
    pub fn external_endpoints(&self, node: &str) -> Vec<&Endpoint> {
        usable(self.endpoints.iter().filter(|e| !self.external_local || e.node.as_deref() == Some(node)))
    }
}

fn usable<'a>(candidates: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = candidates.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates.filter(|e| e.serving && e.terminating).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, ready: bool, terminating: bool, node: &str) -> Endpoint {
        Endpoint { ip: Ipv4Addr::new(10, 244, 0, last), port: 8080, ready, serving: ready || terminating, terminating, node: Some(node.into()) }
    }

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_nothing_else_is_left() {
        let mut sp = ServicePort { endpoints: vec![ep(1, true, false, "a"), ep(2, false, true, "a"), ep(3, false, false, "b")], ..Default::default() };
        assert_eq!(sp.cluster_endpoints("a").iter().map(|e| e.ip.octets()[3]).collect::<Vec<_>>(), [1]);
        sp.endpoints[0].ready = false;
        assert_eq!(sp.cluster_endpoints("a").iter().map(|e| e.ip.octets()[3]).collect::<Vec<_>>(), [2]);
        sp.endpoints[1].serving = false;
        assert!(sp.cluster_endpoints("a").is_empty());
    }

    #[test]
    fn local_policies_keep_to_the_nodes_own_endpoints() {
        let sp = ServicePort { external_local: true, node_port: Some(30080), endpoints: vec![ep(1, true, false, "a"), ep(2, true, false, "b")], ..Default::default() };
        assert_eq!(sp.cluster_endpoints("a").len(), 2);
        assert_eq!(sp.external_endpoints("b").iter().map(|e| e.ip.octets()[3]).collect::<Vec<_>>(), [2]);
        let internal = ServicePort { internal_local: true, ..sp };
        assert_eq!(internal.cluster_endpoints("a").iter().map(|e| e.ip.octets()[3]).collect::<Vec<_>>(), [1]);
        assert!(internal.has_external());
    }

    #[test]
    fn names_print_as_kube_proxy_does() {
        let n = ServicePortName { namespace: "default".into(), name: "web".into(), port: "http".into(), protocol: Protocol::Tcp };
        assert_eq!(n.to_string(), "default/web:http/tcp");
    }
}
