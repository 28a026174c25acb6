//! The downward API: a pod's fields (`fieldRef`) and a container's resources
//! (`resourceFieldRef`) as strings, shared by env vars and downwardAPI volume files.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::EnvContext;
use crate::agent::quantity::{self, QuantityError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("unsupported fieldPath: {0}")]
    UnsupportedField(String),
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    #[error("container {container:?} not found in pod {pod:?} (resourceFieldRef)")]
    NoContainer { container: String, pod: String },
    #[error("resourceFieldRef {resource}: {source}")]
    Quantity {
        resource: String,
        source: QuantityError,
    },
}

/// The value of `metadata.name`, `metadata.labels['app']`, `status.podIP`, ...
pub fn field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    ctx: &EnvContext,
) -> Result<String, FieldError> {
    let path = selector.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" => ctx.host_ips.first().cloned(),
        "status.hostIPs" => Some(ctx.host_ips.join(",")),
        "status.podIP" => ctx.pod_ips.first().cloned(),
        "status.podIPs" => Some(ctx.pod_ips.join(",")),
        other => return Err(FieldError::UnsupportedField(other.to_string())),
    };
    Ok(value.unwrap_or_default())
}

/// `metadata.labels['key']` → `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(field)?.strip_prefix("['")?;
    rest.strip_suffix("']")
}

/// Labels or annotations as a downwardAPI file: sorted `key="value"` lines, values quoted
/// as Go's `%q` does, no final newline.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    lines.join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a resourceFieldRef. `default_container` is the container the env var
/// belongs to (volumes have none and must name one). Unset limits are the node's
/// allocatable, as upstream.
pub fn resource_value(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    default_container: Option<&Container>,
    ctx: &EnvContext,
) -> Result<String, FieldError> {
    let resource = selector.resource.as_str();
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => find_container(pod, name).ok_or_else(|| FieldError::NoContainer {
            container: name.to_string(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
        })?,
        None => default_container.ok_or_else(|| FieldError::NoContainer {
            container: String::new(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
        })?,
    };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| FieldError::UnsupportedResource(resource.to_string()))?;
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !name.starts_with("hugepages-") {
        return Err(FieldError::UnsupportedResource(resource.to_string()));
    }
    let resources = container.resources.as_ref();
    let parse = |q: &Quantity| {
        quantity::parse(&q.0).map_err(|source| FieldError::Quantity {
            resource: resource.to_string(),
            source,
        })
    };
    let value = match kind {
        "limits" => resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .or_else(|| ctx.node_allocatable.get(name)),
        "requests" => resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(name)),
        _ => return Err(FieldError::UnsupportedResource(resource.to_string())),
    };
    let value = value.map(parse).transpose()?.unwrap_or(quantity::Nanos(0));
    let divisor = selector
        .divisor
        .as_ref()
        .map(parse)
        .transpose()?
        .unwrap_or(quantity::Nanos(1_000_000_000));
    Ok(quantity::divide(name, value, divisor).to_string())
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_sorted_and_quoted() {
        let map: BTreeMap<String, String> = [
            ("b".to_string(), "x\"y".to_string()),
            ("a".to_string(), "1\n2".to_string()),
        ]
        .into();
        assert_eq!(format_map(Some(&map)), "a=\"1\\n2\"\nb=\"x\\\"y\"");
        assert_eq!(format_map(None), "");
    }

    #[test]
    fn subscripts() {
        assert_eq!(
            subscript("metadata.labels['app']", "metadata.labels"),
            Some("app")
        );
        assert_eq!(subscript("metadata.labels", "metadata.labels"), None);
    }
}
