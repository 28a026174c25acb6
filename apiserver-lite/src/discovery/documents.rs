//! The discovery documents, built from the registry: legacy (`APIVersions`, `APIGroupList`,
//! `APIGroup`, `APIResourceList`) and aggregated (`apidiscovery.k8s.io` `APIGroupDiscoveryList`).

use serde_json::{Map, Value, json};

use crate::resources::{Registry, Resource, Subresource};

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

fn version_for_discovery(group: &str, version: &str) -> Value {
    json!({"groupVersion": group_version(group, version), "version": version})
}

/// `/api`: the core group's versions.
pub fn api_versions(registry: &Registry) -> Value {
    let versions: Vec<String> = registry.groups().into_iter().filter(|(g, _)| g.is_empty()).flat_map(|(_, v)| v).collect();
    json!({"kind": "APIVersions", "versions": versions})
}

fn api_group_body(group: &str, versions: &[String]) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("name".into(), group.into());
    body.insert("versions".into(), versions.iter().map(|v| version_for_discovery(group, v)).collect());
    if let Some(preferred) = versions.first() {
        body.insert("preferredVersion".into(), version_for_discovery(group, preferred));
    }
    body
}

/// `/apis`: every named group with its versions, the preferred one first.
pub fn api_group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| Value::Object(api_group_body(g, v))).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn api_group(group: &str, versions: &[String]) -> Value {
    let mut body = Map::new();
    body.insert("kind".into(), "APIGroup".into());
    body.insert("apiVersion".into(), "v1".into());
    body.extend(api_group_body(group, versions));
    Value::Object(body)
}

fn resource_entry(r: &Resource) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), r.plural.clone().into());
    e.insert("singularName".into(), r.singular.clone().into());
    e.insert("namespaced".into(), r.namespaced.into());
    e.insert("kind".into(), r.kind.clone().into());
    e.insert("verbs".into(), r.verbs.clone().into());
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), r.short_names.clone().into());
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), r.categories.clone().into());
    }
    Value::Object(e)
}

/// `pods/status` as the legacy list shows it: group and version only when they differ from the
/// list's own, and no singular name (as kube-apiserver does).
fn subresource_entry(r: &Resource, s: &Subresource) -> Value {
    let mut e = Map::new();
    e.insert("name".into(), format!("{}/{}", r.plural, s.name).into());
    e.insert("singularName".into(), "".into());
    e.insert("namespaced".into(), r.namespaced.into());
    if s.group != r.group || s.version != r.version {
        e.insert("group".into(), s.group.clone().into());
        e.insert("version".into(), s.version.clone().into());
    }
    e.insert("kind".into(), s.kind.clone().into());
    e.insert("verbs".into(), s.verbs.clone().into());
    Value::Object(e)
}

/// `/api/v1`, `/apis/<group>/<version>`: each resource followed by its subresources.
pub fn api_resource_list(registry: &Registry, group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in registry.in_group_version(group, version) {
        resources.push(resource_entry(r));
        resources.extend(r.subresources.iter().map(|s| subresource_entry(r, s)));
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources})
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut e = Map::new();
    e.insert("resource".into(), r.plural.clone().into());
    e.insert("responseKind".into(), gvk(&r.group, &r.version, &r.kind));
    e.insert("scope".into(), if r.namespaced { "Namespaced" } else { "Cluster" }.into());
    e.insert("singularResource".into(), r.singular.clone().into());
    e.insert("verbs".into(), r.verbs.clone().into());
    if !r.short_names.is_empty() {
        e.insert("shortNames".into(), r.short_names.clone().into());
    }
    if !r.categories.is_empty() {
        e.insert("categories".into(), r.categories.clone().into());
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| json!({"subresource": s.name, "responseKind": gvk(&s.group, &s.version, &s.kind), "verbs": s.verbs}))
            .collect();
        e.insert("subresources".into(), subs.into());
    }
    Value::Object(e)
}

fn aggregated_group(registry: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry.in_group_version(group, v).map(aggregated_resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    // The core group has no name: client-go turns it back into the "" group.
    let metadata = if group.is_empty() { json!({}) } else { json!({"name": group}) };
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` (`core` true) or `/apis` (`core` false) as an APIGroupDiscoveryList of
/// `apidiscovery.k8s.io/<api_version>` (v2 and v2beta1 share this shape).
pub fn aggregated(registry: &Registry, core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = registry.groups().iter().filter(|(g, _)| g.is_empty() == core).map(|(g, v)| aggregated_group(registry, g, v)).collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtin;

    #[test]
    fn legacy_core_list_has_pods_and_subresources() {
        let list = api_resource_list(&builtin(), "", "v1");
        assert_eq!(list["groupVersion"], "v1");
        let resources = list["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["namespaced"], true);
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["singularName"], "pod");
        let status = resources.iter().find(|r| r["name"] == "pods/status").unwrap();
        assert_eq!(status["kind"], "Pod");
        assert!(status.get("group").is_none(), "same group version is left implicit");
        let eviction = resources.iter().find(|r| r["name"] == "pods/eviction").unwrap();
        assert_eq!((eviction["group"].as_str(), eviction["version"].as_str(), eviction["kind"].as_str()), (Some("policy"), Some("v1"), Some("Eviction")));
        // Subresources directly follow their parent.
        let pods_at = resources.iter().position(|r| r["name"] == "pods").unwrap();
        assert!(resources[pods_at + 1]["name"].as_str().unwrap().starts_with("pods/"));
    }

    #[test]
    fn group_list_and_group() {
        let r = builtin();
        let list = api_group_list(&r);
        let apps = list["groups"].as_array().unwrap().iter().find(|g| g["name"] == "apps").unwrap();
        assert_eq!(apps["preferredVersion"], json!({"groupVersion": "apps/v1", "version": "v1"}));
        assert!(list["groups"].as_array().unwrap().iter().all(|g| g["name"] != ""), "the core group is served at /api only");
        assert_eq!(api_group("apps", &["v1".into()])["kind"], "APIGroup");
        assert_eq!(api_versions(&r), json!({"kind": "APIVersions", "versions": ["v1"]}));
    }

    #[test]
    fn aggregated_apis_carries_resources_and_scale_kind() {
        let doc = aggregated(&builtin(), false, "v2");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        let apps = doc["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let v1 = &apps["versions"][0];
        assert_eq!(v1["freshness"], "Current");
        let deploy = v1["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(deploy["responseKind"], json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
        let scale = deploy["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    }

    #[test]
    fn aggregated_api_is_the_core_group_only() {
        let doc = aggregated(&builtin(), true, "v2beta1");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0]["metadata"].get("name").is_none());
        let nodes = items[0]["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "nodes").unwrap();
        assert_eq!(nodes["scope"], "Cluster");
    }
}
