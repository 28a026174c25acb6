//! The README's "Walkthrough: your first hour", run as a user runs it (root): every line of
//! the `sh` blocks between `<!-- walkthrough:begin -->` and `<!-- walkthrough:end -->`, in
//! order, in a shell on the node (the cluster's node network namespace) with the real
//! kubectl, checking what each prints. The example images come from the walkthrough's own
//! `scripts/example-registry.sh up`, run on the node's loopback with its directories in the
//! test's tempdir, and reach the cluster through the `docker.io/hosts.toml` mirror it writes
//! into the cluster's `--hosts-dir`. A README line the test does not know fails the test
//! (checked without root too), so the README and the test cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use test_support::bins::workspace_bin;
use test_support::cluster::{Cluster, NODE, Options};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The command lines of the README's walkthrough section, in order.
fn walkthrough_lines() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let begin = readme.find("<!-- walkthrough:begin -->").expect("README.md has no <!-- walkthrough:begin --> marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("README.md has no <!-- walkthrough:end --> marker");
    assert!(begin < end, "README.md's walkthrough markers are out of order");
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in readme[begin..end].lines() {
        let t = line.trim_end();
        if in_sh {
            if t.starts_with("```") {
                in_sh = false;
            } else if !t.trim().is_empty() && !t.trim_start().starts_with('#') {
                lines.push(t.trim().to_string());
            }
        } else if t.starts_with("```") {
            assert!(t == "```sh" || t == "```", "the walkthrough's code blocks are sh blocks (or plain text), not {t:?}");
            in_sh = t == "```sh";
        }
    }
    lines
}

/// What the test checks after a walkthrough line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `NAME=value`: the test keeps it for the next lines.
    Export,
    /// `NAME=$(command)`: the command's output is kept as NAME.
    Capture,
    /// The command succeeds and prints all of these.
    Prints(&'static [&'static str]),
    RegistryUp,
    RegistryDown,
    /// `kubectl get pods -l ...`: this many Running pods.
    RunningPods(usize),
    /// Rerun until the output holds this (the proxy and DNS follow the API a moment later).
    Eventually(&'static str),
    /// The requests through the hello Service reach both replicas, all answering v1.
    BothReplicas,
    /// One request through the hello Service answers the version the rollout steps expect.
    HelloVersion,
    Rollout,
    /// `kubectl get all` until no pod, ReplicaSet or Deployment is left.
    NothingLeft,
}

/// The check for a README line; None for a line the test does not know.
fn check(line: &str) -> Option<Check> {
    use Check::*;
    Some(match line {
        "export KUBECONFIG=/var/lib/kubelet-rs/admin.kubeconfig" => Export,
        "scripts/example-registry.sh up" => RegistryUp,
        "scripts/example-registry.sh down" => RegistryDown,
        "tar -C /var/lib/kubelet-rs-registry/images/hello-1.0 -cf /tmp/hello-1.0.tar ." => Prints(&[]),
        "target/release/kubelet-rs image import /tmp/hello-1.0.tar --name hello:1.0" => Prints(&["docker.io/library/hello:1.0"]),
        "target/release/kubelet-rs image list" => Prints(&["docker.io/library/hello:1.0"]),
        "kubectl cluster-info" => Prints(&["Kubernetes control plane is running at"]),
        "kubectl get nodes" => Prints(&[NODE, " Ready "]),
        "kubectl get pods" => Prints(&[]),
        "kubectl get namespaces" => Prints(&["default", "kube-system"]),
        "kubectl run nginx --image=nginx" => Prints(&["pod/nginx created"]),
        "kubectl wait --for=condition=Ready pod/nginx --timeout=120s" => Prints(&["pod/nginx condition met"]),
        "kubectl get pods -o wide" => Prints(&["nginx", "Running", "10.244.", NODE]),
        "kubectl describe pod nginx" => Prints(&["Image:", "nginx", "Events:", "Started"]),
        "kubectl exec nginx -- nginx -v" => Prints(&["nginx version: nginx/"]),
        "kubectl exec nginx -- hostname" => Prints(&["nginx"]),
        r#"kubectl exec nginx -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 127.0.0.1 80'"# => Prints(&["200 OK", "Welcome to nginx!"]),
        "kubectl logs nginx" => Prints(&["start worker process", "\"GET / HTTP/1.0\" 200"]),
        "kubectl delete pod nginx" => Prints(&["pod \"nginx\" deleted"]),
        "kubectl create deployment nginx-depl --image=nginx" => Prints(&["deployment.apps/nginx-depl created"]),
        "kubectl rollout status deployment/nginx-depl --timeout=120s" | "kubectl rollout status deployment/hello --timeout=120s" => {
            Prints(&["successfully rolled out"])
        }
        "kubectl get deployment" => Prints(&["nginx-depl", "1/1"]),
        "kubectl describe deployment nginx-depl" => Prints(&["Replicas:", "NewReplicaSet:", "nginx-depl-"]),
        "kubectl scale deployment nginx-depl --replicas=3" => Prints(&["deployment.apps/nginx-depl scaled"]),
        "kubectl get pods -l app=nginx-depl" => RunningPods(3),
        "kubectl expose deployment nginx-depl --port=8080 --target-port=80" => Prints(&["service/nginx-depl exposed"]),
        "kubectl get service nginx-depl" => Prints(&["nginx-depl", "8080/TCP"]),
        "NGINX_IP=$(kubectl get service nginx-depl -o jsonpath='{.spec.clusterIP}')" => Capture,
        "curl -s http://$NGINX_IP:8080/" => Eventually("Welcome to nginx!"),
        "kubectl run client --image=busybox -- sleep 3600" => Prints(&["pod/client created"]),
        "kubectl wait --for=condition=Ready pod/client --timeout=120s" => Prints(&["pod/client condition met"]),
        r#"kubectl exec client -- sh -c 'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 2 nginx-depl 8080'"# => Eventually("Welcome to nginx!"),
        "kubectl delete pod client --now" => Prints(&["pod \"client\" deleted"]),
        "cat examples/hello/app.py" => Prints(&["from flask import Flask", "socket.gethostname()"]),
        "kubectl apply -f examples/hello-deployment.yaml" => Prints(&["deployment.apps/hello created"]),
        "kubectl apply -f examples/hello-service.yaml" => Prints(&["service/hello created"]),
        "kubectl get pods -l app=hello -o wide" => RunningPods(2),
        "HELLO_IP=$(kubectl get service hello -o jsonpath='{.spec.clusterIP}')" => Capture,
        "for i in $(seq 10); do curl -s http://$HELLO_IP/; done" => BothReplicas,
        "kubectl set image deployment/hello hello=hello:2.0" | "kubectl rollout undo deployment/hello" => Rollout,
        "curl -s http://$HELLO_IP/" => HelloVersion,
        "kubectl rollout history deployment/hello" => Prints(&["REVISION", "1 ", "2 "]),
        "kubectl delete all --all" => Prints(&["deployment.apps \"hello\" deleted", "service \"hello\" deleted"]),
        "kubectl get all" => NothingLeft,
        _ => return None,
    })
}

#[test]
fn every_walkthrough_line_is_known_to_the_test() {
    let lines = walkthrough_lines();
    assert!(lines.len() > 30, "the walkthrough has only {} command lines: {lines:#?}", lines.len());
    let unknown: Vec<&String> = lines.iter().filter(|l| check(l).is_none()).collect();
    assert!(unknown.is_empty(), "README walkthrough lines kubelet/tests/walkthrough.rs does not know how to check: {unknown:#?}");
    for must in ["kubectl run nginx --image=nginx", "kubectl delete all --all", "scripts/example-registry.sh up"] {
        assert!(lines.iter().any(|l| l == must), "the walkthrough lost {must:?}");
    }
}

/// Runs the walkthrough's lines on the node, as a user in a root shell in the repository.
struct Walk<'a> {
    cluster: &'a Cluster,
    dir: &'a Path,
    vars: BTreeMap<String, String>,
    /// The version a request through the hello Service should answer after the last rollout step.
    hello_version: &'static str,
}

struct Ran {
    ok: bool,
    out: String,
}

impl Walk<'_> {
    fn registry_dir(&self) -> PathBuf {
        self.dir.join("registry")
    }

    fn hosts_toml(&self) -> PathBuf {
        self.dir.join("certs.d/docker.io/hosts.toml")
    }

    /// The line with the machine's paths replaced by the test's.
    fn translate(&self, line: &str) -> String {
        let bin = workspace_bin("kubelet-rs", "kubelet-rs");
        line.replace("/var/lib/kubelet-rs-registry", &self.registry_dir().display().to_string())
            .replace("/var/lib/kubelet-rs/admin.kubeconfig", &self.cluster.data_dir().join("admin.kubeconfig").display().to_string())
            .replace("/tmp/hello-1.0.tar", &self.dir.join("hello-1.0.tar").display().to_string())
            .replace("target/release/kubelet-rs image", &format!("{} image --root {}", bin.display(), self.cluster.data_dir().display()))
    }

    fn run(&self, line: &str) -> Ran {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.cluster.node.name, "timeout", "300", "sh", "-c", &self.translate(line)])
            .current_dir(repo())
            .envs(&self.vars)
            .env("HOME", self.dir.join("home"))
            .env("KUBECACHEDIR", self.dir.join("home/kube-cache"))
            .env("KRS_EXAMPLE_REGISTRY_DIR", self.registry_dir())
            .env("KRS_EXAMPLE_HOSTS_DIR", self.dir.join("certs.d"))
            .output()
            .expect("run sh");
        Ran { ok: out.status.success(), out: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)) }
    }

    fn ok(&self, line: &str) -> String {
        let r = self.run(line);
        if !r.ok {
            self.fail(&format!("walkthrough line failed: {line}\n{}", r.out));
        }
        r.out
    }

    /// Panic with `what`, the cluster's pods and events, and the tail of kubelet-rs's log.
    fn fail(&self, what: &str) -> ! {
        let log = self.cluster.log();
        // The whole log outlives the cluster's tempdir, for a look at what led here.
        let kept = std::env::temp_dir().join(format!("krs-walkthrough-{}.log", std::process::id()));
        let _ = std::fs::write(&kept, &log);
        eprintln!("walkthrough: kubelet-rs's whole log is in {}", kept.display());
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("{what}\n{}\nkubelet-rs log tail:\n{}", self.cluster.diagnose(), tail.join("\n"));
    }

    /// Rerun `line` until `good` holds for its output (up to `limit`); the last output.
    fn until(&self, line: &str, what: &str, limit: Duration, mut good: impl FnMut(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let r = self.run(line);
            if r.ok && good(&r.out) {
                return r.out;
            }
            if start.elapsed() > limit {
                self.fail(&format!("walkthrough line {line}: no {what} after {limit:?}; last output:\n{}", r.out));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn step(&mut self, line: &str) {
        eprintln!("walkthrough: {line}");
        let check = check(line).unwrap_or_else(|| panic!("README walkthrough line the test does not know: {line}"));
        match check {
            Check::Export => {
                let (name, value) = line.strip_prefix("export ").unwrap().split_once('=').unwrap();
                let value = self.translate(value);
                assert!(Path::new(&value).exists(), "{line}: {value} does not exist");
                self.vars.insert(name.into(), value);
            }
            Check::Capture => {
                let (name, command) = line.split_once('=').unwrap();
                let command = command.strip_prefix("$(").and_then(|c| c.strip_suffix(')')).expect("NAME=$(command)");
                let value = self.ok(command).trim().to_string();
                assert!(value.parse::<std::net::Ipv4Addr>().is_ok(), "{line} gave {value:?}, not an address");
                self.vars.insert(name.into(), value);
            }
            Check::Prints(wanted) => {
                let out = self.ok(line);
                for w in wanted {
                    assert!(out.contains(w), "walkthrough line {line}: no {w:?} in its output:\n{out}");
                }
            }
            Check::RegistryUp => {
                let out = self.ok(line);
                let hosts = std::fs::read_to_string(self.hosts_toml()).unwrap_or_else(|e| panic!("{line} wrote no {}: {e}\n{out}", self.hosts_toml().display()));
                assert!(hosts.contains("[host.\"http://127.0.0.1:5000\"]"), "{hosts}");
                for image in ["library/busybox:latest", "library/nginx:latest", "library/hello:1.0", "library/hello:2.0"] {
                    assert!(out.contains(&format!("pushed 127.0.0.1:5000/{image}")), "{line}: {image} not pushed:\n{out}");
                }
            }
            Check::RegistryDown => {
                let pid = std::fs::read_to_string(self.registry_dir().join("registry.pid")).expect("the registry's pid file");
                let out = self.ok(line);
                assert!(out.contains("stopped the registry"), "{out}");
                assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "the registry (pid {pid}) still runs after {line}");
                assert!(!self.hosts_toml().exists(), "{line} left {}", self.hosts_toml().display());
            }
            Check::RunningPods(n) => {
                let out = self.ok(line);
                let running = out.lines().filter(|l| l.contains(" Running ")).count();
                assert_eq!(running, n, "walkthrough line {line}: {n} Running pods expected:\n{out}");
            }
            Check::Eventually(wanted) => {
                self.until(line, wanted, Duration::from_secs(60), |out| out.contains(wanted));
            }
            Check::BothReplicas => {
                let pods = self.ok("kubectl get pods -l app=hello -o jsonpath='{.items[*].metadata.name}'");
                let pods: BTreeSet<String> = pods.split_whitespace().map(String::from).collect();
                assert_eq!(pods.len(), 2, "two hello pods expected: {pods:?}");
                let out = self.until(line, "answers from both replicas", Duration::from_secs(90), |out| {
                    let seen: BTreeSet<String> = out.lines().filter_map(|l| l.strip_prefix("Hello from ")?.strip_suffix(" (v1)")).map(String::from).collect();
                    seen == pods
                });
                let answers: Vec<&str> = out.lines().collect();
                assert_eq!(answers.len(), 10, "ten answers expected:\n{out}");
                assert!(answers.iter().all(|a| a.starts_with("Hello from hello-") && a.ends_with(" (v1)")), "{out}");
            }
            Check::Rollout => {
                let out = self.ok(line);
                if line.contains("set image") {
                    assert!(out.contains("deployment.apps/hello image updated"), "{out}");
                    self.hello_version = "v2";
                } else {
                    assert!(out.contains("deployment.apps/hello rolled back"), "{out}");
                    self.hello_version = "v1";
                }
            }
            Check::HelloVersion => {
                let suffix = format!(" ({})", self.hello_version);
                let out = self.until(line, &format!("answer{suffix}"), Duration::from_secs(60), |out| {
                    out.trim_end().ends_with(&suffix) && out.starts_with("Hello from hello-")
                });
                // Rolled out, the old pods are terminating: they leave the Service's ready
                // endpoints (and the proxy's rules) a moment later, then every answer is the
                // new version's.
                let mut streak = 0;
                self.until(line, &format!("five answers{suffix} in a row after {out:?}"), Duration::from_secs(30), |again| {
                    streak = if again.trim_end().ends_with(&suffix) { streak + 1 } else { 0 };
                    streak >= 5
                });
            }
            Check::NothingLeft => {
                self.until(line, "empty namespace", Duration::from_secs(120), |out| {
                    !out.lines().any(|l| l.starts_with("pod/") || l.starts_with("deployment.apps/") || l.starts_with("replicaset.apps/"))
                });
                let pods = self.ok("kubectl get pods -A -o name");
                assert!(!pods.contains("pod/"), "pods left after delete all: {pods}");
            }
        }
    }
}

/// Stops the example registry if the walkthrough fails before its `down`.
struct RegistryGuard<'a>(&'a Walk<'a>);

impl Drop for RegistryGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("scripts/example-registry.sh down");
    }
}

#[test]
#[ignore = "needs root"]
fn the_readme_walkthrough_runs_as_written() {
    let lines = walkthrough_lines();
    let unknown: Vec<&String> = lines.iter().filter(|l| check(l).is_none()).collect();
    assert!(unknown.is_empty(), "README walkthrough lines the test does not know: {unknown:#?}");
    let dir = tempfile::Builder::new().prefix("krs-test-walkthrough.").tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs.d")).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    let cluster = Cluster::start_with_options(Options { hosts_dir: Some(dir.path().join("certs.d")), ..Options::default() });
    let mut walk = Walk { cluster: &cluster, dir: dir.path(), vars: BTreeMap::new(), hello_version: "v1" };
    {
        let guard_walk = Walk { cluster: &cluster, dir: dir.path(), vars: BTreeMap::new(), hello_version: "v1" };
        let _guard = RegistryGuard(&guard_walk);
        for line in &lines {
            walk.step(line);
        }
    }
}
