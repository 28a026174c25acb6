//! The `paths` of a group version's document: the REST operations of each resource and its
//! subresources, as kube-apiserver publishes them. kubectl reads two things from here:
//! `kubectl explain` finds a resource's kind through the `x-kubernetes-group-version-kind` of
//! its collection or item operations, and `kubectl create/apply` decides on server-side field
//! validation by finding a `fieldValidation` parameter (inline, not a `$ref`) on a PATCH
//! operation of the kind.

use serde_json::{Map, Value, json};

use super::schemas::{Components, Gvk, schema_ref};
use crate::resources::{Resource, Subresource};

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string"}})
}

fn pretty() -> Value {
    query("pretty", "string", "If 'true', the output is pretty printed.")
}

fn write_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", "When present (value All), the request is validated and admitted but not persisted."),
        query("fieldManager", "string", "The name of the actor making the change, recorded in managedFields."),
        query(
            "fieldValidation",
            "string",
            "How to treat unknown and duplicate fields in the request body: Ignore drops them silently, Warn drops them and returns a warning for each, Strict rejects the request.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", "Ask for BOOKMARK watch events."),
        query("continue", "string", "The continue token of a previous paginated list."),
        query("fieldSelector", "string", "Restrict the list by the values of fields."),
        query("labelSelector", "string", "Restrict the list by labels."),
        query("limit", "integer", "The most items to return; the rest is reached with continue."),
        query("resourceVersion", "string", "Which version of the collection to serve."),
        query("resourceVersionMatch", "string", "How resourceVersion is applied to a list."),
        query("sendInitialEvents", "boolean", "Start a watch with synthetic ADDED events for the current state."),
        query("timeoutSeconds", "integer", "How long a list or watch call may last."),
        query("watch", "boolean", "Watch for changes and stream them as watch events."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", "When present (value All), the request is validated but not persisted."),
        query("gracePeriodSeconds", "integer", "Seconds before the object is deleted; zero means immediately."),
        query("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
        query("propagationPolicy", "string", "Orphan, Background or Foreground garbage collection of dependents."),
    ]
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// `createAppsV1NamespacedDeployment` style operation ids and `apps_v1` style tags.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "core".into();
    }
    let trimmed = group.trim_end_matches(".k8s.io");
    let mut word = String::new();
    for (i, part) in trimmed.split('.').enumerate() {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                word.push(first);
            } else {
                word.extend(first.to_uppercase());
            }
            word.push_str(chars.as_str());
        }
    }
    word
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

struct Operation<'a> {
    verb: &'static str,
    action: &'static str,
    gvk: Gvk,
    /// Kind and scope part of the operation id: `NamespacedPodStatus`.
    id_suffix: String,
    description: String,
    params: Vec<Value>,
    /// Schema name of the request body; `Patch` for patch operations.
    request: Option<&'a str>,
    /// Content types of the request body (JSON unless patching).
    request_types: &'static [&'static str],
    response: Option<Value>,
    success: &'static str,
}

const PATCH_TYPES: &[&str] = &["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"];

impl Operation<'_> {
    fn render(self, tag: &str, id_prefix: &str) -> Value {
        let mut op = Map::new();
        op.insert("tags".into(), json!([tag]));
        op.insert("description".into(), self.description.into());
        op.insert("operationId".into(), format!("{}{}{}", self.verb, id_prefix, self.id_suffix).into());
        if !self.params.is_empty() {
            op.insert("parameters".into(), self.params.into());
        }
        if let Some(body) = self.request {
            let content: Map<String, Value> = self.request_types.iter().map(|t| (t.to_string(), json!({"schema": schema_ref(body)}))).collect();
            op.insert("requestBody".into(), json!({"content": content, "required": self.verb != "delete" && self.verb != "deleteCollection"}));
        }
        let mut responses = Map::new();
        let ok = match self.response {
            Some(schema) => json!({"description": "OK", "content": json_content(schema)}),
            None => json!({"description": "OK"}),
        };
        responses.insert(self.success.into(), ok);
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        op.insert("responses".into(), responses.into());
        op.insert("x-kubernetes-action".into(), self.action.into());
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.extension());
        Value::Object(op)
    }
}

/// Adds the paths of `resource` to `paths`.
pub fn add_resource(paths: &mut Map<String, Value>, resource: &Resource, components: &Components) {
    let gvk = Gvk::new(&resource.group, &resource.version, &resource.kind);
    let tag = format!("{}_{}", group_word(&resource.group), resource.version);
    let id_prefix = format!("{}{}", capitalise(&group_word(&resource.group)), capitalise(&resource.version));
    let scope = if resource.namespaced { "Namespaced" } else { "" };
    let kind_name = components.name_of(&gvk);
    let list_name = components.name_of(&Gvk::new(&resource.group, &resource.version, &resource.list_kind()));
    let meta = &components.meta;
    let root = if resource.group.is_empty() { format!("/api/{}", resource.version) } else { format!("/apis/{}/{}", resource.group, resource.version) };
    let ns = if resource.namespaced { "/namespaces/{namespace}" } else { "" };
    let collection = format!("{root}{ns}/{}", resource.plural);
    let item = format!("{collection}/{{name}}");
    let mut scope_params = vec![];
    if resource.namespaced {
        scope_params.push(path_param("namespace", "object name and auth scope, such as for teams and projects"));
    }
    let kind = &resource.kind;
    let render = |ops: Vec<Operation>, params: Vec<Value>| -> Value {
        let mut item = Map::new();
        for op in ops {
            let method = match op.verb {
                "list" | "read" => "get",
                "create" => "post",
                "replace" => "put",
                "patch" => "patch",
                _ => "delete",
            };
            let method = if op.action == "connect" { connect_method(op.verb) } else { method };
            item.insert(method.into(), op.render(&tag, &id_prefix));
        }
        item.insert("parameters".into(), params.into());
        Value::Object(item)
    };
    let body_ref = |name: Option<&str>| name.map(schema_ref);

    // The collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if resource.has_verb("list") {
        ops.push(Operation { verb: "list", action: "list", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("list or watch objects of kind {kind}"), params: list_params(), request: None, request_types: &[], response: body_ref(list_name), success: "200" });
    }
    if resource.has_verb("create") {
        ops.push(Operation { verb: "create", action: "post", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("create a {kind}"), params: write_params(), request: kind_name, request_types: &["application/json"], response: body_ref(kind_name), success: "201" });
    }
    if resource.has_verb("deletecollection") {
        let mut params = delete_params();
        params.extend(list_params());
        ops.push(Operation { verb: "deleteCollection", action: "deletecollection", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("delete collection of {kind}"), params, request: Some(meta.delete_options.as_str()), request_types: &["application/json"], response: Some(schema_ref(&meta.status)), success: "200" });
    }
    if !ops.is_empty() {
        let mut params = scope_params.clone();
        params.push(pretty());
        paths.insert(collection.clone(), render(ops, params));
    }

    // Every namespace at once.
    if resource.namespaced && resource.has_verb("list") {
        let op = Operation { verb: "list", action: "list", gvk: gvk.clone(), id_suffix: format!("{kind}ForAllNamespaces"), description: format!("list or watch objects of kind {kind}"), params: list_params(), request: None, request_types: &[], response: body_ref(list_name), success: "200" };
        paths.insert(format!("{root}/{}", resource.plural), render(vec![op], vec![pretty()]));
    }

    // One object: read, replace, patch, delete.
    let mut ops = Vec::new();
    if resource.has_verb("get") {
        ops.push(Operation { verb: "read", action: "get", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("read the specified {kind}"), params: vec![], request: None, request_types: &[], response: body_ref(kind_name), success: "200" });
    }
    if resource.has_verb("update") {
        ops.push(Operation { verb: "replace", action: "put", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("replace the specified {kind}"), params: write_params(), request: kind_name, request_types: &["application/json"], response: body_ref(kind_name), success: "200" });
    }
    if resource.has_verb("patch") {
        let mut params = write_params();
        params.push(query("force", "boolean", "Take over fields owned by other managers in an apply patch."));
        ops.push(Operation { verb: "patch", action: "patch", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("partially update the specified {kind}"), params, request: Some(meta.patch.as_str()), request_types: PATCH_TYPES, response: body_ref(kind_name), success: "200" });
    }
    if resource.has_verb("delete") {
        ops.push(Operation { verb: "delete", action: "delete", gvk: gvk.clone(), id_suffix: format!("{scope}{kind}"), description: format!("delete a {kind}"), params: delete_params(), request: Some(meta.delete_options.as_str()), request_types: &["application/json"], response: Some(schema_ref(&meta.status)), success: "200" });
    }
    let mut item_params = vec![path_param("name", &format!("name of the {kind}"))];
    item_params.extend(scope_params.iter().cloned());
    item_params.push(pretty());
    if !ops.is_empty() {
        paths.insert(item.clone(), render(ops, item_params.clone()));
    }

    for sub in &resource.subresources {
        let ops = subresource_operations(sub, scope, kind, components);
        if !ops.is_empty() {
            paths.insert(format!("{item}/{}", sub.name), render(ops, item_params.clone()));
        }
    }
}

fn connect_method(verb: &str) -> &'static str {
    match verb {
        "connectGet" => "get",
        "connectPost" => "post",
        "connectPut" => "put",
        "connectPatch" => "patch",
        _ => "delete",
    }
}

fn subresource_operations<'a>(sub: &Subresource, scope: &str, parent_kind: &str, components: &'a Components) -> Vec<Operation<'a>> {
    let gvk = Gvk::new(&sub.group, &sub.version, &sub.kind);
    let name = components.name_of(&gvk);
    let suffix = format!("{scope}{parent_kind}{}", capitalise(&sub.name));
    let connect = sub.kind.ends_with("Options");
    let mut ops = Vec::new();
    for verb in &sub.verbs {
        let description = format!("{verb} {} of the specified {parent_kind}", sub.name);
        let op = |verb: &'static str, action: &'static str, params: Vec<Value>, request: Option<&'a str>, request_types: &'static [&'static str], success: &'static str| Operation { verb, action, gvk: gvk.clone(), id_suffix: suffix.clone(), description: description.clone(), params, request, request_types, response: name.map(schema_ref), success };
        if connect {
            let verb = match verb.as_str() {
                "get" => "connectGet",
                "create" => "connectPost",
                "update" => "connectPut",
                "patch" => "connectPatch",
                _ => "connectDelete",
            };
            ops.push(Operation { response: Some(json!({"type": "string"})), ..op(verb, "connect", vec![], None, &[], "200") });
            continue;
        }
        match verb.as_str() {
            "get" if sub.name == "log" => ops.push(Operation { response: Some(json!({"type": "string"})), ..op("read", "get", vec![], None, &[], "200") }),
            "get" => ops.push(op("read", "get", vec![], None, &[], "200")),
            "update" => ops.push(op("replace", "put", write_params(), name, &["application/json"], "200")),
            "patch" => {
                let mut params = write_params();
                params.push(query("force", "boolean", "Take over fields owned by other managers in an apply patch."));
                ops.push(op("patch", "patch", params, Some(components.meta.patch.as_str()), PATCH_TYPES, "200"));
            }
            "create" => ops.push(op("create", "post", write_params(), name, &["application/json"], "201")),
            _ => {}
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::super::schemas::components;
    use super::*;
    use crate::resources::builtin;

    fn pod_paths() -> Map<String, Value> {
        let registry = builtin();
        let pods = registry.get("", "v1", "pods").unwrap();
        let gvk = Gvk::new("", "v1", "Pod");
        let mut kinds = vec![gvk.clone()];
        kinds.extend(pods.subresources.iter().map(|s| Gvk::new(&s.group, &s.version, &s.kind)));
        let c = components(&kinds, &[gvk]);
        let mut paths = Map::new();
        add_resource(&mut paths, pods, &c);
        paths
    }

    #[test]
    fn patch_operations_carry_gvk_and_inline_field_validation() {
        let paths = pod_paths();
        let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
        let patch = &item["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "", "kind": "Pod", "version": "v1"}));
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
        assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
        let post = &paths["/api/v1/namespaces/{namespace}/pods"]["post"];
        assert!(post["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert_eq!(post["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/io.k8s.api.core.v1.Pod");
        assert_eq!(paths["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
        assert_eq!(paths["/api/v1/namespaces/{namespace}/pods"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/io.k8s.api.core.v1.PodList");
    }

    #[test]
    fn subresources_have_their_own_paths() {
        let paths = pod_paths();
        let status = &paths["/api/v1/namespaces/{namespace}/pods/{name}/status"];
        assert_eq!(status["patch"]["operationId"], "patchCoreV1NamespacedPodStatus");
        assert!(status["patch"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        let eviction = &paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(eviction["x-kubernetes-group-version-kind"]["kind"], "Eviction");
        assert_eq!(eviction["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/io.k8s.api.policy.v1.Eviction");
        let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
        assert_eq!(exec["get"]["x-kubernetes-action"], "connect");
        assert_eq!(exec["post"]["operationId"], "connectPostCoreV1NamespacedPodExec");
        assert_eq!(paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["type"], "string");
    }

    #[test]
    fn group_words() {
        assert_eq!(group_word(""), "core");
        assert_eq!(group_word("apps"), "apps");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "rbacAuthorization");
        assert_eq!(capitalise(&group_word("coordination.k8s.io")), "Coordination");
    }
}
