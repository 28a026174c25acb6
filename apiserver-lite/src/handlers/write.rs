//! create, update and patch: one path from a request body to a stored object — server-owned
//! metadata, defaulting, field validation (Strict/Warn/Ignore), object validation, namespace
//! lifecycle, kind-specific allocation (service IPs and ports), optimistic concurrency.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{self, encode, metadata_mut, parse_body, parse_revision};
use super::request::RequestInfo;
use super::status::ApiError;
use super::{Api, Call, current, json_response, services};
use crate::patch::{self, PatchType};
use crate::resources::Resource;
use crate::storage::Revision;

/// Kinds whose update creates a missing object, as their kube-apiserver strategies allow.
fn create_on_update(r: &Resource) -> bool {
    matches!((r.group.as_str(), r.plural.as_str()), ("", "endpoints") | ("", "events") | ("coordination.k8s.io", "leases") | ("events.k8s.io", "events"))
}

/// Kinds whose `metadata.generation` follows spec changes.
fn has_generation(object: &Value) -> bool {
    object.get("spec").is_some()
}

/// Unknown fields, as `fieldValidation` asks: an error (Strict), warnings (Warn, the
/// default) or nothing (Ignore).
fn field_validation(call: &Call, object: &Value) -> Result<Vec<String>, ApiError> {
    let mode = call.query.get("fieldValidation").map(String::as_str).unwrap_or("Warn");
    let r = &call.info.resource;
    match mode {
        "Ignore" | "" => Ok(Vec::new()),
        "Warn" | "Strict" => {
            let mut unknown = crate::openapi::duplicate_fields(&call.body).unwrap_or_default();
            unknown.extend(crate::openapi::validate_fields(&r.group, &r.version, &r.kind, object));
            if mode == "Strict" && !unknown.is_empty() {
                return Err(ApiError::bad_request(format!("strict decoding error: {}", unknown.join(", "))));
            }
            Ok(unknown)
        }
        other => Err(ApiError::bad_request(format!("fieldValidation must be one of Ignore, Warn, Strict; got {other:?}"))),
    }
}

fn respond(code: StatusCode, object: &Value, warnings: &[String]) -> Response {
    let mut resp = json_response(code, object);
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).expect("a string serializes"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

fn dry_run(call: &Call) -> bool {
    call.query.get("dryRun").is_some_and(|v| v == "All")
}

/// 422 from the kind's validation.
fn validate(r: &Resource, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let errors = crate::admission::validation::validate(&r.group, &r.kind, object, old);
    if errors.is_empty() {
        return Ok(());
    }
    let causes: Vec<(String, String, String)> = errors
        .iter()
        .map(|e| {
            let full = e.to_string();
            let detail = full.strip_prefix(&format!("{}: ", e.field)).unwrap_or(&full).to_string();
            (e.kind.cause().to_string(), e.field.clone(), detail)
        })
        .collect();
    Err(ApiError::invalid(&r.group, &r.kind, objects::name(object), &causes))
}

/// A namespaced object may only be created in a namespace that exists and is not terminating.
async fn check_namespace(api: &Api, namespace: &str) -> Result<(), ApiError> {
    let ns = api.registry.get("", "v1", "namespaces").expect("namespaces are built in");
    let kv = api.store.get(&ns.key(None, namespace)).await.map_err(|e| ApiError::from_storage(e, "", "namespaces", namespace))?;
    match kv {
        None => Err(ApiError::not_found("", "namespaces", namespace)),
        Some(kv) => {
            let o: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if o["metadata"]["deletionTimestamp"].is_string() {
                let mut e = ApiError::forbidden(format!("unable to create new content in namespace {namespace} because it is being terminated"));
                e.details = Some(json!({"name": namespace, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {namespace} is being terminated"), "field": "metadata.namespace"}]}));
                return Err(e);
            }
            Ok(())
        }
    }
}

/// Server-owned metadata and the status a new object starts with.
fn prepare_create(info: &RequestInfo, object: &mut Value) -> Result<(), ApiError> {
    let r = &info.resource;
    let meta = metadata_mut(object);
    if r.namespaced {
        let url_ns = info.namespace.clone().unwrap_or_default();
        match meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(ns) if ns != url_ns => return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request")),
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(prefix) => {
                let generated = objects::generate_name(prefix);
                meta.insert("name".into(), json!(generated));
            }
            None => {
                return Err(ApiError::invalid(&r.group, &r.kind, "", &[("FieldValueRequired".into(), "metadata.name".into(), "Required value: name or generateName is required".into())]));
            }
        }
    }
    for owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(owned);
    }
    meta.insert("uid".into(), json!(objects::new_uid()));
    meta.insert("creationTimestamp".into(), json!(objects::timestamp(objects::now())));
    if has_generation(object) {
        metadata_mut(object).insert("generation".into(), json!(1));
    } else {
        metadata_mut(object).remove("generation");
    }
    if r.subresource("status").is_some() {
        object["status"] = match r.kind.as_str() {
            "Pod" => json!({"phase": "Pending"}),
            _ => json!({}),
        };
    }
    namespace_name_label(r, object);
    crate::admission::defaults::apply(&r.group, &r.kind, object);
    if r.kind == "Pod" && r.group.is_empty() {
        object["status"]["qosClass"] = json!(qos_class(&object["spec"]));
    }
    Ok(())
}

/// What admission set at create and an update may leave out: a pod's service account (kube's
/// admission plugin sets it, so no field manager owns it and an apply that drops it keeps it).
fn keep_admission_fields(r: &Resource, old: &Value, new: &mut Value) {
    if r.kind != "Pod" || !r.group.is_empty() || !new["spec"].is_object() {
        return;
    }
    for field in ["serviceAccountName", "serviceAccount"] {
        if new["spec"].get(field).is_none_or(|v| v.as_str().unwrap_or("").is_empty()) && old["spec"][field].is_string() {
            new["spec"][field] = old["spec"][field].clone();
        }
    }
}

/// Every namespace carries its name as a label (kube-apiserver enforces it on create and
/// update), so selectors can pick namespaces.
fn namespace_name_label(r: &Resource, object: &mut Value) {
    if r.kind != "Namespace" || !r.group.is_empty() {
        return;
    }
    let name = objects::name(object).to_string();
    let meta = metadata_mut(object);
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
}

/// A pod's QoS class from its containers' requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"].iter().filter_map(|k| spec[*k].as_array()).flatten().collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let (req, lim) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        for res in ["cpu", "memory"] {
            let (r, l) = (req.get(res).filter(|v| !v.is_null()), lim.get(res).filter(|v| !v.is_null()));
            any |= r.is_some() || l.is_some();
            match (r, l) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

pub(crate) async fn create(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let r = &call.info.resource;
    let mut object = parse_body(&call.body, r, &r.kind, &r.api_version())?;
    let warnings = field_validation(call, &object)?;
    create_object(api, call, &mut object).await?;
    Ok(respond(StatusCode::CREATED, &object, &warnings))
}

/// Create the object in the call's body; the stored object.
pub(crate) async fn create_value(api: &Api, call: &Call) -> Result<Value, ApiError> {
    let r = &call.info.resource;
    let mut object = parse_body(&call.body, r, &r.kind, &r.api_version())?;
    create_object(api, call, &mut object).await?;
    Ok(object)
}

/// The shared create path (POST, and PUT/apply of a missing object where allowed).
async fn create_object(api: &Api, call: &Call, object: &mut Value) -> Result<(), ApiError> {
    let info = &call.info;
    let r = &info.resource;
    // Admission names an object without a name yet by its generateName prefix.
    let display_name = match objects::name(object) {
        "" => object["metadata"]["generateName"].as_str().unwrap_or("").to_string(),
        name => name.to_string(),
    };
    prepare_create(info, object)?;
    if super::csr::is_csr(r) {
        super::csr::prepare_create(&call.user, object);
    }
    // Upstream's order: the namespace's lifecycle (404), admission (403), validation (422).
    if r.namespaced {
        check_namespace(api, info.namespace.as_deref().unwrap_or("")).await?;
    }
    // What the client sent (defaulted) is what its field manager owns: fields admission adds
    // belong to no one, as upstream records managedFields before admission, so a later apply
    // without them keeps them.
    let mut before_admission = None;
    if r.kind == "Pod" && r.group.is_empty() {
        before_admission = Some(object.clone());
        super::token::admit_pod(api, info.namespace.as_deref().unwrap_or(""), &display_name, object).await?;
    }
    validate(r, object, None)?;
    let name = objects::name(object).to_string();
    let key = r.key(info.namespace.as_deref(), &name);
    let _guard = if services::allocates(r) { Some(api.allocations.lock().await) } else { None };
    if services::allocates(r) {
        services::allocate(api, object, None).await?;
    }
    if !applying(call) {
        let recorded = patch::record_update(&Value::Null, before_admission.as_ref().unwrap_or(object), &field_manager(call), &objects::timestamp(objects::now()));
        match recorded["metadata"].get("managedFields") {
            Some(fields) => {
                metadata_mut(object).insert("managedFields".into(), fields.clone());
            }
            None => {
                metadata_mut(object).remove("managedFields");
            }
        }
    }
    if dry_run(call) {
        return Ok(());
    }
    let kv = api.store.create(&key, encode(r, object)).await.map_err(|e| ApiError::from_storage(e, &r.group, &r.plural, &name))?;
    metadata_mut(object).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    if r.kind == "Namespace" && r.group.is_empty()
        && let Err(e) = super::token::ensure_default_service_account(api, &name).await
    {
        // The namespace is created; the service account can be added later (a restart's
        // bootstrap does it for the system namespaces).
        tracing::warn!(namespace = %name, error = %e.message, "creating the default service account failed");
    }
    Ok(())
}

pub(crate) async fn update(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let info = &call.info;
    let r = &info.resource;
    let name = info.name.clone().unwrap_or_default();
    let mut object = parse_body(&call.body, r, &r.kind, &r.api_version())?;
    let warnings = field_validation(call, &object)?;
    if objects::name(&object) != name {
        return Err(ApiError::bad_request(format!("the name of the object ({}) does not match the name on the URL ({name})", objects::name(&object))));
    }
    let (old, revision) = match current(api, info).await {
        Ok(found) => found,
        Err(e) if e.code == 404 && create_on_update(r) => {
            create_object(api, call, &mut object).await?;
            return Ok(respond(StatusCode::CREATED, &object, &warnings));
        }
        Err(e) => return Err(e),
    };
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
        && parse_revision(rv)? != revision
    {
        return Err(ApiError::modified(&r.group, &r.plural, &name));
    }
    let stored = finish_update(api, call, old, revision, object, false).await?;
    Ok(respond(StatusCode::OK, &stored, &warnings))
}

/// Update `old` (stored at `revision`) to `new`: keep what the server owns, apply the
/// status/spec split of the resource, default, validate, and write if anything changed.
/// `status_only`: the status subresource's write (only `status` is taken from `new`).
pub(crate) async fn finish_update(api: &Api, call: &Call, old: Value, revision: Revision, new: Value, status_only: bool) -> Result<Value, ApiError> {
    let info = &call.info;
    let r = &info.resource;
    let name = objects::name(&old).to_string();
    let mut merged = if status_only {
        let mut m = old.clone();
        m["status"] = new["status"].clone();
        m
    } else {
        let mut m = new;
        if r.subresource("status").is_some() {
            m["status"] = old["status"].clone();
        }
        keep_admission_fields(r, &old, &mut m);
        m
    };
    if super::csr::is_csr(r) {
        super::csr::prepare_update(info.subresource.as_deref(), &old, &mut merged);
    }
    {
        let old_meta = &old["metadata"];
        let meta = metadata_mut(&mut merged);
        for owned in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"] {
            match old_meta.get(owned) {
                Some(v) => meta.insert(owned.into(), v.clone()),
                None => meta.remove(owned),
            };
        }
    }
    if has_generation(&merged) && merged["spec"] != old["spec"] {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        metadata_mut(&mut merged).insert("generation".into(), json!(generation));
    }
    crate::admission::defaults::apply(&r.group, &r.kind, &mut merged);
    namespace_name_label(r, &mut merged);
    validate(r, &merged, Some(&old))?;
    let _guard = if services::allocates(r) { Some(api.allocations.lock().await) } else { None };
    if services::allocates(r) {
        services::allocate(api, &mut merged, Some(&old)).await?;
    }
    metadata_mut(&mut merged).insert("resourceVersion".into(), json!(revision.to_string()));
    if merged == old {
        // Nothing changed: no write, no new resource version (as kube-apiserver).
        return Ok(old);
    }
    if !applying(call) {
        merged = patch::record_update(&old, &merged, &field_manager(call), &objects::timestamp(objects::now()));
    }
    if dry_run(call) {
        return Ok(merged);
    }
    let key = r.key(info.namespace.as_deref(), &name);
    // A namespace also waits for its spec.finalizers (the namespace controller's finalize).
    let no_spec_finalizers = !(r.group.is_empty() && r.plural == "namespaces") || merged["spec"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    let finalized = merged["metadata"]["deletionTimestamp"].is_string() && merged["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()) && no_spec_finalizers;
    if finalized {
        // The last finalizer is gone from an object being deleted: it goes now.
        let kv = api.store.delete(&key, Some(revision)).await.map_err(|e| ApiError::from_storage(e, &r.group, &r.plural, &name))?;
        metadata_mut(&mut merged).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        return Ok(merged);
    }
    let kv = api.store.update(&key, encode(r, &merged), revision).await.map_err(|e| ApiError::from_storage(e, &r.group, &r.plural, &name))?;
    metadata_mut(&mut merged).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(merged)
}

/// The patch type of a request, or 415.
pub(crate) fn patch_type(call: &Call) -> Result<PatchType, ApiError> {
    let ct = call.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"
        ))
    })
}

/// Apply a patch to `old`; a resourceVersion the patch sets must be the current one.
pub(crate) fn patched(call: &Call, kind: &str, group: &str, old: &Value, revision: Revision) -> Result<Value, ApiError> {
    let t = patch_type(call)?;
    let mut new = patch::apply_patch(t, group, kind, old, &call.body).map_err(patch_error)?;
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
        && parse_revision(rv)? != revision
    {
        return Err(ApiError::modified(&call.info.resource.group, &call.info.resource.plural, call.info.name.as_deref().unwrap_or("")));
    }
    metadata_mut(&mut new);
    Ok(new)
}

fn patch_error(e: patch::PatchError) -> ApiError {
    ApiError::new(e.code(), e.reason(), e.to_string())
}

fn apply_error(e: patch::ApplyError) -> ApiError {
    let mut err = ApiError::new(e.code(), e.reason(), e.to_string());
    if let patch::ApplyError::Conflicts(conflicts) = &e {
        let causes: Vec<Value> = conflicts.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": c.message(), "field": c.path})).collect();
        err.details = Some(json!({"causes": causes}));
    }
    err
}

/// Who is writing, for managedFields: the `fieldManager` parameter, else the client's
/// User-Agent up to its first '/', as kube-apiserver defaults it.
fn field_manager(call: &Call) -> String {
    if let Some(m) = call.query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let agent = call.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
    agent.split('/').next().unwrap_or("unknown").to_string()
}

fn applying(call: &Call) -> bool {
    call.info.verb == super::request::Verb::Patch && patch_type(call).ok() == Some(PatchType::Apply)
}

/// `protocol: TCP` on every port that names none, before an apply merges: the protocol is part
/// of the ports lists' keys (containerPort+protocol, port+protocol), so an applied port
/// without it must match the stored, defaulted one rather than become a second entry (as
/// kube-apiserver defaults the applied configuration).
fn default_port_protocols(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "ports"
                    && let Some(items) = child.as_array_mut()
                {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        if (item.contains_key("containerPort") || item.contains_key("port")) && !item.contains_key("protocol") {
                            item.insert("protocol".into(), json!("TCP"));
                        }
                    }
                }
                default_port_protocols(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(default_port_protocols),
        _ => {}
    }
}

/// Server-side apply of the call's body over `existing`.
fn server_side_apply(call: &Call, existing: Option<&Value>) -> Result<Value, ApiError> {
    let r = &call.info.resource;
    let mut applied = patch::parse_apply_body(&call.body).map_err(apply_error)?;
    default_port_protocols(&mut applied);
    let name = call.info.name.as_deref().unwrap_or("");
    if objects::name(&applied) != name {
        return Err(ApiError::bad_request(format!("the name of the object ({}) does not match the name on the URL ({name})", objects::name(&applied))));
    }
    if applied["kind"].as_str() != Some(r.kind.as_str()) || applied["apiVersion"].as_str() != Some(r.api_version().as_str()) {
        return Err(ApiError::bad_request(format!("apply of {} needs kind {} and apiVersion {}", r.plural, r.kind, r.api_version())));
    }
    let force = call.query.get("force").is_some_and(|f| f == "true");
    let manager = call.query.get("fieldManager").map(String::as_str).unwrap_or("");
    patch::server_side_apply(existing, &applied, manager, force, &objects::timestamp(objects::now())).map_err(apply_error)
}

pub(crate) async fn patch(api: &Api, call: &Call) -> Result<Response, ApiError> {
    let info = &call.info;
    let r = &info.resource;
    // A concurrent writer between read and write: read again and re-apply, as kube-apiserver.
    for _ in 0..5 {
        let (old, revision) = match current(api, info).await {
            Ok(found) => found,
            Err(e) if e.code == 404 && applying(call) => {
                let mut object = server_side_apply(call, None)?;
                let warnings = field_validation(call, &object)?;
                create_object(api, call, &mut object).await?;
                return Ok(respond(StatusCode::CREATED, &object, &warnings));
            }
            Err(e) => return Err(e),
        };
        let new = if applying(call) { server_side_apply(call, Some(&old))? } else { patched(call, &r.kind, &r.group, &old, revision)? };
        let warnings = field_validation(call, &new)?;
        match finish_update(api, call, old, revision, new, false).await {
            Err(e) if e.reason == "Conflict" && e.message.contains("has been modified") => continue,
            Err(e) => return Err(e),
            Ok(stored) => return Ok(respond(StatusCode::OK, &stored, &warnings)),
        }
    }
    Err(ApiError::modified(&r.group, &r.plural, info.name.as_deref().unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
