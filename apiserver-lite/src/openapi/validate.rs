//! Unknown-field detection for `fieldValidation=Strict|Warn`: walks an object along its kind's
//! schema and reports each field the schema does not know, worded as kube-apiserver's strict
//! decoding does (`unknown field "spec.containers[0].imagee"`).
//!
//! The schemas are compiled once into shapes that keep only what the walk needs (field names,
//! map values, list items), so the descriptions are not held in memory for this.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::kinds;
use super::schemas::generator;

const REF_PREFIX: &str = "#/components/schemas/";

#[derive(Debug)]
enum Shape {
    /// Anything goes below here: scalars, int-or-string (quantities), RawExtension, FieldsV1,
    /// `x-kubernetes-preserve-unknown-fields`.
    Any,
    /// A struct, possibly also a map (`additionalProperties`) for keys it does not name.
    Object { properties: HashMap<String, Shape>, additional: Option<Box<Shape>> },
    Array(Box<Shape>),
    Ref(String),
}

impl Shape {
    fn compile(schema: &Value) -> Shape {
        let Some(obj) = schema.as_object() else { return Shape::Any };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return Shape::Ref(reference.trim_start_matches(REF_PREFIX).to_string());
        }
        let flag = |name: &str| obj.get(name).and_then(Value::as_bool).unwrap_or(false);
        if flag("x-kubernetes-preserve-unknown-fields") || flag("x-kubernetes-int-or-string") {
            return Shape::Any;
        }
        // A `$ref` with a description beside it arrives wrapped as `allOf: [{$ref}]`.
        if let Some(Value::Array(all_of)) = obj.get("allOf") {
            return match all_of.as_slice() {
                [only] if !obj.contains_key("properties") => Shape::compile(only),
                _ => Shape::Any,
            };
        }
        if let Some(items) = obj.get("items") {
            return Shape::Array(Box::new(Shape::compile(items)));
        }
        let additional = match obj.get("additionalProperties") {
            Some(Value::Bool(true)) => Some(Box::new(Shape::Any)),
            Some(schema @ Value::Object(_)) => Some(Box::new(Shape::compile(schema))),
            _ => None,
        };
        match obj.get("properties").and_then(Value::as_object) {
            Some(props) => Shape::Object { properties: props.iter().map(|(k, v)| (k.clone(), Shape::compile(v))).collect(), additional },
            None if additional.is_some() => Shape::Object { properties: HashMap::new(), additional },
            // `type: object` with nothing said about its fields is free-form (RawExtension).
            None => Shape::Any,
        }
    }
}

struct Index {
    shapes: HashMap<String, Shape>,
    kinds: HashMap<(String, String, String), String>,
}

impl Index {
    fn build() -> Index {
        let mut generator = generator();
        let mut kinds_map = HashMap::new();
        for (g, v, k) in kinds::KINDS {
            if let Some(name) = kinds::define(g, v, k, &mut generator) {
                kinds_map.insert((g.to_string(), v.to_string(), k.to_string()), name);
            }
        }
        let shapes = generator.take_definitions(true).iter().map(|(name, schema)| (name.clone(), Shape::compile(schema))).collect();
        drop(generator);
        super::release_freed_memory();
        Index { shapes, kinds: kinds_map }
    }

    fn walk(&self, shape: &Shape, value: &Value, path: &mut String, unknown: &mut Vec<String>) {
        match shape {
            Shape::Any => {}
            Shape::Ref(name) => {
                if let Some(shape) = self.shapes.get(name) {
                    self.walk(shape, value, path, unknown);
                }
            }
            Shape::Array(item) => {
                let Some(values) = value.as_array() else { return };
                for (i, v) in values.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    self.walk(item, v, path, unknown);
                    path.truncate(len);
                }
            }
            Shape::Object { properties, additional } => {
                let Some(fields) = value.as_object() else { return };
                for (key, v) in fields {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    match properties.get(key).or(additional.as_deref()) {
                        Some(shape) => self.walk(shape, v, path, unknown),
                        None => unknown.push(format!("unknown field \"{path}\"")),
                    }
                    path.truncate(len);
                }
            }
        }
    }
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(Index::build)
}

/// The unknown fields of `object`, a `group/version` `kind`, in document order. A kind without
/// a known schema has no unknown fields.
pub fn validate_fields(group: &str, version: &str, kind: &str, object: &Value) -> Vec<String> {
    let index = index();
    let mut unknown = Vec::new();
    if let Some(name) = index.kinds.get(&(group.to_string(), version.to_string(), kind.to_string())) {
        index.walk(&Shape::Ref(name.clone()), object, &mut String::new(), &mut unknown);
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_pod_has_no_unknown_fields() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {"a/b": "c"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:containers": {}}}}]},
            "spec": {
                "containers": [{"name": "c", "image": "busybox",
                    "resources": {"limits": {"cpu": "500m", "memory": 1024}},
                    "ports": [{"containerPort": 80}],
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}}}],
                "nodeSelector": {"disk": "ssd"},
                "overhead": {"cpu": "1"}
            },
            "status": {"phase": "Running"}
        });
        assert_eq!(validate_fields("", "v1", "Pod", &pod), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "nmae": "x"},
            "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "c", "imagee": "busybox", "ports": [{"containerPort": 1, "hostIp": "x"}]}]},
            "extra": true
        });
        assert_eq!(
            validate_fields("", "v1", "Pod", &pod),
            vec![
                "unknown field \"metadata.nmae\"",
                "unknown field \"spec.containers[1].imagee\"",
                "unknown field \"spec.containers[1].ports[0].hostIp\"",
                "unknown field \"extra\"",
            ]
        );
    }

    #[test]
    fn deployment_template_and_maps_are_walked() {
        let deploy = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}]}}}
        });
        assert_eq!(validate_fields("apps", "v1", "Deployment", &deploy), vec!["unknown field \"spec.template.spec.containers[0].bogus\""]);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"any-key": "v"}, "binaryData": {"k": "AA=="}});
        assert!(validate_fields("", "v1", "ConfigMap", &cm).is_empty());
    }

    #[test]
    fn free_form_fields_accept_anything() {
        // CRD schemas are JSONSchemaProps with free-form defaults/examples, and
        // x-kubernetes-preserve-unknown-fields objects.
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "ws.example.com"},
            "spec": {"group": "example.com", "names": {"kind": "W", "plural": "ws"}, "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "default": {"anything": {"goes": 1}}, "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        assert_eq!(validate_fields("apiextensions.k8s.io", "v1", "CustomResourceDefinition", &crd), Vec::<String>::new());
        // A kind without a schema cannot have unknown fields.
        assert!(validate_fields("example.com", "v1", "Widget", &json!({"whatever": 1})).is_empty());
        // Values of the wrong type are the decoder's business, not reported as unknown fields.
        assert!(validate_fields("", "v1", "Pod", &json!({"spec": "not an object"})).is_empty());
    }
}
