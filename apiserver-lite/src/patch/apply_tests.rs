//! Server-side apply: ownership, conflicts, forcing, removal of dropped fields, and updates.

use serde_json::{Value, json};

use super::{ApplyError, parse_apply_body, record_update, server_side_apply};

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn config(replicas: u32, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}
        }
    })
}

fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[test]
fn apply_creates_the_object_with_one_apply_entry() {
    let out = server_side_apply(None, &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T0).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    let managed = out["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(managed.len(), 1);
    let e = &managed[0];
    assert_eq!((e["manager"].as_str(), e["operation"].as_str(), e["apiVersion"].as_str()), (Some("kubectl"), Some("Apply"), Some("apps/v1")));
    assert_eq!((e["time"].as_str(), e["fieldsType"].as_str()), (Some(T0), Some("FieldsV1")));
    assert_eq!(e["fieldsV1"], json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {"f:matchLabels": {"f:app": {}}},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            }
        }
    }));
}

#[test]
fn applying_the_same_configuration_again_changes_nothing_but_the_time() {
    let cfg = config(2, "nginx", json!({"app": "web"}));
    let first = server_side_apply(None, &cfg, "kubectl", false, T0).unwrap();
    let second = server_side_apply(Some(&first), &cfg, "kubectl", false, T1).unwrap();
    assert_eq!(second["spec"], first["spec"]);
    assert_eq!(entry(&second, "kubectl", "Apply").unwrap()["fieldsV1"], entry(&first, "kubectl", "Apply").unwrap()["fieldsV1"]);
    assert_eq!(entry(&second, "kubectl", "Apply").unwrap()["time"], T1);
}

#[test]
fn applying_over_a_client_side_apply_conflicts_on_changed_fields() {
    let created = record_update(&Value::Null, &config(2, "nginx", json!({"app": "web"})), "kubectl-client-side-apply", T0);
    assert_eq!(entry(&created, "kubectl-client-side-apply", "Update").unwrap()["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    let err = server_side_apply(Some(&created), &config(3, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap_err();
    assert_eq!(err.to_string(), r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#);
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));
    let ApplyError::Conflicts(conflicts) = err else { unreachable!() };
    assert_eq!(conflicts[0].path, ".spec.replicas");
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let created = record_update(&Value::Null, &config(2, "nginx", json!({"app": "web"})), "kubectl-client-side-apply", T0);
    let err = server_side_apply(Some(&created), &config(3, "nginx:2", json!({"app": "web"})), "kubectl", false, T1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn applying_an_unchanged_value_shares_ownership() {
    let created = record_update(&Value::Null, &config(2, "nginx", json!({"app": "web"})), "kubectl-client-side-apply", T0);
    let out = server_side_apply(Some(&created), &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(entry(&out, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(entry(&out, "kubectl-client-side-apply", "Update").unwrap()["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
}

#[test]
fn forcing_takes_the_field_over() {
    let created = record_update(&Value::Null, &config(2, "nginx", json!({"app": "web"})), "kubectl-client-side-apply", T0);
    let out = server_side_apply(Some(&created), &config(3, "nginx", json!({"app": "web"})), "kubectl", true, T1).unwrap();
    assert_eq!(out["spec"]["replicas"], 3);
    let old_owner = entry(&out, "kubectl-client-side-apply", "Update").unwrap();
    assert!(old_owner["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "{old_owner}");
    assert_eq!(old_owner["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"], json!({}));
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let first = server_side_apply(None, &config(2, "nginx", json!({"app": "web", "tier": "front", "team": "a"})), "kubectl", false, T0).unwrap();
    // Another writer sets the team label too (to a new value): it owns it now.
    let mut relabelled = first.clone();
    relabelled["metadata"]["labels"]["team"] = json!("b");
    let relabelled = record_update(&first, &relabelled, "labeller", T0);
    let out = server_side_apply(Some(&relabelled), &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"app": "web", "team": "b"}));
    assert_eq!(entry(&out, "kubectl", "Apply").unwrap()["fieldsV1"]["f:metadata"], json!({"f:labels": {"f:app": {}}}));
}

#[test]
fn a_container_no_longer_applied_is_removed() {
    let mut two = config(2, "nginx", json!({"app": "web"}));
    two["spec"]["template"]["spec"]["containers"] = json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]);
    let first = server_side_apply(None, &two, "kubectl", false, T0).unwrap();
    let out = server_side_apply(Some(&first), &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "nginx"}]));
}

#[test]
fn an_item_someone_else_changed_stays_with_its_key_when_no_longer_applied() {
    let mut two = config(2, "nginx", json!({"app": "web"}));
    two["spec"]["template"]["spec"]["containers"] = json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]);
    let first = server_side_apply(None, &two, "kubectl", false, T0).unwrap();
    let mut bumped = first.clone();
    bumped["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:2");
    let bumped = record_update(&first, &bumped, "bumper", T0);
    let out = server_side_apply(Some(&bumped), &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(out["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox:2"}]));
}

#[test]
fn an_update_takes_fields_from_the_applier_and_a_later_apply_conflicts() {
    let applied = server_side_apply(None, &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T0).unwrap();
    let mut scaled = applied.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = record_update(&applied, &scaled, "hpa", T1);
    assert_eq!(entry(&scaled, "hpa", "Update").unwrap()["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(entry(&scaled, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    let err = server_side_apply(Some(&scaled), &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T1).unwrap_err();
    assert_eq!(err.to_string(), r#"Apply failed with 1 conflict: conflict with "hpa" using apps/v1: .spec.replicas"#);
    // Leaving replicas out of the configuration is how the applier hands the field over.
    let mut without = config(2, "nginx", json!({"app": "web"}));
    without["spec"].as_object_mut().unwrap().shift_remove("replicas");
    let out = server_side_apply(Some(&scaled), &without, "kubectl", false, T1).unwrap();
    assert_eq!(out["spec"]["replicas"], 5);
}

#[test]
fn finalizers_are_a_set_each_owner_keeping_its_own() {
    let mut cfg = config(1, "nginx", json!({"app": "web"}));
    cfg["metadata"]["finalizers"] = json!(["a"]);
    let first = server_side_apply(None, &cfg, "kubectl", false, T0).unwrap();
    let mut added = first.clone();
    added["metadata"]["finalizers"] = json!(["a", "b"]);
    let added = record_update(&first, &added, "controller", T0);
    assert_eq!(entry(&added, "controller", "Update").unwrap()["fieldsV1"], json!({"f:metadata": {"f:finalizers": {"v:\"b\"": {}}}}));
    let again = server_side_apply(Some(&added), &cfg, "kubectl", false, T1).unwrap();
    assert_eq!(again["metadata"]["finalizers"], json!(["a", "b"]));
}

#[test]
fn an_update_that_removes_a_field_takes_it_from_its_owner() {
    let applied = server_side_apply(None, &config(2, "nginx", json!({"app": "web", "x": "y"})), "kubectl", false, T0).unwrap();
    let mut edited = applied.clone();
    edited["metadata"]["labels"].as_object_mut().unwrap().shift_remove("x");
    let edited = record_update(&applied, &edited, "kubectl-edit", T1);
    assert_eq!(entry(&edited, "kubectl", "Apply").unwrap()["fieldsV1"]["f:metadata"], json!({"f:labels": {"f:app": {}}}));
    // Removing only, the editor gains nothing and gets no entry.
    assert!(entry(&edited, "kubectl-edit", "Update").is_none());
}

#[test]
fn managed_fields_sent_with_an_update_replace_them_and_an_empty_list_clears_them() {
    let applied = server_side_apply(None, &config(2, "nginx", json!({"app": "web"})), "kubectl", false, T0).unwrap();
    let mut cleared = applied.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    let cleared = record_update(&applied, &cleared, "someone", T1);
    assert!(cleared["metadata"].get("managedFields").is_none(), "{cleared}");
    // Unchanged managed fields (a GET-modify-PUT) are recorded normally.
    let mut put = applied.clone();
    put["spec"]["replicas"] = json!(4);
    let put = record_update(&applied, &put, "editor", T1);
    assert_eq!(entry(&put, "editor", "Update").unwrap()["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn custom_resources_apply_with_atomic_lists() {
    let cr = |items: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "finalizers": ["f"]}, "spec": {"items": items, "size": 1}});
    let first = server_side_apply(None, &cr(json!([1, 2])), "tool", false, T0).unwrap();
    let e = entry(&first, "tool", "Apply").unwrap();
    assert_eq!(e["fieldsV1"], json!({"f:metadata": {"f:finalizers": {"v:\"f\"": {}}}, "f:spec": {"f:items": {}, "f:size": {}}}));
    let second = server_side_apply(Some(&first), &cr(json!([3])), "tool", false, T1).unwrap();
    assert_eq!(second["spec"]["items"], json!([3]));
}

#[test]
fn bad_requests() {
    let cfg = config(1, "nginx", json!({}));
    assert!(matches!(server_side_apply(None, &cfg, "", false, T0), Err(ApplyError::MissingManager)));
    let err = server_side_apply(None, &json!({"metadata": {"name": "x"}}), "m", false, T0).unwrap_err();
    assert_eq!((err.code(), err.reason()), (400, "BadRequest"));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
    assert!(matches!(server_side_apply(Some(&pod), &cfg, "m", false, T0), Err(ApplyError::Malformed(_))));
}

#[test]
fn apply_bodies_are_yaml_or_json() {
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n";
    assert_eq!(parse_apply_body(yaml).unwrap(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}));
    assert_eq!(parse_apply_body(br#"{"kind": "ConfigMap"}"#).unwrap(), json!({"kind": "ConfigMap"}));
    assert!(matches!(parse_apply_body(b"a: [unclosed"), Err(ApplyError::Malformed(_))));
}
