//! The container lifecycle through the command line, as runc users and containerd drive it.
//! Root-only: run through scripts/test as root.

use std::path::Path;

use test_support::{mounts_under, require_root, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

#[test]
#[ignore = "needs root"]
fn create_start_state_kill_delete() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child("c1"));
    let pid_file = b.path().join("init.pid");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c1"]);

    let state = rt.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], "c1");
    assert_eq!(state["bundle"], b.path().to_str().unwrap());
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // The init is in the container's cgroup before start.
    let procs = std::fs::read_to_string(cg.path.join("c1/cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    // ... and is still the runtime, waiting: the user's program has not run.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");

    rt.ok(&["start", "c1"]);
    assert_eq!(rt.status("c1"), "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let err = rt.fails(&["start", "c1"]);
    assert!(err.contains("cannot start an already running container"), "{err}");
    let err = rt.fails(&["delete", "c1"]);
    assert!(err.contains("cannot delete container c1 that is not stopped: running"), "{err}");

    rt.ok(&["kill", "c1", "KILL"]);
    rt.wait_status("c1", "stopped");
    assert_eq!(rt.state("c1")["pid"], 0);
    let err = rt.fails(&["kill", "c1", "KILL"]);
    assert!(err.contains("container not running"), "{err}");
    rt.ok(&["delete", "c1"]);
    let err = rt.fails(&["state", "c1"]);
    assert!(err.contains("container does not exist"), "{err}");
    assert!(!cg.path.join("c1").exists(), "delete removes the container's cgroup");
    assert!(!rt.root.path().join("c1").exists(), "delete removes the state directory");
    // delete --force of a container that is gone succeeds, as with runc.
    rt.ok(&["delete", "--force", "c1"]);
    rt.fails(&["delete", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn run_in_foreground_returns_the_exit_status_and_passes_stdio() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sh", "-c", "echo out; echo err >&2; read line; echo got:$line; exit 42"], &cg.child("fg"));
    // In the foreground, run exits with the container, so pipes close and can be read.
    let mut cmd = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), "fg"]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\ngot:hello\n");
    assert!(text(&out.stderr).contains("err\n"));
    // run removes the container after it exits.
    assert!(rt.fails(&["state", "fg"]).contains("does not exist"));
    assert!(!cg.path.join("fg").exists());
}

#[test]
#[ignore = "needs root"]
fn run_reports_a_killing_signal_as_128_plus_signal() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child("sig"));
    let mut child = rt.cmd(&["run", "--bundle", b.path().to_str().unwrap(), "sig"]).spawn().unwrap();
    // A pid namespace's init cannot be killed from inside; from the host it can.
    for _ in 0..500 {
        if rt.run(&["state", "sig"]).status.success() && rt.status("sig") == "running" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    rt.ok(&["kill", "sig", "KILL"]);
    let status = test_support::wait_or_kill(&mut child, test_support::HANG, &["run", "sig"]);
    assert_eq!(status.code(), Some(137));
}

#[test]
#[ignore = "needs root"]
fn run_forwards_signals_to_the_container() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done"], &cg.child("fw"));
    let mut child = rt
        .cmd(&["run", "--bundle", b.path().to_str().unwrap(), "fw"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    use std::io::BufRead;
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = test_support::wait_or_kill(&mut child, test_support::HANG, &["run", "fw"]);
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "got-term\n");
    assert_eq!(status.code(), Some(3));
}

#[test]
#[ignore = "needs root"]
fn run_detached_then_list_ps_pause_resume() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000"], &cg.child("d1"));
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "d1"]);
    assert_eq!(rt.status("d1"), "running");

    let list = rt.ok(&["list"]);
    let mut lines = list.lines();
    assert!(lines.next().unwrap().starts_with("ID          PID         STATUS      BUNDLE"));
    let row = lines.next().unwrap();
    assert!(row.starts_with("d1 ") && row.contains(" running ") && row.ends_with("root"), "{row}");
    assert_eq!(rt.ok(&["list", "-q"]), "d1\n");
    let json: serde_json::Value = serde_json::from_str(&rt.ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["id"], "d1");
    assert_eq!(json[0]["status"], "running");

    // Both sleeps (and their shell) are the container's processes.
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "d1"])).unwrap();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let table = rt.ok(&["ps", "d1"]);
    assert_eq!(table.lines().filter(|l| l.contains("sleep 1000")).count(), 2, "{table}");

    rt.ok(&["pause", "d1"]);
    assert_eq!(rt.status("d1"), "paused");
    assert!(rt.fails(&["exec", "d1", "true"]).contains("paused"));
    rt.ok(&["resume", "d1"]);
    assert_eq!(rt.status("d1"), "running");
    assert!(rt.fails(&["resume", "d1"]).contains("not paused"));

    // kill --all reaches every process, not only init.
    rt.ok(&["kill", "--all", "d1", "KILL"]);
    rt.wait_status("d1", "stopped");
    rt.ok(&["delete", "d1"]);
}

#[test]
#[ignore = "needs root"]
fn delete_force_of_a_paused_container() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child("p"));
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "p"]);
    rt.ok(&["pause", "p"]);
    rt.ok(&["delete", "--force", "p"]);
    assert!(!cg.path.join("p").exists());
    assert!(rt.fails(&["state", "p"]).contains("does not exist"));
}

#[test]
#[ignore = "needs root"]
fn delete_of_a_created_container_that_never_started() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("never"));
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "never"]);
    let pid = rt.state("never")["pid"].as_i64().unwrap();
    rt.ok(&["delete", "never"]);
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
    assert!(!alive, "the init must be gone after delete");
}

#[test]
#[ignore = "needs root"]
fn kill_and_delete_after_the_process_already_exited() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("exited"));
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "exited"]);
    rt.wait_status("exited", "stopped");
    assert!(rt.fails(&["kill", "exited", "TERM"]).contains("container not running"));
    // --all on a stopped container is not an error (there is nothing to signal).
    rt.ok(&["kill", "--all", "exited", "KILL"]);
    rt.ok(&["delete", "exited"]);
    assert!(mounts_under(b.path()).is_empty(), "no mount may outlive the container");
}

#[test]
#[ignore = "needs root"]
fn nothing_is_left_after_run() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("clean"));
    rt.ok(&["run", "--bundle", b.path().to_str().unwrap(), "clean"]);
    assert!(mounts_under(b.path()).is_empty());
    assert!(mounts_under(Path::new("/")).iter().all(|m| !m.contains("krs-test-bundle")));
    assert!(std::fs::read_dir(rt.root.path()).unwrap().next().is_none(), "state root is empty");
    assert!(!cg.path.join("clean").exists());
}

#[test]
#[ignore = "needs root"]
fn duplicate_id_is_refused_and_keeps_the_first() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child("dup"));
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "dup"]);
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), "dup"]);
    assert!(err.contains("container with id dup exists"), "{err}");
    assert_eq!(rt.status("dup"), "created");
}
