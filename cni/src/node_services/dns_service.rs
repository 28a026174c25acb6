//! The cluster DNS as a Service: `kube-system/kube-dns` at the cluster DNS address (10.96.0.10
//! by default, what pods' resolv.conf names), with `internalTrafficPolicy: Local` and one
//! endpoint per Ready node (its InternalIP, where that node's kubelet-rs serves DNS), so each
//! node's proxy sends its pods' queries to its own DNS server. Kept by the control plane's
//! kubelet-rs (it needs rights nodes do not have): the Service created when missing, the
//! EndpointSlice `kube-dns` rewritten when the nodes change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
const FIELD_MANAGER: &str = "kubelet-rs-cluster-dns";

#[derive(Debug, Clone)]
pub struct DnsServiceConfig {
    /// The Service's cluster IP.
    pub service_ip: Ipv4Addr,
    /// The port each node's DNS server listens on.
    pub target_port: u16,
}

/// Keep the Service and its EndpointSlice until the process ends.
pub async fn run(client: kube::Client, config: DnsServiceConfig) {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    loop {
        match services.create(&PostParams::default(), &service(&config)).await {
            Ok(_) => tracing::info!(ip = %config.service_ip, "cluster DNS: service kube-system/kube-dns created"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                tracing::warn!("cluster DNS: creating service kube-system/kube-dns: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        break;
    }
    let changed = Arc::new(Notify::new());
    let (nodes, writer) = reflector::store::<Node>();
    let stream = reflector::reflector(writer, watcher(Api::<Node>::all(client.clone()), watcher::Config::default()));
    let follow = crate::proxy::run::watch(stream, changed.clone(), "nodes for the kube-dns endpoints");
    tokio::join!(follow, keep_slice(client, config, nodes, changed));
}

async fn keep_slice(client: kube::Client, config: DnsServiceConfig, nodes: Store<Node>, changed: Arc<Notify>) {
    let slices: Api<EndpointSlice> = Api::namespaced(client, NAMESPACE);
    let _ = nodes.wait_until_ready().await;
    let mut written: Option<Value> = None;
    loop {
        let endpoints = node_endpoints(nodes.state().iter().map(|n| n.as_ref()));
        let want = slice(&config, &endpoints);
        if written.as_ref() != Some(&want) {
            match slices.patch(NAME, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&want)).await {
                Ok(_) => written = Some(want),
                Err(e) => tracing::warn!("cluster DNS: writing endpointslice kube-system/kube-dns: {e}"),
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), changed.notified()).await;
    }
}

fn service(config: &DnsServiceConfig) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "DNS", "kubernetes.io/cluster-service": "true"}},
        "spec": {
            "clusterIP": config.service_ip.to_string(),
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": config.target_port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": config.target_port},
            ],
        },
    }))
    .expect("a valid Service")
}

/// Each Ready node's InternalIP (IPv4), by node name.
fn node_endpoints<'a>(nodes: impl Iterator<Item = &'a Node>) -> BTreeMap<String, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for node in nodes {
        let (Some(name), Some(status)) = (node.metadata.name.as_ref(), node.status.as_ref()) else { continue };
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        let ip = status.addresses.iter().flatten().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse::<Ipv4Addr>().ok());
        if let (true, Some(ip)) = (ready, ip) {
            out.insert(name.clone(), ip);
        }
    }
    out
}

fn slice(config: &DnsServiceConfig, endpoints: &BTreeMap<String, Ipv4Addr>) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": NAME, "endpointslice.kubernetes.io/managed-by": "kubelet-rs"}},
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|(node, ip)| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": node})).collect::<Vec<_>>(),
        "ports": [
            {"name": "dns", "port": config.target_port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": config.target_port, "protocol": "TCP"},
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "status": {"addresses": [{"type": "InternalIP", "address": ip}], "conditions": [{"type": "Ready", "status": ready}]}})).unwrap()
    }

    #[test]
    fn every_ready_node_is_an_endpoint_named_for_its_node() {
        let nodes = [node("a", "192.168.1.11", "True"), node("b", "192.168.1.12", "False"), node("c", "fd00::1", "True")];
        let endpoints = node_endpoints(nodes.iter());
        assert_eq!(endpoints, BTreeMap::from([("a".to_string(), Ipv4Addr::new(192, 168, 1, 11))]));
        let s = slice(&DnsServiceConfig { service_ip: Ipv4Addr::new(10, 96, 0, 10), target_port: 53 }, &endpoints);
        assert_eq!(s["endpoints"][0]["nodeName"], "a");
        assert_eq!(s["metadata"]["labels"]["kubernetes.io/service-name"], NAME);
        let svc = service(&DnsServiceConfig { service_ip: Ipv4Addr::new(10, 96, 0, 10), target_port: 53 });
        let spec = svc.spec.unwrap();
        assert_eq!((spec.cluster_ip.as_deref(), spec.internal_traffic_policy.as_deref()), (Some("10.96.0.10"), Some("Local")));
    }
}
