//! Errors to API clients: `Status` objects with the reason and code kube-apiserver gives, so
//! kubectl prints the messages users know (`Error from server (NotFound): pods "web" not found`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::storage::StorageError;

/// What a request failed with: a `Status` reason, its HTTP code, a message, and the object
/// it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `pods`, `deployments.apps`: how kube-apiserver names a resource in messages.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

fn details(group: &str, kind_plural: &str, name: &str) -> Option<Value> {
    let mut d = json!({"name": name, "kind": kind_plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    Some(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError { details: details(group, plural, name), ..ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(group, plural))) }
    }

    /// A path no resource is served at.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError { details: details(group, plural, name), ..ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", qualified(group, plural))) }
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> ApiError {
        ApiError {
            details: details(group, plural, name),
            ..ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", qualified(group, plural)))
        }
    }

    pub fn modified(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::conflict(group, plural, name, "the object has been modified; please apply your changes to the latest version and try again")
    }

    /// 422: the object failed validation; `causes` are the field errors.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[(String, String, String)]) -> ApiError {
        let list: Vec<String> = causes.iter().map(|(_, field, message)| format!("{field}: {message}")).collect();
        let message = match list.len() {
            1 => format!("{kind}{} \"{name}\" is invalid: {}", group_suffix(group), list[0]),
            _ => format!("{kind}{} \"{name}\" is invalid: [{}]", group_suffix(group), list.join(", ")),
        };
        let causes: Vec<Value> = causes.iter().map(|(reason, field, message)| json!({"reason": reason, "message": message, "field": field})).collect();
        let mut d = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        ApiError { details: Some(d), ..ApiError::new(422, "Invalid", message) }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 410: a watch or paged list asked for history the server no longer has.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }

    /// A storage failure while working on `name` of a resource.
    pub fn from_storage(err: StorageError, group: &str, plural: &str, name: &str) -> ApiError {
        match err {
            StorageError::AlreadyExists { .. } => ApiError::already_exists(group, plural, name),
            StorageError::NotFound { .. } => ApiError::not_found(group, plural, name),
            StorageError::Conflict { .. } => ApiError::modified(group, plural, name),
            StorageError::Compacted { requested, compacted } => {
                ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StorageError::FutureRevision { requested, current } => ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            StorageError::Backend { .. } => ApiError::internal(err.to_string()),
        }
    }
}

fn group_suffix(group: &str) -> String {
    if group.is_empty() { String::new() } else { format!(".{group}") }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, [(axum::http::header::CONTENT_TYPE, "application/json")], self.to_status().to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kube_apiservers() {
        assert_eq!(ApiError::not_found("", "pods", "web").message, "pods \"web\" not found");
        assert_eq!(ApiError::not_found("apps", "deployments", "d").message, "deployments.apps \"d\" not found");
        let e = ApiError::modified("", "configmaps", "c");
        assert_eq!(e.code, 409);
        assert!(e.message.starts_with("Operation cannot be fulfilled on configmaps \"c\": the object has been modified"));
        let inv = ApiError::invalid("", "Pod", "p", &[("FieldValueRequired".into(), "spec.containers[0].image".into(), "Required value".into())]);
        assert_eq!(inv.message, "Pod \"p\" is invalid: spec.containers[0].image: Required value");
        assert_eq!(inv.to_status()["details"]["causes"][0]["field"], "spec.containers[0].image");
        let s = ApiError::from_storage(StorageError::Compacted { requested: 3, compacted: 9 }, "", "pods", "");
        assert_eq!((s.code, s.reason), (410, "Expired"));
    }
}
