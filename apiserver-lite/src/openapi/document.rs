//! The OpenAPI v3 documents: one per group version (`api/v1`, `apis/apps/v1`) and the index at
//! `/openapi/v3` that points at each by a URL carrying its content hash.

use serde_json::{Map, Value, json};

use super::paths;
use super::schemas::{Gvk, components};
use crate::discovery::CachedBody;
use crate::resources::Registry;

/// The version `info.version` reports; kubectl does not read it.
const INFO_VERSION: &str = "v1.33.0";

/// `api/v1` or `apis/apps/v1`: the key in the index and the path below `/openapi/v3/`.
pub fn api_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The document of one group version.
pub fn group_version_document(registry: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<_> = registry.in_group_version(group, version).collect();
    let mut kinds = Vec::new();
    let mut listed = Vec::new();
    for r in &resources {
        let gvk = Gvk::new(&r.group, &r.version, &r.kind);
        if r.has_verb("list") {
            listed.push(gvk.clone());
        }
        kinds.push(gvk);
        kinds.extend(r.subresources.iter().map(|s| Gvk::new(&s.group, &s.version, &s.kind)));
    }
    let components = components(&kinds, &listed);
    let mut all_paths = Map::new();
    for r in &resources {
        paths::add_resource(&mut all_paths, r, &components);
    }
    let mut sorted: Vec<(String, Value)> = all_paths.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Map<String, Value> = sorted.into_iter().collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": components.schemas},
    })
}

/// Every document, serialised once.
pub struct Documents {
    pub index: CachedBody,
    /// (`api/v1`, its document).
    pub group_versions: Vec<(String, CachedBody)>,
}

impl Documents {
    pub fn build(registry: &Registry) -> Documents {
        let mut group_versions = Vec::new();
        for (group, versions) in registry.groups() {
            for version in versions {
                let body = CachedBody::json(&group_version_document(registry, &group, &version));
                group_versions.push((api_path(&group, &version), body));
            }
        }
        let entries: Map<String, Value> = group_versions
            .iter()
            .map(|(path, body)| (path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", body.hash)})))
            .collect();
        let index = CachedBody::json(&json!({"paths": entries}));
        Documents { index, group_versions }
    }

    /// Total bytes held.
    pub fn size(&self) -> usize {
        self.index.bytes.len() + self.group_versions.iter().map(|(_, b)| b.bytes.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    #[test]
    fn index_points_at_every_group_version_with_its_hash() {
        let docs = Documents::build(&builtin());
        let index: Value = serde_json::from_slice(&docs.index.bytes).unwrap();
        let apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        let (_, body) = docs.group_versions.iter().find(|(p, _)| p == "apis/apps/v1").unwrap();
        assert_eq!(apps, format!("/openapi/v3/apis/apps/v1?hash={}", body.hash));
        assert!(index["paths"]["api/v1"].is_object());
        assert_eq!(index["paths"].as_object().unwrap().len(), docs.group_versions.len());
    }

    #[test]
    fn apps_document_has_deployment_scale_and_explainable_paths() {
        let doc = group_version_document(&builtin(), "apps", "v1");
        assert_eq!(doc["openapi"], "3.0.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert_eq!(schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert_eq!(schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"][0]["group"], "autoscaling");
        assert!(schemas.contains_key("io.k8s.api.apps.v1.DeploymentStrategy"));
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(scale["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/io.k8s.api.autoscaling.v1.Scale");
        // The explain template looks up the kind on the namespaced collection path.
        assert_eq!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"]["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        // No core-group kinds leak into another group's document as tagged kinds.
        assert!(schemas.get("io.k8s.api.core.v1.Pod").is_none());
    }

    #[test]
    fn documents_are_deterministic() {
        let a = Documents::build(&builtin());
        let b = Documents::build(&builtin());
        assert_eq!(a.index.bytes, b.index.bytes);
    }
}
