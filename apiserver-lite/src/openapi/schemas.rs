//! `components.schemas` of a document, generated from k8s-openapi's schemars impls with a
//! generator set up for OpenAPI 3.0: definitions under `#/components/schemas/`, and a `$ref`
//! with siblings (a field's own description) wrapped as `allOf: [{$ref}]` the way
//! kube-apiserver publishes it, so `kubectl explain` prints both descriptions.

use std::collections::BTreeMap;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::kinds::{self, MetaNames};

pub fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A group/version/kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk { group: group.into(), version: version.into(), kind: kind.into() }
    }

    /// The `x-kubernetes-group-version-kind` value. kubectl compares these maps for deep
    /// equality, so exactly these three keys.
    pub fn extension(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// The schemas of one document and the names its paths refer to.
pub struct Components {
    pub schemas: Map<String, Value>,
    /// Schema name of each kind with a known schema.
    pub names: BTreeMap<Gvk, String>,
    pub meta: MetaNames,
}

impl Components {
    pub fn name_of(&self, gvk: &Gvk) -> Option<&str> {
        self.names.get(gvk).map(String::as_str)
    }
}

/// Schemas for `kinds` (each tagged with its GVK), a `<Kind>List` for each of `listed`, and
/// everything they refer to.
pub fn components(kinds: &[Gvk], listed: &[Gvk]) -> Components {
    let mut generator = generator();
    let meta = kinds::define_meta(&mut generator);
    let mut names = BTreeMap::new();
    for gvk in kinds.iter().chain(listed) {
        if let Some(name) = kinds::define(&gvk.group, &gvk.version, &gvk.kind, &mut generator) {
            names.insert(gvk.clone(), name);
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (gvk, name) in &names {
        if let Some(Value::Object(schema)) = schemas.get_mut(name) {
            tag_kind(schema, gvk);
        }
    }
    for gvk in listed {
        let Some(item) = names.get(gvk).cloned() else { continue };
        let list_gvk = Gvk::new(&gvk.group, &gvk.version, &format!("{}List", gvk.kind));
        let list_name = format!("{item}List");
        schemas.insert(list_name.clone(), list_schema(&list_gvk, &item, &meta.list_meta));
        names.insert(list_gvk, list_name);
    }
    // Sorted, so a document's bytes (and hash) depend only on its content.
    let mut sorted: Vec<(String, Value)> = schemas.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Components { schemas: sorted.into_iter().collect(), names, meta }
}

/// Marks a top-level kind. k8s-openapi lists `metadata` as required for its own
/// deserialisation; kube-apiserver's schemas do not, and `kubectl explain` would say so.
fn tag_kind(schema: &mut Map<String, Value>, gvk: &Gvk) {
    let tags = schema.entry("x-kubernetes-group-version-kind").or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(tags) = tags {
        let tag = gvk.extension();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|f| f != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

fn list_schema(gvk: &Gvk, item: &str, list_meta: &str) -> Value {
    let item_kind = gvk.kind.trim_end_matches("List");
    json!({
        "description": format!("{} is a list of {item_kind} objects.", gvk.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {item_kind} objects."), "type": "array", "items": schema_ref(item)},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"description": "Standard list metadata.", "allOf": [schema_ref(list_meta)]},
        },
        "x-kubernetes-group-version-kind": [gvk.extension()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_schema_is_tagged_and_refs_are_openapi3() {
        let pod = Gvk::new("", "v1", "Pod");
        let c = components(std::slice::from_ref(&pod), std::slice::from_ref(&pod));
        let schema = &c.schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(schema["x-kubernetes-group-version-kind"], json!([{"group": "", "kind": "Pod", "version": "v1"}]));
        assert!(schema.get("required").is_none(), "metadata is not required in kube-apiserver's schema");
        // A field with its own description keeps it beside an allOf-wrapped ref.
        let spec = &schema["properties"]["spec"];
        assert!(spec["description"].as_str().unwrap().contains("desired behavior"));
        assert_eq!(spec["allOf"][0]["$ref"], "#/components/schemas/io.k8s.api.core.v1.PodSpec");
        assert!(spec.get("$ref").is_none());
        // Everything referred to is defined.
        let text = serde_json::to_string(&c.schemas).unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(c.schemas.contains_key(name), "dangling ref {name}");
        }
        let list = &c.schemas["io.k8s.api.core.v1.PodList"];
        assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "PodList");
        assert_eq!(c.name_of(&Gvk::new("", "v1", "PodList")), Some("io.k8s.api.core.v1.PodList"));
        let names: Vec<&String> = c.schemas.keys().collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
