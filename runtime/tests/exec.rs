//! `exec`: a new process in a running container, in its namespaces and cgroup, with the
//! command line's changes to the container's process. Root-only: run through scripts/test
//! as root.

use std::fs;
use std::time::Duration;

use serde_json::json;
use test_support::{ns_of, require_root, shift_ownership, text, wait_or_kill, Bundle, CgroupParent, Runtime, HANG};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// A running `sleep` container; returns its bundle (keep it while the container runs) and its
/// init's pid.
fn sleeper(rt: &Runtime, cg: &CgroupParent, id: &str) -> (Bundle, i32) {
    let b = Bundle::busybox(&["sleep", "1000"], &cg.child(id));
    let pid = rt.create_and_start(&b, id);
    (b, pid)
}

#[test]
#[ignore = "needs root"]
fn foreground_exec_passes_stdio_and_the_exit_status() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let _b = sleeper(&rt, &cg, "fg");
    let out = rt.run(&["exec", "fg", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"));
    // A killing signal is reported as 128 + signal, as a shell would.
    let out = rt.run(&["exec", "fg", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(rt.status("fg"), "running", "the container is unaffected");
    rt.ok(&["delete", "--force", "fg"]);
}

#[test]
#[ignore = "needs root"]
fn detached_exec_writes_the_pid_file() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let (b, init) = sleeper(&rt, &cg, "det");
    let pid_file = b.path().join("exec.pid");
    rt.ok(&["exec", "-d", "--pid-file", pid_file.to_str().unwrap(), "det", "sleep", "999"]);
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap(), "sleep\0999\0");
    // In the container's cgroup and namespaces.
    let procs = fs::read_to_string(cg.path.join("det/cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    for kind in ["pid", "net", "mnt", "ipc", "uts", "cgroup"] {
        assert_eq!(ns_of(pid, kind), ns_of(init, kind), "{kind}");
    }
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", "det"])).unwrap();
    assert!(pids.contains(&pid) && pids.contains(&init), "{pids:?}");
    rt.ok(&["delete", "--force", "det"]);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || fs::read_to_string(format!("/proc/{pid}/stat")).unwrap().contains(") Z "));
}

#[test]
#[ignore = "needs root"]
fn exec_sees_the_containers_namespaces_and_cgroup() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let (_b, init) = sleeper(&rt, &cg, "ns");
    let out = rt.ok(&["exec", "ns", "sh", "-c", "for n in pid net mnt ipc uts cgroup; do readlink /proc/self/ns/$n; done; cat /proc/1/comm; hostname; cat /proc/self/cgroup"]);
    let lines: Vec<&str> = out.lines().collect();
    for (i, kind) in ["pid", "net", "mnt", "ipc", "uts", "cgroup"].iter().enumerate() {
        assert_eq!(lines[i], ns_of(init, kind), "{kind}");
    }
    assert_eq!(lines[6], "sleep", "pid 1 is the container's init");
    assert_eq!(lines[7], "krs-test");
    assert!(lines[8..].contains(&"0::/"), "{out}");
    rt.ok(&["delete", "--force", "ns"]);
}

#[test]
#[ignore = "needs root"]
fn exec_joins_user_and_time_namespaces() {
    require_root();
    const BASE: u32 = 300000;
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("usertime"));
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    ns.push(json!({"type": "time"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1000000}});
    b.write();
    shift_ownership(&b.rootfs(), BASE);
    let init = rt.create_and_start(&b, "usertime");
    let out = rt.ok(&["exec", "usertime", "sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user; readlink /proc/self/ns/time; cat /proc/self/timens_offsets"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", &BASE.to_string(), "65536"], "{out}");
    assert_eq!(lines[2], ns_of(init, "user"));
    assert_eq!(lines[3], ns_of(init, "time"));
    assert!(out.contains("boottime") && out.contains("1000000"), "{out}");
    rt.ok(&["delete", "--force", "usertime"]);
}

#[test]
#[ignore = "needs root"]
fn process_file_replaces_the_process() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let (b, _) = sleeper(&rt, &cg, "pfile");
    let file = b.path().join("process.json");
    fs::write(
        &file,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", "echo $FOO; pwd; id -u; id -g; grep NoNewPrivs /proc/self/status"],
            "env": ["PATH=/bin", "FOO=from-file"],
            "cwd": "/home/user",
            "user": {"uid": 1000, "gid": 1000},
            "noNewPrivileges": true
        }))
        .unwrap(),
    )
    .unwrap();
    let out = rt.ok(&["exec", "--process", file.to_str().unwrap(), "pfile"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..4], ["from-file", "/home/user", "1000", "1000"], "{out}");
    assert_eq!(lines[4].split_whitespace().nth(1), Some("1"), "{out}");
    // A broken process file is named in the error.
    fs::write(&file, r#"{"args": ["sh"], "cwd": "relative", "user": {"uid": 0, "gid": 0}}"#).unwrap();
    let err = rt.fails(&["exec", "--process", file.to_str().unwrap(), "pfile"]);
    assert!(err.contains("process.json") && err.contains("cwd"), "{err}");
    rt.ok(&["delete", "--force", "pfile"]);
}

#[test]
#[ignore = "needs root"]
fn env_cwd_user_and_groups_from_the_command_line() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let _b = sleeper(&rt, &cg, "flags");
    let out = rt.ok(&[
        "exec", "--env", "FOO=bar", "--env", "TERM=dumb", "--cwd", "/tmp", "--user", "1000:1000", "-g", "5", "flags",
        "sh", "-c", "echo $FOO $TERM $PATH; pwd; id -u; id -g; grep ^Groups /proc/self/status",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // --env adds or replaces; the container's other variables (PATH) stay.
    assert_eq!(lines[0], "bar dumb /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "{out}");
    assert_eq!(&lines[1..4], ["/tmp", "1000", "1000"], "{out}");
    assert_eq!(lines[4].split_whitespace().skip(1).collect::<Vec<_>>(), ["5"], "{out}");
    // Without flags, the container's own process settings apply.
    let out = rt.ok(&["exec", "flags", "sh", "-c", "pwd; id -u; echo $TERM"]);
    assert_eq!(out, "/\n0\nxterm\n");
    rt.ok(&["delete", "--force", "flags"]);
}

#[test]
#[ignore = "needs root"]
fn cap_flag_adds_a_capability() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let _b = sleeper(&rt, &cg, "capflag");
    let eff = |out: &str| u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap();
    let without = eff(&rt.ok(&["exec", "capflag", "grep", "^CapEff", "/proc/self/status"]));
    let with = eff(&rt.ok(&["exec", "--cap", "CAP_CHOWN", "capflag", "grep", "^CapEff", "/proc/self/status"]));
    assert_eq!(without & 1, 0, "the default set has no CAP_CHOWN");
    assert_eq!(with, without | 1, "--cap CAP_CHOWN adds exactly CAP_CHOWN");
    rt.ok(&["delete", "--force", "capflag"]);
}

#[test]
#[ignore = "needs root"]
fn exec_of_a_missing_program_fails_as_runc() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let _b = sleeper(&rt, &cg, "noprog");
    let out = rt.run(&["exec", "noprog", "no-such-program"]);
    // runc: "exec failed: ..." and exit status 255 for any exec that did not run.
    assert_eq!(out.status.code(), Some(255));
    let err = text(&out.stderr);
    assert!(err.contains("exec failed:"), "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    assert_eq!(rt.status("noprog"), "running");
    rt.ok(&["delete", "--force", "noprog"]);
}

#[test]
#[ignore = "needs root"]
fn exec_into_a_stopped_container_fails() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("stopped"));
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "stopped"]);
    rt.wait_status("stopped", "stopped");
    let out = rt.run(&["exec", "stopped", "true"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("cannot exec in a stopped container"), "{}", text(&out.stderr));
    let err = rt.fails(&["exec", "nonexistent", "true"]);
    assert!(err.contains("container does not exist"), "{err}");
    rt.ok(&["delete", "stopped"]);
}

#[test]
#[ignore = "needs root"]
fn exec_into_a_paused_container_needs_ignore_paused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let (b, _) = sleeper(&rt, &cg, "paused");
    rt.ok(&["pause", "paused"]);
    let before = fs::read_to_string(cg.path.join("paused/cgroup.procs")).unwrap();
    let err = rt.fails(&["exec", "paused", "true"]);
    assert!(err.contains("cannot exec in a paused container"), "{err}");
    assert_eq!(fs::read_to_string(cg.path.join("paused/cgroup.procs")).unwrap(), before, "no process was added");

    // With --ignore-paused the exec goes ahead; the new process is frozen with the rest
    // until resume, then runs.
    let pid_file = b.path().join("exec.pid");
    let mut child = rt
        .cmd(&["exec", "--ignore-paused", "-d", "--pid-file", pid_file.to_str().unwrap(), "paused", "sh", "-c", "echo ran > /dev/shm/marker; sleep 999"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rt.status("paused"), "paused");
    rt.ok(&["resume", "paused"]);
    let status = wait_or_kill(&mut child, HANG, &["exec", "--ignore-paused"]);
    assert!(status.success());
    let out = rt.ok(&["exec", "paused", "sh", "-c", "for i in $(seq 100); do [ -e /dev/shm/marker ] && break; sleep 0.05; done; cat /dev/shm/marker"]);
    assert_eq!(out, "ran\n");
    rt.ok(&["delete", "--force", "paused"]);
}
