use serde_json::{json, Value};

use super::apply;

fn defaulted(group: &str, kind: &str, mut v: Value) -> Value {
    apply(group, kind, &mut v);
    // Defaulting twice changes nothing.
    let mut again = v.clone();
    apply(group, kind, &mut again);
    assert_eq!(again, v, "defaulting {kind} is not idempotent");
    v
}

#[test]
fn a_minimal_pod_gets_what_a_real_cluster_shows() {
    let pod = defaulted("", "Pod", json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    }));
    assert_eq!(pod["spec"], json!({
        "containers": [{
            "name": "nginx", "image": "nginx:1.27",
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent",
            "resources": {}
        }],
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": true,
        "priority": 0,
        "preemptionPolicy": "PreemptLowerPriority",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]
    }));
    assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
    assert!(pod["spec"].get("serviceAccountName").is_none(), "the service account is admission's, not defaulting's");
}

#[test]
fn pod_tolerations_are_not_added_twice_and_user_ones_are_kept() {
    let pod = defaulted("", "Pod", json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]}
    }));
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[0]["tolerationSeconds"], 60);
    assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
    // A blanket toleration covers both.
    let pod = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}], "tolerations": [{"operator": "Exists"}]}}));
    assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
}

#[test]
fn containers_probes_env_and_volumes() {
    let pod = defaulted("", "Pod", json!({
        "metadata": {"name": "p"},
        "spec": {
            "hostNetwork": true,
            "initContainers": [{"name": "init", "image": "busybox:latest"}],
            "containers": [{
                "name": "app", "image": "registry.local:5000/app",
                "ports": [{"containerPort": 8080, "protocol": "UDP"}],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "livenessProbe": {"httpGet": {"port": 8080}},
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                "lifecycle": {"preStop": {"httpGet": {"port": 8080, "path": "/quit"}}},
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}]
            }],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "app"}},
                {"name": "token", "secret": {"secretName": "t"}},
                {"name": "scratch"},
                {"name": "host", "hostPath": {"path": "/var/log"}}
            ]
        }
    }));
    let app = &pod["spec"]["containers"][0];
    assert_eq!(app["imagePullPolicy"], "Always");
    assert_eq!(pod["spec"]["initContainers"][0]["imagePullPolicy"], "Always");
    assert_eq!(pod["spec"]["initContainers"][0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(app["ports"][0], json!({"containerPort": 8080, "protocol": "UDP", "hostPort": 8080}));
    assert_eq!(app["env"][0]["valueFrom"]["fieldRef"], json!({"fieldPath": "spec.nodeName", "apiVersion": "v1"}));
    assert_eq!(app["livenessProbe"], json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}));
    assert_eq!(app["readinessProbe"]["periodSeconds"], 5);
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"], json!({"port": 8080, "path": "/quit", "scheme": "HTTP"}));
    let volumes = &pod["spec"]["volumes"];
    assert_eq!(volumes[0], json!({"name": "cfg", "configMap": {"name": "app", "defaultMode": 420}}));
    assert_eq!(volumes[1], json!({"name": "token", "secret": {"secretName": "t", "defaultMode": 420}}));
    assert_eq!(volumes[2], json!({"name": "scratch", "emptyDir": {}}));
    assert_eq!(volumes[3], json!({"name": "host", "hostPath": {"path": "/var/log", "type": ""}}));
}

#[test]
fn requests_default_to_limits_and_set_the_qos_class() {
    let guaranteed = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": 1, "memory": "128Mi"}}}]}}));
    assert_eq!(guaranteed["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "1", "memory": "128Mi"}}));
    assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
    let burstable = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]}}));
    assert_eq!(burstable["status"]["qosClass"], "Burstable");
}

#[test]
fn a_pod_with_a_status_keeps_it() {
    let pod = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}, "status": {"phase": "Running", "qosClass": "Burstable"}}));
    assert_eq!(pod["status"], json!({"phase": "Running", "qosClass": "Burstable"}));
}

#[test]
fn system_priority_classes_have_their_values() {
    let pod = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "system-node-critical", "containers": [{"name": "c", "image": "x"}]}}));
    assert_eq!(pod["spec"]["priority"], 2_000_001_000);
    let pod = defaulted("", "Pod", json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high", "containers": [{"name": "c", "image": "x"}]}}));
    assert!(pod["spec"].get("priority").is_none());
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
}

/// What a pod template's spec looks like once defaulted: no pod-only fields.
fn defaulted_template_spec() -> Value {
    json!({
        "containers": [{"name": "web", "image": "nginx", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "Always", "resources": {}}],
        "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "securityContext": {}, "schedulerName": "default-scheduler"
    })
}

#[test]
fn deployments() {
    let d = defaulted("apps", "Deployment", json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}}));
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
    assert_eq!(d["spec"]["template"]["spec"], defaulted_template_spec());
    let recreate = defaulted("apps", "Deployment", json!({"metadata": {"name": "web"}, "spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "selector": {}, "template": template()}}));
    assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(recreate["spec"]["replicas"], 0);
}

#[test]
fn replicasets_statefulsets_daemonsets() {
    let rs = defaulted("apps", "ReplicaSet", json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": template()}}));
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(rs["spec"]["template"]["spec"], defaulted_template_spec());

    let sts = defaulted("apps", "StatefulSet", json!({"metadata": {"name": "db"}, "spec": {"selector": {}, "serviceName": "db", "template": template(),
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}));
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
    assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"], json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"], "Filesystem");
    assert_eq!(sts["spec"]["volumeClaimTemplates"][0]["status"], json!({"phase": "Pending"}));
    let on_delete = defaulted("apps", "StatefulSet", json!({"metadata": {"name": "db"}, "spec": {"selector": {}, "updateStrategy": {"type": "OnDelete"}, "template": template()}}));
    assert_eq!(on_delete["spec"]["updateStrategy"], json!({"type": "OnDelete"}));

    let ds = defaulted("apps", "DaemonSet", json!({"metadata": {"name": "agent"}, "spec": {"selector": {}, "template": template()}}));
    assert_eq!(ds["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn jobs_and_cronjobs() {
    let mut t = template();
    t["spec"]["restartPolicy"] = json!("Never");
    let job = defaulted("batch", "Job", json!({"metadata": {"name": "pi", "uid": "1234-abcd"}, "spec": {"template": t.clone()}}));
    let spec = &job["spec"];
    assert_eq!((spec["completions"].clone(), spec["parallelism"].clone(), spec["backoffLimit"].clone()), (json!(1), json!(1), json!(6)));
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert!(spec.get("manualSelector").is_none());
    assert_eq!(spec["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "1234-abcd"}}));
    assert_eq!(
        spec["template"]["metadata"]["labels"],
        json!({"app": "web", "batch.kubernetes.io/controller-uid": "1234-abcd", "batch.kubernetes.io/job-name": "pi", "controller-uid": "1234-abcd", "job-name": "pi"})
    );
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(job["metadata"]["labels"]["job-name"], "pi", "a job without labels takes its pods'");

    let parallel = defaulted("batch", "Job", json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3, "template": t.clone()}}));
    assert!(parallel["spec"].get("completions").is_none());
    assert!(parallel["spec"].get("selector").is_none(), "no uid yet, no selector");

    let cj = defaulted("batch", "CronJob", json!({"metadata": {"name": "hello"}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": t}}}}));
    let spec = &cj["spec"];
    assert_eq!((spec["concurrencyPolicy"].clone(), spec["suspend"].clone()), (json!("Allow"), json!(false)));
    assert_eq!((spec["successfulJobsHistoryLimit"].clone(), spec["failedJobsHistoryLimit"].clone()), (json!(3), json!(1)));
    assert_eq!(spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none(), "job defaults apply when the job is made");
}

#[test]
fn services() {
    let svc = defaulted("", "Service", json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}}));
    assert_eq!(svc["spec"], json!({
        "selector": {"app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}, {"port": 443, "targetPort": "https", "protocol": "TCP"}],
        "sessionAffinity": "None", "type": "ClusterIP", "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]
    }));
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
    let np = defaulted("", "Service", json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}));
    assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
    let lb = defaulted("", "Service", json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}));
    assert_eq!((lb["spec"]["externalTrafficPolicy"].clone(), lb["spec"]["allocateLoadBalancerNodePorts"].clone()), (json!("Cluster"), json!(true)));
    let ext = defaulted("", "Service", json!({"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}));
    assert!(ext["spec"].get("ipFamilies").is_none() && ext["spec"].get("internalTrafficPolicy").is_none());
    let sticky = defaulted("", "Service", json!({"metadata": {"name": "s"}, "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}));
    assert_eq!(sticky["spec"]["sessionAffinityConfig"], json!({"clientIP": {"timeoutSeconds": 10800}}));
}

#[test]
fn namespaces_secrets_volumes_slices() {
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "team-a"}}));
    assert_eq!(ns["metadata"]["labels"], json!({"kubernetes.io/metadata.name": "team-a"}));
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));

    let s = defaulted("", "Secret", json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"password": "hunter2"}}));
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"a": "eA==", "password": "aHVudGVyMg=="}));
    assert!(s.get("stringData").is_none());

    let pvc = defaulted("", "PersistentVolumeClaim", json!({"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}));
    assert_eq!((pvc["spec"]["volumeMode"].clone(), pvc["status"]["phase"].clone()), (json!("Filesystem"), json!("Pending")));
    let pv = defaulted("", "PersistentVolume", json!({"metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}}));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");

    let slice = defaulted("discovery.k8s.io", "EndpointSlice", json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]}));
    assert_eq!(slice["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));

    let node = defaulted("", "Node", json!({"metadata": {"name": "n"}, "status": {"capacity": {"cpu": "2", "pods": "110"}}}));
    assert_eq!(node["status"]["allocatable"], json!({"cpu": "2", "pods": "110"}));
}

#[test]
fn unknown_kinds_and_mistyped_objects_are_left_alone() {
    let widget = json!({"metadata": {"name": "w"}, "spec": {}});
    assert_eq!(defaulted("example.com", "Widget", widget.clone()), widget);
    let bad = json!({"metadata": {"name": "web"}, "spec": {"replicas": "three", "selector": {}, "template": template()}});
    assert_eq!(defaulted("apps", "Deployment", bad.clone()), bad);
}
