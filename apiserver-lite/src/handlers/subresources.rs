//! Subresources the server implements itself: status (only status changes), a CSR's
//! approval (only its conditions, see `csr`), scale (an
//! autoscaling/v1 Scale over spec.replicas), pod binding (the scheduler's write), eviction,
//! namespace finalize, service account token (see `token`). The node-side ones (log, exec, attach, portforward, proxy) are proxied
//! to the kubelet's server.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{metadata_mut, parse_revision};
use super::request::Verb;
use super::status::ApiError;
use super::write::{finish_update, patched};
use super::{Api, Call, current, json_response};

fn success(code: StatusCode) -> Response {
    json_response(code, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}))
}

pub(crate) async fn handle(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let sub = call.info.subresource.as_deref().unwrap_or("");
    match (sub, call.info.verb) {
        ("status" | "approval", Verb::Get) => Ok(json_response(StatusCode::OK, &current(api, &call.info).await?.0)),
        ("status" | "approval", Verb::Update) => {
            let r = &call.info.resource;
            let (old, revision) = current(api, &call.info).await?;
            let new = super::objects::parse_body(&call.body, r, &r.kind, &r.api_version())?;
            if let Some(rv) = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
                && parse_revision(rv)? != revision
            {
                return Err(ApiError::modified(&r.group, &r.plural, call.info.name.as_deref().unwrap_or("")));
            }
            Ok(json_response(StatusCode::OK, &finish_update(api, call, old, revision, new, true).await?))
        }
        ("status" | "approval", Verb::Patch) => {
            let r = &call.info.resource;
            for _ in 0..5 {
                let (old, revision) = current(api, &call.info).await?;
                let new = patched(call, &r.kind, &r.group, &old, revision)?;
                match finish_update(api, call, old, revision, new, true).await {
                    Err(e) if e.code == 409 => continue,
                    other => return other.map(|o| json_response(StatusCode::OK, &o)),
                }
            }
            Err(ApiError::modified(&r.group, &r.plural, call.info.name.as_deref().unwrap_or("")))
        }
        ("scale", verb) => scale(api, call, verb).await,
        ("binding", Verb::Create) => bind(api, call, call.info.name.as_deref().unwrap_or("")).await,
        ("eviction", Verb::Create) => evict(api, call).await,
        ("finalize", Verb::Update) => finalize(api, call).await,
        ("token", Verb::Create) => super::token::token_request(api, call).await,
        (other, _) => Err(ApiError::new(
            503,
            "ServiceUnavailable",
            format!("{}/{other} is served through the node's kubelet, and no kubelet server is reachable for this object", call.info.resource.plural),
        )),
    }
}

/// The Scale of a workload.
fn scale_of(object: &Value) -> Value {
    let selector = &object["spec"]["selector"];
    let labels = selector["matchLabels"].as_object().map(|m| {
        let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
        pairs.sort();
        pairs.join(",")
    });
    let meta = &object["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": labels.unwrap_or_default()},
    })
}

async fn scale(api: &Api, call: &Call, verb: Verb) -> Result<Response, ApiError> {
    let r = &call.info.resource;
    let name = call.info.name.clone().unwrap_or_default();
    for _ in 0..5 {
        let (old, revision) = current(api, &call.info).await?;
        let scale = scale_of(&old);
        let wanted = match verb {
            Verb::Get => return Ok(json_response(StatusCode::OK, &scale)),
            Verb::Update => {
                let body: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the Scale in the request body is not valid JSON: {e}")))?;
                if let Some(rv) = body["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
                    && parse_revision(rv)? != revision
                {
                    return Err(ApiError::modified(&r.group, &r.plural, &name));
                }
                body
            }
            Verb::Patch => patched(call, "Scale", "autoscaling", &scale, revision)?,
            _ => return Err(ApiError::method_not_allowed("scale supports get, update and patch")),
        };
        let replicas = wanted["spec"]["replicas"].as_i64().ok_or_else(|| {
            ApiError::invalid("autoscaling", "Scale", &name, &[("FieldValueRequired".into(), "spec.replicas".into(), "Required value".into())])
        })?;
        if replicas < 0 {
            return Err(ApiError::invalid("autoscaling", "Scale", &name, &[("FieldValueInvalid".into(), "spec.replicas".into(), format!("Invalid value: {replicas}: must be greater than or equal to 0"))]));
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        match finish_update(api, call, old, revision, new, false).await {
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
            Ok(stored) => return Ok(json_response(StatusCode::OK, &scale_of(&stored))),
        }
    }
    Err(ApiError::modified(&r.group, &r.plural, &name))
}

/// pods/NAME/binding and the `bindings` resource: assign a pod to a node, once.
pub(crate) async fn bind(api: &Api, call: &Call, pod_name: &str) -> Result<Response, ApiError> {
    let binding: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the Binding in the request body is not valid JSON: {e}")))?;
    let pod_name = if pod_name.is_empty() { binding["metadata"]["name"].as_str().unwrap_or("").to_string() } else { pod_name.to_string() };
    let node = binding["target"]["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::invalid("", "Binding", &pod_name, &[("FieldValueRequired".into(), "target.name".into(), "Required value".into())])
    })?;
    let pods = api.registry.get("", "v1", "pods").expect("pods are built in").clone();
    let mut info = call.info.clone();
    info.resource = pods;
    info.name = Some(pod_name.clone());
    info.subresource = None;
    let (mut pod, revision) = current(api, &info).await?;
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Err(ApiError::conflict("", "pods", &pod_name, "pod is being deleted, cannot be assigned to a host"));
    }
    if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict("", "pods", &pod_name, &format!("pod {pod_name} is already assigned to node \"{existing}\"")));
    }
    pod["spec"]["nodeName"] = json!(node);
    let now = super::objects::timestamp(super::objects::now());
    let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
    conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
    pod["status"]["conditions"] = Value::Array(conditions);
    metadata_mut(&mut pod).remove("resourceVersion");
    let key = info.resource.key(info.namespace.as_deref(), &pod_name);
    api.store
        .update(&key, super::objects::encode(&info.resource, &pod), revision)
        .await
        .map_err(|e| ApiError::from_storage(e, "", "pods", &pod_name))?;
    Ok(success(StatusCode::CREATED))
}

/// pods/NAME/eviction: delete the pod as the Eviction's DeleteOptions say (no disruption
/// budgets are served, so none can refuse it).
async fn evict(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let eviction: Value = if call.body.is_empty() { json!({}) } else { serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the Eviction in the request body is not valid JSON: {e}")))? };
    let delete_call = Call {
        info: super::request::RequestInfo { verb: Verb::Delete, subresource: None, ..call.info.clone() },
        query: call.query.clone(),
        headers: call.headers.clone(),
        body: serde_json::to_vec(&eviction["deleteOptions"]).map(Into::into).unwrap_or_default(),
        user: call.user.clone(),
    };
    let delete_call = if eviction["deleteOptions"].is_null() { Call { body: Default::default(), ..delete_call } } else { delete_call };
    super::delete::delete(api, &delete_call).await?;
    Ok(success(StatusCode::CREATED))
}

/// namespaces/NAME/finalize: set spec.finalizers; a terminating namespace with none left goes.
async fn finalize(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the Namespace in the request body is not valid JSON: {e}")))?;
    let name = call.info.name.clone().unwrap_or_default();
    let (mut ns, revision) = current(api, &call.info).await?;
    ns["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
    let empty = ns["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    let gone = empty && ns["metadata"]["deletionTimestamp"].is_string() && ns["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    let key = call.info.resource.key(None, &name);
    let kv = if gone {
        api.store.delete(&key, Some(revision)).await
    } else {
        api.store.update(&key, super::objects::encode(&call.info.resource, &ns), revision).await
    }
    .map_err(|e| ApiError::from_storage(e, "", "namespaces", &name))?;
    metadata_mut(&mut ns).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(json_response(StatusCode::OK, &ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_shows_replicas_and_a_selector_string() {
        let d = json!({"metadata": {"name": "web", "namespace": "d", "resourceVersion": "5"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"tier": "f", "app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web,tier=f"}));
        assert_eq!(s["metadata"]["resourceVersion"], "5");
    }
}
