//! containerd driving runtime-rs in place of runc: `ctr run --runc-binary <runtime-rs>`, so
//! containerd's runc v2 shim calls runtime-rs for create, start, exec, kill, ps, pause,
//! resume and delete. Root-only; needs Debian's `containerd` package (containerd, ctr and
//! containerd-shim-runc-v2) and `busybox-static` for the image.
//!
//! Each test starts a containerd of its own, with its own config, root, state and socket
//! under a `krs-test-ctrd-*` directory, inside a private mount namespace where
//! `/sys/fs/cgroup` is a bind mount of a cgroup v2 directory the test made (so containerd,
//! its shims and the containers see a unified hierarchy rooted there, and never touch the
//! host's cgroups) and `/run` is a fresh tmpfs (so shim sockets and runtime state vanish
//! with the namespace); `runc` on its PATH is runtime-rs too. Dropping it stops containerd
//! by pid, kills what is left in the test's cgroup, and removes the cgroup and the
//! directory. No network: ctr gives each container a new network namespace with only lo.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use test_support::{cgroup2_root, mounts_under, require_root, run_captured, text, unique, CgroupParent};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");
const IMAGE: &str = "localhost/krs-busybox:latest";
/// The containerd namespace the tests use; ctr puts a container's cgroup at `/<ns>/<id>`.
const NS: &str = "krs-test";

/// Panic with the package to install unless containerd's programs are on PATH.
fn require_containerd() {
    for prog in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false);
        assert!(found, "{prog} is not installed: this test needs containerd (apt-get install containerd)");
    }
}

/// A containerd of the test's own, in a private mount namespace and a cgroup of its own.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    /// runtime-rs, copied so a concurrent rebuild of target/ cannot change it mid-test.
    runtime: String,
    fifo: String,
    child: Option<Child>,
    cgroup: Option<CgroupParent>,
}

impl Containerd {
    fn start() -> Containerd {
        require_root();
        require_containerd();
        let name = unique("ctrd");
        let dir = std::env::temp_dir().join(&name);
        fs::create_dir(&dir).expect("create the containerd directory");
        // Each thing made goes into the guard at once, so a failure below still removes it.
        let mut c = Containerd {
            socket: dir.join("containerd.sock"),
            runtime: dir.join("runtime-rs").to_str().expect("a UTF-8 temporary directory").to_string(),
            fifo: dir.join("fifo").to_str().unwrap().to_string(),
            dir,
            child: None,
            cgroup: None,
        };
        let cg_path = cgroup2_root().join(&name);
        fs::create_dir(&cg_path).expect("create the test's cgroup");
        c.cgroup = Some(CgroupParent { name, path: cg_path.clone() });
        // containerd itself lives in a leaf below the cgroup; containers go to /<ns>/<id>.
        fs::create_dir(cg_path.join("ctrd")).expect("create the containerd cgroup");
        fs::copy(BIN, &c.runtime).expect("copy runtime-rs");
        // Also the `runc` on containerd's PATH, for what does not pass --runc-binary on
        // (ctr 1.6 drops it with --uidmap): the host's runc is never used.
        let bin = c.dir.join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(&c.runtime, bin.join("runc")).expect("link runc to runtime-rs");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        fs::create_dir(&c.fifo).unwrap();
        let config = c.dir.join("config.toml");
        fs::write(&config, c.config()).unwrap();
        let log = fs::File::create(c.dir.join("containerd.log")).unwrap();

        // sh moves itself into our cgroup, then unshare makes the mount and cgroup namespaces
        // (the cgroup namespace's root is our cgroup); inside, our cgroup covers
        // /sys/fs/cgroup, a tmpfs covers /run, and containerd runs in the `ctrd` leaf. Each
        // step execs the next, so the pid we hold is containerd's.
        let inner = r#"mount --bind "$KRS_CG" /sys/fs/cgroup && mount -t tmpfs -o mode=0755 krs-test-run /run && echo $$ > /sys/fs/cgroup/ctrd/cgroup.procs && exec containerd --config "$KRS_CONFIG""#;
        let outer = r#"echo $$ > "$KRS_CG/cgroup.procs" && exec unshare --mount --propagation private --cgroup sh -c "$KRS_INNER""#;
        let child = Command::new("sh")
            .args(["-c", outer])
            .env("KRS_CG", &cg_path)
            .env("KRS_CONFIG", &config)
            .env("KRS_INNER", inner)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        c.child = Some(child);
        c.wait_ready();
        c.assert_host_mounts_untouched();
        c.import_image();
        c
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        // Only what `ctr run` needs: no CRI (it would set up networking), no snapshotters
        // that probe the host, nothing written outside our directory.
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{d}/containerd.sock"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        )
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("containerd is running").id() as i32
    }

    fn log(&self) -> String {
        let all = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("containerd exited ({st}) before it was ready:\n{}", self.log());
            }
            if self.socket.exists() && self.run(&["version"]).status.success() {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "containerd was not ready after 30s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bind mount of our cgroup over /sys/fs/cgroup must exist only in containerd's
    /// namespace: no mount of the host's may come from our cgroup.
    fn assert_host_mounts_untouched(&self) {
        let name = &self.cgroup.as_ref().unwrap().name;
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked: Vec<&str> = info.lines().filter(|l| l.split(' ').nth(3).is_some_and(|root| root.contains(name.as_str()))).collect();
        assert!(leaked.is_empty(), "a mount of containerd's namespace reached the host: {leaked:?}");
    }

    fn import_image(&self) {
        let tar = self.dir.join("busybox-image.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image.sh");
        let mut cmd = Command::new("sh");
        cmd.arg(&script).arg(&tar).arg(IMAGE).stdin(Stdio::null());
        let out = run_captured(cmd, &["build-busybox-image.sh"]);
        assert!(out.status.success(), "{} failed:\n{}", script.display(), text(&out.stderr));
        self.ok(&["images", "import", tar.to_str().unwrap()]);
    }

    /// `ctr` talking to our containerd, in our namespace.
    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket).args(["--namespace", NS]).args(args).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        run_captured(self.ctr(args), args)
    }

    /// Run ctr and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.log()
        );
        text(&out.stdout)
    }

    /// Arguments for `ctr run` that make the shim use runtime-rs and keep fifos with us.
    fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        // ctr asks for cpu shares 1024 unless told 0; that needs the cpu controller, which
        // hybrid hosts do not give, and runtime-rs refuses a resource it cannot apply.
        let mut v = vec!["run", "--runc-binary", &self.runtime, "--fifo-dir", &self.fifo, "--cpu-shares", "0"];
        v.extend_from_slice(extra);
        v
    }

    /// The task's status as `ctr task ls` shows it (RUNNING, PAUSED, STOPPED), or "" when
    /// there is no task.
    fn task_status(&self, id: &str) -> (String, i32) {
        let out = self.ok(&["task", "ls"]);
        for line in out.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&id) {
                return (f.get(2).unwrap_or(&"").to_string(), f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0));
            }
        }
        (String::new(), 0)
    }

    fn wait_task_status(&self, id: &str, want: &str) {
        let start = Instant::now();
        loop {
            let (status, _) = self.task_status(id);
            if status == want {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "task {id} never became {want}; it is {status:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The container's cgroup on the host.
    fn container_cgroup(&self, id: &str) -> PathBuf {
        self.cgroup.as_ref().unwrap().path.join(NS).join(id)
    }

    /// The bundle containerd made for the container (runtime-rs logs to its log.json).
    fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("state/io.containerd.runtime.v2.task").join(NS).join(id)
    }

    /// Require that runtime-rs logged no error for the container.
    fn assert_no_runtime_errors(&self, id: &str) {
        let log = fs::read_to_string(self.bundle(id).join("log.json")).unwrap_or_default();
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("log.json line is not JSON ({e}): {line}"));
            assert_ne!(v["level"], "error", "runtime-rs logged an error for {id}: {line}");
        }
    }

    /// runtime-rs's own view of the container, from its state root (`--root
    /// /run/containerd/runc/<ns>`), asked inside containerd's mount namespace where that root
    /// and the container's cgroup path are.
    fn runtime_state(&self, id: &str) -> serde_json::Value {
        let pid = self.pid().to_string();
        let root = format!("/run/containerd/runc/{NS}");
        let mut cmd = Command::new("nsenter");
        cmd.args(["--target", &pid, "--mount", "--", &self.runtime, "--root", &root, "state", id]).stdin(Stdio::null());
        let out = run_captured(cmd, &["state", id]);
        assert!(out.status.success(), "runtime-rs state {id}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("state is JSON")
    }

    /// Stop everything and require that nothing is left behind.
    fn shutdown(mut self) {
        let dir = self.dir.clone();
        let cg = self.cgroup.as_ref().unwrap().path.clone();
        self.assert_host_mounts_untouched();
        self.stop();
        assert!(!cg.exists(), "cgroup {} was left behind", cg.display());
        assert!(!dir.exists(), "{} was left behind", dir.display());
        assert!(mounts_under(&dir).is_empty(), "mounts left under {}", dir.display());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Shims and their containers outlive containerd; all are in our cgroup, whose guard
        // kills what is left and removes it, deepest first. The mount namespace goes with
        // its last process.
        drop(self.cgroup.take());
        if self.dir.exists() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run `command` (a shell command line) with a pseudo-terminal as its stdin and stdout, as
/// `ctr --tty` needs, through util-linux `script`. Our end of script's stdin stays open and
/// silent until it exits, so no end-of-file is typed into the container's terminal.
fn in_pty(command: &str) -> Output {
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", command, "/dev/null"]).stdin(Stdio::piped());
    run_captured(cmd, &["script", command])
}

/// What a terminal showed, without the carriage returns its line discipline added.
fn screen(out: &Output) -> String {
    text(&out.stdout).replace('\r', "")
}

fn procs(cgroup: &Path) -> Vec<i32> {
    fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn wait_for_file_text(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let got = fs::read_to_string(path).unwrap_or_default();
        if got.contains(needle) {
            return got;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{needle:?} never appeared in {}; it has {got:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root"]
fn ctr_run_rm_passes_output_and_exit_code() {
    let c = Containerd::start();
    let out = c.run(&c.run_args(&["--rm", IMAGE, "echo1", "sh", "-c", "echo hello from runtime-rs; echo to-stderr >&2; exit 3"]));
    assert_eq!(out.status.code(), Some(3), "stdout: {}\nstderr: {}\n{}", text(&out.stdout), text(&out.stderr), c.log());
    assert_eq!(text(&out.stdout), "hello from runtime-rs\n");
    assert!(text(&out.stderr).contains("to-stderr\n"), "{}", text(&out.stderr));
    // --rm deleted the task and the container, and runtime-rs removed the cgroup.
    assert!(!c.ok(&["containers", "ls", "--quiet"]).lines().any(|l| l == "echo1"));
    assert!(!c.container_cgroup("echo1").exists(), "the container's cgroup was left behind");

    // A program that does not exist: create fails, with runc's wording, and nothing is left.
    let out = c.run(&c.run_args(&["--rm", IMAGE, "missing", "/no/such/program"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(r#"exec: "/no/such/program": stat /no/such/program: no such file or directory"#), "{err}");
    assert!(!c.container_cgroup("missing").exists(), "a failed create left its cgroup");
    c.shutdown();
}

#[test]
#[ignore = "needs root"]
fn detached_task_exec_ps_pause_resume_kill_delete() {
    let c = Containerd::start();
    let log = c.dir.join("d1.log");
    let log_uri = format!("file://{}", log.display());
    let init = "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done";
    c.ok(&c.run_args(&["--detach", "--log-uri", &log_uri, IMAGE, "d1", "sh", "-c", init]));
    wait_for_file_text(&log, "ready\n");
    let (status, pid) = c.task_status("d1");
    assert_eq!(status, "RUNNING");

    // runtime-rs made the container: its own state says so, with containerd's pid.
    let state = c.runtime_state("d1");
    assert_eq!(state["status"], "running", "{state}");
    assert_eq!(state["pid"], pid, "{state}");
    // Its cgroup is ctr's /<ns>/<id>, inside the test's cgroup.
    let cg = c.container_cgroup("d1");
    assert!(procs(&cg).contains(&pid), "init {pid} is not in {}", cg.display());

    // exec in the foreground: output and exit code come back through the shim.
    let out = c.run(&["task", "exec", "--fifo-dir", &c.fifo, "--exec-id", "e1", "d1", "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in-exec\n");

    // A detached exec shows in `ctr task ps` (runtime-rs ps --format json) with its exec id.
    c.ok(&["task", "exec", "--fifo-dir", &c.fifo, "--detach", "--exec-id", "e2", "d1", "sleep", "1000"]);
    let ps = c.ok(&["task", "ps", "d1"]);
    let pids: Vec<i32> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(pids.contains(&pid), "{ps}");
    let e2: i32 = ps
        .lines()
        .find(|l| l.contains("ExecID:e2"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("exec e2 is not listed:\n{ps}"));
    assert!(procs(&cg).contains(&e2), "exec {e2} is not in the container's cgroup");

    // pause freezes the cgroup; exec is refused while paused; resume thaws it.
    c.ok(&["task", "pause", "d1"]);
    c.wait_task_status("d1", "PAUSED");
    assert_eq!(fs::read_to_string(cg.join("cgroup.freeze")).unwrap().trim(), "1");
    assert_eq!(c.runtime_state("d1")["status"], "paused");
    let out = c.run(&["task", "exec", "--fifo-dir", &c.fifo, "--exec-id", "e3", "d1", "true"]);
    assert!(!out.status.success(), "exec in a paused container should fail");
    c.ok(&["task", "resume", "d1"]);
    c.wait_task_status("d1", "RUNNING");
    assert_eq!(fs::read_to_string(cg.join("cgroup.freeze")).unwrap().trim(), "0");
    assert_eq!(c.runtime_state("d1")["status"], "running");

    // kill sends SIGTERM to the init, which traps it and exits 3.
    c.ok(&["task", "kill", "d1"]);
    c.wait_task_status("d1", "STOPPED");
    wait_for_file_text(&log, "got-term\n");
    c.assert_no_runtime_errors("d1");
    let out = c.run(&["task", "delete", "d1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("non-zero exit code 3"), "{}", text(&out.stderr));
    assert_eq!(c.task_status("d1").0, "");
    assert!(!cg.exists(), "task delete left the container's cgroup");
    c.ok(&["containers", "delete", "d1"]);
    c.shutdown();
}

#[test]
#[ignore = "needs root"]
fn kill_all_reaches_every_process() {
    let c = Containerd::start();
    c.ok(&c.run_args(&["--detach", IMAGE, "k1", "sh", "-c", "sleep 1000 & sleep 1000"]));
    let cg = c.container_cgroup("k1");
    let start = Instant::now();
    while procs(&cg).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "the container never had two processes: {:?}", procs(&cg));
        std::thread::sleep(Duration::from_millis(20));
    }
    c.ok(&["task", "kill", "--all", "--signal", "SIGKILL", "k1"]);
    c.wait_task_status("k1", "STOPPED");
    assert!(procs(&cg).is_empty(), "processes survived kill --all: {:?}", procs(&cg));
    c.assert_no_runtime_errors("k1");
    c.ok(&["task", "delete", "k1"]);
    c.ok(&["containers", "delete", "k1"]);
    assert!(!cg.exists());
    c.shutdown();
}

#[test]
#[ignore = "needs root"]
fn tty_run_and_exec() {
    let c = Containerd::start();
    let ctr = format!("ctr --address {} --namespace {NS}", c.socket.display());
    let run = format!("{ctr} run --rm --tty --runc-binary {} --fifo-dir {} --cpu-shares 0 {IMAGE} t1 sh -c 'tty; exit 7'", c.runtime, c.fifo);
    let out = in_pty(&run);
    assert_eq!(out.status.code(), Some(7), "{}\n{}", screen(&out), text(&out.stderr));
    assert!(screen(&out).contains("/dev/pts/0\n"), "{}", screen(&out));

    c.ok(&c.run_args(&["--detach", IMAGE, "t2", "sleep", "1000"]));
    let exec = format!("{ctr} task exec --tty --fifo-dir {} --exec-id tt t2 sh -c 'tty; exit 4'", c.fifo);
    let out = in_pty(&exec);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", screen(&out), text(&out.stderr));
    assert!(screen(&out).contains("/dev/pts/"), "{}", screen(&out));
    c.assert_no_runtime_errors("t2");
    c.ok(&["task", "kill", "--signal", "SIGKILL", "t2"]);
    c.wait_task_status("t2", "STOPPED");
    c.ok(&["task", "delete", "t2"]);
    c.ok(&["containers", "delete", "t2"]);
    c.shutdown();
}

#[test]
#[ignore = "needs root"]
fn user_namespace_container() {
    let c = Containerd::start();
    c.ok(&c.run_args(&["--detach", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", IMAGE, "u1", "sleep", "1000"]));
    let (status, pid) = c.task_status("u1");
    assert_eq!(status, "RUNNING");
    assert_eq!(c.runtime_state("u1")["pid"], pid, "runtime-rs did not make the container");
    let uid_map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    let host_uid = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(host_uid.lines().any(|l| l.starts_with("Uid:\t100000\t")), "{host_uid}");

    // exec joins the user namespace; the remapped rootfs is the container root's to write.
    let out = c.run(&["task", "exec", "--fifo-dir", &c.fifo, "--exec-id", "e1", "u1", "sh", "-c", "id -u; touch /written && echo wrote"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\nwrote\n");
    c.assert_no_runtime_errors("u1");
    c.ok(&["task", "kill", "--signal", "SIGKILL", "u1"]);
    c.wait_task_status("u1", "STOPPED");
    c.ok(&["task", "delete", "u1"]);
    c.ok(&["containers", "delete", "u1"]);
    c.shutdown();
}

#[test]
#[ignore = "needs root"]
fn ctr_run_with_containerds_default_seccomp_profile() {
    let c = Containerd::start();
    // `--seccomp` puts containerd's own RuntimeDefault profile into the spec: runtime-rs must
    // accept the ecosystem's profile as it is and enforce it.
    let script = "grep '^Seccomp:' /proc/self/status; ls / >/dev/null && echo ordinary works; unshare -U true || echo unshare refused";
    let out = c.run(&c.run_args(&["--rm", "--seccomp", IMAGE, "sc1", "sh", "-c", script]));
    assert!(out.status.success(), "stdout: {}\nstderr: {}\n{}", text(&out.stdout), text(&out.stderr), c.log());
    assert_eq!(text(&out.stdout), "Seccomp:\t2\nordinary works\nunshare refused\n", "stderr: {}", text(&out.stderr));
    assert!(!c.container_cgroup("sc1").exists(), "the container's cgroup was left behind");
    c.shutdown();
}
