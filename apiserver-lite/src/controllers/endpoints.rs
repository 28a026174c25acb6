//! The endpoints and endpointslice controllers: for each Service with a selector, the
//! Endpoints object of the same name and the EndpointSlice(s) labelled with its name list the
//! IPs of the pods it selects, ready or not, with ports resolved against each pod's
//! containers. Services without a selector are the user's (or, for `default/kubernetes`, the
//! API server's own) and are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("reading pods of service {namespace}/{service}: {source}")]
    ListPods { namespace: String, service: String, source: kube::Error },
    #[error("writing endpoints {namespace}/{service}: {source}")]
    WriteEndpoints { namespace: String, service: String, source: kube::Error },
    #[error("writing endpointslices of service {namespace}/{service}: {source}")]
    WriteSlices { namespace: String, service: String, source: kube::Error },
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
}

/// Run the controller until the process ends.
pub async fn run(client: kube::Client) {
    let services: Api<Service> = Api::all(client.clone());
    let pods_api: Api<Pod> = Api::all(client.clone());
    let (pods, writer) = kube::runtime::reflector::store();
    let pod_stream = kube::runtime::reflector(writer, watcher::watcher(pods_api.clone(), watcher::Config::default()));
    let controller = Controller::new(services, watcher::Config::default());
    let svc_store = controller.store();
    // Which services a pod change concerns: those selecting it now. A pod that stopped
    // matching is caught by the periodic resync below.
    let mapper = move |pod: Pod| {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        svc_store
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()) && selector(s).is_some_and(|sel| selects(&sel, &labels)))
            .map(|s| ObjectRef::from_obj(&*s))
            .collect::<Vec<_>>()
    };
    let resync = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_secs(10))).map(|_| ());
    let ctx = Arc::new(Ctx { client: client.clone(), pods: pods.clone() });
    tokio::spawn(pod_stream.for_each(|_| async {}));
    // Endpoints of a deleted service go with it (slices carry an ownerReference instead).
    let deletions = delete_endpoints_of_deleted_services(client);
    let controller = controller
        .watches(pods_api, watcher::Config::default(), mapper)
        .reconcile_all_on(resync)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!("endpoints controller: {e}");
            }
        });
    futures_util::future::join(controller, deletions).await;
}

async fn delete_endpoints_of_deleted_services(client: kube::Client) {
    use kube::runtime::WatchStreamExt;
    let services: Api<Service> = Api::all(client.clone());
    let mut events = watcher::watcher(services, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        if let Ok(watcher::Event::Delete(svc)) = event
            && selector(&svc).is_some()
        {
            let ns = svc.metadata.namespace.unwrap_or_default();
            let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
            let _ = endpoints.delete(svc.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await;
        }
    }
}

fn error_policy(_: Arc<Service>, e: &EndpointsError, _: Arc<Ctx>) -> Action {
    tracing::warn!("{e}");
    Action::requeue(Duration::from_secs(2))
}

/// The service's selector, if it has a non-empty one.
fn selector(svc: &Service) -> Option<BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.clone().filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, EndpointsError> {
    let Some(sel) = selector(&svc) else { return Ok(Action::await_change()) };
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    if svc.metadata.deletion_timestamp.is_some() || (ns == "default" && name == "kubernetes") {
        return Ok(Action::await_change());
    }
    let mut pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && selects(&sel, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let backends: Vec<Backend> = pods.iter().filter_map(|p| backend(&svc, p)).collect();
    write_endpoints(&ctx.client, &svc, &backends).await?;
    write_slices(&ctx.client, &svc, &backends).await?;
    Ok(Action::await_change())
}

/// A backend's resolved ports: (name, port, protocol, appProtocol).
type PortKey = Vec<(String, i32, String, Option<String>)>;

/// One pod as a backend of one service.
#[derive(Clone, Debug, PartialEq)]
struct Backend {
    ip: String,
    node: Option<String>,
    hostname: Option<String>,
    target: ObjectReference,
    ready: bool,
    serving: bool,
    terminating: bool,
    /// (name, port, protocol, appProtocol), in the service's port order.
    ports: PortKey,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod as a backend: none when it has no IP yet or has finished (a Succeeded or Failed
/// pod serves nothing); ports whose named targetPort the pod does not declare are left out.
fn backend(svc: &Service, pod: &Pod) -> Option<Backend> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let spec = svc.spec.as_ref()?;
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = pod_ready(pod);
    let mut ports = Vec::new();
    for p in spec.ports.iter().flatten() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let target = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(s)) => s.parse().ok().or_else(|| container_port(pod, s, &protocol)),
        };
        if let Some(port) = target {
            ports.push((p.name.clone().unwrap_or_default(), port, protocol, p.app_protocol.clone()));
        }
    }
    let pod_spec = pod.spec.as_ref();
    let name = svc.metadata.name.as_deref().unwrap_or("");
    let hostname = pod_spec.and_then(|s| if s.subdomain.as_deref() == Some(name) { s.hostname.clone() } else { None });
    Some(Backend {
        ip,
        node: pod_spec.and_then(|s| s.node_name.clone()),
        hostname,
        target: ObjectReference {
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        ready: (ready || publish) && !terminating,
        serving: ready || publish,
        terminating,
        ports,
    })
}

fn container_port(pod: &Pod, name: &str, protocol: &str) -> Option<i32> {
    pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find(|p| p.name.as_deref() == Some(name) && p.protocol.as_deref().unwrap_or("TCP") == protocol).map(|p| p.container_port)
}

/// Endpoints: backends grouped by their resolved ports into subsets; ready ones as
/// `addresses`, the others as `notReadyAddresses`; terminating pods are left out unless the
/// service publishes not-ready addresses.
fn subsets(svc: &Service, backends: &[Backend]) -> Vec<EndpointSubset> {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let headless_without_ports = svc.spec.as_ref().is_some_and(|s| s.ports.as_ref().is_none_or(|p| p.is_empty()));
    // (ports, ready addresses, not-ready addresses)
    type Subset = (PortKey, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: Vec<Subset> = Vec::new();
    for b in backends {
        if b.terminating && !publish {
            continue;
        }
        if b.ports.is_empty() && !headless_without_ports {
            continue;
        }
        let mut ports = b.ports.clone();
        ports.sort();
        let address = EndpointAddress { ip: b.ip.clone(), node_name: b.node.clone(), hostname: b.hostname.clone(), target_ref: Some(b.target.clone()) };
        let i = match groups.iter().position(|g| g.0 == ports) {
            Some(i) => i,
            None => {
                groups.push((ports, vec![], vec![]));
                groups.len() - 1
            }
        };
        if b.ready { groups[i].1.push(address) } else { groups[i].2.push(address) }
    }
    groups
        .into_iter()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: Some(ready).filter(|a| !a.is_empty()),
                not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
                ports: Some(ports.into_iter().map(|(name, port, protocol, app_protocol)| EndpointPort { name: Some(name).filter(|n| !n.is_empty()), port, protocol: Some(protocol), app_protocol }).collect::<Vec<_>>()).filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

fn labels_for(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

async fn write_endpoints(client: &kube::Client, svc: &Service, backends: &[Backend]) -> Result<(), EndpointsError> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let err = |source| EndpointsError::WriteEndpoints { namespace: ns.clone(), service: name.clone(), source };
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let subsets = subsets(svc, backends);
    let subsets = Some(subsets).filter(|s| !s.is_empty());
    let labels = labels_for(svc);
    match api.get_opt(&name).await.map_err(err)? {
        None => {
            let e = Endpoints { metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), labels: Some(labels), ..Default::default() }, subsets };
            api.create(&PostParams::default(), &e).await.map_err(err)?;
        }
        Some(mut existing) => {
            // Marked as managed elsewhere (the API server's own `kubernetes` endpoints).
            if existing.metadata.labels.as_ref().is_some_and(|l| l.contains_key("endpointslice.kubernetes.io/skip-mirror")) {
                return Ok(());
            }
            if existing.subsets == subsets && existing.metadata.labels.as_ref() == Some(&labels) {
                return Ok(());
            }
            existing.subsets = subsets;
            existing.metadata.labels = Some(labels);
            api.replace(&name, &PostParams::default(), &existing).await.map_err(err)?;
        }
    }
    Ok(())
}

/// At most this many endpoints in one slice (kube-controller-manager's
/// --max-endpoints-per-slice default).
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The slices a service should have: per distinct set of resolved ports (pods whose named
/// ports resolve differently cannot share one) as many as hold its endpoints, or one empty
/// slice when there are no backends, as upstream keeps a placeholder.
fn desired_slices(backends: &[Backend]) -> Vec<(PortKey, Vec<Endpoint>)> {
    let mut groups: Vec<(PortKey, Vec<Endpoint>)> = Vec::new();
    for b in backends.iter().filter(|b| b.ip.parse::<std::net::Ipv4Addr>().is_ok()) {
        let mut ports = b.ports.clone();
        ports.sort();
        let endpoint = Endpoint {
            addresses: vec![b.ip.clone()],
            conditions: Some(EndpointConditions { ready: Some(b.ready), serving: Some(b.serving), terminating: Some(b.terminating) }),
            hostname: b.hostname.clone(),
            node_name: b.node.clone(),
            target_ref: Some(b.target.clone()),
            ..Default::default()
        };
        match groups.iter_mut().find(|g| g.0 == ports) {
            Some(g) => g.1.push(endpoint),
            None => groups.push((ports, vec![endpoint])),
        }
    }
    let mut slices: Vec<(PortKey, Vec<Endpoint>)> = Vec::new();
    for (ports, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            slices.push((ports.clone(), chunk.to_vec()));
        }
    }
    if slices.is_empty() {
        slices.push((vec![], vec![]));
    }
    slices
}

fn slice_ports(ports: &PortKey) -> Option<Vec<SlicePort>> {
    Some(ports.iter().map(|(name, port, protocol, app_protocol)| SlicePort { name: Some(name.clone()), port: Some(*port), protocol: Some(protocol.clone()), app_protocol: app_protocol.clone() }).collect())
}

async fn write_slices(client: &kube::Client, svc: &Service, backends: &[Backend]) -> Result<(), EndpointsError> {
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let err = |source| EndpointsError::WriteSlices { namespace: ns.clone(), service: name.clone(), source };
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut existing = api.list(&lp).await.map_err(err)?.items;
    let mut labels = labels_for(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    for (ports, endpoints) in desired_slices(backends) {
        let ports = slice_ports(&ports);
        // Reuse a slice with these ports, else any one left over, else a new one.
        let pick = existing.iter().position(|s| s.ports == ports).or(if existing.is_empty() { None } else { Some(0) });
        match pick.map(|i| existing.remove(i)) {
            Some(mut slice) => {
                if slice.endpoints == endpoints && slice.ports == ports && slice.metadata.labels.as_ref() == Some(&labels) && slice.address_type == "IPv4" {
                    continue;
                }
                slice.endpoints = endpoints;
                slice.ports = ports;
                slice.address_type = "IPv4".into();
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                let slice_name = slice.metadata.name.clone().unwrap_or_default();
                api.replace(&slice_name, &PostParams::default(), &slice).await.map_err(err)?;
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta { generate_name: Some(format!("{name}-")), namespace: Some(ns.clone()), labels: Some(labels.clone()), owner_references: Some(vec![owner.clone()]), ..Default::default() },
                    address_type: "IPv4".into(),
                    endpoints,
                    ports,
                };
                api.create(&PostParams::default(), &slice).await.map_err(err)?;
            }
        }
    }
    for extra in existing {
        let _ = api.delete(extra.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web", "namespace": "d", "uid": "u"}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: serde_json::Value) -> Pod {
        let mut p = serde_json::json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}")},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        json_patch::merge(&mut p, &extra);
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_against_container_ports_and_readiness_splits_addresses() {
        let s = svc(serde_json::json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}));
        let b: Vec<Backend> = [pod("a", "10.0.0.2", true, serde_json::json!({})), pod("b", "10.0.0.1", false, serde_json::json!({}))].iter().filter_map(|p| backend(&s, p)).collect();
        let subsets = subsets(&s, &b);
        assert_eq!(subsets.len(), 1);
        let ready: Vec<&str> = subsets[0].addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        let not_ready: Vec<&str> = subsets[0].not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
        assert_eq!((ready, not_ready), (vec!["10.0.0.2"], vec!["10.0.0.1"]));
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].node_name.as_deref(), Some("n1"));
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    }

    #[test]
    fn terminating_pods_are_serving_and_terminating_in_slices_but_not_in_endpoints() {
        let s = svc(serde_json::json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}));
        let p = pod("a", "10.0.0.2", true, serde_json::json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        let b = vec![backend(&s, &p).unwrap()];
        assert!(subsets(&s, &b).is_empty());
        let slices = desired_slices(&b);
        assert_eq!(slices[0].1[0].conditions, Some(EndpointConditions { ready: Some(false), serving: Some(true), terminating: Some(true) }));
    }

    #[test]
    fn pods_without_an_ip_or_finished_are_not_backends() {
        let s = svc(serde_json::json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        assert!(backend(&s, &pod("a", "", true, serde_json::json!({}))).is_none());
        assert!(backend(&s, &pod("a", "10.0.0.1", true, serde_json::json!({"status": {"phase": "Succeeded"}}))).is_none());
        assert_eq!(desired_slices(&[]), vec![(vec![], vec![])]);
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let s = svc(serde_json::json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let b: Vec<Backend> = (0..250).map(|i| backend(&s, &pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200), true, serde_json::json!({}))).unwrap()).collect();
        let sizes: Vec<usize> = desired_slices(&b).iter().map(|s| s.1.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
    }

    #[test]
    fn headless_services_without_ports_list_addresses_without_ports() {
        let s = svc(serde_json::json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let b = vec![backend(&s, &pod("a", "10.0.0.2", true, serde_json::json!({}))).unwrap()];
        let subsets = subsets(&s, &b);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1);
        assert!(subsets[0].ports.is_none());
        assert!(labels_for(&s).contains_key(HEADLESS_LABEL));
    }
}
