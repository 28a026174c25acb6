//! End to end with the real kubectl against `kubelet-rs --apiserver` (root): pods from the
//! loopback registry run and behave as on a real cluster — logs, exec (with a TTY),
//! port-forward, describe, delete; crash loops back off; probes restart and unready
//! containers; configMap updates reach the files; a killed agent adopts its pods again.

mod common;

use std::time::Duration;

use common::cluster::Cluster;

/// A pod running `script` in busybox.
fn pod(cluster: &Cluster, name: &str, script: &str, extra_container: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  terminationGracePeriodSeconds: 2\n{extra_spec}  containers:\n  - name: main\n    image: {}\n    command: [sh, -c, '{script}']\n{extra_container}",
        cluster.busybox
    )
}

#[test]
#[ignore = "needs root"]
fn a_pod_from_the_registry_runs_and_kubectl_sees_it() {
    let cluster = Cluster::start();
    let yaml = pod(&cluster, "hello", "echo hello from kubelet-rs; mkdir -p /www; echo served > /www/index.html; exec httpd -f -p 8080 -h /www", "    ports: [{containerPort: 8080}]\n", "");
    cluster.kubectl.apply(&yaml);
    cluster.wait_phase("hello", "Running", Duration::from_secs(60));
    cluster.wait_for("the pod's log", Duration::from_secs(20), || cluster.kubectl.run(&["logs", "hello"]).stdout.contains("hello from kubelet-rs"));
    cluster.wait_for("the pod to be Ready", Duration::from_secs(20), || cluster.pod_field("hello", "{.status.conditions[?(@.type==\"Ready\")].status}") == "True");
    assert_eq!(cluster.pod_field("hello", "{.status.containerStatuses[0].ready}"), "true");
    assert!(cluster.pod_field("hello", "{.status.containerStatuses[0].containerID}").starts_with("kubelet-rs://"));
    assert!(!cluster.pod_field("hello", "{.status.podIP}").is_empty());

    // exec, and exec with a TTY: script(1) gives kubectl a terminal, sized 40x100, whose
    // size kubectl sends on. Its stdin is at its end at once (script passes the end on as
    // ^D, which kubectl reads as the end of its input or, in raw mode, forwards): either
    // way kubectl must get the exit status, not a cut connection.
    assert_eq!(cluster.kubectl.ok(&["exec", "hello", "--", "cat", "/etc/hostname"]).trim(), "hello");
    let out = cluster.kubectl.run_with_stdin(&["exec", "-i", "hello", "--", "sh", "-c", "read line; echo got $line"], "ping\n");
    assert!(out.stdout.contains("got ping"), "{}{}", out.stdout, out.stderr);
    // The resize may reach the terminal after the shell started. script(1) runs the line
    // with $SHELL, pinned to sh as on a machine without SHELL set; `timeout` must keep
    // kubectl in the terminal's foreground group (--foreground), or kubectl's switch to raw
    // mode stops it with SIGTTOU whenever the shell does not exec its last command.
    let shell = r#"tty; for i in $(seq 50); do s=$(stty size); [ "$s" = "40 100" ] && break; sleep 0.1; done; echo size=$s"#;
    let tty = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "stty rows 40 cols 100; timeout --foreground -k 5 30 kubectl --kubeconfig {} --cache-dir {} exec -it hello -- sh -c '{shell}'",
            cluster.kubectl.kubeconfig.display(),
            cluster.kubectl.cache.path().display()
        ))
        .arg("/dev/null")
        .env("SHELL", "/bin/sh")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let tty_out = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "exec -it failed ({}): {tty_out} {}", tty.status, String::from_utf8_lossy(&tty.stderr));
    assert!(tty_out.contains("/dev/pts/"), "exec -it did not get a terminal: {tty_out} {}", String::from_utf8_lossy(&tty.stderr));
    assert!(tty_out.contains("size=40 100"), "the terminal's size did not reach the container: {tty_out}");

    // port-forward from the host to the pod's port 8080.
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut forward = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubectl.kubeconfig)
        .arg("--cache-dir")
        .arg(cluster.kubectl.cache.path())
        .args(["port-forward", "pod/hello", &format!("{local}:8080")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut served = String::new();
    cluster.wait_for("port-forward to answer", Duration::from_secs(20), || {
        served = test_support::http::get(&format!("http://127.0.0.1:{local}/index.html"), &[]).map(|r| String::from_utf8_lossy(&r.body).into_owned()).unwrap_or_default();
        served.contains("served")
    });
    unsafe { libc::kill(forward.id() as i32, libc::SIGTERM) };
    let _ = forward.wait();

    // describe shows the kubelet's events in order.
    let describe = cluster.kubectl.ok(&["describe", "pod", "hello"]);
    for reason in ["Scheduled", "Pulling", "Pulled", "Created", "Started"] {
        assert!(describe.contains(reason), "describe lacks {reason}:\n{describe}");
    }
    assert!(describe.lines().any(|l| l.starts_with("Status:") && l.trim_end().ends_with("Running")), "{describe}");

    // Bad YAML is refused with the server's message, and nothing is created.
    let bad = cluster.kubectl.run_with_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n");
    assert!(!bad.ok);
    assert!(bad.stderr.contains("spec.containers[0].image: Required value"), "{}", bad.stderr);

    // Delete waits for the kubelet to stop the container (grace period 2 s) and finish.
    cluster.kubectl.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
    assert!(!cluster.kubectl.run(&["get", "pod", "hello"]).ok);
}

#[test]
#[ignore = "needs root"]
fn the_node_registers_serves_metrics_and_runs_static_pods() {
    let cluster = Cluster::start();
    let node = common::cluster::NODE;
    let nodes = cluster.kubectl.ok(&["get", "nodes"]);
    assert!(nodes.contains(node) && nodes.contains("Ready") && nodes.contains("v1.33"), "{nodes}");
    let field = |path: &str| cluster.kubectl.ok(&["get", "node", node, "-o", &format!("jsonpath={path}")]);
    assert_eq!(field("{.metadata.labels.kubernetes\\.io/hostname}"), node);
    assert_eq!(field("{.metadata.labels.kubernetes\\.io/os}"), "linux");
    assert!(field("{.status.nodeInfo.containerRuntimeVersion}").starts_with("kubelet-rs://"));
    assert_eq!(field("{.spec.podCIDR}"), "10.244.0.0/24");
    assert!(!field("{.status.capacity.cpu}").is_empty() && !field("{.status.allocatable.memory}").is_empty());
    // Pressure conditions are reported (their value is the machine's: a test machine's disk
    // may well be under 10 % free, which is DiskPressure as upstream counts it).
    for (condition, no, yes) in [("MemoryPressure", "KubeletHasSufficientMemory", "KubeletHasInsufficientMemory"), ("DiskPressure", "KubeletHasNoDiskPressure", "KubeletHasDiskPressure"), ("PIDPressure", "KubeletHasSufficientPID", "KubeletHasInsufficientPID")] {
        let status = field(&format!("{{.status.conditions[?(@.type==\"{condition}\")].status}}"));
        let reason = field(&format!("{{.status.conditions[?(@.type==\"{condition}\")].reason}}"));
        assert!((status == "False" && reason == no) || (status == "True" && reason == yes), "{condition}: {status} {reason}");
    }
    // The Lease is renewed by the agent.
    let lease = cluster.kubectl.ok(&["get", "lease", "-n", "kube-node-lease", node, "-o", "jsonpath={.spec.holderIdentity}"]);
    assert_eq!(lease, node);

    // A static pod: run from the manifest folder, shown through its mirror pod.
    std::fs::create_dir_all(cluster.manifests()).unwrap();
    std::fs::write(
        cluster.manifests().join("static-web.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  containers:\n  - name: web\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n", cluster.busybox),
    )
    .unwrap();
    let mirror = format!("static-web-{node}");
    cluster.wait_phase(&mirror, "Running", Duration::from_secs(90));
    assert!(!cluster.pod_field(&mirror, "{.metadata.annotations.kubernetes\\.io/config\\.mirror}").is_empty());
    assert_eq!(cluster.pod_field(&mirror, "{.metadata.ownerReferences[0].kind}"), "Node");
    // Deleting the mirror does not stop the pod: it comes back.
    let first = cluster.pod_field(&mirror, "{.metadata.uid}");
    cluster.kubectl.ok(&["delete", "pod", &mirror, "--wait=false"]);
    cluster.wait_for("the mirror pod to come back", Duration::from_secs(60), || {
        let uid = cluster.pod_field(&mirror, "{.metadata.uid}");
        !uid.is_empty() && uid != first
    });
    // Removing the manifest stops the pod and removes the mirror.
    std::fs::remove_file(cluster.manifests().join("static-web.yaml")).unwrap();
    cluster.wait_for("the mirror pod to go", Duration::from_secs(60), || !cluster.kubectl.run(&["get", "pod", &mirror]).ok);

    // The kubelet API through the API server's node proxy: metrics and the stats summary.
    let metrics = cluster.kubectl.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/metrics")]);
    assert!(metrics.contains("kubelet_pod_start_duration_seconds_bucket"), "{metrics}");
    let summary = cluster.kubectl.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/stats/summary")]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["node"]["nodeName"], node);
    assert!(summary["node"]["memory"]["availableBytes"].as_u64().unwrap_or(0) > 0, "{summary}");
}

#[test]
#[ignore = "needs root"]
fn crash_loops_back_off_and_probes_restart_and_unready_containers() {
    let cluster = Cluster::start();
    cluster.kubectl.apply(&pod(&cluster, "crash", "echo crashing; exit 3", "", ""));
    let probes = "    livenessProbe: {exec: {command: [test, -f, /tmp/alive]}, periodSeconds: 1, failureThreshold: 1}\n    readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}\n";
    cluster.kubectl.apply(&pod(&cluster, "probed", "touch /tmp/alive; sleep 3600", probes, ""));

    // Readiness: not ready until the file exists.
    cluster.wait_phase("probed", "Running", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cluster.pod_field("probed", "{.status.conditions[?(@.type==\"Ready\")].status}"), "False");
    cluster.kubectl.ok(&["exec", "probed", "--", "touch", "/tmp/ready"]);
    cluster.wait_for("probed to be Ready", Duration::from_secs(20), || cluster.pod_field("probed", "{.status.conditions[?(@.type==\"Ready\")].status}") == "True");
    cluster.kubectl.ok(&["exec", "probed", "--", "rm", "/tmp/ready"]);
    cluster.wait_for("probed to be unready again", Duration::from_secs(20), || cluster.pod_field("probed", "{.status.containerStatuses[0].ready}") == "false");

    // Liveness: the container is restarted when its file goes.
    cluster.kubectl.ok(&["exec", "probed", "--", "rm", "/tmp/alive"]);
    cluster.wait_for("the liveness restart", Duration::from_secs(40), || cluster.pod_field("probed", "{.status.containerStatuses[0].restartCount}") == "1");
    // The kubelet writes its events from a queue, so they may land after the restart shows.
    cluster.wait_for("the liveness events", Duration::from_secs(20), || {
        let events = cluster.kubectl.ok(&["get", "events", "--field-selector", "involvedObject.name=probed"]);
        events.contains("Liveness probe failed") && events.contains("failed liveness probe, will be restarted")
    });

    // The crashing container: restarted with growing back-off, shown as CrashLoopBackOff.
    cluster.wait_for("CrashLoopBackOff", Duration::from_secs(60), || {
        cluster.pod_field("crash", "{.status.containerStatuses[0].state.waiting.reason}") == "CrashLoopBackOff"
            && cluster.pod_field("crash", "{.status.containerStatuses[0].restartCount}").parse::<u32>().unwrap_or(0) >= 2
    });
    assert_eq!(cluster.pod_field("crash", "{.status.containerStatuses[0].lastState.terminated.exitCode}"), "3");
    assert_eq!(cluster.pod_field("crash", "{.status.containerStatuses[0].lastState.terminated.reason}"), "Error");
    let message = cluster.pod_field("crash", "{.status.containerStatuses[0].state.waiting.message}");
    assert!(message.starts_with("back-off ") && message.contains("restarting failed container=main"), "{message}");
    // The delay grows: 10 s after the second exit, 20 s after the third.
    cluster.wait_for("the back-off to double", Duration::from_secs(60), || cluster.pod_field("crash", "{.status.containerStatuses[0].state.waiting.message}").starts_with("back-off 20s"));
    let get = cluster.kubectl.ok(&["get", "pod", "crash"]);
    assert!(get.contains("CrashLoopBackOff"), "{get}");
    assert!(cluster.kubectl.ok(&["logs", "crash", "--previous"]).contains("crashing"));
    let describe = cluster.kubectl.ok(&["describe", "pod", "crash"]);
    assert!(describe.contains("Back-off restarting failed container main"), "{describe}");
}

#[test]
#[ignore = "needs root"]
fn configmaps_secrets_and_the_downward_api_reach_the_pod() {
    let cluster = Cluster::start();
    cluster.kubectl.ok(&["create", "configmap", "cfg", "--from-literal=greeting=hello"]);
    cluster.kubectl.ok(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    let container = "    env:\n    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}\n    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: MESSAGE, value: \"$(GREETING) world\"}\n    volumeMounts:\n    - {name: cfg, mountPath: /etc/cfg}\n    - {name: creds, mountPath: /etc/creds}\n    - {name: info, mountPath: /etc/info}\n";
    let spec = "  volumes:\n  - {name: cfg, configMap: {name: cfg}}\n  - {name: creds, secret: {secretName: creds, defaultMode: 0400}}\n  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}\n";
    cluster.kubectl.apply(&pod(&cluster, "configured", "sleep 3600", container, spec));
    cluster.wait_phase("configured", "Running", Duration::from_secs(60));
    let exec = |cmd: &str| cluster.kubectl.ok(&["exec", "configured", "--", "sh", "-c", cmd]);
    assert_eq!(exec("cat /etc/cfg/greeting"), "hello");
    assert_eq!(exec("cat /etc/creds/password"), "s3cret");
    assert_eq!(exec("stat -L -c %a /etc/creds/password").trim(), "400");
    assert_eq!(exec("cat /etc/info/labels").trim(), "app=\"configured\"");
    assert_eq!(exec("echo $GREETING/$MESSAGE").trim(), "hello/hello world");
    assert_eq!(exec("echo $POD_IP").trim(), cluster.pod_field("configured", "{.status.podIP}"));
    // The service variables of the `kubernetes` service.
    assert!(exec("env").contains("KUBERNETES_SERVICE_HOST="));

    // An update of the ConfigMap reaches the file (atomically, through ..data).
    cluster.kubectl.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  greeting: bonjour\n");
    cluster.wait_for("the updated ConfigMap in the pod", Duration::from_secs(60), || cluster.kubectl.run(&["exec", "configured", "--", "cat", "/etc/cfg/greeting"]).stdout == "bonjour");
    assert!(exec("readlink /etc/cfg/greeting").trim() == "..data/greeting");

    // A claim of the local-path class gets a volume on the node, and the pod's data lands there.
    cluster.kubectl.apply("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  storageClassName: local-path\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Mi}}\n");
    let claim_container = "    volumeMounts:\n    - {name: data, mountPath: /data}\n";
    let claim_spec = "  volumes:\n  - {name: data, persistentVolumeClaim: {claimName: data}}\n";
    cluster.kubectl.apply(&pod(&cluster, "stateful", "echo kept > /data/file; sleep 3600", claim_container, claim_spec));
    cluster.wait_phase("stateful", "Running", Duration::from_secs(60));
    assert_eq!(cluster.kubectl.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]), "Bound");
    let volume = cluster.kubectl.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let host_path = cluster.kubectl.ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"]);
    cluster.wait_for("the pod's write on the node", Duration::from_secs(20), || std::fs::read_to_string(std::path::Path::new(&host_path).join("file")).is_ok_and(|s| s == "kept\n"));

    // A pod whose ConfigMap key is missing waits with CreateContainerConfigError.
    let bad_env = "    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: cfg, key: nope}}}\n";
    cluster.kubectl.apply(&pod(&cluster, "misconfigured", "sleep 3600", bad_env, ""));
    cluster.wait_for("CreateContainerConfigError", Duration::from_secs(60), || cluster.pod_field("misconfigured", "{.status.containerStatuses[0].state.waiting.reason}") == "CreateContainerConfigError");
    assert_eq!(cluster.pod_field("misconfigured", "{.status.containerStatuses[0].state.waiting.message}"), "couldn't find key nope in ConfigMap default/cfg");
}

#[test]
#[ignore = "needs root"]
fn a_killed_agent_adopts_its_pods_and_deployments_run() {
    let mut cluster = Cluster::start();
    cluster.kubectl.apply(&pod(&cluster, "survivor", "sleep 3600", "", ""));
    cluster.wait_phase("survivor", "Running", Duration::from_secs(60));
    let id = cluster.pod_field("survivor", "{.status.containerStatuses[0].containerID}");
    let started = cluster.pod_field("survivor", "{.status.containerStatuses[0].state.running.startedAt}");

    cluster.kill9();
    cluster.spawn();
    cluster.wait_ready();
    // Give the agent a few syncs: the same container keeps running, not restarted.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(cluster.pod_field("survivor", "{.status.phase}"), "Running");
    assert_eq!(cluster.pod_field("survivor", "{.status.containerStatuses[0].containerID}"), id);
    assert_eq!(cluster.pod_field("survivor", "{.status.containerStatuses[0].restartCount}"), "0");
    assert_eq!(cluster.pod_field("survivor", "{.status.containerStatuses[0].state.running.startedAt}"), started);

    // A Deployment: the controllers, the scheduler and the agent together.
    cluster.kubectl.ok(&["create", "deployment", "web", "--image", &cluster.busybox, "--replicas=2", "--", "sleep", "3600"]);
    let status = cluster.kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let ready = cluster.kubectl.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]);
    assert_eq!(ready, "2");
}
