//! Routes between the nodes' pod networks, host-gw style (as flannel's host-gw backend does):
//! for every other node with an IPv4 pod CIDR and an InternalIP, a route `<podCIDR> via
//! <InternalIP>` in the main table, so pods on different nodes reach each other without
//! encapsulation or NAT. It works where the nodes share a link (one LAN, one bridge); a node
//! whose address is not on-link gets no route and a warning saying so.
//!
//! Our routes carry their own protocol number ([`ROUTE_PROTOCOL`]), so only they are ever
//! replaced or removed; they stay when kubelet-rs stops (pods keep talking) and are
//! reconciled at the next start.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::Notify;

/// The route protocol (`ip route ... proto 77`) marking routes this module owns.
pub const ROUTE_PROTOCOL: u8 = 77;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot run `ip`: {0}")]
    Spawn(std::io::Error),
    #[error("`ip {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("reading `ip -j route` output: {0}")]
    Parse(String),
}

/// The routes of the main table this module owns: destination -> gateway.
pub type Routes = BTreeMap<Ipv4Net, Ipv4Addr>;

/// The node's routing table, as far as our routes go.
pub trait RouteTable: Send {
    fn ours(&self) -> Result<Routes, RouteError>;
    fn replace(&self, dst: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError>;
    fn delete(&self, dst: Ipv4Net) -> Result<(), RouteError>;
}

/// [`RouteTable`] through iproute2's `ip` (in `netns` when given).
pub struct IpRoutes {
    pub netns: Option<String>,
}

impl IpRoutes {
    fn ip(&self, args: &[&str]) -> Result<String, RouteError> {
        let out = crate::tool::run(self.netns.as_deref(), "ip", args, None).map_err(RouteError::Spawn)?;
        if !out.status.success() {
            return Err(RouteError::Failed { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl RouteTable for IpRoutes {
    fn ours(&self) -> Result<Routes, RouteError> {
        let proto = ROUTE_PROTOCOL.to_string();
        parse_routes(&self.ip(&["-4", "-j", "route", "show", "proto", &proto])?)
    }

    fn replace(&self, dst: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError> {
        self.ip(&["-4", "route", "replace", &dst.to_string(), "via", &via.to_string(), "proto", &ROUTE_PROTOCOL.to_string()]).map(drop)
    }

    fn delete(&self, dst: Ipv4Net) -> Result<(), RouteError> {
        self.ip(&["-4", "route", "del", &dst.to_string(), "proto", &ROUTE_PROTOCOL.to_string()]).map(drop)
    }
}

/// `ip -j route show` output: `[{"dst":"10.244.1.0/24","gateway":"192.168.1.11",...}]`.
fn parse_routes(json: &str) -> Result<Routes, RouteError> {
    if json.trim().is_empty() {
        return Ok(Routes::new());
    }
    let entries: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| RouteError::Parse(e.to_string()))?;
    let mut routes = Routes::new();
    for entry in entries {
        let (Some(dst), Some(gw)) = (entry["dst"].as_str(), entry["gateway"].as_str()) else { continue };
        // `ip` prints a host route without its /32.
        let dst = if dst.contains('/') { dst.to_string() } else { format!("{dst}/32") };
        let dst: Ipv4Net = dst.parse().map_err(|_| RouteError::Parse(format!("destination {dst:?}")))?;
        let gw: Ipv4Addr = gw.parse().map_err(|_| RouteError::Parse(format!("gateway {gw:?}")))?;
        routes.insert(dst, gw);
    }
    Ok(routes)
}

/// The routes this node wants: every other node's IPv4 pod CIDRs via its InternalIP. Pod
/// CIDRs overlapping this node's own are skipped (a misconfiguration the log names).
pub fn desired<'a>(nodes: impl Iterator<Item = &'a Node>, me: &str) -> Routes {
    let nodes: Vec<&Node> = nodes.collect();
    let own: Vec<Ipv4Net> = nodes.iter().filter(|n| n.metadata.name.as_deref() == Some(me)).flat_map(|n| pod_cidrs(n)).collect();
    let mut routes = Routes::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if name == me {
            continue;
        }
        let Some(ip) = internal_ip(node) else { continue };
        for cidr in pod_cidrs(node) {
            if own.iter().any(|o| o.contains(&cidr.network()) || cidr.contains(&o.network())) {
                tracing::warn!(node = name, %cidr, "pod network routes: node's pod CIDR overlaps this node's; no route");
                continue;
            }
            routes.insert(cidr, ip);
        }
    }
    routes
}

fn pod_cidrs(node: &Node) -> Vec<Ipv4Net> {
    let spec = node.spec.as_ref();
    let list = spec.and_then(|s| s.pod_cidrs.clone()).filter(|l| !l.is_empty()).or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c]));
    list.unwrap_or_default().iter().filter_map(|c| c.parse::<Ipv4Net>().ok()).map(|c| c.trunc()).collect()
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status.as_ref()?.addresses.as_ref()?.iter().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse().ok())
}

/// What to change to go from `current` to `want`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Replace(Ipv4Net, Ipv4Addr),
    Delete(Ipv4Net),
}

pub fn plan(current: &Routes, want: &Routes) -> Vec<Change> {
    let mut changes: Vec<Change> = current.keys().filter(|dst| !want.contains_key(dst)).map(|dst| Change::Delete(*dst)).collect();
    changes.extend(want.iter().filter(|(dst, via)| current.get(dst) != Some(via)).map(|(dst, via)| Change::Replace(*dst, *via)));
    changes
}

/// Bring the table to `want`; each failed change is logged (naming the route) and retried at
/// the next sync. Returns how many changes failed.
pub fn sync(table: &dyn RouteTable, want: &Routes) -> usize {
    let current = match table.ours() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("pod network routes: {e}");
            return 1;
        }
    };
    let mut failed = 0;
    for change in plan(&current, want) {
        let result = match &change {
            Change::Replace(dst, via) => table.replace(*dst, *via),
            Change::Delete(dst) => table.delete(*dst),
        };
        match result {
            Ok(()) => tracing::info!(?change, "pod network routes"),
            Err(e) => {
                failed += 1;
                tracing::warn!(?change, "pod network routes: {e} (is the node's InternalIP on a link this node shares?)");
            }
        }
    }
    failed
}

/// Follow the Nodes and keep the routes until the process ends (resync every 30 s, and 5 s
/// after a failure).
pub async fn run(client: kube::Client, node_name: String, table: Box<dyn RouteTable>) {
    let changed = Arc::new(Notify::new());
    let (nodes, writer) = reflector::store::<Node>();
    let stream = reflector::reflector(writer, watcher(Api::<Node>::all(client), watcher::Config::default()));
    let follow = crate::proxy::run::watch(stream, changed.clone(), "nodes for the pod network routes");
    tokio::join!(follow, keep(nodes, node_name, table, changed));
}

async fn keep(nodes: Store<Node>, node_name: String, table: Box<dyn RouteTable>, changed: Arc<Notify>) {
    let _ = nodes.wait_until_ready().await;
    let table: Arc<std::sync::Mutex<Box<dyn RouteTable>>> = Arc::new(std::sync::Mutex::new(table));
    loop {
        let want = desired(nodes.state().iter().map(|n| n.as_ref()), &node_name);
        let t = table.clone();
        let failed = tokio::task::spawn_blocking(move || sync(t.lock().expect("route table").as_ref(), &want)).await.unwrap_or(1);
        let wait = if failed > 0 { Duration::from_secs(5) } else { Duration::from_secs(30) };
        let _ = tokio::time::timeout(wait, changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    fn node(name: &str, ip: &str, cidr: Option<&str>) -> Node {
        let mut spec = json!({});
        if let Some(c) = cidr {
            spec = json!({"podCIDR": c, "podCIDRs": [c]});
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec, "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}})).unwrap()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_gets_a_route_via_its_internal_ip() {
        let nodes = [node("a", "192.168.1.10", Some("10.244.0.0/24")), node("b", "192.168.1.11", Some("10.244.1.0/24")), node("c", "192.168.1.12", Some("10.244.2.0/24")), node("d", "192.168.1.13", None)];
        let want = desired(nodes.iter(), "a");
        assert_eq!(want, Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11")), (net("10.244.2.0/24"), ip("192.168.1.12"))]));
    }

    #[test]
    fn a_pod_cidr_overlapping_this_nodes_gets_no_route() {
        let nodes = [node("a", "192.168.1.10", Some("10.244.0.0/24")), node("b", "192.168.1.11", Some("10.244.0.0/16"))];
        assert!(desired(nodes.iter(), "a").is_empty());
    }

    #[test]
    fn plan_replaces_what_differs_and_deletes_what_is_gone() {
        let current = Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11")), (net("10.244.2.0/24"), ip("192.168.1.99")), (net("10.244.3.0/24"), ip("192.168.1.13"))]);
        let want = Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11")), (net("10.244.2.0/24"), ip("192.168.1.12")), (net("10.244.4.0/24"), ip("192.168.1.14"))]);
        assert_eq!(
            plan(&current, &want),
            vec![Change::Delete(net("10.244.3.0/24")), Change::Replace(net("10.244.2.0/24"), ip("192.168.1.12")), Change::Replace(net("10.244.4.0/24"), ip("192.168.1.14"))]
        );
        assert!(plan(&want, &want).is_empty());
    }

    #[test]
    fn ip_json_is_read_with_host_routes_as_slash_32() {
        let json = r#"[{"dst":"10.244.1.0/24","gateway":"192.168.1.11","dev":"eth0","protocol":"77","flags":[]},{"dst":"10.9.9.9","gateway":"192.168.1.12","dev":"eth0","flags":[]},{"dst":"10.8.0.0/16","dev":"eth0","flags":[]}]"#;
        let routes = parse_routes(json).unwrap();
        assert_eq!(routes, Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11")), (net("10.9.9.9/32"), ip("192.168.1.12"))]));
        assert!(parse_routes("").unwrap().is_empty());
        assert!(parse_routes("{not json").is_err());
    }

    struct Fake {
        routes: Mutex<Routes>,
        refuse: Option<Ipv4Addr>,
    }

    impl RouteTable for Fake {
        fn ours(&self) -> Result<Routes, RouteError> {
            Ok(self.routes.lock().unwrap().clone())
        }
        fn replace(&self, dst: Ipv4Net, via: Ipv4Addr) -> Result<(), RouteError> {
            if Some(via) == self.refuse {
                return Err(RouteError::Failed { args: format!("route replace {dst} via {via}"), stderr: "Error: Nexthop has invalid gateway.".into() });
            }
            self.routes.lock().unwrap().insert(dst, via);
            Ok(())
        }
        fn delete(&self, dst: Ipv4Net) -> Result<(), RouteError> {
            self.routes.lock().unwrap().remove(&dst);
            Ok(())
        }
    }

    #[test]
    fn sync_applies_the_plan_and_counts_what_the_kernel_refused() {
        let table = Fake { routes: Mutex::new(Routes::from([(net("10.244.9.0/24"), ip("192.168.1.19"))])), refuse: Some(ip("10.0.0.1")) };
        let want = Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11")), (net("10.244.2.0/24"), ip("10.0.0.1"))]);
        assert_eq!(sync(&table, &want), 1);
        assert_eq!(*table.routes.lock().unwrap(), Routes::from([(net("10.244.1.0/24"), ip("192.168.1.11"))]));
    }
}
