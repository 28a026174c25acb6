//! The node-side subresources, proxied to the kubelet of the node as kube-apiserver does:
//! `pods/log` (streamed as the kubelet writes it), `pods/exec`, `pods/attach` and
//! `pods/portforward` (HTTP upgrades to WebSocket or SPDY: the client's upgrade request goes
//! to the kubelet, and after its 101 the bytes are copied both ways until both sides have
//! closed), and `nodes/proxy` (any path of the kubelet's API). `pods/proxy` and
//! `services/proxy` go over plain HTTP to the pod's IP or an endpoint of the service.
//!
//! - `target` — the container, the kubelet's address, the pod's or the endpoint's, from
//!   the stored objects.
//! - `client` — HTTPS to kubelets with the API server's client certificate, HTTP to pods.
//! - `splice` — the two upgraded connections joined, each direction to its own end (the
//!   kubelet's proxy to its streaming server uses it too).

mod client;
pub mod splice;
mod target;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body_util::{BodyExt, Full, Limited};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub use client::{DialError, KUBELET_CLIENT_GROUP, KUBELET_CLIENT_USER, KubeletClient, KubeletClientError};
pub use target::{DEFAULT_CONTAINER_ANNOTATION, DEFAULT_KUBELET_PORT};

use super::request::RequestInfo;
use super::status::ApiError;
use super::{Api, Call, current, json_response};

/// How long the other direction of a tunnel may go on once one has ended.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most of a kubelet's error body that is read to put in a Status message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The client's side of an HTTP/1.1 upgrade, taken from the request before the body is read;
/// `None` for HTTP/2 requests and in-process calls.
pub(crate) struct ClientUpgrade(pub Option<OnUpgrade>);

impl<S: Send + Sync> FromRequestParts<S> for ClientUpgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientUpgrade(parts.extensions.remove::<OnUpgrade>()))
    }
}

/// Whether a subresource is served by the node's kubelet rather than by this server.
pub(crate) fn proxied(info: &RequestInfo) -> bool {
    let sub = info.subresource.as_deref().unwrap_or("");
    match (info.resource.group.as_str(), info.resource.plural.as_str()) {
        ("", "pods") => matches!(sub, "log" | "exec" | "attach" | "portforward" | "proxy"),
        ("", "nodes" | "services") => sub == "proxy",
        _ => false,
    }
}

/// The raw request, as far as the proxy needs it: method, path and query as sent (a
/// repeated `command` must stay repeated), headers, body and the upgrade.
pub(crate) struct Forward<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub upgrade: Option<OnUpgrade>,
}

/// Where a proxied request goes.
struct Destination {
    host: String,
    port: u16,
    /// The path there, without the query.
    path: String,
    /// A kubelet (HTTPS with the API server's client certificate), or else a pod or a
    /// service endpoint (plain HTTP).
    kubelet: bool,
    /// Who is there, for error messages.
    what: String,
}

/// Proxy a call for which [`proxied`] is true.
pub(crate) async fn handle(api: &Api, call: &Call, forward: Forward<'_>) -> Result<axum::response::Response, ApiError> {
    let dest = destination(api, call, forward.path).await?;
    let raw_query = forward.query.unwrap_or("");
    // The kubelet's path names the container; a pod's own query is its business.
    let query = if call.info.subresource.as_deref() == Some("proxy") { raw_query.to_string() } else { without_container(raw_query) };
    let uri = if query.is_empty() { dest.path.clone() } else { format!("{}?{query}", dest.path) };
    let authority = client::authority(&dest.host, dest.port);
    let url = format!("{}://{authority}{uri}", if dest.kubelet { "https" } else { "http" });
    let req = kubelet_request(forward.method, &uri, &call.headers, &authority, call.body.clone())
        .map_err(|e| ApiError::bad_request(format!("the request cannot be forwarded to {}: {e}", dest.what)))?;
    let sent = if dest.kubelet {
        let client = api.kubelet.as_ref().ok_or_else(|| {
            ApiError::new(503, "ServiceUnavailable", "this API server has no client for kubelets (it runs without the cluster PKI), so node subresources are not served")
        })?;
        client.send(&dest.host, dest.port, req).await
    } else {
        client::send_plain(&dest.host, dest.port, req).await
    };
    let resp = sent.map_err(|e| {
        // As Go's net/http words it: `Get "https://...": dial tcp ...`.
        let method = forward.method.as_str();
        let method = format!("{}{}", &method[..1], method[1..].to_ascii_lowercase());
        ApiError::new(503, "ServiceUnavailable", format!("{method} \"{url}\": {e} ({})", dest.what))
    })?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upgrade = forward
            .upgrade
            .ok_or_else(|| ApiError::bad_request(format!("{} upgraded the connection, but this request cannot be upgraded (upgrades need HTTP/1.1)", dest.what)))?;
        return Ok(tunnel(upgrade, resp));
    }
    passthrough(resp, &dest.what).await
}

/// The object a call names, read from storage.
async fn object(api: &Api, call: &Call, plural: &str, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
    let resource = api.registry.get("", "v1", plural).expect("built-in resource").clone();
    let info = RequestInfo { resource, namespace: namespace.map(str::to_string), name: Some(name.to_string()), subresource: None, ..call.info.clone() };
    Ok(current(api, &info).await?.0)
}

/// Everything after `/{plural}/{name}/proxy` in the request's path: the path to proxy to.
fn proxy_rest(request_path: &str, plural: &str, name: &str) -> String {
    let marker = format!("/{plural}/{name}/proxy");
    let rest = request_path.split_once(&marker).map(|(_, rest)| rest).unwrap_or("");
    if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") }
}

async fn destination(api: &Api, call: &Call, request_path: &str) -> Result<Destination, ApiError> {
    let info = &call.info;
    let name = info.name.as_deref().unwrap_or("");
    let sub = info.subresource.as_deref().unwrap_or("");
    let ns = info.namespace.as_deref().unwrap_or("default");
    let plural = info.resource.plural.as_str();
    let kubelet_of = |node: &Value, path: String| -> Result<Destination, ApiError> {
        let (host, port) = target::kubelet_endpoint(node)?;
        let what = format!("the kubelet of node {:?}", node["metadata"]["name"].as_str().unwrap_or(""));
        Ok(Destination { host, port, path, kubelet: true, what })
    };
    match (plural, sub) {
        ("nodes", _) => {
            // NAME[:PORT]: the kubelet's port may be named explicitly.
            let (node_name, port) = name.split_once(':').map_or((name, None), |(n, p)| (n, Some(p)));
            let node = object(api, call, "nodes", None, node_name).await?;
            let mut dest = kubelet_of(&node, proxy_rest(request_path, plural, name))?;
            if let Some(port) = port {
                dest.port = port.parse().map_err(|_| ApiError::bad_request(format!("invalid node proxy name {name:?}: the port must be a number")))?;
            }
            Ok(dest)
        }
        ("pods", "proxy") => {
            let target = target::proxy_name(name)?;
            let pod = object(api, call, "pods", Some(ns), &target.name).await?;
            let (host, port) = target::pod_address(&pod, &target.port)?;
            Ok(Destination { host, port, path: proxy_rest(request_path, plural, name), kubelet: false, what: format!("pod {:?}", target.name) })
        }
        ("services", _) => {
            let target = target::proxy_name(name)?;
            let service = object(api, call, "services", Some(ns), &target.name).await?;
            let endpoints = match object(api, call, "endpoints", Some(ns), &target.name).await {
                Ok(e) => Some(e),
                Err(e) if e.code == 404 => None,
                Err(e) => return Err(e),
            };
            let (host, port) = target::service_endpoint(&service, endpoints.as_ref(), &target.port, random_index)?;
            Ok(Destination { host, port, path: proxy_rest(request_path, plural, name), kubelet: false, what: format!("an endpoint of service {:?}", target.name) })
        }
        (_, sub) => {
            let pod = object(api, call, "pods", Some(ns), name).await?;
            let node_name = target::node_name(&pod)?;
            let container = || target::container(&pod, call.query.get("container").map(String::as_str));
            let path = match sub {
                "log" => format!("/containerLogs/{ns}/{name}/{}", container()?),
                "exec" => {
                    target::check_running(&pod, "exec into")?;
                    format!("/exec/{ns}/{name}/{}", container()?)
                }
                "attach" => {
                    target::check_running(&pod, "attach to")?;
                    format!("/attach/{ns}/{name}/{}", container()?)
                }
                "portforward" => format!("/portForward/{ns}/{name}"),
                other => return Err(ApiError::no_route(&format!("pods/{other}"))),
            };
            let node = object(api, call, "nodes", None, &node_name).await?;
            kubelet_of(&node, path)
        }
    }
}

/// Spreads service proxy requests over the endpoints, as kube-apiserver picks at random.
fn random_index(n: usize) -> usize {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the kernel's random source");
    u32::from_be_bytes(b) as usize % n.max(1)
}

/// The query without `container`: the kubelet's path names the container.
fn without_container(query: &str) -> String {
    query.split('&').filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("container")).collect::<Vec<_>>().join("&")
}

/// Headers that describe the client's connection to this server, not the request.
fn hop_by_hop(name: &header::HeaderName, upgrading: bool) -> bool {
    // An upgrade needs its Connection and Upgrade headers to reach the kubelet.
    let connection = !upgrading && (name == header::CONNECTION || name == header::UPGRADE);
    connection || name == header::HOST || name == header::AUTHORIZATION || name == header::TRANSFER_ENCODING || name.as_str() == "keep-alive" || name.as_str().starts_with("impersonate-")
}

fn kubelet_request(method: &Method, uri: &str, headers: &HeaderMap, authority: &str, body: Bytes) -> Result<Request<Full<Bytes>>, axum::http::Error> {
    let upgrading = headers.contains_key(header::UPGRADE);
    let mut req = Request::builder().method(method.clone()).uri(uri).header(header::HOST, authority);
    for (name, value) in headers.iter().filter(|(name, _)| !hop_by_hop(name, upgrading)) {
        req = req.header(name, value);
    }
    req.body(Full::new(body))
}

/// The kubelet switched protocols: tell the client so with the kubelet's own headers (its
/// WebSocket accept key, its chosen subprotocol), then join the two connections.
fn tunnel(client: OnUpgrade, mut resp: Response<hyper::body::Incoming>) -> axum::response::Response {
    let kubelet = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::try_join!(client, kubelet) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgraded connection to a kubelet did not start");
                return;
            }
        };
        // Each side's end is passed on (a TLS side gets its close_notify), and a side that
        // vanishes still lets the other side's last bytes through.
        let spliced = splice::join(TokioIo::new(client), TokioIo::new(kubelet), CLOSE_TIMEOUT).await;
        if let Some(e) = spliced.error() {
            tracing::debug!(error = %e, "an upgraded connection to a kubelet ended with an error");
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}

/// Any other answer goes to the client as the kubelet gave it, the body streamed (a
/// followed log has no end), except that errors in plain text become a Status so clients
/// print them as they print any server error.
async fn passthrough(resp: Response<hyper::body::Incoming>, what: &str) -> Result<axum::response::Response, ApiError> {
    let (mut parts, body) = resp.into_parts();
    let json = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/json"));
    if (parts.status.is_client_error() || parts.status.is_server_error()) && !json {
        let text = match Limited::new(body, ERROR_BODY_LIMIT).collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
            Err(e) => format!("(the error's body could not be read: {e})"),
        };
        let code = parts.status.as_u16();
        return Ok(json_response(parts.status, &ApiError::new(code, reason(code), format!("{what} answered {}: {text}", parts.status)).to_status()));
    }
    for name in [header::CONNECTION, header::TRANSFER_ENCODING] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

/// The Status reason for a kubelet's error code.
fn reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_leaves_the_query_and_repeated_commands_stay() {
        assert_eq!(without_container("command=echo&command=hi&container=app&stdout=true"), "command=echo&command=hi&stdout=true");
        assert_eq!(without_container("container=app"), "");
        assert_eq!(without_container(""), "");
        assert_eq!(without_container("follow=true&containerx=1"), "follow=true&containerx=1");
    }

    #[test]
    fn upgrade_headers_reach_the_kubelet_credentials_do_not() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("sec-websocket-protocol", "v5.channel.k8s.io".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        h.insert(header::HOST, "apiserver:6443".parse().unwrap());
        h.insert("impersonate-user", "someone".parse().unwrap());
        let req = kubelet_request(&Method::GET, "/exec/d/p/c?command=ls", &h, "10.0.0.5:10250", Bytes::new()).unwrap();
        let sent = req.headers();
        assert_eq!(sent[header::HOST], "10.0.0.5:10250");
        assert_eq!(sent[header::UPGRADE], "websocket");
        assert_eq!(sent[header::CONNECTION], "Upgrade");
        assert_eq!(sent["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert!(!sent.contains_key(header::AUTHORIZATION) && !sent.contains_key("impersonate-user"));
        assert_eq!(req.uri(), "/exec/d/p/c?command=ls");

        h.remove(header::UPGRADE);
        let req = kubelet_request(&Method::GET, "/containerLogs/d/p/c", &h, "n:1", Bytes::new()).unwrap();
        assert!(!req.headers().contains_key(header::CONNECTION));
    }

    #[test]
    fn the_proxied_path_is_what_follows_proxy() {
        assert_eq!(proxy_rest("/api/v1/nodes/n1/proxy/metrics/cadvisor", "nodes", "n1"), "/metrics/cadvisor");
        assert_eq!(proxy_rest("/api/v1/nodes/n1:10255/proxy", "nodes", "n1:10255"), "/");
        assert_eq!(proxy_rest("/api/v1/namespaces/d/services/http:web:80/proxy/a/b/", "services", "http:web:80"), "/a/b/");
        assert_eq!(proxy_rest("/api/v1/namespaces/d/pods/p/proxy/", "pods", "p"), "/");
    }

    #[test]
    fn kubelet_error_codes_keep_their_reasons() {
        assert_eq!(reason(404), "NotFound");
        assert_eq!(reason(400), "BadRequest");
        assert_eq!(reason(502), "InternalError");
    }
}
