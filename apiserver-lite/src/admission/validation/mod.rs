//! Validation of built-in objects: what kube-apiserver 1.33 rejects with 422 Invalid, with
//! the same field paths and wording (`spec.containers[0].image: Required value`), so users
//! see the messages their documentation and habits expect.
//!
//! An object is first read into its k8s-openapi type; a field of the wrong type or a missing
//! required field stops there with one error naming the path. The rules then run on the
//! typed object. Unknown kinds have no rules.

mod certificates;
mod config;
mod names;
mod pod;
mod service;
mod workloads;

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use names::{dns1035_label, dns1123_label, dns1123_subdomain, label_value, qualified_name, NameRule};

/// Upstream's error types (field.ErrorType), those this server reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    NotFound,
}

impl FieldErrorKind {
    /// The words upstream prints for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::NotFound => "Not found",
        }
    }

    /// The `reason` of the matching StatusCause (`FieldValueRequired`, ...).
    pub fn cause(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }
}

/// One thing wrong with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field path as upstream writes it: `spec.containers[0].ports[1].name`, `data[a b]`.
    pub field: String,
    pub kind: FieldErrorKind,
    /// The offending value as upstream prints it (`"Web_1"`, `-1`), when the message shows it.
    pub value: Option<String>,
    /// The detail after the value; may be empty.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.as_str())?;
        let shows_value = !matches!(self.kind, FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong);
        if let (true, Some(v)) = (shows_value, &self.value) {
            write!(f, ": {v}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for FieldError {}

impl FieldError {
    pub fn required(field: Path, message: impl Into<String>) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::Required, value: None, message: message.into() }
    }

    pub fn invalid(field: Path, value: impl GoValue, message: impl Into<String>) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::Invalid, value: Some(value.go()), message: message.into() }
    }

    /// A value outside a fixed set; the message lists the set as upstream does.
    pub fn not_supported(field: Path, value: &str, supported: &[&str]) -> FieldError {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError { field: field.0, kind: FieldErrorKind::NotSupported, value: Some(value.go()), message: format!("supported values: {}", list.join(", ")) }
    }

    pub fn duplicate(field: Path, value: impl GoValue) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::Duplicate, value: Some(value.go()), message: String::new() }
    }

    pub fn forbidden(field: Path, message: impl Into<String>) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::Forbidden, value: None, message: message.into() }
    }

    pub fn too_long(field: Path, max_bytes: usize) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::TooLong, value: None, message: format!("may not be more than {max_bytes} bytes") }
    }

    pub fn not_found(field: Path, value: impl GoValue) -> FieldError {
        FieldError { field: field.0, kind: FieldErrorKind::NotFound, value: Some(value.go()), message: String::new() }
    }
}

/// A value printed as Go's `%q`/`%v`/`%#v` would in upstream's messages.
pub trait GoValue {
    fn go(&self) -> String;
}

impl GoValue for &str {
    fn go(&self) -> String {
        format!("{self:?}")
    }
}

impl GoValue for &String {
    fn go(&self) -> String {
        format!("{self:?}")
    }
}

impl GoValue for String {
    fn go(&self) -> String {
        format!("{self:?}")
    }
}

impl GoValue for i64 {
    fn go(&self) -> String {
        self.to_string()
    }
}

impl GoValue for i32 {
    fn go(&self) -> String {
        self.to_string()
    }
}

/// A value already rendered (struct and map dumps).
pub struct Raw(pub String);

impl GoValue for Raw {
    fn go(&self) -> String {
        self.0.clone()
    }
}

/// A field path under construction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Path {
        Path(root.to_string())
    }

    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    /// A map entry: `data[key]`.
    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Everything wrong with an object of `group`/`kind` on create (`old` None) or update.
/// Unknown kinds yield no errors.
pub fn validate(group: &str, kind: &str, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let type_errs = type_errors(group, kind, object);
    if !type_errs.is_empty() {
        return type_errs;
    }
    let mut errs = Vec::new();
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events};
    match (group, kind) {
        ("", "Pod") => with(object, old, &mut errs, pod::pod),
        ("certificates.k8s.io", "CertificateSigningRequest") => with(object, old, &mut errs, certificates::csr),
        ("apps", "Deployment") => with(object, old, &mut errs, workloads::deployment),
        ("apps", "ReplicaSet") => with(object, old, &mut errs, workloads::replicaset),
        ("apps", "StatefulSet") => with(object, old, &mut errs, workloads::statefulset),
        ("apps", "DaemonSet") => with(object, old, &mut errs, workloads::daemonset),
        ("batch", "Job") => with(object, old, &mut errs, workloads::job),
        ("batch", "CronJob") => with(object, old, &mut errs, workloads::cronjob),
        ("", "Service") => with(object, old, &mut errs, service::service),
        ("", "ConfigMap") => with(object, old, &mut errs, config::configmap),
        ("", "Secret") => with(object, old, &mut errs, config::secret),
        ("", "Namespace") => with(object, old, &mut errs, config::namespace),
        ("", "ServiceAccount") => with(object, old, &mut errs, |o: &core::ServiceAccount, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("", "Node") => with(object, old, &mut errs, |o: &core::Node, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("", "Endpoints") => with(object, old, &mut errs, |o: &core::Endpoints, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("", "PersistentVolume") => with(object, old, &mut errs, |o: &core::PersistentVolume, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("", "PersistentVolumeClaim") => with(object, old, &mut errs, |o: &core::PersistentVolumeClaim, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("apps", "ControllerRevision") => with(object, old, &mut errs, |o: &apps::ControllerRevision, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("", "Event") => with(object, old, &mut errs, |o: &core::Event, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("events.k8s.io", "Event") => with(object, old, &mut errs, |o: &events::Event, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("coordination.k8s.io", "Lease") => with(object, old, &mut errs, |o: &coordination::Lease, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        ("discovery.k8s.io", "EndpointSlice") => with(object, old, &mut errs, |o: &discovery::EndpointSlice, _, e| names::object_meta(&o.metadata, NameRule::Subdomain, e)),
        _ => {}
    }
    // The types read an absent selector as an empty one; upstream tells the two apart.
    if group == "apps" && ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"].contains(&kind) && object.pointer("/spec/selector").is_none_or(Value::is_null) {
        errs.retain(|e| !(e.field == "spec.selector" && e.message.starts_with("empty selector")));
        errs.insert(0, FieldError::required(Path::new("spec").child("selector"), ""));
    }
    errs
}

/// Reads `object` (and `old`) as `T` and runs `rules`; both already passed [`type_errors`].
fn with<T: DeserializeOwned>(object: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>, rules: impl FnOnce(&T, Option<&T>, &mut Vec<FieldError>)) {
    let Ok(new) = typed::<T>(object) else { return };
    // An old object that does not read is treated as absent: it was stored by this server.
    let old = old.and_then(|o| typed::<T>(o).ok());
    rules(&new, old.as_ref(), errs);
}

/// The object as `T`, with the path of the first field that does not fit.
fn typed<T: DeserializeOwned>(object: &Value) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let mut copy = object.clone();
    if let Some(m) = copy.as_object_mut() {
        // apiVersion and kind are the handler's to check; the types insist on their own.
        m.remove("apiVersion");
        m.remove("kind");
    }
    crate::admission::quantity::normalize(&mut copy);
    serde_path_to_error::deserialize(copy)
}

/// The fields of `object` whose JSON type is wrong for `group`/`kind`, or required and
/// missing; at most one (decoding stops at the first). Empty for unknown kinds.
pub fn type_errors(group: &str, kind: &str, object: &Value) -> Vec<FieldError> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events};
    fn check<T: DeserializeOwned>(object: &Value) -> Vec<FieldError> {
        match typed::<T>(object) {
            Ok(_) => Vec::new(),
            Err(e) => vec![decode_error(&e)],
        }
    }
    if !object.is_object() {
        return vec![FieldError { field: "<root>".into(), kind: FieldErrorKind::Invalid, value: None, message: "must be a JSON object".into() }];
    }
    match (group, kind) {
        ("", "Pod") => check::<core::Pod>(object),
        ("certificates.k8s.io", "CertificateSigningRequest") => check::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(object),
        ("", "Service") => check::<core::Service>(object),
        ("", "ConfigMap") => check::<core::ConfigMap>(object),
        ("", "Secret") => check::<core::Secret>(object),
        ("", "Namespace") => check::<core::Namespace>(object),
        ("", "Node") => check::<core::Node>(object),
        ("", "ServiceAccount") => check::<core::ServiceAccount>(object),
        ("", "Endpoints") => check::<core::Endpoints>(object),
        ("", "Event") => check::<core::Event>(object),
        ("", "PersistentVolume") => check::<core::PersistentVolume>(object),
        ("", "PersistentVolumeClaim") => check::<core::PersistentVolumeClaim>(object),
        ("apps", "Deployment") => check::<apps::Deployment>(object),
        ("apps", "ReplicaSet") => check::<apps::ReplicaSet>(object),
        ("apps", "StatefulSet") => check::<apps::StatefulSet>(object),
        ("apps", "DaemonSet") => check::<apps::DaemonSet>(object),
        ("apps", "ControllerRevision") => check::<apps::ControllerRevision>(object),
        ("batch", "Job") => check::<batch::Job>(object),
        ("batch", "CronJob") => check::<batch::CronJob>(object),
        ("coordination.k8s.io", "Lease") => check::<coordination::Lease>(object),
        ("discovery.k8s.io", "EndpointSlice") => check::<discovery::EndpointSlice>(object),
        ("events.k8s.io", "Event") => check::<events::Event>(object),
        _ => Vec::new(),
    }
}

/// A decoding failure as a field error: a missing required field is `Required` at its own
/// path, anything else `Invalid` with the decoder's words.
fn decode_error(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    // serde_json appends " at line L column C", meaningless for a value already parsed.
    let inner = e.inner().to_string();
    let message = inner.split(" at line ").next().unwrap_or(&inner).to_string();
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return FieldError::required(Path::new(&path).child(field), "");
    }
    FieldError { field: if path.is_empty() { "<root>".into() } else { path }, kind: FieldErrorKind::Invalid, value: None, message }
}

#[cfg(test)]
mod tests;
