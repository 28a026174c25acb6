//! What every cluster has from its first start: the system namespaces (each with its
//! `default` service account) and the `kubernetes` service (with its endpoints and endpoint slice) pointing at
//! this server. Created through the same create
//! path as any client's object, and only when missing, so a restart changes nothing.

use std::net::IpAddr;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::auth::authn::UserInfo;
use crate::handlers::request::{Query, RequestInfo, Verb};
use crate::handlers::status::ApiError;
use crate::handlers::{Api, Call};

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn call(api: &Api, plural: &str, namespace: Option<&str>, object: &Value) -> Call {
    let (group, version) = match object["apiVersion"].as_str().unwrap_or("v1").split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap_or("v1")),
    };
    let resource = api.registry.get(group, version, plural).expect("built-in resource").clone();
    Call {
        info: RequestInfo { verb: Verb::Create, resource, namespace: namespace.map(str::to_string), name: None, subresource: None },
        query: Query::new(),
        headers: HeaderMap::new(),
        body: serde_json::to_vec(object).expect("JSON serializes").into(),
        user: UserInfo { name: "system:apiserver".into(), groups: vec!["system:masters".into()] },
    }
}

async fn ensure(api: &Api, plural: &str, namespace: Option<&str>, object: Value) -> Result<(), ApiError> {
    match crate::handlers::create_internal(api, &call(api, plural, namespace, &object)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The first address of the service CIDR: the `kubernetes` service's cluster IP.
pub fn kubernetes_service_ip(api: &Api) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(api.service_cidr.0) + 1)
}

/// Create what is missing. `advertise`: the address and port clients in pods reach the
/// server at (the `kubernetes` service's endpoint).
pub async fn bootstrap(api: &Api, advertise: (IpAddr, u16)) -> Result<(), ApiError> {
    for ns in SYSTEM_NAMESPACES {
        ensure(api, "namespaces", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await?;
        // Creating a namespace adds it; a data dir from before that did not.
        crate::handlers::token::ensure_default_service_account(api, ns).await?;
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": kubernetes_service_ip(api).to_string(), "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.1}]},
    });
    ensure(api, "services", Some("default"), service).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.0.to_string()}], "ports": [{"name": "https", "port": advertise.1, "protocol": "TCP"}]}],
    });
    ensure(api, "endpoints", Some("default"), endpoints).await?;
    // Service proxies read EndpointSlices; the API server keeps its own (upstream's
    // endpoint reconciler writes both).
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if advertise.0.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [advertise.0.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": advertise.1, "protocol": "TCP"}],
    });
    ensure(api, "endpointslices", Some("default"), slice).await?;
    Ok(())
}
