//! The load balancer of a small cluster (what k3s's servicelb and minikube's tunnel give,
//! with no cloud to ask): a `LoadBalancer` Service's `status.loadBalancer.ingress` lists the
//! addresses of the cluster's Ready nodes, and every node's service proxy accepts traffic to
//! those addresses at the service's port. Services of other types lose an ingress they had.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

/// Run until the process ends.
pub async fn run(client: Client) {
    let changed = Arc::new(Notify::new());
    let (services, services_writer) = reflector::store::<Service>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let watch_services = follow(reflector::reflector(services_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default())), changed.clone());
    let watch_nodes = follow(reflector::reflector(nodes_writer, watcher(Api::<Node>::all(client.clone()), watcher::Config::default())), changed.clone());
    tokio::join!(watch_services, watch_nodes, reconcile_loop(client, services, nodes, changed));
}

async fn follow<K, S>(stream: S, changed: Arc<Notify>)
where
    S: futures_util::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream.default_backoff());
    while let Some(event) = stream.next().await {
        if event.is_ok() {
            changed.notify_one();
        }
    }
}

async fn reconcile_loop(client: Client, services: Store<Service>, nodes: Store<Node>, changed: Arc<Notify>) {
    let _ = services.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    loop {
        let ingress = ingress_addresses(nodes.state().iter().map(|n| n.as_ref()));
        for service in services.state() {
            if let Some(want) = wanted(&service, &ingress) {
                let (ns, name) = (service.namespace().unwrap_or_default(), service.name_any());
                let patch = json!({"status": {"loadBalancer": {"ingress": want.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect::<Vec<_>>()}}});
                match Api::<Service>::namespaced(client.clone(), &ns).patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => tracing::info!(service = %format!("{ns}/{name}"), ingress = ?want, "load balancer: ingress set"),
                    Err(e) => tracing::warn!("load balancer: setting the ingress of service {ns}/{name}: {e}"),
                }
            }
        }
        // A failed patch is retried at the next change or within a minute.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), changed.notified()).await;
    }
}

/// The InternalIP (else ExternalIP) of every Ready node, sorted.
fn ingress_addresses<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for node in nodes {
        let Some(status) = &node.status else { continue };
        let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        let addresses = status.addresses.iter().flatten();
        let pick = addresses.clone().find(|a| a.type_ == "InternalIP").or_else(|| addresses.clone().find(|a| a.type_ == "ExternalIP"));
        if let (true, Some(a)) = (ready, pick) {
            out.insert(a.address.clone());
        }
    }
    out.into_iter().collect()
}

/// The ingress list the service should have, when it differs from what it has.
fn wanted(service: &Service, ingress: &[String]) -> Option<Vec<String>> {
    let is_lb = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has: Vec<String> = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref()).into_iter().flatten().filter_map(|i| i.ip.clone()).collect();
    let want = if is_lb { ingress.to_vec() } else { Vec::new() };
    (has != want).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ip: &str, ready: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": ip}, "status": {"addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": ip}], "conditions": [{"type": "Ready", "status": ready}]}})).unwrap()
    }

    fn service(type_: &str, ingress: &[&str]) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": type_}, "status": {"loadBalancer": {"ingress": ingress.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>()}}})).unwrap()
    }

    #[test]
    fn ready_nodes_internal_addresses_become_the_ingress() {
        let nodes = [node("192.168.1.12", "True"), node("192.168.1.11", "True"), node("192.168.1.13", "False")];
        let ingress = ingress_addresses(nodes.iter());
        assert_eq!(ingress, ["192.168.1.11", "192.168.1.12"]);
        assert_eq!(wanted(&service("LoadBalancer", &[]), &ingress), Some(ingress.clone()));
        assert_eq!(wanted(&service("LoadBalancer", &["192.168.1.11", "192.168.1.12"]), &ingress), None);
    }

    #[test]
    fn a_service_that_is_no_longer_a_load_balancer_loses_its_ingress() {
        assert_eq!(wanted(&service("ClusterIP", &["192.168.1.11"]), &["192.168.1.11".into()]), Some(vec![]));
        assert_eq!(wanted(&service("ClusterIP", &[]), &["192.168.1.11".into()]), None);
    }
}
