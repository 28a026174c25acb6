//! The measure of done: the installed kubectl (1.33, picked from the server's /version) works
//! against `apiserver-lite` with nothing but the admin kubeconfig the server writes.

mod common;

use common::{Kubectl, ServerProcess};

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: nginx:1.27
    ports:
    - containerPort: 80
";

#[test]
fn kubectl_works_as_against_any_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());

    let v = k.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33", "{v}");

    let out = k.ok(&["get", "namespaces"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(out.contains(ns), "{out}");
    }
    assert!(out.starts_with("NAME"), "a table: {out}");

    assert!(k.apply(POD).contains("pod/web created"));
    let out = k.ok(&["get", "pods"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("web"), "{out}");
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");
    let yaml = k.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(yaml.contains("restartPolicy: Always") && yaml.contains("imagePullPolicy: IfNotPresent"), "defaults: {yaml}");

    // apply again with another image: a strategic merge patch.
    assert!(k.apply(&POD.replace("nginx:1.27", "nginx:1.28")).contains("pod/web configured"));
    assert_eq!(k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}"]), "nginx:1.28");

    assert!(k.ok(&["label", "pod", "web", "tier=front"]).contains("pod/web labeled"));
    assert!(k.ok(&["get", "pods", "-l", "tier=front", "-o", "name"]).contains("pod/web"));

    k.ok(&["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=2"]);
    let cm = k.ok(&["get", "configmap", "cfg"]);
    assert!(cm.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("2"), "DATA column: {cm}");
    k.ok(&["create", "secret", "generic", "s", "--from-literal=p=x"]);
    assert!(k.ok(&["get", "secret", "s", "-o", "jsonpath={.type}"]) == "Opaque");

    k.ok(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2"]);
    assert!(k.ok(&["scale", "deployment", "web", "--replicas=3"]).contains("deployment.apps/web scaled"));
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    k.ok(&["patch", "deployment", "web", "-p", r#"{"spec":{"replicas":1}}"#]);
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");
    let deploy = k.ok(&["get", "deployments"]);
    assert!(deploy.lines().next().unwrap().contains("UP-TO-DATE"), "{deploy}");

    // The walkthrough's other creators: typed (protobuf bodies) and generated (JSON) ones.
    assert!(k.ok(&["create", "namespace", "team"]).contains("namespace/team created"));
    assert!(k.ok(&["run", "nginx", "--image=nginx", "-n", "team"]).contains("pod/nginx created"));
    assert!(k.ok(&["expose", "deployment", "web", "--port=8080", "--target-port=80"]).contains("service/web exposed"));
    let svc = k.ok(&["get", "svc", "web"]);
    assert!(svc.contains("ClusterIP") && svc.contains("8080/TCP"), "{svc}");
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let np = k.ok(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert!((30000..=32767).contains(&np.parse::<u32>().unwrap()), "{np}");
    k.ok(&["create", "job", "hello", "--image=busybox", "--", "echo", "hi"]);
    assert!(k.ok(&["get", "jobs"]).contains("hello"));
    assert!(k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.28"]).contains("image updated"));

    let explain = k.ok(&["explain", "pods.spec.containers"]);
    assert!(explain.contains("FIELD") || explain.contains("DESCRIPTION"), "{explain}");
    let all = k.ok(&["get", "all"]);
    assert!(all.contains("pod/web") && all.contains("deployment.apps/web") && all.contains("service/kubernetes"), "{all}");

    let describe = k.ok(&["describe", "pod", "web"]);
    assert!(describe.contains("Name:") && describe.contains("web"), "{describe}");

    // A crash loses nothing acknowledged.
    let mut server = server;
    server.kill();
    server.spawn();
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");
    assert!(k.ok(&["get", "configmaps"]).contains("cfg"));

    assert!(k.ok(&["delete", "pod", "web"]).contains("pod \"web\" deleted"));
    let gone = k.run(&["get", "pod", "web"]);
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{}", gone.stderr);
    let bad = k.run_with_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    imagee: x\n");
    assert!(!bad.ok && bad.stderr.contains("imagee"), "strict field validation names the field: {}", bad.stderr);
}

#[test]
fn kubectl_get_watch_streams_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    let (stdout, stderr) = k.watch_during("configmaps", || {
        k.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    });
    assert!(stdout.lines().any(|l| l.contains("ADDED") && l.contains("watched")), "stdout: {stdout}\nstderr: {stderr}");
}

#[test]
fn requests_without_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let url = format!("https://127.0.0.1:{}/api/v1/namespaces", server.port);
    let out = std::process::Command::new("curl").args(["-sk", &url]).output().expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a Status");
    assert_eq!((body["code"].as_i64(), body["reason"].as_str()), (Some(401), Some("Unauthorized")), "{body}");
}

#[test]
fn server_side_apply_takes_over_from_client_side_apply() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let k = Kubectl::new(&server.kubeconfig());
    k.apply(POD);
    // kubectl migrates the client-side apply's ownership and re-applies: no warning, no refusal.
    for _ in 0..2 {
        let o = k.run_with_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], POD);
        assert!(o.ok && o.stdout.contains("serverside-applied") && !o.stderr.contains("Warning"), "{}\n{}", o.stdout, o.stderr);
    }
    // Another manager takes a field; a plain server-side apply then conflicts, naming it.
    k.ok(&["label", "pod", "web", "app=other", "--overwrite"]);
    let o = k.run_with_stdin(&["apply", "--server-side", "-f", "-"], POD);
    assert!(!o.ok && o.stderr.contains("conflict") && o.stderr.contains(".metadata.labels.app"), "{}", o.stderr);
}

#[test]
fn a_node_kubeconfig_reads_pods_and_writes_only_its_own_node() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let node_config = dir.path().join("node-1.kubeconfig");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apiserver-lite"))
        .args(["node-kubeconfig", "--data-dir"])
        .arg(dir.path())
        .args(["--node", "node-1", "--server", &format!("https://127.0.0.1:{}", server.port), "--out"])
        .arg(&node_config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let node = Kubectl::new(&node_config);
    node.ok(&["get", "pods", "-A"]);
    node.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n");
    let other = node.run_with_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-2\n");
    assert!(!other.ok && other.stderr.contains("Forbidden"), "{}", other.stderr);
    let cm = node.run_with_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n");
    assert!(!cm.ok && cm.stderr.contains("cannot"), "{}", cm.stderr);
}
