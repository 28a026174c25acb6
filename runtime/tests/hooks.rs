//! OCI hooks: every point runs, in order, with the state on stdin, in the right namespaces;
//! failures fail the container (or only warn, after start); timeouts kill the hook.
//! Root-only: run through scripts/test as root.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{ns_of, require_root, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

const POINTS: [&str; 6] = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// A hook running `script` with /bin/sh (the host's, or the image's for startContainer) and
/// `$DIR` set to `dir`.
fn sh_hook(script: &str, dir: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", format!("DIR={dir}")]})
}

/// A hook that records that it ran: its state on stdin, its mount and network namespaces,
/// and its name appended to `$DIR/order`. `delay` makes it slow, to catch a point that does
/// not wait for it.
fn recording_hook(point: &str, dir: &str, delay: &str) -> Value {
    sh_hook(
        &format!(
            "cat > \"$DIR/{point}.json\"; readlink /proc/self/ns/mnt > \"$DIR/{point}.mnt\"; \
             readlink /proc/self/ns/net > \"$DIR/{point}.net\"; sleep {delay}; echo {point} >> \"$DIR/order\""
        ),
        dir,
    )
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn wait_gone(pid: i64) {
    for _ in 0..500 {
        let alive = fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} is still alive");
}

#[test]
#[ignore = "needs root"]
fn every_hook_runs_in_order_with_the_state_and_in_the_right_namespaces() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-hooks-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("hooks"));
    let mut hooks = serde_json::Map::new();
    for point in POINTS {
        // startContainer runs inside the container: its /bin/sh is the image's, and it writes
        // through a bind of the output directory. It is slow on purpose: poststart must wait
        // for it (the program only starts after it).
        let hook = match point {
            "startContainer" => recording_hook(point, "/hooks", "0.5"),
            _ => recording_hook(point, dir, "0"),
        };
        hooks.insert(point.to_string(), json!([hook]));
    }
    b.config["hooks"] = Value::Object(hooks);
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/hooks", "type": "bind", "source": dir, "options": ["rbind", "rw"]}));
    b.config["annotations"] = json!({"org.example.purpose": "hook-test"});
    b.write();
    let bundle = b.path().to_str().unwrap();

    rt.ok(&["create", "--bundle", bundle, "hooks"]);
    let pid = rt.state("hooks")["pid"].as_i64().unwrap();
    let order = || fs::read_to_string(out.path().join("order")).unwrap_or_default();
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n", "only the create-time hooks ran so far");
    rt.ok(&["start", "hooks"]);
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n", "poststart comes after startContainer");
    rt.ok(&["kill", "hooks", "KILL"]);
    rt.wait_status("hooks", "stopped");
    rt.ok(&["delete", "hooks"]);
    assert_eq!(order(), POINTS.iter().map(|p| format!("{p}\n")).collect::<String>());

    // The state on stdin, as runc gives it.
    let want_status = [("prestart", "creating"), ("createRuntime", "creating"), ("createContainer", "creating"), ("startContainer", "created"), ("poststart", "running"), ("poststop", "stopped")];
    for (point, status) in want_status {
        let s = read_json(&out.path().join(format!("{point}.json")));
        assert_eq!(s["id"], "hooks", "{point}: {s}");
        assert_eq!(s["bundle"], bundle, "{point}: {s}");
        assert_eq!(s["status"], status, "{point}: {s}");
        assert_eq!(s["annotations"]["org.example.purpose"], "hook-test", "{point}: {s}");
        assert!(s["ociVersion"].is_string(), "{point}: {s}");
        match point {
            "poststop" => {}
            // runc hands these two the pid as the container sees it (1); the spec says the
            // host's. Either way there is one.
            "createContainer" | "startContainer" => assert!(s["pid"].as_i64().unwrap() > 0, "{point}: {s}"),
            _ => assert_eq!(s["pid"], pid, "{point}: {s}"),
        }
    }

    // createRuntime (and prestart, poststart, poststop) run in the runtime's namespaces;
    // createContainer and startContainer in the container's.
    let read = |name: &str| fs::read_to_string(out.path().join(name)).unwrap().trim().to_string();
    let (host_mnt, host_net) = (ns_of("self", "mnt"), ns_of("self", "net"));
    for point in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(read(&format!("{point}.mnt")), host_mnt, "{point}");
        assert_eq!(read(&format!("{point}.net")), host_net, "{point}");
    }
    for point in ["createContainer", "startContainer"] {
        assert_ne!(read(&format!("{point}.mnt")), host_mnt, "{point} runs in the container's mount namespace");
        assert_ne!(read(&format!("{point}.net")), host_net, "{point} runs in the container's network namespace");
    }
    // Both in the container's: the same namespaces.
    assert_eq!(read("createContainer.net"), read("startContainer.net"));
    assert_eq!(read("createContainer.mnt"), read("startContainer.mnt"));
}

#[test]
#[ignore = "needs root"]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-hookfail-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("hookfail"));
    b.config["hooks"] = json!({
        "createRuntime": [sh_hook("cat > \"$DIR/state.json\"; echo network plugin exploded >&2; exit 7", dir)],
        "createContainer": [sh_hook("touch \"$DIR/create-container-ran\"", dir)]
    });
    b.write();
    let res = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "hookfail"]);
    assert_eq!(res.status.code(), Some(1));
    let err = text(&res.stderr);
    assert!(err.contains("createRuntime hook /bin/sh failed"), "{err}");
    assert!(err.contains("network plugin exploded"), "the hook's stderr is in the error: {err}");
    assert!(err.contains("exit status: 7"), "{err}");
    assert!(!out.path().join("create-container-ran").exists(), "later hooks do not run");
    rt.assert_gone("hookfail", &cg);
    // The init the hook saw is gone too.
    let pid = read_json(&out.path().join("state.json"))["pid"].as_i64().unwrap();
    assert!(pid > 0);
    wait_gone(pid);
}

#[test]
#[ignore = "needs root"]
fn hook_past_its_timeout_is_killed_and_fails_create() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-hooktimeout-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["true"], &cg.child("slowhook"));
    let mut hook = sh_hook("echo $$ > \"$DIR/pid\"; exec sleep 60", dir);
    hook["timeout"] = json!(1);
    b.config["hooks"] = json!({"prestart": [hook]});
    b.write();
    let start = Instant::now();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), "slowhook"]);
    assert!(start.elapsed() < Duration::from_secs(20), "create took {:?}", start.elapsed());
    assert!(err.contains("prestart hook /bin/sh did not finish within 1 s and was killed"), "{err}");
    let hook_pid: i64 = fs::read_to_string(out.path().join("pid")).unwrap().trim().parse().unwrap();
    wait_gone(hook_pid);
    rt.assert_gone("slowhook", &cg);
}

#[test]
#[ignore = "needs root"]
fn failing_poststop_hook_only_warns() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-poststop-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["true"], &cg.child("poststop"));
    b.config["hooks"] = json!({"poststop": [
        sh_hook("echo cleanup went wrong >&2; exit 1", dir),
        sh_hook("touch \"$DIR/second-ran\"", dir)
    ]});
    b.write();
    rt.ok(&["run", "-d", "--bundle", b.path().to_str().unwrap(), "poststop"]);
    rt.wait_status("poststop", "stopped");
    let res = rt.run(&["delete", "poststop"]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    let err = text(&res.stderr);
    assert!(err.contains("level=warning") && err.contains("cleanup went wrong"), "{err}");
    // "the remaining hooks and lifecycle continue as if the hook had succeeded" (runtime spec).
    assert!(out.path().join("second-ran").exists(), "the next poststop hook still runs");
    rt.assert_gone("poststop", &cg);
}

#[test]
#[ignore = "needs root"]
fn failing_poststart_hook_only_warns() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-poststart-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("poststart"));
    b.config["hooks"] = json!({"poststart": [
        sh_hook("echo notify failed >&2; exit 1", dir),
        sh_hook("touch \"$DIR/second-ran\"", dir)
    ]});
    b.write();
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "poststart"]);
    let res = rt.run(&["start", "poststart"]);
    assert!(res.status.success(), "{}", text(&res.stderr));
    assert!(text(&res.stderr).contains("notify failed"), "{}", text(&res.stderr));
    assert!(out.path().join("second-ran").exists());
    assert_eq!(rt.status("poststart"), "running");
    rt.ok(&["delete", "--force", "poststart"]);
}

#[test]
#[ignore = "needs root"]
fn failing_start_container_hook_stops_the_program() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let out = tempfile::Builder::new().prefix("krs-test-startc-").tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let mut b = Bundle::busybox(&["touch", "/hooks/program-ran"], &cg.child("startc"));
    b.config["hooks"] = json!({"startContainer": [sh_hook("exit 3", "/hooks")]});
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/hooks", "type": "bind", "source": dir, "options": ["rbind", "rw"]}));
    b.write();
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "startc"]);
    let res = rt.run(&["start", "startc"]);
    assert!(!res.status.success(), "start reports the failed startContainer hook");
    let err = text(&res.stderr);
    assert!(err.contains("startContainer hook /bin/sh failed (exit status: 3)"), "{err}");
    rt.wait_status("startc", "stopped");
    assert!(!out.path().join("program-ran").exists(), "the user's program must not run");
    rt.ok(&["delete", "startc"]);
}
