//! delete and deletecollection: preconditions, graceful deletion of pods (the kubelet removes
//! them with grace 0 once their containers are gone), finalizers (an object with finalizers
//! gets a deletionTimestamp and stays until they are removed), propagation policies (as the
//! finalizers the garbage collector acts on), namespaces going Terminating.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{self, encode, metadata_mut};
use super::status::ApiError;
use super::{Api, Call, current, json_response, negotiate};
use crate::storage::Revision;

/// DeleteOptions from the body (kubectl sends one) and the query.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub(crate) fn options(call: &Call) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions::default();
    if !call.body.is_empty() {
        let body: Value = serde_json::from_slice(&call.body).map_err(|e| ApiError::bad_request(format!("the DeleteOptions in the request body are not valid JSON: {e}")))?;
        o.grace_period = body["gracePeriodSeconds"].as_i64();
        o.propagation = body["propagationPolicy"].as_str().map(str::to_string);
        if body["orphanDependents"] == json!(true) {
            o.propagation = Some("Orphan".into());
        }
        o.precondition_uid = body["preconditions"]["uid"].as_str().map(str::to_string);
        o.precondition_rv = body["preconditions"]["resourceVersion"].as_str().map(str::to_string);
        o.dry_run = body["dryRun"].as_array().is_some_and(|d| d.iter().any(|v| v == "All"));
    }
    if let Some(g) = call.query.get("gracePeriodSeconds").filter(|g| !g.is_empty()) {
        o.grace_period = Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?);
    }
    if let Some(p) = call.query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        o.propagation = Some(p.clone());
    }
    if call.query.get("dryRun").is_some_and(|d| d == "All") {
        o.dry_run = true;
    }
    if let Some(p) = &o.propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::bad_request(format!("propagationPolicy must be one of Orphan, Background, Foreground; got {p:?}")));
    }
    if o.grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::bad_request("gracePeriodSeconds must not be negative"));
    }
    Ok(o)
}

/// How long a pod gets to stop: the request's grace period or the pod's own, and none for a
/// pod no kubelet runs (unscheduled or finished).
fn grace_period(kind: &str, object: &Value, options: &DeleteOptions) -> i64 {
    if kind != "Pod" {
        return 0;
    }
    let phase = object["status"]["phase"].as_str().unwrap_or("");
    if object["spec"]["nodeName"].as_str().unwrap_or("").is_empty() || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    options.grace_period.unwrap_or_else(|| object["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30))
}

/// Delete one object; what to answer with.
async fn delete_one(api: &Api, call: &Call, options: &DeleteOptions, name: &str) -> Result<Value, ApiError> {
    let info = &call.info;
    let r = &info.resource;
    let key = r.key(info.namespace.as_deref(), name);
    let mut target = info.clone();
    target.name = Some(name.to_string());
    for _ in 0..5 {
        let (mut object, revision): (Value, Revision) = current(api, &target).await?;
        if let Some(uid) = &options.precondition_uid
            && object["metadata"]["uid"].as_str() != Some(uid)
        {
            return Err(ApiError::conflict(&r.group, &r.plural, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object["metadata"]["uid"].as_str().unwrap_or(""))));
        }
        if let Some(rv) = &options.precondition_rv
            && *rv != revision.to_string()
        {
            return Err(ApiError::conflict(&r.group, &r.plural, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {revision}")));
        }
        let grace = grace_period(&r.kind, &object, options);
        let mut finalizers: Vec<Value> = object["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        let added = match options.propagation.as_deref() {
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Orphan") => Some("orphan"),
            _ => None,
        };
        if let Some(f) = added
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        let namespace = r.group.is_empty() && r.plural == "namespaces";
        let spec_finalizers = namespace && object["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let being_deleted = object["metadata"]["deletionTimestamp"].is_string();
        let immediate = grace == 0 && finalizers.is_empty() && !spec_finalizers;
        if options.dry_run {
            return Ok(object);
        }
        let result = if immediate {
            api.store.delete(&key, Some(revision)).await.map(|kv| {
                metadata_mut(&mut object).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                object
            })
        } else {
            if being_deleted {
                // Already going: a shorter grace period may still bring it forward.
                let current_grace = object["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
                if grace >= current_grace && added.is_none() {
                    return Ok(object);
                }
            }
            let when = objects::now() + time::Duration::seconds(grace);
            let meta = metadata_mut(&mut object);
            if !being_deleted || grace < meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) {
                meta.insert("deletionTimestamp".into(), json!(objects::timestamp(when)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), Value::Array(finalizers));
            }
            if namespace {
                object["status"]["phase"] = json!("Terminating");
            }
            api.store.update(&key, encode(r, &object), revision).await.map(|kv| {
                metadata_mut(&mut object).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
                object
            })
        };
        match result {
            Ok(o) => return Ok(o),
            Err(crate::storage::StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_storage(e, &r.group, &r.plural, name)),
        }
    }
    Err(ApiError::modified(&r.group, &r.plural, name))
}

pub(crate) async fn delete(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let options = options(call)?;
    let name = call.info.name.clone().unwrap_or_default();
    let object = delete_one(api, call, &options, &name).await?;
    Ok(json_response(StatusCode::OK, &object))
}

pub(crate) async fn delete_collection(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let options = options(call)?;
    let (items, revision, _) = super::list::read(api, call).await?;
    let mut deleted = Vec::new();
    for item in items {
        match delete_one(api, call, &options, objects::name(&item)).await {
            Ok(o) => deleted.push(o),
            // Gone meanwhile: nothing to do.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let meta = json!({"resourceVersion": revision.to_string()});
    Ok(json_response(StatusCode::OK, &negotiate::list_body(negotiate::Output::Object, &call.info.resource, deleted, meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_grace_only_on_a_node() {
        let o = DeleteOptions::default();
        let unscheduled = json!({"spec": {"terminationGracePeriodSeconds": 30}, "status": {"phase": "Pending"}});
        assert_eq!(grace_period("Pod", &unscheduled, &o), 0);
        let running = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 45}, "status": {"phase": "Running"}});
        assert_eq!(grace_period("Pod", &running, &o), 45);
        assert_eq!(grace_period("Pod", &running, &DeleteOptions { grace_period: Some(0), ..o.clone() }), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period("Pod", &done, &o), 0);
        assert_eq!(grace_period("ConfigMap", &running, &o), 0);
    }
}
