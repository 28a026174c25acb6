//! Service accounts on the server side: the `serviceaccounts/NAME/token` subresource
//! (TokenRequest, which kubelets and `kubectl create token` use), the lookups that let the
//! authenticator check a token's objects in storage, the `default` service account
//! every namespace gets when it is created, and the ServiceAccount admission of a new pod.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::objects;
use super::request::{Query, RequestInfo, Verb};
use super::status::ApiError;
use super::{Api, Call, current, json_response};
use crate::auth::authn::UserInfo;
use crate::auth::sa_token::{self, BoundKind, BoundObjects, LiveObject, ObjectRef, TokenSpec};
use crate::resources::Registry;
use crate::storage::Store;

/// The name of the service account every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// `POST .../serviceaccounts/NAME/token`: sign a token for the service account, as the
/// TokenRequest in the body asks (audiences, lifetime, the pod it is bound to).
pub(crate) async fn token_request(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let name = call.info.name.clone().unwrap_or_default();
    let namespace = call.info.namespace.clone().unwrap_or_default();
    let request = parse_body(call)?;
    let spec = &request["spec"];
    let expiration = spec["expirationSeconds"].as_i64().unwrap_or(sa_token::DEFAULT_EXPIRATION_SECONDS);
    let too = if expiration < sa_token::MIN_EXPIRATION_SECONDS {
        Some("may not specify a duration less than 10 minutes")
    } else if expiration > sa_token::MAX_EXPIRATION_SECONDS {
        Some("may not specify a duration larger than 2^32 seconds")
    } else {
        None
    };
    if let Some(why) = too {
        let cause = ("FieldValueInvalid".to_string(), "spec.expirationSeconds".to_string(), format!("Invalid value: {expiration}: {why}"));
        return Err(ApiError::invalid("authentication.k8s.io", "TokenRequest", &name, &[cause]));
    }
    let audiences: Vec<String> = spec["audiences"].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    let audiences = if audiences.is_empty() { vec![sa_token::ISSUER.to_string()] } else { audiences };

    let (sa, _) = current(api, &call.info).await?;
    let sa_ref = ObjectRef { name: name.clone(), uid: sa["metadata"]["uid"].as_str().unwrap_or("").to_string() };
    let bound = &spec["boundObjectRef"];
    let (pod, node) = if bound.is_object() { bound_pod(api, &namespace, &name, bound).await? } else { (None, None) };

    let token_spec = TokenSpec { namespace: namespace.clone(), service_account: sa_ref, pod, node, audiences: audiences.clone(), expiration_seconds: expiration };
    let now = objects::now();
    let (token, claims) = api.sa_tokens.issue(&token_spec, now.unix_timestamp()).map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = time::OffsetDateTime::from_unix_timestamp(claims.exp).map_err(|e| ApiError::internal(format!("token expiry out of range: {e}")))?;
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if bound.is_object() {
        out_spec["boundObjectRef"] = bound.clone();
    }
    let response = json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": objects::timestamp(now)},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": objects::timestamp(expires)},
    });
    Ok(json_response(StatusCode::CREATED, &response))
}

/// The TokenRequest of the body (dispatch has already turned YAML and protobuf into JSON).
fn parse_body(call: &Call) -> Result<Value, ApiError> {
    if call.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the TokenRequest in the request body is not valid JSON: {e}")))
}

/// The pod a token is bound to (it must exist, run as this service account and have the
/// uid given, if any), with the node it runs on.
async fn bound_pod(api: &Api, namespace: &str, sa_name: &str, bound: &Value) -> Result<(Option<ObjectRef>, Option<ObjectRef>), ApiError> {
    let kind = bound["kind"].as_str().unwrap_or("");
    let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
    if kind != "Pod" || !matches!(api_version, "v1" | "") {
        return Err(ApiError::bad_request(format!("cannot bind token against {api_version}, Kind={kind}: only Pod (v1) is supported")));
    }
    let pod_name = bound["name"].as_str().unwrap_or("");
    if pod_name.is_empty() {
        let cause = ("FieldValueRequired".to_string(), "spec.boundObjectRef.name".to_string(), "Required value".to_string());
        return Err(ApiError::invalid("authentication.k8s.io", "TokenRequest", sa_name, &[cause]));
    }
    let (pod, _) = current(api, &lookup_info(api, "pods", Some(namespace), pod_name)).await?;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Err(ApiError::conflict("", "Pod", pod_name, &format!("the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated")));
    }
    if pod["spec"]["serviceAccountName"].as_str().unwrap_or(DEFAULT_SERVICE_ACCOUNT) != sa_name {
        return Err(ApiError::bad_request(format!("cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name.")));
    }
    // A pod not yet scheduled, or on a node that is gone, has no node to name.
    let node = match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        Some(node) => current(api, &lookup_info(api, "nodes", None, node))
            .await
            .ok()
            .map(|(n, _)| ObjectRef { name: node.to_string(), uid: n["metadata"]["uid"].as_str().unwrap_or("").to_string() }),
        None => None,
    };
    Ok((Some(ObjectRef { name: pod_name.to_string(), uid: uid.to_string() }), node))
}

fn lookup_info(api: &Api, plural: &str, namespace: Option<&str>, name: &str) -> RequestInfo {
    RequestInfo {
        verb: Verb::Get,
        resource: api.registry.get("", "v1", plural).expect("built-in resource").clone(),
        namespace: namespace.map(str::to_string),
        name: Some(name.to_string()),
        subresource: None,
    }
}

/// The authenticator's view of storage: service accounts and pods by name.
pub struct StoreObjects {
    registry: std::sync::Arc<Registry>,
    store: std::sync::Arc<dyn Store>,
}

impl StoreObjects {
    pub fn new(api: &Api) -> StoreObjects {
        StoreObjects { registry: api.registry.clone(), store: api.store.clone() }
    }
}

#[async_trait::async_trait]
impl BoundObjects for StoreObjects {
    async fn lookup(&self, kind: BoundKind, namespace: &str, name: &str) -> Result<Option<LiveObject>, String> {
        let plural = match kind {
            BoundKind::ServiceAccount => "serviceaccounts",
            BoundKind::Pod => "pods",
        };
        let resource = self.registry.get("", "v1", plural).expect("built-in resource");
        let Some(kv) = self.store.get(&resource.key(Some(namespace), name)).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let object: Value = serde_json::from_slice(&kv.value).map_err(|e| format!("stored {plural} {namespace}/{name} is not JSON: {e}"))?;
        let deletion_timestamp = object["metadata"]["deletionTimestamp"]
            .as_str()
            .map(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map(|t| t.unix_timestamp()))
            .transpose()
            .map_err(|e| format!("stored {plural} {namespace}/{name} has a bad deletionTimestamp: {e}"))?;
        Ok(Some(LiveObject { uid: object["metadata"]["uid"].as_str().unwrap_or("").to_string(), deletion_timestamp }))
    }
}

/// Bootstrap tokens' Secrets, read from storage (`data` base64-decoded).
#[async_trait::async_trait]
impl crate::auth::bootstrap_token::BootstrapSecrets for StoreObjects {
    async fn secret(&self, name: &str) -> Result<Option<crate::auth::bootstrap_token::TokenSecret>, String> {
        use base64::Engine as _;
        let namespace = crate::auth::bootstrap_token::SECRET_NAMESPACE;
        let resource = self.registry.get("", "v1", "secrets").expect("built-in resource");
        let Some(kv) = self.store.get(&resource.key(Some(namespace), name)).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let object: Value = serde_json::from_slice(&kv.value).map_err(|e| format!("stored secret {namespace}/{name} is not JSON: {e}"))?;
        let mut data = std::collections::BTreeMap::new();
        for (key, value) in object["data"].as_object().into_iter().flatten() {
            let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_str().unwrap_or("")).map_err(|e| format!("secret {namespace}/{name}: data[{key}] is not base64: {e}"))?;
            data.insert(key.clone(), String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(Some(crate::auth::bootstrap_token::TokenSecret {
            type_: object["type"].as_str().unwrap_or("").to_string(),
            data,
            deleting: object["metadata"]["deletionTimestamp"].is_string(),
        }))
    }
}

/// Create the `default` service account in `namespace` unless it exists. In Kubernetes the
/// service account controller does this; pods need it as soon as their namespace exists.
pub(crate) async fn ensure_default_service_account(api: &Api, namespace: &str) -> Result<(), ApiError> {
    let object = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace}});
    let call = Call {
        info: RequestInfo {
            verb: Verb::Create,
            resource: api.registry.get("", "v1", "serviceaccounts").expect("built-in resource").clone(),
            namespace: Some(namespace.to_string()),
            name: None,
            subresource: None,
        },
        query: Query::new(),
        headers: HeaderMap::new(),
        body: serde_json::to_vec(&object).expect("JSON serializes").into(),
        user: UserInfo::new("system:apiserver", &["system:masters"]),
    };
    // Boxed: namespace creation calls this, and this calls the create path again.
    match Box::pin(super::write::create_value(api, &call)).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ServiceAccount admission step of a pod's create (admission/service_account.rs) with
/// its lookup: the pod's service account is read from storage; the `default` one is tried
/// ten times over one to two seconds, as upstream does, in case its namespace was only just
/// created. `display_name` is the pod's name, or its generateName prefix when it has none
/// yet, as upstream's message shows it.
pub(crate) async fn admit_pod(api: &Api, namespace: &str, display_name: &str, pod: &mut Value) -> Result<(), ApiError> {
    use crate::admission::service_account;
    let service_account = match service_account::service_account_to_look_up(pod) {
        None => None,
        Some(name) => {
            let attempts = if name == DEFAULT_SERVICE_ACCOUNT { 10 } else { 1 };
            let mut found = None;
            for attempt in 0..attempts {
                if attempt > 0 {
                    let mut jitter = [0u8; 1];
                    let _ = getrandom::fill(&mut jitter);
                    tokio::time::sleep(std::time::Duration::from_millis(100 + u64::from(jitter[0]) * 100 / 256)).await;
                }
                match current(api, &lookup_info(api, "serviceaccounts", Some(namespace), &name)).await {
                    Ok((sa, _)) => {
                        found = Some(sa);
                        break;
                    }
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(forbidden_pod(display_name, &format!("error looking up service account {namespace}/{name}: {}", e.message))),
                }
            }
            found
        }
    };
    service_account::admit(pod, namespace, service_account.as_ref()).map_err(|e| forbidden_pod(display_name, &e.to_string()))
}

/// 403 `pods "NAME" is forbidden: WHY`, as upstream's admission refusals.
fn forbidden_pod(name: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("pods \"{name}\" is forbidden: {why}"));
    e.details = Some(json!({"name": name, "kind": "pods"}));
    e
}
