//! The per-container monitor against real OCI runtimes: busybox containers whose output must
//! land in the CRI log file and whose exit must land in the exit file, with runtime-rs and
//! (where runc would use the cgroup v2 hierarchy) runc.
//!
//! On a hybrid host the runc and OOM cases skip, saying so; they run in the cgroup v2 guest:
//! `scripts/guest/test-in-guest.sh -p kubelet-rs --add $PWD/target/debug/runtime-rs
//! --add /usr/sbin/runc cri_monitor`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kubelet_rs::cri::monitor::exit::{self, ExitRecord};
use kubelet_rs::cri::monitor::{self, MonitorArgs, MonitorError, MonitorHandle};
use test_support::{Bundle, CgroupParent, Runtime};

const KUBELET: &str = env!("CARGO_BIN_EXE_kubelet-rs");

/// runtime-rs, built in this build directory.
fn runtime_rs() -> PathBuf {
    test_support::bins::workspace_bin("runtime-rs", "runtime-rs")
}

/// runc, where it would put containers in the cgroup v2 hierarchy. On a hybrid host it would
/// use the v1 hierarchies, which tests must leave alone: then the runc case is skipped, saying so.
fn runc() -> Option<PathBuf> {
    let v2_at_root = Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists();
    let bin = PathBuf::from("/usr/sbin/runc");
    if !v2_at_root || !bin.exists() {
        eprintln!("SKIPPED the runc case: runc missing, or /sys/fs/cgroup is not cgroup v2 (runc would write the v1 hierarchies)");
        return None;
    }
    Some(bin)
}

/// One container with its own cgroup, runtime root and state directory; dropping it deletes
/// the container and stops its monitor, if either is left.
struct Fixture {
    id: String,
    rt: Runtime,
    cg: CgroupParent,
    bundle: Bundle,
    state: tempfile::TempDir,
    monitor_pid: std::cell::Cell<Option<i32>>,
}

impl Fixture {
    fn new(runtime: &Path, script: &str) -> Fixture {
        let cg = CgroupParent::new();
        let id = test_support::unique("mon");
        let bundle = Bundle::busybox(&["sh", "-c", script], &cg.child(&id));
        let state = tempfile::Builder::new().prefix("krs-test-monitor-").tempdir().unwrap();
        Fixture { rt: Runtime::new(runtime), id, cg, bundle, state, monitor_pid: Default::default() }
    }

    fn args(&self) -> MonitorArgs {
        MonitorArgs {
            id: self.id.clone(),
            bundle: self.bundle.path().to_path_buf(),
            runtime: self.rt.bin.clone(),
            oci_root: self.rt.root.path().to_path_buf(),
            log_path: self.log_path(),
            exit_file: self.state.path().join("exit.json"),
            pid_file: self.state.path().join("pid"),
            cgroup_path: Some(self.cg.path.join(&self.id)),
            monitor_log: Some(self.state.path().join("monitor.log")),
            tty: false,
            stdin: false,
            stdin_once: false,
        }
    }

    /// Below a directory that does not exist yet: the monitor makes it.
    fn log_path(&self) -> PathBuf {
        self.state.path().join("pods/ns_pod_uid/ctr/0.log")
    }

    fn spawn(&self) -> Result<MonitorHandle, MonitorError> {
        let h = monitor::spawn_monitor_with(Path::new(KUBELET), &self.args(), Duration::from_secs(60))?;
        self.monitor_pid.set(Some(h.monitor_pid));
        Ok(h)
    }

    fn start(&self) {
        self.rt.ok(&["start", &self.id]);
    }

    fn wait_exit(&self) -> ExitRecord {
        let path = self.args().exit_file;
        let start = Instant::now();
        loop {
            if let Some(rec) = exit::read(&path).unwrap() {
                return rec;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no exit file; monitor log: {}", self.monitor_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the exit file the monitor is gone.
    fn assert_monitor_exits(&self) {
        let pid = self.monitor_pid.get().expect("a monitor was spawned");
        let start = Instant::now();
        while monitor::is_monitor_of(pid, &self.id) {
            assert!(start.elapsed() < Duration::from_secs(10), "monitor {pid} still runs after the exit file");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn monitor_log(&self) -> String {
        fs::read_to_string(self.state.path().join("monitor.log")).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.rt.cmd(&["delete", "--force", &self.id]).output();
        // With its container gone the monitor exits by itself; stop one that does not.
        if let Some(pid) = self.monitor_pid.get() {
            for _ in 0..200 {
                if !monitor::is_monitor_of(pid, &self.id) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The entries of a CRI log file as `(stream, tag, content)`, each timestamp checked.
fn entries(path: &Path) -> Vec<(String, String, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut it = l.splitn(4, ' ');
            let ts = it.next().unwrap();
            assert!(is_rfc3339_nano_utc(ts), "bad timestamp {ts:?} in {l:?}");
            let e = (it.next().unwrap_or_default().to_string(), it.next().unwrap_or_default().to_string(), it.next().unwrap_or_default().to_string());
            assert!(matches!(e.0.as_str(), "stdout" | "stderr") && matches!(e.1.as_str(), "P" | "F"), "bad entry {l:?}");
            e
        })
        .collect()
}

fn is_rfc3339_nano_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let base = b.len() >= 20 && digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10) && b[10] == b'T';
    let time = base && digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19);
    let frac = &ts[19.min(ts.len())..ts.len().saturating_sub(1)];
    let frac_ok = frac.is_empty() || (frac.starts_with('.') && frac.len() <= 10 && frac[1..].bytes().all(|c| c.is_ascii_digit()) && !frac.ends_with('0'));
    time && ts.ends_with('Z') && frac_ok
}

fn e(stream: &str, tag: &str, content: &str) -> (String, String, String) {
    (stream.to_string(), tag.to_string(), content.to_string())
}

fn exit_code_and_both_streams(runtime: &Path) {
    let f = Fixture::new(runtime, "echo out1; echo err1 >&2; echo out2; exit 3");
    let h = f.spawn().unwrap();
    assert!(h.container_pid > 0 && h.monitor_pid > 0);
    assert_eq!(fs::read_to_string(f.args().pid_file).unwrap().trim(), h.container_pid.to_string());
    f.start();
    let rec = f.wait_exit();
    assert_eq!((rec.exit_code, rec.signal, rec.oom_killed), (3, None, false), "{rec:?}");
    let got = entries(&f.log_path());
    let out: Vec<_> = got.iter().filter(|x| x.0 == "stdout").cloned().collect();
    let err: Vec<_> = got.iter().filter(|x| x.0 == "stderr").cloned().collect();
    assert_eq!(out, [e("stdout", "F", "out1"), e("stdout", "F", "out2")]);
    assert_eq!(err, [e("stderr", "F", "err1")]);
    f.assert_monitor_exits();
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(rec.finished_at_ns > now_ns - 120_000_000_000 && rec.finished_at_ns <= now_ns, "{rec:?}");
}

fn long_line_is_split(runtime: &Path) {
    let f = Fixture::new(runtime, "head -c 40960 /dev/zero | tr '\\0' x; echo; printf 'no newline'");
    f.spawn().unwrap();
    f.start();
    assert_eq!(f.wait_exit().exit_code, 0);
    let got = entries(&f.log_path());
    let shape: Vec<_> = got.iter().map(|(s, t, c)| (s.as_str(), t.as_str(), c.len())).collect();
    assert_eq!(shape, [("stdout", "P", 16384), ("stdout", "P", 16384), ("stdout", "F", 8192), ("stdout", "P", 10)]);
    assert!(got[..3].iter().all(|x| x.2.bytes().all(|b| b == b'x')));
    assert_eq!(got[3].2, "no newline");
}

fn sigkill_is_137(runtime: &Path) {
    let f = Fixture::new(runtime, "echo up; exec sleep 1000");
    let h = f.spawn().unwrap();
    f.start();
    wait_for_log(&f.log_path(), "up");
    // The monitor blocks SIGCHLD and SIGUSR1 for its signalfd; the container must not inherit that.
    let status = fs::read_to_string(format!("/proc/{}/status", h.container_pid)).unwrap();
    let blocked = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).unwrap().trim();
    assert_eq!(u64::from_str_radix(blocked, 16).unwrap(), 0, "the container starts with signals blocked");
    f.rt.ok(&["kill", &f.id, "KILL"]);
    let rec = f.wait_exit();
    assert_eq!((rec.exit_code, rec.signal), (137, Some(9)), "{rec:?}");
    f.assert_monitor_exits();
}

fn create_failure_is_reported(runtime: &Path) {
    let f = Fixture::new(runtime, "true");
    fs::remove_file(f.bundle.path().join("config.json")).unwrap();
    let err = f.spawn().unwrap_err();
    let MonitorError::CreateFailed { message, .. } = &err else { panic!("expected CreateFailed, got {err}") };
    assert!(message.contains("config.json"), "the runtime's message: {message:?}");
    assert_eq!(exit::read(&f.args().exit_file).unwrap(), None);
}

fn wait_for_log(path: &Path, content: &str) {
    let start = Instant::now();
    while !fs::read_to_string(path).unwrap_or_default().lines().any(|l| l.ends_with(&format!(" F {content}"))) {
        assert!(start.elapsed() < Duration::from_secs(30), "{content:?} never reached {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs root"]
fn runtime_rs_exit_code_and_both_streams() {
    test_support::require_root();
    exit_code_and_both_streams(&runtime_rs());
}

#[test]
#[ignore = "needs root"]
fn runtime_rs_long_lines_are_split_into_partials() {
    test_support::require_root();
    long_line_is_split(&runtime_rs());
}

#[test]
#[ignore = "needs root"]
fn runtime_rs_sigkill_gives_137() {
    test_support::require_root();
    sigkill_is_137(&runtime_rs());
}

#[test]
#[ignore = "needs root"]
fn runtime_rs_create_failure_carries_the_runtime_message() {
    test_support::require_root();
    create_failure_is_reported(&runtime_rs());
}

#[test]
#[ignore = "needs root"]
fn runc_exit_code_streams_long_lines_sigkill_and_failure() {
    test_support::require_root();
    let Some(runc) = runc() else { return };
    exit_code_and_both_streams(&runc);
    long_line_is_split(&runc);
    sigkill_is_137(&runc);
    create_failure_is_reported(&runc);
}

#[test]
#[ignore = "needs root"]
fn reopen_moves_new_lines_to_a_new_file() {
    test_support::require_root();
    let f = Fixture::new(&runtime_rs(), "echo one; sleep 3; echo two");
    let h = f.spawn().unwrap();
    f.start();
    let log = f.log_path();
    wait_for_log(&log, "one");
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).unwrap();
    monitor::reopen_log(h.monitor_pid, &f.id, &log, Duration::from_secs(5)).unwrap();
    assert_eq!(f.wait_exit().exit_code, 0);
    assert_eq!(entries(&rotated), [e("stdout", "F", "one")]);
    assert_eq!(entries(&log), [e("stdout", "F", "two")]);
}

/// The environment variable that turns [`spawn_helper`] into a spawner.
const SPAWN_ENV: &str = "KRS_TEST_MONITOR_SPAWN";

/// Not a test of its own: run by `the_monitor_outlives_its_starter` in a process of its own,
/// it spawns a monitor, writes its pids to a file and returns, so that process exits.
#[test]
fn spawn_helper() {
    let Some(spec) = std::env::var_os(SPAWN_ENV) else { return };
    let v: serde_json::Value = serde_json::from_str(spec.to_str().unwrap()).unwrap();
    let p = |k: &str| PathBuf::from(v[k].as_str().unwrap());
    let args = MonitorArgs {
        id: v["id"].as_str().unwrap().to_string(),
        bundle: p("bundle"),
        runtime: p("runtime"),
        oci_root: p("oci_root"),
        log_path: p("log_path"),
        exit_file: p("exit_file"),
        pid_file: p("pid_file"),
        cgroup_path: None,
        monitor_log: Some(p("monitor_log")),
        tty: false,
        stdin: false,
        stdin_once: false,
    };
    let h = monitor::spawn_monitor_with(Path::new(KUBELET), &args, Duration::from_secs(60)).unwrap();
    fs::write(p("result"), format!("{} {}", h.monitor_pid, h.container_pid)).unwrap();
}

#[test]
#[ignore = "needs root"]
fn the_monitor_outlives_its_starter() {
    test_support::require_root();
    let f = Fixture::new(&runtime_rs(), "echo before; sleep 1; echo after; exit 5");
    let a = f.args();
    let result = f.state.path().join("spawned");
    let spec = serde_json::json!({
        "id": a.id, "bundle": a.bundle, "runtime": a.runtime, "oci_root": a.oci_root, "log_path": a.log_path,
        "exit_file": a.exit_file, "pid_file": a.pid_file, "monitor_log": a.monitor_log, "result": result,
    });
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "spawn_helper", "--test-threads=1"]).env(SPAWN_ENV, spec.to_string());
    let out = test_support::run_captured(cmd, &["spawn_helper"]);
    assert!(out.status.success(), "the spawner failed: {}{}", test_support::text(&out.stdout), test_support::text(&out.stderr));
    let pids = fs::read_to_string(&result).expect("the spawner wrote the pids");
    let monitor_pid: i32 = pids.split(' ').next().unwrap().parse().unwrap();
    f.monitor_pid.set(Some(monitor_pid));
    // Its starter is gone and it still runs, in a session of its own.
    assert!(monitor::is_monitor_of(monitor_pid, &f.id), "the monitor died with its starter");
    assert_eq!(unsafe { libc::getsid(monitor_pid) }, monitor_pid, "the monitor leads its own session");
    f.start();
    let rec = f.wait_exit();
    assert_eq!(rec.exit_code, 5);
    assert_eq!(entries(&f.log_path()), [e("stdout", "F", "before"), e("stdout", "F", "after")]);
    f.assert_monitor_exits();
}

#[test]
#[ignore = "needs root"]
fn a_process_left_holding_the_output_does_not_keep_the_exit_from_being_recorded() {
    test_support::require_root();
    // Without a pid namespace of its own (a hostPID pod) the init's death kills nothing
    // else: the background sleep keeps the stdout pipe open.
    // It holds the pipe for 300 s; `wait_exit` gives up after 60 (a slow emulated guest
    // needs seconds where a host needs one).
    let mut f = Fixture::new(&runtime_rs(), "sleep 300 & echo hi; exit 4");
    let ns = f.bundle.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    f.bundle.write();
    f.spawn().unwrap();
    f.start();
    let rec = f.wait_exit();
    assert_eq!(rec.exit_code, 4);
    assert_eq!(entries(&f.log_path()), [e("stdout", "F", "hi")]);
    f.assert_monitor_exits();
}

#[test]
#[ignore = "needs root"]
fn an_oom_kill_is_recorded_where_the_memory_controller_is_offered() {
    test_support::require_root();
    let mut f = Fixture::new(&runtime_rs(), "echo start; x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived");
    f.cg.enable_controllers();
    if !f.cg.offers("memory") {
        eprintln!("SKIPPED: the cgroup v2 hierarchy offers no memory controller here (the hybrid hosts); the QEMU guest has one");
        return;
    }
    f.bundle.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}});
    f.bundle.write();
    f.spawn().unwrap();
    f.start();
    let rec = f.wait_exit();
    assert!(rec.oom_killed, "{rec:?}");
}

#[test]
#[ignore = "needs root"]
fn a_process_left_writing_without_pause_does_not_keep_the_exit_from_being_recorded() {
    test_support::require_root();
    let mut f = Fixture::new(&runtime_rs(), "yes spam & echo hi; exit 6");
    let ns = f.bundle.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    f.bundle.write();
    f.spawn().unwrap();
    f.start();
    // The writer never ends while the monitor reads: the exit must be recorded all the same,
    // within `wait_exit`'s 60 s (the monitor reads at most 5 s after the exit; a slow
    // emulated guest took over 15 s here, formatting `yes`'s flood into the log).
    assert_eq!(f.wait_exit().exit_code, 6);
    // With the monitor gone the writer dies of SIGPIPE (and the cgroup's removal kills it).
    f.assert_monitor_exits();
}
