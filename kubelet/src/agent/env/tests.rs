use super::services::tests::service;
use super::*;
use crate::agent::volumes::objects::FakeObjects;
use serde_json::json;

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}, "annotations": {"team": "x"}},
        "spec": spec,
    }))
    .unwrap()
}

fn container(pod: &Pod) -> Container {
    pod.spec.as_ref().unwrap().containers[0].clone()
}

fn ctx() -> EnvContext {
    EnvContext {
        pod_ips: vec!["10.1.0.5".into(), "fd00::5".into()],
        host_ips: vec!["192.168.1.2".into()],
        node_allocatable: [
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
        ]
        .into(),
    }
}

async fn run(objects: &FakeObjects, spec: serde_json::Value) -> Result<ResolvedEnv, EnvError> {
    let pod = pod(spec);
    resolve(&pod, &container(&pod), &ctx(), objects).await
}

fn get<'a>(env: &'a ResolvedEnv, name: &str) -> Option<&'a str> {
    env.vars
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn env_overrides_env_from_and_references_see_earlier_values() {
    let objects = FakeObjects::default();
    objects.add_config_map(
        "ns",
        "cfg",
        &[("A", "from-cm"), ("B", "b"), ("bad=key", "x")],
    );
    objects.add_secret("ns", "sec", &[("PASS", b"hunter2")]);
    let env = run(
        &objects,
        json!({"enableServiceLinks": false, "containers": [{"name": "c", "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "sec"}, "prefix": "S_"},
            {"configMapRef": {"name": "missing", "optional": true}},
        ], "env": [
            {"name": "A", "value": "own-$(B)"},
            {"name": "C", "value": "$(S_PASS)/$(NOPE)/$$(B)"},
        ]}]}),
    )
    .await
    .unwrap();
    assert_eq!(get(&env, "A"), Some("own-b"));
    assert_eq!(get(&env, "S_PASS"), Some("hunter2"));
    assert_eq!(get(&env, "C"), Some("hunter2/$(NOPE)/$(B)"));
    assert_eq!(get(&env, "bad=key"), None);
    assert_eq!(env.warnings.len(), 1, "{:?}", env.warnings);
    assert!(env.warnings[0].contains("bad=key"));
    // The overriding definition keeps its first position.
    assert_eq!(env.vars[0].0, "A");
}

#[tokio::test]
async fn missing_objects_and_keys_are_named() {
    let objects = FakeObjects::default();
    objects.add_config_map("ns", "cfg", &[("A", "1")]);
    objects.add_secret("ns", "sec", &[("A", b"1")]);
    let err = |spec| async { run(&objects, spec).await.unwrap_err().to_string() };
    assert_eq!(
        err(json!({"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}]}]}))
            .await,
        "configmap \"x\" not found"
    );
    assert_eq!(
        err(json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "x"}}]}]}))
            .await,
        "secret \"x\" not found"
    );
    assert_eq!(
        err(json!({"containers": [{"name": "c", "env": [{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}]})).await,
        "couldn't find key k in ConfigMap ns/cfg"
    );
    assert_eq!(
        err(json!({"containers": [{"name": "c", "env": [{"name": "V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}]}]})).await,
        "couldn't find key k in Secret ns/sec"
    );
    let env = run(
        &objects,
        json!({"containers": [{"name": "c", "env": [
            {"name": "V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k", "optional": true}}},
            {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "A"}}},
        ]}]}),
    )
    .await
    .unwrap();
    assert_eq!(get(&env, "V"), None);
    assert_eq!(get(&env, "W"), None);
    assert_eq!(get(&env, "X"), Some("1"));
}

#[tokio::test]
async fn downward_fields_and_resources() {
    let objects = FakeObjects::default();
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let resource = |name: &str, r: &str, divisor: Option<&str>| json!({"name": name, "valueFrom": {"resourceFieldRef": {"resource": r, "divisor": divisor}}});
    let env = run(
        &objects,
        json!({"nodeName": "n1", "serviceAccountName": "sa", "containers": [{"name": "c",
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}},
            "env": [
                field("NAME", "metadata.name"), field("NS", "metadata.namespace"), field("UID", "metadata.uid"),
                field("APP", "metadata.labels['app']"), field("TEAM", "metadata.annotations['team']"),
                field("NODE", "spec.nodeName"), field("SA", "spec.serviceAccountName"),
                field("HOST", "status.hostIP"), field("IP", "status.podIP"), field("IPS", "status.podIPs"),
                resource("MEM", "limits.memory", Some("1Mi")), resource("CPU_LIMIT", "limits.cpu", None),
                resource("CPU_REQ", "requests.cpu", Some("1m")), resource("CPU_REQ_CORES", "requests.cpu", None),
            ]}]}),
    )
    .await
    .unwrap();
    let expected = [
        ("NAME", "p"),
        ("NS", "ns"),
        ("UID", "u-1"),
        ("APP", "web"),
        ("TEAM", "x"),
        ("NODE", "n1"),
        ("SA", "sa"),
        ("HOST", "192.168.1.2"),
        ("IP", "10.1.0.5"),
        ("IPS", "10.1.0.5,fd00::5"),
        ("MEM", "64"),
        ("CPU_LIMIT", "4"),
        ("CPU_REQ", "250"),
        ("CPU_REQ_CORES", "1"),
    ];
    for (name, value) in expected {
        assert_eq!(get(&env, name), Some(value), "{name}");
    }
    let err = run(
        &objects,
        json!({"containers": [{"name": "c", "env": [field("X", "spec.bogus")]}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "env X: unsupported fieldPath: spec.bogus");
}

#[tokio::test]
async fn service_variables_come_last_and_do_not_override() {
    let objects = FakeObjects::default();
    objects.add_service(service(
        "ns",
        "web",
        "10.0.0.5",
        &[(80, Some("http")), (443, None)],
    ));
    objects.add_service(service(
        "default",
        "kubernetes",
        "10.0.0.1",
        &[(443, Some("https"))],
    ));
    objects.add_service(service("other", "db", "10.0.0.7", &[(5432, None)]));
    let env = run(&objects, json!({"containers": [{"name": "c", "env": [{"name": "WEB_SERVICE_HOST", "value": "mine"}, {"name": "U", "value": "$(WEB_PORT)"}]}]}))
        .await
        .unwrap();
    assert_eq!(get(&env, "WEB_SERVICE_HOST"), Some("mine"));
    assert_eq!(get(&env, "U"), Some("tcp://10.0.0.5:80"));
    assert_eq!(get(&env, "WEB_SERVICE_PORT_HTTP"), Some("80"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
    assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
    assert_eq!(get(&env, "DB_SERVICE_HOST"), None);
    let off = run(
        &objects,
        json!({"enableServiceLinks": false, "containers": [{"name": "c"}]}),
    )
    .await
    .unwrap();
    assert_eq!(get(&off, "WEB_SERVICE_HOST"), None);
    assert_eq!(get(&off, "KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
}
