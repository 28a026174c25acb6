//! `scripts/install.sh`, the provisioning Vagrant runs, tested on this machine: installed
//! with `--root` into a temporary folder (files only), checked file by file, run again to
//! see that nothing changes, and then the installed unit's own `ExecStart` is started (paths
//! under the folder, plus the directories and registry a test needs) in a network namespace
//! of the test, where the real kubectl must see the node Ready and a pod Running. A worker's
//! install from the join material that run wrote is checked too, and bad options.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::bins::workspace_bin;
use test_support::cri_service::{CriService, remove_all_pods};
use test_support::kubectl::Kubectl;
use test_support::netns::TestNetns;
use test_support::registry::{Auth, Registry};
use test_support::relay::Relay;
use test_support::{CgroupParent, mounts_under, require_root};

const NODE: &str = "krs-prov";
const NODE_IP: &str = "192.168.78.1";
const GATEWAY_IP: &str = "192.168.78.2";
const WORKER_IP: &str = "192.168.78.3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh")
}

/// The workspace's binaries, built, in one folder (what `--bin-dir` takes).
fn bin_dir() -> PathBuf {
    for (package, bin) in [("runtime-rs", "runtime-rs"), ("apiserver-lite", "apiserver-lite"), ("cni", "krs-proxy"), ("cni", "krs-bridge"), ("cni", "krs-host-local"), ("cni", "krs-portmap")] {
        workspace_bin(package, bin);
    }
    workspace_bin("kubelet-rs", "kubelet-rs").parent().unwrap().to_path_buf()
}

/// `sh scripts/install.sh ARGS` with `env`; its output, whatever its status.
fn install(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new("sh").arg(script()).args(args).envs(env.iter().copied()).stdin(Stdio::null()).output().expect("run sh scripts/install.sh");
    eprintln!("install.sh {args:?}:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn install_ok(args: &[&str]) -> String {
    let out = install(args, &[]);
    assert!(out.status.success(), "install.sh {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails, naming `needle` in its error.
fn install_fails(args: &[&str], needle: &str) {
    let out = install(args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "install.sh {args:?} succeeded");
    assert!(stderr.contains("install.sh: error:") && stderr.contains(needle), "install.sh {args:?}: the error does not name {needle:?}: {stderr}");
}

type Snapshot = BTreeMap<PathBuf, (Vec<u8>, u64, i64, i64, u32, u32, u32)>;

/// Every file and folder under `root` but `skip` (a running node's data): its content
/// (files) and metadata that a rewrite would change (inode, mtime, mode, owner).
fn snapshot(root: &Path, skip: &[&str]) -> Snapshot {
    let mut all = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if skip.iter().any(|s| path == root.join(s)) {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).unwrap();
            let content = if m.is_file() { std::fs::read(&path).unwrap() } else { Vec::new() };
            all.insert(path.clone(), (content, m.ino(), m.mtime(), m.mtime_nsec(), m.mode(), m.uid(), m.gid()));
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    all
}

/// The paths whose entries differ between two snapshots.
fn changed(before: &Snapshot, after: &Snapshot) -> Vec<PathBuf> {
    let paths: std::collections::BTreeSet<&PathBuf> = before.keys().chain(after.keys()).filter(|p| before.get(*p) != after.get(*p)).collect();
    paths.into_iter().cloned().collect()
}

/// What install.sh writes under the root, not kubelet-rs's data (`var/lib/kubelet-rs`) or
/// the test's files (`krs-test`).
const RUNTIME_DIRS: &[&str] = &["var/lib/kubelet-rs", "krs-test"];

/// The `Key=` line of a unit (the first).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("the unit has no {key}=:\n{unit}")).to_string()
}

/// The unit's ExecStart, split (install.sh writes no quoting).
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit_value(unit, "ExecStart");
    assert!(!line.contains(['"', '\'', '\\', '$', '%']), "ExecStart needs a real parser: {line}");
    line.split_whitespace().map(String::from).collect()
}

/// The `server:` of a kubeconfig (one cluster).
fn kubeconfig_server(text: &str) -> String {
    text.lines().find_map(|l| l.trim().strip_prefix("server:")).unwrap_or_else(|| panic!("no server: in\n{text}")).trim().trim_matches('"').to_string()
}

/// `systemd-analyze verify` on the unit, its ExecStart pointed at the installed binary.
fn systemd_verify(root: &Path, unit: &str) {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("systemd-analyze is not installed: the unit is not verified by systemd");
        return;
    }
    let dir = tempfile::Builder::new().prefix("krs-test-unit.").tempdir().unwrap();
    let rooted = unit.replace("ExecStart=/", &format!("ExecStart={}/", root.display()));
    std::fs::write(dir.path().join("kubelet-rs.service"), rooted).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no", "--recursive-errors=no"]).arg(dir.path().join("kubelet-rs.service")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify found problems in the unit: {stderr}");
}

#[test]
fn bad_options_are_named() {
    let root = tempfile::Builder::new().prefix("krs-test-prov.").tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    install_fails(&["--root", r, "--frobnicate"], "unknown option --frobnicate");
    install_fails(&["--root", r, "--role", "manager"], "--role must be control-plane or worker, not \"manager\"");
    install_fails(&["--root", r, "--role", "worker", "--node-ip", WORKER_IP, "--pod-cidr", "10.244.1.0/24"], "--role worker needs --join-dir");
    install_fails(&["--root", r, "--role", "worker", "--join-dir", r, "--pod-cidr", "10.244.1.0/24"], "--role worker needs --node-ip");
    install_fails(&["--root", r, "--role", "worker", "--join-dir", r, "--node-ip", WORKER_IP], "--role worker needs --pod-cidr");
    install_fails(&["--root", r, "--node-ip", "10.0.0"], "--node-ip: \"10.0.0\" is not an IPv4 address");
    install_fails(&["--root", r, "--pod-cidr", "10.244.1.0"], "--pod-cidr: \"10.244.1.0\" is not an IPv4 CIDR");
    install_fails(&["--root", r, "--workers", "2"], "--workers/--worker-names need --join-dir");
    install_fails(&["--root", r, "--workers", "two", "--join-dir", r], "--workers: \"two\" is not a number");
    install_fails(&["--root", r, "--workers", "2", "--worker-ips", WORKER_IP, "--join-dir", r], "--worker-ips 192.168.78.3: one address per worker");
    install_fails(&["--root", r, "--bin-dir"], "--bin-dir needs a value");
    install_fails(&["--root", r, "--user", "nobody-here"], "--user nobody-here: no such user");
    install_fails(&["--root", "relative/dir"], "--root must be an absolute path");
    let empty = tempfile::tempdir().unwrap();
    install_fails(&["--root", r, "--no-kubectl", "--bin-dir", empty.path().to_str().unwrap()], &format!("{}/kubelet-rs is missing", empty.path().display()));
    // Nothing was installed by the failed runs.
    assert!(!root.path().join("etc").exists() && !root.path().join("usr").exists());
}

#[test]
fn a_cgroup_v1_or_hybrid_host_gets_a_warning_not_a_failure() {
    let bins = bin_dir();
    let bins = bins.to_str().unwrap();
    let root = tempfile::Builder::new().prefix("krs-test-prov.").tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let cgroup = tempfile::tempdir().unwrap();
    let mount = cgroup.path().to_str().unwrap();
    let args = ["--root", r, "--no-kubectl", "--bin-dir", bins];
    let out = install(&args, &[("KRS_CGROUP_MOUNT", mount)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("warning:") && stderr.contains("not a cgroup v2 (unified) hierarchy") && stderr.contains("systemd.unified_cgroup_hierarchy=1"), "{stderr}");
    std::fs::write(cgroup.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
    let out = install(&args, &[("KRS_CGROUP_MOUNT", mount)]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning:"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cgroup v2 (unified): cpuset cpu io memory pids"));
}

/// The installed control plane's unit, running: `ExecStart` from the unit with the test's
/// directories added, in a network namespace with a veth to a "gateway" namespace, the
/// registry relayed onto its loopback, the API server relayed to the host.
struct RunningUnit {
    root: PathBuf,
    child: Child,
    kubectl: Kubectl,
    node: TestNetns,
    _gateway: TestNetns,
    _relays: Vec<Relay>,
    _cgroup: CgroupParent,
}

impl RunningUnit {
    fn start(root: &Path, argv: &[String], registry: &Registry) -> RunningUnit {
        let (node, gateway) = test_support::netns::node_with_uplink(NODE_IP, GATEWAY_IP);
        let registry_addr: std::net::SocketAddr = registry.host.parse().unwrap();
        let mut relays = vec![Relay::start(Some(&node.path()), registry_addr.port(), None, registry_addr)];
        let cgroup = CgroupParent::new();
        cgroup.enable_controllers();
        let test = root.join("krs-test");
        std::fs::create_dir_all(&test).unwrap();
        std::fs::write(test.join("resolv.conf"), format!("nameserver {GATEWAY_IP}\noptions timeout:1 attempts:1\n")).unwrap();
        let log = std::fs::File::create(test.join("kubelet-rs.log")).unwrap();
        // The unit's command line, its binary under the root; the data dir is the default
        // mapped under the root too, where install.sh looks for the admin kubeconfig.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", node.path().display()))
            .arg("--")
            .arg(format!("{}{}", root.display(), argv[0]))
            .args(argv[1..].iter().map(|a| if a.starts_with('/') { format!("{}{a}", root.display()) } else { a.clone() }))
            .arg("--data-dir")
            .arg(root.join("var/lib/kubelet-rs"))
            .arg("--state-dir")
            .arg(test.join("state"))
            .arg("--pod-log-dir")
            .arg(test.join("logs"))
            .arg("--cgroup-root")
            .arg(format!("/{}", cgroup.name))
            .arg("--resolv-conf")
            .arg(test.join("resolv.conf"))
            .arg("--insecure-registry")
            .arg(&registry.host)
            .env("KUBELET_RS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let api = Relay::start(None, 0, Some(&node.path()), format!("{NODE_IP}:6443").parse().unwrap());
        let kubeconfig = test.join("kubectl.kubeconfig");
        let mut unit = RunningUnit { root: root.to_path_buf(), child, kubectl: Kubectl::new(&kubeconfig), node, _gateway: gateway, _relays: Vec::new(), _cgroup: cgroup };
        let admin = root.join("var/lib/kubelet-rs/admin.kubeconfig");
        unit.wait_for("kubelet-rs to write its admin kubeconfig", Duration::from_secs(90), || admin.exists());
        // It names the node's address; the host reaches the server through the relay.
        let text = std::fs::read_to_string(&admin).unwrap();
        assert_eq!(kubeconfig_server(&text), format!("https://{NODE_IP}:6443"), "the admin kubeconfig does not name --node-ip:\n{text}");
        std::fs::write(&kubeconfig, text.replace(&format!("https://{NODE_IP}:6443"), &format!("https://{}", api.addr))).unwrap();
        relays.push(api);
        unit._relays = relays;
        unit
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("krs-test/kubelet-rs.log")).unwrap_or_default()
    }

    fn wait_for(&mut self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while !check() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kubelet-rs exited with {status} while waiting for {what}:\n{}", self.log());
            }
            let tail: Vec<String> = self.log().lines().rev().take(60).map(String::from).collect();
            assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}; kubelet-rs log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `{.status.conditions[?(@.type=="Ready")].status}` of the node or a pod (`kind`).
    fn field(&self, kind: &str, name: &str, jsonpath: &str) -> String {
        let o = self.kubectl.run(&["get", kind, name, "-o", &format!("jsonpath={jsonpath}")]);
        if o.ok { o.stdout.trim().to_string() } else { String::new() }
    }
}

impl Drop for RunningUnit {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > Duration::from_secs(20) {
                unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Pods outlive kubelet-rs (KillMode=process): remove them through a CRI service on
        // the same directories, then unmount what is left.
        let data = self.root.join("var/lib/kubelet-rs");
        let test = self.root.join("krs-test");
        let socket = test.join("cleanup-cri.sock");
        let kubelet_rs = self.root.join("usr/local/bin/kubelet-rs");
        let oci_runtime = self.root.join("usr/local/bin/runtime-rs");
        let (state, conf, cache) = (test.join("state"), data.join("cni/net.d"), data.join("cni/cache"));
        let service = CriService { kubelet_rs: &kubelet_rs, netns: &self.node.path(), socket: &socket, root: &data, state_dir: &state, oci_runtime: &oci_runtime, cni_conf_dir: &conf, cni_cache_dir: &cache };
        if let Ok(mut cri) = service.command().stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            let start = Instant::now();
            while std::os::unix::net::UnixStream::connect(&socket).is_err() && start.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(50));
            }
            remove_all_pods(&socket);
            unsafe { libc::kill(cri.id() as i32, libc::SIGTERM) };
            let _ = cri.wait();
        }
        for m in mounts_under(&self.root).iter().rev() {
            if let Ok(path) = std::ffi::CString::new(m.as_str()) {
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn the_installed_unit_runs_a_cluster_and_a_second_install_changes_nothing() {
    require_root();
    let bins = bin_dir();
    let root_dir = tempfile::Builder::new().prefix("krs-test-prov.").tempdir().unwrap();
    let root = root_dir.path();
    let r = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nvagrant:x:1000:1000::/home/vagrant:/bin/bash\n").unwrap();
    // The synced folder the workers read.
    let shared = tempfile::Builder::new().prefix("krs-test-prov-join.").tempdir().unwrap();
    let join = shared.path().join("join");
    let args = [
        "--root", r, "--no-kubectl", "--bin-dir", bins.to_str().unwrap(), "--user", "vagrant", "--node-ip", NODE_IP, "--node-name", NODE,
        "--workers", "1", "--worker-ips", WORKER_IP, "--join-dir", join.to_str().unwrap(),
    ];
    let first = install_ok(&args);
    assert!(first.contains("kubeconfigs: skipped") && first.contains("join material: skipped"), "before the first start there is no admin kubeconfig or CA:\n{first}");

    // The binaries, executable and the workspace's.
    for (dir, names) in [("usr/local/bin", &["kubelet-rs", "runtime-rs", "apiserver-lite", "krs-proxy"][..]), ("opt/cni/bin", &["krs-bridge", "krs-host-local", "krs-portmap"][..])] {
        for name in names {
            let path = root.join(dir).join(name);
            let mode = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{}", path.display());
            assert!(std::fs::read(&path).unwrap() == std::fs::read(bins.join(name)).unwrap(), "{} is not the built {name}", path.display());
        }
    }
    // The unit.
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/kubelet-rs.service")).unwrap();
    for (key, want) in [("Type", "simple"), ("Restart", "on-failure"), ("KillMode", "process"), ("Delegate", "yes"), ("After", "network-online.target"), ("WantedBy", "multi-user.target")] {
        assert_eq!(unit_value(&unit, key), want, "{key}= in the unit:\n{unit}");
    }
    let argv = exec_start(&unit);
    assert_eq!(argv, ["/usr/local/bin/kubelet-rs", "--apiserver", "--hostname-override", NODE, "--node-ip", NODE_IP, "--cni-bin-dir", "/opt/cni/bin"]);
    systemd_verify(root, &unit);

    // Idempotent: a second run succeeds and touches nothing.
    let before = snapshot(root, &[]);
    let second = install_ok(&args);
    assert!(!second.contains("installed ") && second.contains("unchanged "), "the second run changed files:\n{second}");
    assert_eq!(changed(&before, &snapshot(root, &[])), Vec::<PathBuf>::new(), "the second run changed files under {r}");

    // The unit's command line runs a cluster (with the plugins in the installed folder).
    let registry = Registry::start(Auth::None);
    registry.push("busybox", "library/busybox:1.36");
    let busybox = registry.reference("library/busybox:1.36");
    let mut unit_run = RunningUnit::start(root, &argv, &registry);

    // Now the admin kubeconfig and the CA exist: a new run installs the kubeconfigs and
    // writes the worker's join material; the run after that changes nothing.
    let third = install_ok(&args);
    assert!(third.contains("installed ") && !third.contains("does not exist yet"), "{third}");
    let admin = std::fs::read(root.join("var/lib/kubelet-rs/admin.kubeconfig")).unwrap();
    for (path, uid) in [(root.join("root/.kube/config"), 0), (root.join("home/vagrant/.kube/config"), 1000)] {
        let m = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (uid, uid, 0o600), "{}", path.display());
        assert!(std::fs::read(&path).unwrap() == admin, "{} is not the admin kubeconfig", path.display());
    }
    assert_eq!(std::fs::metadata(root.join("home/vagrant/.kube")).unwrap().uid(), 1000);
    let worker_dir = join.join("worker1");
    let node_kubeconfig = std::fs::read_to_string(worker_dir.join("kubelet.kubeconfig")).unwrap();
    assert_eq!(kubeconfig_server(&node_kubeconfig), format!("https://{NODE_IP}:6443"), "{node_kubeconfig}");
    assert!(std::fs::read(worker_dir.join("ca.crt")).unwrap() == std::fs::read(root.join("var/lib/kubelet-rs/apiserver/pki/ca.crt")).unwrap());
    assert_eq!(std::fs::metadata(worker_dir.join("kubelet.key")).unwrap().mode() & 0o777, 0o600);
    assert!(std::fs::read(join.join("bin/kubelet-rs")).unwrap() == std::fs::read(bins.join("kubelet-rs")).unwrap());
    let (before, before_join) = (snapshot(root, RUNTIME_DIRS), snapshot(&join, &[]));
    let fourth = install_ok(&args);
    assert!(!fourth.contains("installed ") && !fourth.contains("wrote "), "{fourth}");
    assert_eq!(changed(&before, &snapshot(root, RUNTIME_DIRS)), Vec::<PathBuf>::new(), "the fourth run changed files under {r}");
    assert_eq!(changed(&before_join, &snapshot(&join, &[])), Vec::<PathBuf>::new(), "the fourth run changed the join material");

    // The real kubectl: the node Ready, a pod Running.
    let kubectl = Kubectl::new(&unit_run.kubectl.kubeconfig);
    unit_run.wait_for("the node to be Ready", Duration::from_secs(120), || kubectl.run(&["get", "node", NODE, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]).stdout.trim() == "True");
    kubectl.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {busybox}\n    command: [sh, -c, 'echo provisioned; exec sleep 3600']\n"
    ));
    unit_run.wait_for("pod hello to be Running", Duration::from_secs(120), || kubectl.run(&["get", "pod", "hello", "-o", "jsonpath={.status.phase}"]).stdout.trim() == "Running");
    unit_run.wait_for("the pod's log", Duration::from_secs(30), || kubectl.run(&["logs", "hello"]).stdout.contains("provisioned"));
    assert_eq!(unit_run.field("pod", "hello", "{.spec.nodeName}"), NODE);
    // The pod network is the installed plugins' bridge.
    let pod_ip = unit_run.field("pod", "hello", "{.status.podIP}");
    assert!(pod_ip.starts_with("10.244.0."), "pod IP {pod_ip:?}");

    // A worker's install from that join material: its unit's command line is one kubelet-rs
    // parses, with the files it names in place.
    let worker_root = tempfile::Builder::new().prefix("krs-test-prov-worker.").tempdir().unwrap();
    let w = worker_root.path();
    let worker_bins = join.join("bin");
    let worker_args = [
        "--root", w.to_str().unwrap(), "--role", "worker", "--join-dir", join.to_str().unwrap(), "--node-name", "worker1", "--node-ip", WORKER_IP,
        "--pod-cidr", "10.244.1.0/24", "--no-kubectl", "--bin-dir", worker_bins.to_str().unwrap(), "--join-wait", "0",
    ];
    let out = install_ok(&worker_args);
    assert!(out.contains("role worker"), "{out}");
    let worker_unit = std::fs::read_to_string(w.join("etc/systemd/system/kubelet-rs.service")).unwrap();
    systemd_verify(w, &worker_unit);
    let worker_argv = exec_start(&worker_unit);
    assert_eq!(
        worker_argv,
        [
            "/usr/local/bin/kubelet-rs", "--kubeconfig", "/etc/kubelet-rs/kubelet.kubeconfig", "--tls-cert-file", "/etc/kubelet-rs/pki/kubelet.crt",
            "--tls-private-key-file", "/etc/kubelet-rs/pki/kubelet.key", "--client-ca-file", "/etc/kubelet-rs/pki/ca.crt", "--cluster-dns", "10.96.0.10",
            "--hostname-override", "worker1", "--node-ip", WORKER_IP, "--pod-cidr", "10.244.1.0/24", "--cni-bin-dir", "/opt/cni/bin",
        ]
    );
    for (installed, from) in [("kubelet.kubeconfig", "kubelet.kubeconfig"), ("pki/kubelet.crt", "kubelet.crt"), ("pki/kubelet.key", "kubelet.key"), ("pki/ca.crt", "ca.crt")] {
        assert!(std::fs::read(w.join("etc/kubelet-rs").join(installed)).unwrap() == std::fs::read(worker_dir.join(from)).unwrap(), "{installed}");
    }
    // clap parses (and checks the values of) every argument before acting on --version, so
    // this runs nothing but the parse.
    let parsed = Command::new(w.join("usr/local/bin/kubelet-rs")).args(&worker_argv[1..]).arg("--version").output().unwrap();
    assert!(parsed.status.success(), "kubelet-rs rejects the worker's command line: {}", String::from_utf8_lossy(&parsed.stderr));
    let bad = Command::new(w.join("usr/local/bin/kubelet-rs")).args(&worker_argv[1..]).args(["--pod-routes", "bogus", "--version"]).output().unwrap();
    assert!(!bad.status.success(), "the parse check does not check values");
    // The node credentials work against the running cluster (as the worker would present them).
    let api = unit_run._relays.last().unwrap().addr;
    let worker_kubeconfig = w.join("krs-test.kubeconfig");
    std::fs::write(&worker_kubeconfig, node_kubeconfig.replace(&format!("https://{NODE_IP}:6443"), &format!("https://{api}"))).unwrap();
    let as_worker = Kubectl::new(&worker_kubeconfig);
    let who = as_worker.run(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(who.ok && who.stdout.trim() == "system:node:worker1", "the worker's kubeconfig: {} {}", who.stdout, who.stderr);
    // What the worker's install waits with (its own node's Ready condition): nodes may read nodes.
    as_worker.ok(&["get", "node", NODE]);
    drop(unit_run);
}

/// `vagrant validate` on a copy of the Vagrantfile (so no `.vagrant` appears in the
/// checkout), single VM and `KRS_WORKERS=2`. It needs no box and no network; the NFS synced
/// folder of the multi-machine variant needs an NFS server on the host to validate, which
/// this machine does not run, so that variant is validated with `KRS_SYNC=rsync`.
#[test]
fn the_vagrantfile_validates() {
    assert!(Path::new("/usr/bin/vagrant").exists(), "/usr/bin/vagrant is missing: apt-get install vagrant (.ci/run does)");
    let dir = tempfile::Builder::new().prefix("krs-test-vagrant.").tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Vagrantfile"), d.join("Vagrantfile")).unwrap();
    let validate = |env: &[(&str, &str)]| {
        let out = Command::new("vagrant")
            .arg("validate")
            .current_dir(d)
            .env("HOME", d)
            .env("VAGRANT_HOME", d.join(".vagrant.d"))
            .env("VAGRANT_CWD", d)
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env_remove("KRS_WORKERS")
            .env_remove("KRS_SYNC")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run vagrant validate");
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    for env in [&[][..], &[("KRS_WORKERS", "2"), ("KRS_SYNC", "rsync")][..]] {
        let (ok, out) = validate(env);
        assert!(ok && out.contains("Vagrantfile validated successfully"), "vagrant validate with {env:?}: {out}");
    }
    // It does check: a bad KRS_WORKERS is an error naming it.
    let (ok, out) = validate(&[("KRS_WORKERS", "two")]);
    assert!(!ok && out.contains("\"two\""), "vagrant validate with KRS_WORKERS=two: {out}");
}

/// The script is POSIX sh (`sh -n`) and shellcheck-clean.
#[test]
fn the_script_passes_sh_n_and_shellcheck() {
    let out = Command::new("sh").arg("-n").arg(script()).output().unwrap();
    assert!(out.status.success(), "sh -n scripts/install.sh: {}", String::from_utf8_lossy(&out.stderr));
    assert!(Path::new("/usr/bin/shellcheck").exists(), "/usr/bin/shellcheck is missing: apt-get install shellcheck (.ci/run does)");
    let out = Command::new("shellcheck").args(["--shell=sh", "--severity=info"]).arg(script()).output().unwrap();
    assert!(out.status.success(), "shellcheck scripts/install.sh:\n{}", String::from_utf8_lossy(&out.stdout));
}
