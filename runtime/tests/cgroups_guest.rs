//! cgroup v2 limits taking effect: OOM kills reported, a fork bomb stopped, cpu throttled,
//! cpus pinned, limits changed live, the freezer, systemd-style paths. These need every
//! controller, so they run in the test guest only:
//!
//!     scripts/guest/test-in-guest.sh -F guest-tests cgroups_guest
//!
//! Built only with the `guest-tests` feature, so the host's `cargo test` never has them.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{require_root, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// Root, and a unified cgroup v2 host whose test cgroups get every controller these tests
/// use; refuse to run anywhere else (the development hosts must not get cgroups at the v2
/// root).
fn guest() -> CgroupParent {
    require_root();
    let root = test_support::cgroup2_root();
    assert_eq!(root, std::path::Path::new("/sys/fs/cgroup"), "these tests are for the test guest (scripts/guest/test-in-guest.sh -F guest-tests cgroups_guest)");
    let cg = CgroupParent::new();
    let enabled = cg.enable_controllers();
    for c in ["cpu", "cpuset", "memory", "pids"] {
        assert!(enabled.iter().any(|e| e == c), "the {c} controller is missing: enabled {enabled:?}");
    }
    cg
}

fn bundle(cg: &CgroupParent, args: &[&str], resources: Value) -> Bundle {
    let mut b = Bundle::busybox(args, &cg.child("c1"));
    b.config["linux"]["resources"] = resources;
    b.write();
    b
}

fn read(cg: &CgroupParent, file: &str) -> String {
    std::fs::read_to_string(cg.path.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}")).trim().to_string()
}

fn flat(cg: &CgroupParent, file: &str, key: &str) -> u64 {
    read(cg, file)
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap()))
        .unwrap_or_else(|| panic!("{file} has no {key}"))
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stats(rt: &Runtime, id: &str) -> Value {
    let e: Value = serde_json::from_str(&rt.ok(&["events", "--stats", id])).expect("events --stats prints JSON");
    e["data"].clone()
}

#[test]
#[ignore = "needs root"]
fn memory_limit_oom_kill_is_reported_by_events() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let limit = 16 << 20;
    let script = "sleep 2; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 1000";
    let b = bundle(&cg, &["sh", "-c", script], json!({"memory": {"limit": limit, "swap": limit}}));
    rt.create_and_start(&b, "c1");
    assert_eq!(read(&cg, "c1/memory.max"), limit.to_string());
    assert_eq!(read(&cg, "c1/memory.swap.max"), "0");
    assert_eq!(stats(&rt, "c1")["memory"]["usage"]["limit"], limit);

    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = rt.cmd(&["events", "--interval", "30s", "c1"]);
    cmd.stdout(out.reopen().unwrap());
    let mut events = cmd.spawn().unwrap();
    let seen = std::panic::catch_unwind(|| {
        wait_until("an oom event", Duration::from_secs(60), || std::fs::read_to_string(out.path()).unwrap().contains(r#""type":"oom""#));
    });
    let _ = events.kill();
    let _ = events.wait();
    let printed = std::fs::read_to_string(out.path()).unwrap();
    assert!(seen.is_ok(), "events printed: {printed}");
    let oom: Value = printed.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|e| e["type"] == "oom").unwrap();
    assert_eq!(oom, json!({"type": "oom", "id": "c1"}));
    assert!(flat(&cg, "c1/memory.events", "oom_kill") >= 1);
    // The container's init survived: only the hog was killed.
    assert_eq!(rt.status("c1"), "running");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn pids_limit_stops_a_fork_bomb() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let script = "while true; do sleep 1000 & done";
    let b = bundle(&cg, &["sh", "-c", script], json!({"pids": {"limit": 8}}));
    rt.create_and_start(&b, "c1");
    assert_eq!(read(&cg, "c1/pids.max"), "8");
    wait_until("a refused fork (pids.events max)", Duration::from_secs(30), || flat(&cg, "c1/pids.events", "max") > 0);
    let current: u64 = read(&cg, "c1/pids.current").parse().unwrap();
    assert!(current <= 8, "pids.current {current} is above pids.max 8");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn cpu_quota_throttles() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, &["sh", "-c", "while :; do :; done"], json!({"cpu": {"quota": 10000, "period": 100000, "shares": 1024}}));
    rt.create_and_start(&b, "c1");
    assert_eq!(read(&cg, "c1/cpu.max"), "10000 100000");
    assert_eq!(read(&cg, "c1/cpu.weight"), "39");
    wait_until("throttled periods in cpu.stat", Duration::from_secs(30), || flat(&cg, "c1/cpu.stat", "nr_throttled") >= 3);
    assert!(flat(&cg, "c1/cpu.stat", "throttled_usec") > 0);
    let s = stats(&rt, "c1");
    assert!(s["cpu"]["throttling"]["throttledPeriods"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["cpu"]["throttling"]["throttledTime"].as_u64().unwrap() > 0, "{s}");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn cpuset_pins_the_container() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, &["grep", "Cpus_allowed_list", "/proc/self/status"], json!({"cpu": {"cpus": "1", "mems": "0"}}));
    let out = rt.run_ok(&b, "c1");
    assert_eq!(out.trim(), "Cpus_allowed_list:\t1");
}

#[test]
#[ignore = "needs root"]
fn update_changes_limits_live_and_stores_them() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, &["sleep", "1000"], json!({"memory": {"limit": 67108864}}));
    rt.create_and_start(&b, "c1");
    assert_eq!(read(&cg, "c1/memory.max"), "67108864");

    rt.ok(&["update", "--memory", "32m", "--pids-limit", "7", "c1"]);
    assert_eq!(read(&cg, "c1/memory.max"), "33554432");
    assert_eq!(read(&cg, "c1/pids.max"), "7");

    let mut cmd = rt.cmd(&["update", "--resources", "-", "c1"]);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(br#"{"cpu": {"quota": 20000, "period": 100000}}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(read(&cg, "c1/cpu.max"), "20000 100000");
    // What was not given kept its value.
    assert_eq!(read(&cg, "c1/memory.max"), "33554432");

    let state: Value = serde_json::from_str(&std::fs::read_to_string(rt.root.path().join("c1/state.json")).unwrap()).unwrap();
    let stored = &state["spec"]["linux"]["resources"];
    assert_eq!(stored["memory"]["limit"], 33554432);
    assert_eq!(stored["pids"]["limit"], 7);
    assert_eq!(stored["cpu"]["quota"], 20000);
    let s = stats(&rt, "c1");
    assert_eq!(s["memory"]["usage"]["limit"], 33554432);
    assert_eq!(s["pids"]["limit"], 7);
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn freezer_pauses_and_resumes_a_limited_container() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, &["sleep", "1000"], json!({"pids": {"limit": 10}}));
    rt.create_and_start(&b, "c1");
    rt.ok(&["pause", "c1"]);
    assert_eq!(rt.status("c1"), "paused");
    assert_eq!(read(&cg, "c1/cgroup.freeze"), "1");
    rt.ok(&["resume", "c1"]);
    assert_eq!(rt.status("c1"), "running");
    assert_eq!(read(&cg, "c1/cgroup.freeze"), "0");
    rt.ok(&["delete", "--force", "c1"]);
}

/// Parents the runtime made for a systemd-style path; removed (deepest first) on drop.
struct Slices(Vec<std::path::PathBuf>);

impl Drop for Slices {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
#[ignore = "needs root"]
fn systemd_paths_get_slices_with_controllers() {
    let _cg = guest();
    let rt = Runtime::new(BIN);
    let slice = format!("krs-t{}.slice", std::process::id());
    let root = std::path::Path::new("/sys/fs/cgroup");
    let made = Slices(vec![root.join("krs.slice"), root.join("krs.slice").join(&slice)]);
    let mut b = Bundle::busybox(&["sleep", "1000"], &format!("{slice}:krs:c1"));
    b.config["linux"]["resources"] = json!({"memory": {"limit": 33554432}});
    b.write();
    rt.ok(&["--systemd-cgroup", "create", "--bundle", b.path().to_str().unwrap(), "c1"]);
    let scope = made.0[1].join("krs-c1.scope");
    // The runtime made both slices and passed the controllers down through them.
    assert_eq!(std::fs::read_to_string(scope.join("memory.max")).unwrap().trim(), "33554432");
    let pid = rt.state("c1")["pid"].as_i64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(own.trim(), format!("0::/krs.slice/{slice}/krs-c1.scope"));
    rt.ok(&["delete", "--force", "c1"]);
    assert!(!scope.exists());
}

#[test]
#[ignore = "needs root"]
fn update_with_check_before_update_refuses_a_limit_below_usage() {
    let cg = guest();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, &["sleep", "1000"], json!({"memory": {"limit": 67108864, "checkBeforeUpdate": true}}));
    rt.create_and_start(&b, "c1");
    let err = rt.fails(&["update", "--memory", "4096", "c1"]);
    assert!(err.contains("is not above the container's current memory usage"), "{err}");
    assert_eq!(read(&cg, "c1/memory.max"), "67108864");
    rt.ok(&["delete", "--force", "c1"]);
}

/// Needs a block device: run with `--module null_blk` (/dev/nullb0, 254:0 as the guest
/// README says; the numbers are read from sysfs).
#[test]
#[ignore = "needs root"]
fn io_weight_and_throttles() {
    let cg = guest();
    let dev = std::fs::read_to_string("/sys/block/nullb0/dev").expect("no /dev/nullb0: run the guest with --module null_blk");
    let (major, minor) = dev.trim().split_once(':').unwrap();
    let (major, minor): (u64, u64) = (major.parse().unwrap(), minor.parse().unwrap());
    let rt = Runtime::new(BIN);
    let b = bundle(
        &cg,
        &["sleep", "1000"],
        json!({"blockIO": {"weight": 500,
            "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 100}]}}),
    );
    rt.create_and_start(&b, "c1");
    assert!(read(&cg, "c1/io.weight").contains("default 4950"), "{}", read(&cg, "c1/io.weight"));
    assert_eq!(read(&cg, "c1/io.max"), format!("{major}:{minor} rbps=1048576 wbps=max riops=max wiops=100"));
    rt.ok(&["delete", "--force", "c1"]);
}
