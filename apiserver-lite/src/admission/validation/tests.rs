use serde_json::{json, Value};

use super::{type_errors, validate, FieldErrorKind};
use crate::admission::defaults;

/// Defaults then validates, as the server does, and returns the messages.
fn errors(group: &str, kind: &str, mut object: Value) -> Vec<String> {
    defaults::apply(group, kind, &mut object);
    validate(group, kind, &object, None).iter().map(|e| e.to_string()).collect()
}

fn update_errors(group: &str, kind: &str, mut old: Value, mut new: Value) -> Vec<String> {
    defaults::apply(group, kind, &mut old);
    defaults::apply(group, kind, &mut new);
    validate(group, kind, &new, Some(&old)).iter().map(|e| e.to_string()).collect()
}

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec})
}

#[test]
fn a_good_pod_has_no_errors() {
    let p = pod(json!({
        "containers": [{"name": "app", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
                        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": 1}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]
    }));
    assert_eq!(errors("", "Pod", p), Vec::<String>::new());
}

#[test]
fn names_follow_the_kind() {
    let mut p = pod(json!({"containers": [{"name": "app", "image": "nginx"}]}));
    p["metadata"]["name"] = json!("Web_1");
    assert_eq!(errors("", "Pod", p), ["metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]);
    let ns = json!({"metadata": {"name": "a.b"}});
    assert!(errors("", "Namespace", ns)[0].starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label must"));
    let svc = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
    assert!(errors("", "Service", svc)[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label must"));
    let cm = json!({"metadata": {"generateName": "cfg-"}});
    assert_eq!(errors("", "ConfigMap", cm), Vec::<String>::new());
}

#[test]
fn containers_are_required_named_uniquely_and_have_images() {
    assert_eq!(errors("", "Pod", pod(json!({"containers": []}))), ["spec.containers: Required value"]);
    assert_eq!(errors("", "Pod", json!({"metadata": {"name": "web"}, "spec": {}})), ["spec.containers: Required value"]);
    assert_eq!(errors("", "Pod", pod(json!({"containers": [{"name": "app"}]}))), ["spec.containers[0].image: Required value"]);
    assert_eq!(errors("", "Pod", pod(json!({"containers": [{"image": "nginx"}]}))), ["spec.containers[0].name: Required value"]);
    assert_eq!(
        errors("", "Pod", pod(json!({"initContainers": [{"name": "app", "image": "busybox"}], "containers": [{"name": "app", "image": "nginx"}]}))),
        ["spec.containers[0].name: Duplicate value: \"app\""]
    );
    let e = errors("", "Pod", pod(json!({"containers": [{"name": "App", "image": " nginx"}]})));
    assert!(e[0].starts_with("spec.containers[0].name: Invalid value: \"App\": a lowercase RFC 1123 label"), "{e:?}");
    assert_eq!(e[1], "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace");
}

#[test]
fn container_ports() {
    let e = errors("", "Pod", pod(json!({"containers": [{"name": "app", "image": "nginx", "ports": [
        {"name": "http", "containerPort": 70000},
        {"name": "http", "containerPort": 81, "hostPort": -1},
        {"containerPort": 0, "protocol": "ICMP"},
        {"name": "HTTP", "containerPort": 82}
    ]}]})));
    assert_eq!(e, [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        "spec.containers[0].ports[1].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[2].containerPort: Required value",
        "spec.containers[0].ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        "spec.containers[0].ports[3].name: Invalid value: \"HTTP\": must contain only alpha-numerics and '-'",
        "spec.containers[0].ports[3].name: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
    ]);
}

#[test]
fn policies_resources_and_volumes() {
    let e = errors("", "Pod", pod(json!({
        "restartPolicy": "Sometimes", "dnsPolicy": "Cluster",
        "containers": [{"name": "app", "image": "nginx",
                        "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": ""}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "cfg", "emptyDir": {}, "hostPath": {"path": "/x"}}]
    })));
    assert_eq!(e, [
        "spec.volumes[1].name: Duplicate value: \"cfg\"",
        "spec.volumes[1]: Forbidden: may not specify more than 1 volume type",
        "spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
        "spec.containers[0].volumeMounts[1].mountPath: Required value",
        "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
    ]);
    let e = errors("", "Pod", pod(json!({"containers": [{"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "lots"}}}]})));
    assert!(e[0].starts_with("spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": quantities must match"), "{e:?}");
}

#[test]
fn pod_updates_may_change_only_images_deadline_tolerations_and_grace() {
    let old = pod(json!({"containers": [{"name": "app", "image": "nginx:1.26"}]}));
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    new["spec"]["activeDeadlineSeconds"] = json!(600);
    new["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    assert_eq!(update_errors("", "Pod", old.clone(), new), Vec::<String>::new());

    let mut new = old.clone();
    new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    let e = update_errors("", "Pod", old.clone(), new);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{e:?}");

    // Removing a toleration the pod had is a change too.
    let mut tolerating = old.clone();
    tolerating["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    let e = update_errors("", "Pod", tolerating, old);
    assert_eq!(e.len(), 1, "{e:?}");
}

fn deployment(selector: Value, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"selector": selector, "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
}

#[test]
fn deployments_need_a_selector_that_matches_their_template() {
    assert_eq!(errors("apps", "Deployment", deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}))), Vec::<String>::new());
    assert_eq!(
        errors("apps", "Deployment", deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "api"}))),
        ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"]
    );
    assert_eq!(
        errors("apps", "Deployment", deployment(json!({}), json!({"app": "web"}))),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
    );
    let mut no_selector = deployment(json!({}), json!({"app": "web"}));
    no_selector["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(errors("apps", "Deployment", no_selector), ["spec.selector: Required value"]);
    let mut negative = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
    negative["spec"]["replicas"] = json!(-1);
    negative["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        errors("apps", "Deployment", negative),
        ["spec.replicas: Invalid value: -1: must be greater than or equal to 0", "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""]
    );
    let mut stuck = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}));
    stuck["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
    assert_eq!(errors("apps", "Deployment", stuck), ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]);
    let expr = deployment(json!({"matchExpressions": [{"key": "app", "operator": "In"}]}), json!({"app": "web"}));
    assert_eq!(errors("apps", "Deployment", expr)[0], "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
}

#[test]
fn a_deployment_selector_may_not_change() {
    let old = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "web", "v": "2"}));
    let new = deployment(json!({"matchLabels": {"app": "web", "v": "2"}}), json!({"app": "web", "v": "2"}));
    assert_eq!(
        update_errors("apps", "Deployment", old.clone(), new),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
    );
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert_eq!(update_errors("apps", "Deployment", old, scaled), Vec::<String>::new());
}

#[test]
fn replicasets_statefulsets_daemonsets() {
    let mut rs = deployment(json!({"matchLabels": {"app": "web"}}), json!({"app": "x"}));
    rs["kind"] = json!("ReplicaSet");
    assert_eq!(errors("apps", "ReplicaSet", rs)[0], "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`");

    let mut sts = deployment(json!({"matchLabels": {"app": "db"}}), json!({"app": "db"}));
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["serviceName"] = json!("db");
    assert_eq!(errors("apps", "StatefulSet", sts.clone()), Vec::<String>::new());
    // Containers may mount the claim templates.
    let mut claimed = sts.clone();
    claimed["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "www", "mountPath": "/www"}]);
    assert_eq!(errors("apps", "StatefulSet", claimed.clone())[0], "spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"www\"");
    claimed["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    assert_eq!(errors("apps", "StatefulSet", claimed), Vec::<String>::new());
    let mut bad = sts.clone();
    bad["spec"]["podManagementPolicy"] = json!("Random");
    assert_eq!(errors("apps", "StatefulSet", bad), ["spec.podManagementPolicy: Unsupported value: \"Random\": supported values: \"OrderedReady\", \"Parallel\""]);
    let mut renamed = sts.clone();
    renamed["spec"]["serviceName"] = json!("db2");
    assert!(update_errors("apps", "StatefulSet", sts.clone(), renamed)[0].starts_with("spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"));
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:17");
    assert_eq!(update_errors("apps", "StatefulSet", sts, scaled), Vec::<String>::new());

    let mut ds = deployment(json!({"matchLabels": {"app": "agent"}}), json!({"app": "agent"}));
    ds["kind"] = json!("DaemonSet");
    ds["spec"]["updateStrategy"] = json!({"type": "Sometimes"});
    assert_eq!(errors("apps", "DaemonSet", ds), ["spec.updateStrategy.type: Unsupported value: \"Sometimes\": supported values: \"OnDelete\", \"RollingUpdate\""]);
}

#[test]
fn jobs_and_cronjobs() {
    let job = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}});
    assert_eq!(errors("batch", "Job", job.clone()), Vec::<String>::new());
    let mut always = job.clone();
    always["spec"]["template"]["spec"].as_object_mut().unwrap().remove("restartPolicy");
    always["spec"]["backoffLimit"] = json!(-2);
    assert_eq!(
        errors("batch", "Job", always),
        ["spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0", "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
    );
    let mut manual = job.clone();
    manual["spec"]["manualSelector"] = json!(true);
    assert_eq!(errors("batch", "Job", manual.clone()), ["spec.selector: Required value"]);
    manual["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
    manual["spec"]["template"]["metadata"] = json!({"labels": {"app": "pi"}});
    assert_eq!(errors("batch", "Job", manual.clone()), Vec::<String>::new());
    manual["spec"].as_object_mut().unwrap().remove("manualSelector");
    assert_eq!(
        errors("batch", "Job", manual),
        ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"pi\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated"]
    );

    let cj = json!({"metadata": {"name": "hello"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "h", "image": "busybox"}]}}}}}});
    assert_eq!(errors("batch", "CronJob", cj.clone()), Vec::<String>::new());
    let mut bad = cj.clone();
    bad["spec"]["schedule"] = json!("sometimes");
    bad["spec"]["concurrencyPolicy"] = json!("Never");
    let e = errors("batch", "CronJob", bad);
    assert!(e[0].starts_with("spec.schedule: Invalid value: \"sometimes\""));
    assert_eq!(e[1], "spec.concurrencyPolicy: Unsupported value: \"Never\": supported values: \"Allow\", \"Forbid\", \"Replace\"");
    let mut long = cj;
    long["metadata"]["name"] = json!("a".repeat(53));
    assert!(errors("batch", "CronJob", long)[0].ends_with("must be no more than 52 characters"));
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
}

#[test]
fn services() {
    assert_eq!(errors("", "Service", service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))), Vec::<String>::new());
    assert_eq!(errors("", "Service", service(json!({"selector": {"app": "web"}}))), ["spec.ports: Required value"]);
    assert_eq!(errors("", "Service", service(json!({"clusterIP": "None", "selector": {"app": "web"}}))), Vec::<String>::new());
    assert_eq!(errors("", "Service", service(json!({"type": "ExternalName", "externalName": "db.example.com"}))), Vec::<String>::new());
    assert_eq!(errors("", "Service", service(json!({"type": "ExternalName"}))), ["spec.externalName: Required value"]);
    assert_eq!(
        errors("", "Service", service(json!({"type": "Magic", "ports": [{"port": 80}]}))),
        ["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""]
    );
    assert_eq!(
        errors("", "Service", service(json!({"ports": [{"port": 80}, {"name": "https", "port": 0, "targetPort": 70000}, {"name": "https", "port": 8443}]}))),
        [
            "spec.ports[0].name: Required value",
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[2].name: Duplicate value: \"https\"",
        ]
    );
    assert_eq!(
        errors("", "Service", service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}))),
        ["spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"]
    );
    assert_eq!(errors("", "Service", service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))), Vec::<String>::new());
    assert_eq!(
        errors("", "Service", service(json!({"ports": [{"port": 80, "nodePort": 30080}]}))),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
    let old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
    let new = service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
    assert_eq!(update_errors("", "Service", old, new), ["spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": may not change once set"]);
}

#[test]
fn configmaps_secrets_namespaces() {
    assert_eq!(errors("", "ConfigMap", json!({"metadata": {"name": "c"}, "data": {"app.properties": "x=1"}})), Vec::<String>::new());
    let e = errors("", "ConfigMap", json!({"metadata": {"name": "c"}, "data": {"a b": "x", "k": "v"}, "binaryData": {"k": "AA=="}}));
    assert!(e[0].starts_with("data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters"), "{e:?}");
    assert_eq!(e[1], "data[k]: Invalid value: \"k\": duplicate of key present in binaryData");

    assert_eq!(errors("", "Secret", json!({"metadata": {"name": "s"}, "stringData": {"password": "x"}})), Vec::<String>::new());
    assert_eq!(
        errors("", "Secret", json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "AA=="}})),
        ["data[tls.key]: Required value"]
    );
    let old = json!({"metadata": {"name": "s"}, "immutable": true, "data": {"a": "AA=="}});
    let new = json!({"metadata": {"name": "s"}, "immutable": true, "data": {"a": "AQ=="}});
    assert_eq!(update_errors("", "Secret", old, new), ["data: Forbidden: field is immutable when `immutable` is set"]);
    let old = json!({"metadata": {"name": "s"}, "type": "Opaque"});
    let new = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(update_errors("", "Secret", old, new), ["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]);

    assert_eq!(errors("", "Namespace", json!({"metadata": {"name": "team-a"}})), Vec::<String>::new());
    assert_eq!(
        errors("", "Namespace", json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["cleanup"]}})),
        ["spec.finalizers[0]: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified"]
    );
}

#[test]
fn labels_and_annotations_of_any_kind() {
    let cm = json!({"metadata": {"name": "c", "labels": {"app/x/y": "v", "ok": "-bad"}, "annotations": {"-": "x"}}});
    let e = errors("", "ConfigMap", cm);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("metadata.labels: Invalid value: \"app/x/y\": a qualified name must consist"));
    assert!(e[1].starts_with("metadata.labels: Invalid value: \"-bad\": a valid label must be an empty string"));
    assert!(e[2].starts_with("metadata.annotations: Invalid value: \"-\": name part must consist"));
}

#[test]
fn wrong_types_and_missing_required_fields_name_the_path() {
    let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": "3", "selector": {}, "template": {}}});
    let e = validate("apps", "Deployment", &d, None);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].field, "spec.replicas");
    assert_eq!(e[0].kind, FieldErrorKind::Invalid);
    assert_eq!(e[0].to_string(), "spec.replicas: Invalid value: invalid type: string \"3\", expected i32");

    let p = pod(json!({"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": "http"}]}]}));
    assert_eq!(type_errors("", "Pod", &p)[0].field, "spec.containers[0].ports[0].containerPort");
    let p = pod(json!({"containers": [{"name": "app", "image": "nginx", "ports": [{"name": "http"}]}]}));
    // k8s-openapi reads an absent required number as 0; the rules then report it as upstream does.
    assert_eq!(errors("", "Pod", p), ["spec.containers[0].ports[0].containerPort: Required value"]);
    let svc = service(json!({"ports": [{"port": 80, "targetPort": true}]}));
    assert_eq!(type_errors("", "Service", &svc)[0].field, "spec.ports[0].targetPort");
    // Bare numbers are fine where quantities go.
    let p = pod(json!({"containers": [{"name": "app", "image": "nginx", "resources": {"limits": {"cpu": 2}}}]}));
    assert!(type_errors("", "Pod", &p).is_empty());
}

#[test]
fn every_served_kind_checks_its_name() {
    for r in crate::resources::builtin().iter().filter(|r| r.kind != "Binding") {
        let bad = json!({"metadata": {"name": "Not_Valid"}});
        let e = validate(&r.group, &r.kind, &bad, None);
        assert!(e.iter().any(|e| e.field == "metadata.name"), "{}/{}: {e:?}", r.group, r.kind);
    }
}

#[test]
fn unknown_kinds_have_no_rules() {
    assert!(validate("example.com", "Widget", &json!({"metadata": {"name": "Not_Valid"}, "spec": 7}), None).is_empty());
}

#[test]
fn error_kinds_print_like_upstream() {
    use super::{FieldError, Path};
    assert_eq!(FieldError::required(Path::new("spec").child("x"), "").to_string(), "spec.x: Required value");
    assert_eq!(FieldError::duplicate(Path::new("a").index(1).child("name"), "n").to_string(), "a[1].name: Duplicate value: \"n\"");
    assert_eq!(FieldError::too_long(Path::new("data"), 10).to_string(), "data: Too long: may not be more than 10 bytes");
    assert_eq!(FieldErrorKind::NotSupported.cause(), "FieldValueNotSupported");
}
