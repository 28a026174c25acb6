//! cgroup v2 resources, `update` and `events` through the command line. Root-only.
//!
//! These run on any host: where the test's cgroup gets a controller (the test guest, a
//! unified host) a limit must be applied; where it does not (the hybrid development hosts,
//! whose v2 root passes no controller down) create must fail naming the controller and the
//! field, and leave nothing behind. `cgroups_guest.rs` has the tests that need the limits
//! to take effect.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{require_root, text, wait_or_kill, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

fn setup(args: &[&str], id: &str) -> (CgroupParent, Runtime, Bundle) {
    require_root();
    let cg = CgroupParent::new();
    cg.enable_controllers();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(args, &cg.child(id));
    (cg, rt, b)
}

/// stderr with logrus's quoting undone: `msg="... \"memory\" ..."` as the error reads.
fn fails(rt: &Runtime, args: &[&str]) -> String {
    rt.fails(args).replace("\\\"", "\"")
}

fn read(cg: &CgroupParent, file: &str) -> String {
    std::fs::read_to_string(cg.path.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}")).trim().to_string()
}

/// Create the bundle with `resources`: applied when the parent offers `controller`, else a
/// clear failure naming `field` and the controller, with nothing left behind.
fn create_with(resources: Value, controller: &str, field: &str) -> Option<(CgroupParent, Runtime, Bundle)> {
    let (cg, rt, mut b) = setup(&["sleep", "1000"], "c1");
    b.config["linux"]["resources"] = resources;
    b.write();
    let bundle = b.path().to_str().unwrap().to_string();
    if cg.offers(controller) {
        rt.ok(&["create", "--bundle", &bundle, "c1"]);
        Some((cg, rt, b))
    } else {
        let err = fails(&rt, &["create", "--bundle", &bundle, "c1"]);
        let want = format!("{field} needs the cgroup v2 \"{controller}\" controller, which ");
        assert!(err.contains(&want), "want {want:?} in: {err}");
        rt.assert_gone("c1", &cg);
        None
    }
}

#[test]
#[ignore = "needs root"]
fn memory_limit_is_applied_or_refused_naming_the_controller() {
    let Some((cg, rt, _b)) = create_with(json!({"memory": {"limit": 33554432}}), "memory", "linux.resources.memory.limit") else {
        return;
    };
    assert_eq!(read(&cg, "c1/memory.max"), "33554432");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn on_a_hybrid_host_the_missing_memory_controller_is_blamed_on_the_v2_root() {
    require_root();
    let root = test_support::cgroup2_root();
    let offered = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    if offered.split_whitespace().any(|c| c == "memory") {
        eprintln!("{} has the memory controller: nothing to check here", root.display());
        return;
    }
    let (cg, rt, mut b) = setup(&["true"], "c1");
    b.config["linux"]["resources"] = json!({"memory": {"limit": 33554432}});
    b.write();
    let err = fails(&rt, &["create", "--bundle", b.path().to_str().unwrap(), "c1"]);
    let want = format!(
        "linux.resources.memory.limit needs the cgroup v2 \"memory\" controller, which {} does not offer (cgroup.controllers: {:?})",
        root.display(),
        offered.trim()
    );
    assert!(err.contains(&want), "want {want:?} in: {err}");
    rt.assert_gone("c1", &cg);
}

#[test]
#[ignore = "needs root"]
fn hugetlb_limit_is_applied_or_refused() {
    let Some((cg, rt, _b)) =
        create_with(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}), "hugetlb", "linux.resources.hugepageLimits[0]")
    else {
        return;
    };
    assert_eq!(read(&cg, "c1/hugetlb.2MB.max"), "4194304");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn unified_keys_need_their_controller_too() {
    let Some((cg, rt, _b)) = create_with(json!({"unified": {"pids.max": "20"}}), "pids", "linux.resources.unified.pids.max") else {
        return;
    };
    assert_eq!(read(&cg, "c1/pids.max"), "20");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn bad_resources_are_refused_before_anything_is_made() {
    let (cg, rt, mut b) = setup(&["true"], "c1");
    b.config["linux"]["resources"] = json!({"cpu": {"quota": 5, "shares": 1}, "unified": {"../../escape": "1"}});
    b.write();
    let err = fails(&rt, &["create", "--bundle", b.path().to_str().unwrap(), "c1"]);
    for want in [
        "linux.resources.cpu.shares: 1 is outside 2..262144",
        "linux.resources.cpu.quota: 5 is below",
        "linux.resources.unified.../../escape: must be a file name",
    ] {
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
    rt.assert_gone("c1", &cg);
}

#[test]
#[ignore = "needs root"]
fn a_malformed_systemd_path_is_refused_before_anything_is_made() {
    let (cg, rt, b) = setup(&["true"], "c1");
    let err = fails(&rt, &["--systemd-cgroup", "create", "--bundle", b.path().to_str().unwrap(), "c1"]);
    let want = format!("linux.cgroupsPath {:?}: with --systemd-cgroup it must have the form slice:prefix:name", cg.child("c1"));
    assert!(err.contains(&want), "want {want:?} in: {err}");
    rt.assert_gone("c1", &cg);
}

#[test]
#[ignore = "needs root"]
fn events_stats_prints_what_the_cgroup_has() {
    let (cg, rt, b) = setup(&["sleep", "1000"], "c1");
    rt.create_and_start(&b, "c1");
    let out = rt.ok(&["events", "--stats", "c1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let e: Value = serde_json::from_str(&out).expect("events --stats prints JSON");
    assert_eq!(e["type"], "stats");
    assert_eq!(e["id"], "c1");
    let data = &e["data"];
    // cpu.stat is a core file: usage is there with or without the cpu controller.
    assert!(data["cpu"]["usage"]["total"].is_u64(), "{e}");
    assert_eq!(data["cpu"]["throttling"].is_null(), !cg.offers("cpu"), "{e}");
    assert_eq!(data["memory"].is_null(), !cg.offers("memory"), "{e}");
    if cg.offers("pids") {
        assert!(data["pids"]["current"].as_u64().unwrap() >= 1, "{e}");
    } else {
        assert!(data["pids"].is_null(), "{e}");
    }
    rt.ok(&["delete", "--force", "c1"]);
    let err = fails(&rt, &["events", "--stats", "c1"]);
    assert!(err.contains("container does not exist"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn events_streams_stats_until_the_container_stops() {
    let (_cg, rt, b) = setup(&["sleep", "1000"], "c1");
    rt.create_and_start(&b, "c1");
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = rt.cmd(&["events", "--interval", "200ms", "c1"]);
    cmd.stdout(out_file.reopen().unwrap());
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(out_file.path()).unwrap().lines().count() < 3 {
        assert!(start.elapsed() < Duration::from_secs(30), "fewer than 3 events in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.ok(&["kill", "c1", "KILL"]);
    let st = wait_or_kill(&mut child, Duration::from_secs(30), &["events"]);
    assert!(st.success(), "events exited with {st}");
    let out = std::fs::read_to_string(out_file.path()).unwrap();
    for line in out.lines() {
        let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(e["type"], "stats", "{line}");
        assert_eq!(e["id"], "c1", "{line}");
    }
}

#[test]
#[ignore = "needs root"]
fn update_needs_a_live_container() {
    let (_cg, rt, b) = setup(&["true"], "c1");
    let err = fails(&rt, &["update", "--pids-limit", "10", "nosuch"]);
    assert!(err.contains("container does not exist"), "{err}");
    rt.create_and_start(&b, "c1");
    rt.wait_status("c1", "stopped");
    let err = fails(&rt, &["update", "--pids-limit", "10", "c1"]);
    assert!(err.contains("cannot update container c1: it is not running"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn update_applies_and_stores_or_refuses_and_keeps() {
    let (cg, rt, b) = setup(&["sleep", "1000"], "c1");
    rt.create_and_start(&b, "c1");
    let stored = || -> Value {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(rt.root.path().join("c1/state.json")).unwrap()).unwrap();
        s["spec"]["linux"]["resources"].clone()
    };
    let before = stored();
    let out = rt.run(&["update", "--pids-limit", "10", "c1"]);
    if cg.offers("pids") {
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(read(&cg, "c1/pids.max"), "10");
        assert_eq!(stored()["pids"]["limit"], 10);
    } else {
        let err = text(&out.stderr).replace("\\\"", "\"");
        assert!(!out.status.success());
        assert!(err.contains("linux.resources.pids.limit needs the cgroup v2 \"pids\" controller"), "{err}");
        assert_eq!(stored(), before, "a refused update must not be stored");
    }
    // A bad value is refused by the same checks as at create.
    let err = fails(&rt, &["update", "--cpu-share", "1", "c1"]);
    assert!(err.contains("linux.resources.cpu.shares: 1 is outside 2..262144"), "{err}");
    assert_eq!(rt.status("c1"), "running");
    rt.ok(&["delete", "--force", "c1"]);
}

#[test]
#[ignore = "needs root"]
fn a_failed_create_removes_the_parent_cgroups_it_made() {
    let (cg, rt, mut b) = setup(&["true"], "c1");
    b.config["linux"]["cgroupsPath"] = json!(format!("/{}/made/by/runtime/c1", cg.name));
    // Fails everywhere: without the pids controller, or (with it) because the file does not exist.
    b.config["linux"]["resources"] = json!({"unified": {"pids.nosuch": "1"}});
    b.write();
    let err = fails(&rt, &["create", "--bundle", b.path().to_str().unwrap(), "c1"]);
    assert!(err.contains("linux.resources.unified.pids.nosuch"), "{err}");
    assert!(!cg.path.join("made").exists(), "the parents runtime-rs made were left behind");
    assert!(cg.path.exists(), "the parent the test made must stay");
    rt.assert_gone("c1", &cg);
}
