//! The REST verbs over storage: get, list, watch, create, update, patch, delete and
//! deletecollection on every resource of the registry, plus the subresources the server
//! itself implements (status, scale, binding, eviction, finalize, service account token,
//! CSR approval),
//! and SelfSubjectReview.

mod conversion;
mod csr;
mod delete;
mod list;
pub mod negotiate;
pub mod node_proxy;
pub mod objects;
pub mod request;
pub mod selectors;
pub mod self_review;
mod services;
pub mod status;
mod subresources;
pub mod token;
mod watch;
mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::auth::authz::{self, Attributes, Decision};
use crate::auth::authn::UserInfo;
use crate::resources::Registry;
use crate::storage::Store;
use request::{Query, RequestInfo, Verb};
use status::ApiError;

/// The state every handler shares.
pub struct Api {
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    /// Serializes the allocation of service cluster IPs and node ports.
    pub(crate) allocations: tokio::sync::Mutex<()>,
    /// How long a watch runs when the client does not say (kube-apiserver: 30-60 min).
    pub watch_timeout: Duration,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The service CIDR's network (the cluster IPs' pool): 10.96.0.0/12 by default.
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// Signs service account tokens (TokenRequest). In memory until the server replaces it
    /// with the key kept in its PKI dir.
    pub sa_tokens: Arc<crate::auth::sa_token::ServiceAccountTokens>,
    /// How the node subresources (log, exec, attach, port-forward, node proxy) reach
    /// kubelets; `None` answers them 503.
    pub kubelet: Option<node_proxy::KubeletClient>,
}

impl Api {
    pub fn new(registry: Arc<Registry>, store: Arc<dyn Store>) -> Api {
        Api {
            registry,
            store,
            allocations: tokio::sync::Mutex::new(()),
            watch_timeout: Duration::from_secs(1800),
            bookmark_interval: Duration::from_secs(60),
            service_cidr: (std::net::Ipv4Addr::new(10, 96, 0, 0), 12),
            sa_tokens: Arc::new(crate::auth::sa_token::ServiceAccountTokens::ephemeral().expect("the system's random source works")),
            kubelet: None,
        }
    }
}

/// Routes for every resource path under `/api` and `/apis`; discovery is merged in by the
/// server, so this is the fallback for deeper paths.
pub fn router(api: Arc<Api>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(api)
}

/// A JSON response.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut resp = (code, body.to_string()).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The parts of a request the verbs need.
pub struct Call {
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: UserInfo,
}

async fn dispatch(State(api): State<Arc<Api>>, method: Method, uri: Uri, headers: HeaderMap, user: Option<axum::Extension<UserInfo>>, upgrade: node_proxy::ClientUpgrade, body: Bytes) -> Response {
    let path = uri.path();
    let query = request::parse_query(uri.query());
    // No serve() in front (in-process tests): the server itself is the caller.
    let user = user.map(|u| u.0).unwrap_or_else(|| UserInfo::new("system:apiserver", &["system:masters"]));
    let info = match request::resolve(&api.registry, &method, path, &query) {
        None => return ApiError::no_route(path).into_response(),
        Some(Err(e)) => return e.into_response(),
        Some(Ok(info)) => info,
    };
    let (headers, body) = match json_request_body(info.verb, headers, body) {
        Ok(normalized) => normalized,
        Err(e) => return e.into_response(),
    };
    // A create is authorized for the name it creates (a node may create only its own Node).
    let name = match (&info.name, info.verb) {
        (None, Verb::Create) => serde_json::from_slice::<Value>(&body).ok().and_then(|o| o["metadata"]["name"].as_str().map(str::to_string)).unwrap_or_default(),
        (name, _) => name.clone().unwrap_or_default(),
    };
    let attributes = Attributes {
        user: user.clone(),
        verb: info.verb.as_str().to_string(),
        api_group: info.resource.group.clone(),
        resource: info.resource.plural.clone(),
        subresource: info.subresource.clone().unwrap_or_default(),
        namespace: info.namespace.clone().unwrap_or_default(),
        name,
        path: path.to_string(),
    };
    if let Decision::Deny(why) = authz::authorize(&attributes) {
        return json_response(StatusCode::FORBIDDEN, &authz::forbidden_status(&attributes, &why));
    }
    let call = Call { info, query, headers, body, user };
    let result = match (call.info.verb, call.info.subresource.as_deref()) {
        (Verb::Watch, _) => return watch::watch(api, call).await,
        // The `bindings` resource is the scheduler's older way to bind: nothing is stored.
        (Verb::Create, None) if call.info.resource.group.is_empty() && call.info.resource.plural == "bindings" => subresources::bind(&api, &call, "").await,
        (_, Some(_)) if node_proxy::proxied(&call.info) => {
            node_proxy::handle(&api, &call, node_proxy::Forward { method: &method, path, query: uri.query(), upgrade: upgrade.0 }).await
        }
        (_, Some(_)) => subresources::handle(&api, &call).await,
        (Verb::Get, None) => get(&api, &call).await,
        (Verb::List, None) => list::list(&api, &call).await,
        (Verb::Create, None) => write::create(&api, &call).await,
        (Verb::Update, None) => write::update(&api, &call).await,
        (Verb::Patch, None) => write::patch(&api, &call).await,
        (Verb::Delete, None) => delete::delete(&api, &call).await,
        (Verb::DeleteCollection, None) => delete::delete_collection(&api, &call).await,
    };
    match result {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

/// Create an object as the server itself does (bootstrap, in-process controllers): the same
/// path as a client's POST, without authorization.
pub async fn create_internal(api: &Api, call: &Call) -> Result<Value, ApiError> {
    write::create_value(api, call).await
}

/// A create or update body as JSON, whatever it came as: JSON, YAML, or the protobuf
/// kubectl's typed clients send (decoded into the same JSON); anything else is 415.
fn json_request_body(verb: Verb, mut headers: HeaderMap, body: Bytes) -> Result<(HeaderMap, Bytes), ApiError> {
    if !matches!(verb, Verb::Create | Verb::Update) || body.is_empty() {
        return Ok((headers, body));
    }
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let object: Value = match media.as_str() {
        "" | "application/json" | "*/*" => return Ok((headers, body)),
        "application/yaml" => serde_yaml::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the YAML request body could not be read: {e}")))?,
        _ if crate::protobuf::is_protobuf(content_type) => {
            crate::protobuf::decode(&body).map_err(|e| ApiError::bad_request(format!("the protobuf request body could not be decoded: {e}")))?
        }
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            )));
        }
    };
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((headers, Bytes::from(serde_json::to_vec(&object).expect("JSON serializes"))))
}

/// The current object the call names, with its stored revision.
pub(crate) async fn current(api: &Api, info: &RequestInfo) -> Result<(Value, crate::storage::Revision), ApiError> {
    let name = info.name.as_deref().unwrap_or("");
    let key = info.resource.key(info.namespace.as_deref(), name);
    let group = &info.resource.group;
    match api.store.get(&key).await.map_err(|e| ApiError::from_storage(e, group, &info.resource.plural, name))? {
        Some(kv) => Ok((objects::decode(&info.resource, &kv, kv.mod_revision)?, kv.mod_revision)),
        None => Err(ApiError::not_found(group, &info.resource.plural, name)),
    }
}

async fn get(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let (object, _) = current(api, &call.info).await?;
    let output = negotiate::output(&call.headers, &call.query);
    Ok(json_response(StatusCode::OK, &negotiate::object_body(output, &call.info.resource, object)))
}
