//! Field sets as server-side apply tracks them in `metadata.managedFields`: the paths of an
//! object's fields, and their `FieldsV1` encoding (`f:<field>`, `k:<list-map key>`,
//! `v:<set value>` path elements, `.` marking a path that is itself a member when it also
//! has children).
//!
//! Which lists are list-maps (items identified by key fields) or sets comes from
//! [`super::metadata`]; every other list is atomic, owned as a whole.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::metadata;

/// One path: its encoded elements from the object root (`["f:spec", "f:replicas"]`).
pub type Path = Vec<String>;

/// A set of paths.
pub type FieldSet = BTreeSet<Path>;

/// Top-level and `metadata` fields no manager owns: identity and bookkeeping the server sets.
const UNTRACKED_TOP: &[&str] = &["apiVersion", "kind"];
const UNTRACKED_META: &[&str] =
    &["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "selfLink", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds"];

/// The paths of every field of `object`, an object of type `root` (no metadata: `None`).
/// Leaves are scalars, atomic lists and empty objects; list-map and set items are members
/// too, so that removing an item is tracked.
pub fn fields_of(object: &Value, root: Option<&str>) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = object {
        for (k, v) in m {
            if UNTRACKED_TOP.contains(&k.as_str()) || v.is_null() {
                continue;
            }
            let path = vec![format!("f:{k}")];
            if k == "metadata" {
                if let Value::Object(meta) = v {
                    for (mk, mv) in meta {
                        if !UNTRACKED_META.contains(&mk.as_str()) && !mv.is_null() {
                            walk(mv, metadata::field(metadata::METADATA.ty, mk), vec![path[0].clone(), format!("f:{mk}")], &mut out);
                        }
                    }
                }
                continue;
            }
            walk(v, metadata::field(root, k), path, &mut out);
        }
    }
    out
}

fn walk(value: &Value, field: Option<&metadata::Field>, path: Path, out: &mut FieldSet) {
    let ty = field.and_then(|f| f.ty);
    match value {
        Value::Object(m) if !m.is_empty() => walk_object(m, ty, &path, out),
        Value::Array(items) if !items.is_empty() => match field {
            Some(f) if !f.list_map_keys.is_empty() && items.iter().all(Value::is_object) => {
                for item in items {
                    let mut item_path = path.clone();
                    item_path.push(key_element(item, f.list_map_keys));
                    out.insert(item_path.clone());
                    if let Value::Object(m) = item {
                        walk_object(m, f.ty, &item_path, out);
                    }
                }
            }
            Some(f) if f.set => {
                for item in items {
                    let mut item_path = path.clone();
                    item_path.push(format!("v:{item}"));
                    out.insert(item_path);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

fn walk_object(m: &Map<String, Value>, ty: Option<&str>, path: &Path, out: &mut FieldSet) {
    for (k, v) in m {
        if v.is_null() {
            continue;
        }
        let mut child = path.clone();
        child.push(format!("f:{k}"));
        walk(v, metadata::field(ty, k), child, out);
    }
}

/// `k:{"name":"web"}`: the item's key fields, in name order, as JSON.
fn key_element(item: &Value, keys: &[&str]) -> String {
    let mut names: Vec<&str> = keys.iter().copied().filter(|k| item.get(*k).is_some()).collect();
    names.sort_unstable();
    let mut key = Map::new();
    for n in names {
        key.insert(n.to_string(), item[n].clone());
    }
    format!("k:{}", Value::Object(key))
}

/// The value at `path` in `object`, if present.
pub fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = object;
    for element in path {
        cur = step(cur, element)?;
    }
    Some(cur)
}

fn step<'a>(value: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(name) = element.strip_prefix("f:") {
        return value.as_object()?.get(name);
    }
    let items = value.as_array()?;
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items.iter().find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
    if let Some(v) = element.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        return items.iter().find(|item| **item == v);
    }
    let i: usize = element.strip_prefix("i:")?.parse().ok()?;
    items.get(i)
}

/// Removes the field or list item at `path` from `object`; objects and lists the removal
/// leaves empty go too (as Go's `omitempty` would drop them), up to (not including) the
/// top-level fields.
pub fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(parent) = get_mut(object, parents) else { return };
    match parent {
        Value::Object(m) => {
            if let Some(name) = last.strip_prefix("f:") {
                m.shift_remove(name);
            }
        }
        Value::Array(items) => {
            if let Some(item) = step(&Value::Array(items.clone()), last).cloned() {
                items.retain(|i| *i != item);
            }
        }
        _ => {}
    }
    let emptied = match get(object, parents) {
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        _ => false,
    };
    if emptied && parents.len() > 1 {
        remove(object, parents);
    }
}

fn get_mut<'a>(object: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = object;
    for element in path {
        let found = step(cur, element)?.clone();
        cur = match cur {
            Value::Object(m) => m.get_mut(element.strip_prefix("f:")?)?,
            Value::Array(items) => items.iter_mut().find(|i| **i == found)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Whether `path` is a key field of a list-map item (`...k:{"name":"x"}/f:name`): the item's
/// identity, which goes only with the item.
pub fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else { return false };
    let (Some(key), Some(name)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else { return false };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(name))
}

/// Whether `path` or anything below it is in `set`.
pub fn covers(set: &FieldSet, path: &[String]) -> bool {
    set.range(path.to_vec()..).next().is_some_and(|p| p.starts_with(path))
}

/// Encodes a set as `fieldsV1`.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            let child = node.entry(element.clone()).or_insert_with(|| Value::Object(Map::new()));
            node = child.as_object_mut().expect("nodes are objects");
        }
    }
    mark_members(&mut root, set, &mut Vec::new());
    sort(Value::Object(root))
}

/// Adds "." to every member node that has children (a member sorts before its children, so
/// when `encode` inserts it, it cannot know whether children follow).
fn mark_members(node: &mut Map<String, Value>, set: &FieldSet, path: &mut Path) {
    for (k, v) in node.iter_mut() {
        if k == "." {
            continue;
        }
        path.push(k.clone());
        if let Value::Object(child) = v {
            if !child.is_empty() && set.contains(path) {
                child.insert(".".into(), Value::Object(Map::new()));
            }
            mark_members(child, set, path);
        }
        path.pop();
    }
}

/// Object keys in byte order, as the Go encoder writes them.
fn sort(value: Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
        }
        v => v,
    }
}

/// Decodes `fieldsV1`.
pub fn decode(fields: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = fields {
        decode_into(m, &mut Vec::new(), &mut out);
    }
    out
}

fn decode_into(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
    for (k, v) in node {
        if k == "." {
            out.insert(path.clone());
            continue;
        }
        path.push(k.clone());
        match v {
            Value::Object(child) if !child.is_empty() => decode_into(child, path, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// A path as kube-apiserver prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            s.push('.');
            s.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        } else if let Some(i) = element.strip_prefix("i:") {
            s.push_str(&format!("[{i}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(elements: &[&str]) -> Path {
        elements.iter().map(|e| e.to_string()).collect()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "finalizers": ["x"], "resourceVersion": "5"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "protocol": "TCP"}], "args": ["a"]}]}}
            }
        })
    }

    #[test]
    fn fields_of_a_deployment() {
        let set = fields_of(&deployment(), Some("Deployment"));
        let c = r#"k:{"name":"web"}"#;
        let expected: FieldSet = [
            p(&["f:metadata", "f:labels", "f:app"]),
            p(&["f:metadata", "f:finalizers", r#"v:"x""#]),
            p(&["f:spec", "f:replicas"]),
            p(&["f:spec", "f:selector", "f:matchLabels", "f:app"]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:name"]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:image"]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:args"]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:ports", r#"k:{"containerPort":80,"protocol":"TCP"}"#]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:ports", r#"k:{"containerPort":80,"protocol":"TCP"}"#, "f:containerPort"]),
            p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:ports", r#"k:{"containerPort":80,"protocol":"TCP"}"#, "f:protocol"]),
        ]
        .into_iter()
        .collect();
        assert_eq!(set, expected);
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_with_children() {
        let set = fields_of(&deployment(), Some("Deployment"));
        let encoded = encode(&set);
        let container = &encoded["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"web"}"#];
        assert_eq!(container["."], json!({}));
        assert_eq!(container["f:image"], json!({}));
        assert_eq!(encoded["f:metadata"]["f:finalizers"], json!({r#"v:"x""#: {}}));
        assert!(encoded["f:spec"].get(".").is_none(), "a struct is not a member by itself");
        assert_eq!(decode(&encoded), set);
    }

    #[test]
    fn get_and_remove_follow_keys_and_values() {
        let mut d = deployment();
        let c = r#"k:{"name":"web"}"#;
        assert_eq!(get(&d, &p(&["f:spec", "f:template", "f:spec", "f:containers", c, "f:image"])), Some(&json!("nginx")));
        assert_eq!(get(&d, &p(&["f:metadata", "f:finalizers", r#"v:"x""#])), Some(&json!("x")));
        assert_eq!(get(&d, &p(&["f:spec", "f:template", "f:spec", "f:containers", r#"k:{"name":"nope"}"#])), None);
        remove(&mut d, &p(&["f:spec", "f:template", "f:spec", "f:containers", c]));
        // The emptied list goes, and the emptied objects above it.
        assert!(d["spec"].get("template").is_none(), "{d}");
        // Removing the last field of an object removes the emptied objects above it.
        remove(&mut d, &p(&["f:spec", "f:selector", "f:matchLabels", "f:app"]));
        assert!(d["spec"].get("selector").is_none(), "{d}");
        assert_eq!(d["spec"]["replicas"], 2);
    }

    #[test]
    fn display_paths_like_kube_apiserver() {
        assert_eq!(display(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(display(&p(&["f:spec", "f:containers", r#"k:{"name":"web"}"#, "f:image"])), r#".spec.containers[name="web"].image"#);
        assert_eq!(display(&p(&["f:metadata", "f:finalizers", r#"v:"x""#])), r#".metadata.finalizers[="x"]"#);
    }

    #[test]
    fn item_keys_are_recognised() {
        assert!(is_item_key(&p(&["f:spec", "f:containers", r#"k:{"name":"web"}"#, "f:name"])));
        assert!(!is_item_key(&p(&["f:spec", "f:containers", r#"k:{"name":"web"}"#, "f:image"])));
        assert!(!is_item_key(&p(&["f:spec", "f:name"])));
    }

    #[test]
    fn covers_finds_descendants() {
        let set: FieldSet = [p(&["f:spec", "f:a", "f:b"])].into_iter().collect();
        assert!(covers(&set, &p(&["f:spec", "f:a"])));
        assert!(covers(&set, &p(&["f:spec", "f:a", "f:b"])));
        assert!(!covers(&set, &p(&["f:spec", "f:ab"])));
        assert!(!covers(&set, &p(&["f:status"])));
    }
}
