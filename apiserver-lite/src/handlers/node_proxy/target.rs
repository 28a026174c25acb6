//! Where a proxied request goes, from the stored objects: for a pod's node-side request,
//! which container (defaulted as kube-apiserver does), which node, and the kubelet's
//! address and port on it; for pods/proxy the pod's IP and port; for services/proxy an
//! endpoint of the service.

use serde_json::Value;

use super::super::status::ApiError;

/// The kubelet's port when the Node does not say (`status.daemonEndpoints.kubeletEndpoint`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// kubectl's annotation naming the container commands go to when none is given.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Address types tried in order: the node's cluster-internal address first, as kubeadm
/// configures kube-apiserver's `--kubelet-preferred-address-types`.
const ADDRESS_TYPES: &[&str] = &["InternalIP", "Hostname", "ExternalIP", "InternalDNS", "ExternalDNS"];

/// The node a pod runs on, or 400 as kube-apiserver answers for an unscheduled pod.
pub fn node_name(pod: &Value) -> Result<String, ApiError> {
    match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        Some(node) => Ok(node.to_string()),
        None => Err(ApiError::bad_request(format!("pod {} does not have a host assigned", pod_name(pod)))),
    }
}

fn pod_name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or("")
}

/// Every container name of the pod: regular, init and ephemeral, in that order.
fn container_names(pod: &Value) -> Vec<&str> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|list| pod["spec"][*list].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a log, exec or attach request is for: the one asked for (which must
/// exist), else the default-container annotation's, else the only regular container.
pub fn container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod_name(pod);
    let all = container_names(pod);
    if let Some(wanted) = requested.filter(|c| !c.is_empty()) {
        return match all.contains(&wanted) {
            true => Ok(wanted.to_string()),
            false => Err(ApiError::bad_request(format!("container {wanted} is not valid for pod {name}"))),
        };
    }
    if let Some(annotated) = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION].as_str()
        && all.contains(&annotated)
    {
        return Ok(annotated.to_string());
    }
    let regular: Vec<&str> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    match regular.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}"))),
        // Go's %s of a []string, as kube-apiserver prints the choices.
        _ => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: [{}]", all.join(" ")))),
    }
}

/// Exec and attach go into running containers only.
pub fn check_running(pod: &Value, what: &str) -> Result<(), ApiError> {
    match pod["status"]["phase"].as_str() {
        Some(phase @ ("Succeeded" | "Failed")) => Err(ApiError::bad_request(format!("cannot {what} a container in a completed pod; current phase is {phase}"))),
        _ => Ok(()),
    }
}

/// The kubelet's host (an IP address or a name) and port, from the Node's status.
pub fn kubelet_endpoint(node: &Value) -> Result<(String, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let addresses = node["status"]["addresses"].as_array().map(Vec::as_slice).unwrap_or_default();
    let host = ADDRESS_TYPES
        .iter()
        .find_map(|kind| addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str()).filter(|a| !a.is_empty()))
        .ok_or_else(|| {
            let known: Vec<String> = addresses.iter().map(|a| format!("{}={}", a["type"].as_str().unwrap_or("?"), a["address"].as_str().unwrap_or(""))).collect();
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("node {name:?} has no address the kubelet can be reached at (status.addresses: [{}])", known.join(", ")),
            )
        })?;
    let port = match node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64() {
        None | Some(0) => DEFAULT_KUBELET_PORT,
        Some(p) => u16::try_from(p).map_err(|_| ApiError::new(503, "ServiceUnavailable", format!("node {name:?} reports kubelet port {p}, which is not a TCP port")))?,
    };
    Ok((host.to_string(), port))
}

/// The name part of a `proxy` path, `[scheme:]name[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyName {
    pub scheme: String,
    pub name: String,
    /// A port number or, for services, a port name; empty if not given.
    pub port: String,
}

pub fn proxy_name(raw: &str) -> Result<ProxyName, ApiError> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [scheme @ ("http" | "https"), name] => (*scheme, *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return Err(ApiError::bad_request(format!("invalid proxy name {raw:?}: want [scheme:]name[:port]"))),
    };
    match scheme {
        "" | "http" => Ok(ProxyName { scheme: "http".into(), name: name.into(), port: port.into() }),
        // kube-apiserver dials pods over HTTPS without verifying them; this server does not.
        "https" => Err(ApiError::bad_request(format!("invalid proxy name {raw:?}: this server proxies to pods and services over http only"))),
        other => Err(ApiError::bad_request(format!("invalid proxy name {raw:?}: unknown scheme {other:?}"))),
    }
}

/// A pod's IP and the port to reach: the one asked for, else the first container port, else 80.
pub fn pod_address(pod: &Value, port: &str) -> Result<(String, u16), ApiError> {
    let name = pod_name(pod);
    let ip = pod["status"]["podIP"].as_str().filter(|ip| !ip.is_empty()).ok_or_else(|| ApiError::new(503, "ServiceUnavailable", format!("pod {name} has no IP address yet")))?;
    let port = match port {
        "" => pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| c["ports"][0]["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80),
        p => p.parse().map_err(|_| ApiError::bad_request(format!("invalid port {p:?} for pod {name}: a pod's proxy port is a number")))?,
    };
    Ok((ip.to_string(), port))
}

/// An endpoint of a service for the service port `port` (its name, or its number; empty
/// for the service's unnamed port), picking among the ready addresses with `pick`.
pub fn service_endpoint(service: &Value, endpoints: Option<&Value>, port: &str, pick: impl FnOnce(usize) -> usize) -> Result<(String, u16), ApiError> {
    let name = service["metadata"]["name"].as_str().unwrap_or("");
    let ports = service["spec"]["ports"].as_array().map(Vec::as_slice).unwrap_or_default();
    let port_name = ports
        .iter()
        .find(|p| p["name"].as_str().unwrap_or("") == port || (!port.is_empty() && p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)))
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| ApiError::new(503, "ServiceUnavailable", format!("no service port {port:?} found for service {name:?}")))?;
    let none = || ApiError::new(503, "ServiceUnavailable", format!("no endpoints available for service {name:?}"));
    let subsets = endpoints.and_then(|e| e["subsets"].as_array()).ok_or_else(none)?;
    let candidates: Vec<(String, u16)> = subsets
        .iter()
        .filter_map(|s| {
            let port = s["ports"].as_array()?.iter().find(|p| p["name"].as_str().unwrap_or("") == port_name)?["port"].as_u64()?;
            let port = u16::try_from(port).ok()?;
            Some(s["addresses"].as_array()?.iter().filter_map(move |a| Some((a["ip"].as_str()?.to_string(), port))).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    match candidates.len() {
        0 => Err(none()),
        n => Ok(candidates[pick(n) % n].clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(containers: &[&str]) -> Value {
        let list: Vec<Value> = containers.iter().map(|c| json!({"name": c, "image": "x"})).collect();
        json!({"metadata": {"name": "p"}, "spec": {"containers": list, "initContainers": [{"name": "init"}]}})
    }

    #[test]
    fn the_only_container_is_the_default() {
        assert_eq!(container(&pod(&["app"]), None).unwrap(), "app");
        assert_eq!(container(&pod(&["app"]), Some("")).unwrap(), "app");
    }

    #[test]
    fn a_named_container_must_exist_init_containers_included() {
        assert_eq!(container(&pod(&["a", "b"]), Some("b")).unwrap(), "b");
        assert_eq!(container(&pod(&["a", "b"]), Some("init")).unwrap(), "init");
        let e = container(&pod(&["a"]), Some("zz")).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "container zz is not valid for pod p"));
    }

    #[test]
    fn several_containers_need_a_choice_or_the_annotation() {
        let e = container(&pod(&["a", "b"]), None).unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(e.message, "a container name must be specified for pod p, choose one of: [a b init]");
        let mut annotated = pod(&["a", "b"]);
        annotated["metadata"]["annotations"] = json!({DEFAULT_CONTAINER_ANNOTATION: "b"});
        assert_eq!(container(&annotated, None).unwrap(), "b");
        // An annotation naming no container is ignored, as kubectl does.
        annotated["metadata"]["annotations"] = json!({DEFAULT_CONTAINER_ANNOTATION: "gone"});
        assert!(container(&annotated, None).is_err());
    }

    #[test]
    fn an_unscheduled_pod_has_no_node() {
        let e = node_name(&pod(&["a"])).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "pod p does not have a host assigned"));
        let mut bound = pod(&["a"]);
        bound["spec"]["nodeName"] = json!("n1");
        assert_eq!(node_name(&bound).unwrap(), "n1");
    }

    #[test]
    fn completed_pods_refuse_exec() {
        let mut p = pod(&["a"]);
        assert!(check_running(&p, "exec into").is_ok());
        p["status"]["phase"] = json!("Succeeded");
        let e = check_running(&p, "exec into").unwrap_err();
        assert_eq!(e.message, "cannot exec into a container in a completed pod; current phase is Succeeded");
    }

    #[test]
    fn the_kubelet_is_at_the_internal_ip_and_the_reported_port() {
        let node = json!({"metadata": {"name": "n"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n.local"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(kubelet_endpoint(&node).unwrap(), ("10.0.0.5".to_string(), 12345));
        let node = json!({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "Hostname", "address": "n.local"}]}});
        assert_eq!(kubelet_endpoint(&node).unwrap(), ("n.local".to_string(), DEFAULT_KUBELET_PORT));
        let e = kubelet_endpoint(&json!({"metadata": {"name": "n"}, "status": {}})).unwrap_err();
        assert_eq!(e.code, 503);
        assert!(e.message.contains("node \"n\" has no address"), "{}", e.message);
    }

    #[test]
    fn proxy_names_carry_scheme_and_port() {
        let n = proxy_name("web").unwrap();
        assert_eq!((n.scheme.as_str(), n.name.as_str(), n.port.as_str()), ("http", "web", ""));
        let n = proxy_name("web:8080").unwrap();
        assert_eq!((n.name.as_str(), n.port.as_str()), ("web", "8080"));
        let n = proxy_name("http:web:metrics").unwrap();
        assert_eq!((n.name.as_str(), n.port.as_str()), ("web", "metrics"));
        assert_eq!(proxy_name("http:web").unwrap().port, "");
        assert_eq!(proxy_name("https:web:443").unwrap_err().code, 400);
        assert_eq!(proxy_name("a:b:c:d").unwrap_err().code, 400);
    }

    #[test]
    fn pods_are_reached_at_their_ip_and_first_container_port() {
        let mut p = pod(&["app"]);
        assert_eq!(pod_address(&p, "").unwrap_err().code, 503);
        p["status"]["podIP"] = json!("10.244.0.7");
        assert_eq!(pod_address(&p, "").unwrap(), ("10.244.0.7".to_string(), 80));
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
        assert_eq!(pod_address(&p, "").unwrap(), ("10.244.0.7".to_string(), 8080));
        assert_eq!(pod_address(&p, "9000").unwrap(), ("10.244.0.7".to_string(), 9000));
        assert_eq!(pod_address(&p, "http").unwrap_err().code, 400);
    }

    #[test]
    fn services_are_reached_at_an_endpoint_of_the_named_port() {
        let svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"name": "web", "port": 80}, {"name": "metrics", "port": 9090}]}});
        let eps = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "web", "port": 8080}, {"name": "metrics", "port": 9100}]}]});
        assert_eq!(service_endpoint(&svc, Some(&eps), "web", |_| 1).unwrap(), ("10.0.0.2".to_string(), 8080));
        assert_eq!(service_endpoint(&svc, Some(&eps), "9090", |_| 0).unwrap(), ("10.0.0.1".to_string(), 9100));
        let e = service_endpoint(&svc, Some(&eps), "", |_| 0).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (503, "no service port \"\" found for service \"s\""));
        let e = service_endpoint(&svc, None, "web", |_| 0).unwrap_err();
        assert_eq!(e.message, "no endpoints available for service \"s\"");
        let unnamed = json!({"metadata": {"name": "u"}, "spec": {"ports": [{"port": 80}]}});
        let eps = json!({"subsets": [{"addresses": [{"ip": "10.0.0.3"}], "ports": [{"port": 8080}]}]});
        assert_eq!(service_endpoint(&unnamed, Some(&eps), "", |_| 0).unwrap(), ("10.0.0.3".to_string(), 8080));
    }
}
