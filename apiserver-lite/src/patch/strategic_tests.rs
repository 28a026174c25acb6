//! Strategic merge patch: each directive, and the patches `kubectl apply` (client-side, a
//! three-way diff) and `kubectl patch` really send.

use serde_json::{Value, json};

use super::{StrategicMergeError, apply};

fn smp(root: &str, original: Value, patch: Value) -> Value {
    apply(root, &original, &patch).unwrap_or_else(|e| panic!("patch failed: {e}"))
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers, "restartPolicy": "Always"}}
        }
    })
}

fn two_containers() -> Value {
    json!([
        {"name": "web", "image": "nginx:1.26", "terminationMessagePath": "/dev/termination-log", "env": [{"name": "A", "value": "1"}]},
        {"name": "sidecar", "image": "busybox:1.36", "terminationMessagePath": "/dev/termination-log"}
    ])
}

#[test]
fn kubectl_apply_changes_one_containers_image() {
    let live = deployment(two_containers());
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"image": "nginx:1.27", "name": "web"}]
    }}}});
    let out = smp("Deployment", live.clone(), patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["web", "sidecar"]);
    assert_eq!(containers[0]["image"], "nginx:1.27");
    // Fields the patch does not name, server defaults among them, stay.
    assert_eq!(containers[0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(containers[1], live["spec"]["template"]["spec"]["containers"][1]);
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn kubectl_apply_removes_a_container() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}]
    }}}});
    let out = smp("Deployment", deployment(two_containers()), patch);
    assert_eq!(names(&out["spec"]["template"]["spec"]["containers"]), ["web"]);
}

#[test]
fn kubectl_apply_removes_a_label_with_null() {
    let patch = json!({"metadata": {"labels": {"tier": null}}});
    let out = smp("Deployment", deployment(two_containers()), patch);
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    // Deleting a key the object lacks is no error.
    let out = smp("Deployment", out, json!({"metadata": {"labels": {"gone": null}, "annotations": null}}));
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
    assert!(out["metadata"].get("annotations").is_none());
}

#[test]
fn kubectl_apply_adds_an_env_var() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "B"}], "env": [{"name": "B", "value": "2"}], "name": "web"}]
    }}}});
    let out = smp("Deployment", deployment(two_containers()), patch);
    let web = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(web["env"], json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    assert!(web.get("$setElementOrder/env").is_none());
}

#[test]
fn kubectl_apply_changes_a_service_port() {
    let live = json!({"kind": "Service", "spec": {
        "type": "ClusterIP", "clusterIP": "10.0.0.10",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}, {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]
    }});
    // targetPort changes; the port (the merge key) stays.
    let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 9090}], "ports": [{"port": 80, "targetPort": 8081}]}});
    let out = smp("Service", live.clone(), patch);
    assert_eq!(out["spec"]["ports"][0], json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8081}));
    assert_eq!(out["spec"]["ports"][1], live["spec"]["ports"][1]);
    assert_eq!(out["spec"]["clusterIP"], "10.0.0.10");
    // The port itself changes: kubectl deletes the old item and adds the new one.
    let patch = json!({"spec": {
        "$setElementOrder/ports": [{"port": 8000}, {"port": 9090}],
        "ports": [{"name": "http", "port": 8000, "targetPort": 8080}, {"$patch": "delete", "port": 80}]
    }});
    let out = smp("Service", live, patch);
    assert_eq!(out["spec"]["ports"], json!([
        {"name": "http", "port": 8000, "targetPort": 8080},
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}
    ]));
}

#[test]
fn retain_keys_switches_a_deployment_from_rolling_update_to_recreate() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    let out = smp("Deployment", deployment(two_containers()), patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    // Without the explicit null, $retainKeys alone clears rollingUpdate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let out = smp("Deployment", deployment(two_containers()), patch);
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_refuses_a_patch_setting_a_key_it_does_not_retain() {
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let err = apply("Deployment", &deployment(two_containers()), &patch).unwrap_err();
    assert_eq!(err, StrategicMergeError::NotInRetainKeys { path: ".spec.strategy".into(), key: "rollingUpdate".into() });
    assert!(!err.is_malformed());
}

#[test]
fn retain_keys_in_volume_items_switches_the_volume_source() {
    let live = json!({"spec": {"containers": [], "volumes": [
        {"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {"medium": "Memory"}}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
        "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "emptyDir": null, "name": "data"}]
    }});
    let out = smp("Pod", live, patch);
    assert_eq!(out["spec"]["volumes"], json!([{"name": "data", "configMap": {"name": "cm"}}, {"name": "cache", "emptyDir": {"medium": "Memory"}}]));
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let live = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    // Adding: kubectl apply sends the full order and the new item.
    let out = smp("Pod", live.clone(), json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    // An item already there is not duplicated.
    let out = smp("Pod", out, json!({"metadata": {"finalizers": ["a"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
    // Deleting.
    let out = smp("Pod", out, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
    // Without an order, a new item goes first, as apimachinery orders it.
    let out = smp("Pod", live, json!({"metadata": {"finalizers": ["c"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn set_element_order_keeps_server_only_items_in_their_live_place() {
    // The design document's finalizer example: the server added e and d; the user adds f,
    // deletes c and orders a, b, f.
    let live = json!({"metadata": {"finalizers": ["b", "e", "a", "c", "d"]}});
    let patch = json!({"metadata": {
        "$setElementOrder/finalizers": ["a", "b", "f"], "$deleteFromPrimitiveList/finalizers": ["c"], "finalizers": ["f"]
    }});
    let out = smp("Pod", live, patch);
    // The patch's items follow its order; server-only items slot in by their live position.
    assert_eq!(out["metadata"]["finalizers"], json!(["e", "a", "b", "f", "d"]));
}

#[test]
fn set_element_order_of_env_with_server_added_items() {
    let env = |names: &[&str]| Value::Array(names.iter().map(|n| json!({"name": n, "value": n.to_lowercase()})).collect());
    let live = json!({"spec": {"containers": [{"name": "c", "env": env(&["ENV2", "ENV5", "ENV1", "ENV3", "ENV4"])}]}});
    let patch = json!({"spec": {"containers": [{
        "name": "c",
        "$setElementOrder/env": [{"name": "ENV1"}, {"name": "ENV2"}, {"name": "ENV6"}],
        "env": [{"name": "ENV3", "$patch": "delete"}, {"name": "ENV6", "value": "env6"}]
    }]}});
    let out = smp("Pod", live, patch);
    assert_eq!(names(&out["spec"]["containers"][0]["env"]), ["ENV5", "ENV1", "ENV2", "ENV6", "ENV4"]);
}

#[test]
fn set_element_order_alone_reorders() {
    let live = json!({"spec": {"containers": [{"name": "b", "image": "b"}, {"name": "a", "image": "a"}]}});
    let out = smp("Pod", live, json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}]}}));
    assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
}

#[test]
fn set_element_order_that_contradicts_the_patch_list_is_refused() {
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b"}, {"name": "a"}]}});
    let err = apply("Pod", &live, &patch).unwrap_err();
    assert_eq!(err, StrategicMergeError::OrderMismatch { path: ".spec.containers".into() });
}

#[test]
fn a_new_list_item_without_order_goes_first() {
    let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let out = smp("Pod", live, json!({"spec": {"containers": [{"name": "c", "image": "c"}]}}));
    assert_eq!(names(&out["spec"]["containers"]), ["c", "a", "b"]);
}

#[test]
fn container_ports_merge_by_container_port() {
    let live = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443, "name": "https"}]}]}});
    let out = smp("Pod", live, patch);
    assert_eq!(out["spec"]["containers"][0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}]));
}

#[test]
fn lists_without_a_merge_strategy_are_replaced() {
    let live = json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["x", "y"]}]}});
    let patch = json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["z"]}]}});
    let out = smp("Pod", live, patch);
    assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
}

#[test]
fn patch_replace_in_a_map_takes_the_patch_literally() {
    let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let out = smp("Pod", live, json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
}

#[test]
fn patch_replace_in_a_list_replaces_the_list() {
    let live = json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}});
    let patch = json!({"spec": {"containers": [{"name": "c", "image": "c"}, {"$patch": "replace"}]}});
    let out = smp("Pod", live, patch);
    assert_eq!(out["spec"]["containers"], json!([{"name": "c", "image": "c"}]));
}

#[test]
fn patch_delete_in_a_map_empties_it() {
    let out = smp("Deployment", deployment(two_containers()), json!({"spec": {"strategy": {"rollingUpdate": {"$patch": "delete"}}}}));
    assert_eq!(out["spec"]["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {}}));
}

#[test]
fn patch_delete_removes_every_matching_item() {
    let live = json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "x"}, {"uid": "2", "name": "y"}, {"uid": "1", "name": "dup"}]}});
    let out = smp("Pod", live, json!({"metadata": {"ownerReferences": [{"uid": "1", "$patch": "delete"}]}}));
    assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "2", "name": "y"}]));
}

#[test]
fn patch_merge_directive_merges() {
    let live = json!({"metadata": {"labels": {"a": "1"}}});
    let out = smp("Pod", live, json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "b": "2"}));
}

#[test]
fn directives_are_stripped_from_values_new_to_the_object() {
    let live = json!({"metadata": {"name": "p"}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]}]
    }});
    let out = smp("Pod", live, patch);
    assert_eq!(out["spec"], json!({"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}));
}

#[test]
fn object_key_order_is_kept() {
    let live = json!({"metadata": {"name": "p", "namespace": "d", "labels": {"a": "1"}}, "spec": {}});
    let out = smp("Pod", live, json!({"metadata": {"namespace": "e", "annotations": {"x": "y"}}}));
    let keys: Vec<&String> = out["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["name", "namespace", "labels", "annotations"]);
}

#[test]
fn malformed_directives_are_refused() {
    let live = json!({"metadata": {"labels": {}}, "spec": {"containers": [{"name": "a"}]}});
    let err = apply("Pod", &live, &json!({"metadata": {"labels": {"$patch": "explode"}}})).unwrap_err();
    assert!(matches!(err, StrategicMergeError::UnknownDirective { .. }) && err.is_malformed(), "{err}");
    let err = apply("Pod", &live, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}})).unwrap_err();
    assert!(matches!(err, StrategicMergeError::DirectiveNotAList { .. }) && err.is_malformed(), "{err}");
    let err = apply("Pod", &live, &json!({"spec": {"strategy": {"$retainKeys": "type"}}})).unwrap_err();
    assert!(err.is_malformed(), "{err}");
    let err = apply("Pod", &live, &json!(["not", "an", "object"])).unwrap_err();
    assert!(matches!(err, StrategicMergeError::NotAnObject { .. }), "{err}");
}

#[test]
fn merge_list_items_need_their_merge_key() {
    let live = json!({"spec": {"containers": [{"name": "a"}]}});
    let err = apply("Pod", &live, &json!({"spec": {"containers": [{"image": "x"}]}})).unwrap_err();
    assert!(matches!(&err, StrategicMergeError::MissingMergeKey { path, key, .. } if path == ".spec.containers" && key == "name"), "{err}");
    assert!(!err.is_malformed());
}

#[test]
fn mixed_lists_are_refused() {
    let live = json!({"metadata": {"finalizers": ["a"]}});
    let err = apply("Pod", &live, &json!({"metadata": {"finalizers": [{"x": 1}]}})).unwrap_err();
    assert_eq!(err, StrategicMergeError::UnmergeableList { path: ".metadata.finalizers".into() });
}

#[test]
fn node_status_conditions_merge_by_type() {
    let live = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "MemoryPressure", "status": "False"}]}});
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    let out = smp("Node", live, patch);
    assert_eq!(out["status"]["conditions"], json!([
        {"type": "Ready", "status": "True", "reason": "KubeletReady"}, {"type": "MemoryPressure", "status": "False"}
    ]));
}

#[test]
fn cronjob_pod_template_containers_merge() {
    let live = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b2"}]}}}}}});
    let out = smp("CronJob", live, patch);
    assert_eq!(out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"], json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b2"}]));
}
