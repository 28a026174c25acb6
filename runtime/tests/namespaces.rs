//! Namespaces: which a container gets new, which it joins by path, and what it sees in them.
//! Root-only: run through scripts/test as root.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;
use test_support::{ns_of, require_root, shift_ownership, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// The namespace kinds of the default spec, as /proc/<pid>/ns names them.
const DEFAULT_NEW: &[&str] = &["pid", "net", "ipc", "uts", "mnt", "cgroup"];

#[test]
#[ignore = "needs root"]
fn container_is_pid_1_of_its_own_pid_namespace() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // `$$` is the shell's pid as its own pid namespace counts; /proc is that namespace's.
    let b = Bundle::busybox(&["sh", "-c", "echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'"], &cg.child("pid"));
    let out = rt.run_ok(&b, "pid");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_eq!(lines[1], "sh", "{out}");
    // Only the shell and the `ls` and `grep` it started exist in there: no host process.
    let count: u32 = lines[2].parse().unwrap();
    assert!(count <= 3, "the container sees {count} processes: {out}");
}

#[test]
#[ignore = "needs root"]
fn uts_namespace_has_the_spec_hostname_and_domainname() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_domain = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let mut b = Bundle::busybox(&["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], &cg.child("uts"));
    b.config["hostname"] = json!("box-one");
    b.config["domainname"] = json!("pods.example");
    b.write();
    assert_eq!(rt.run_ok(&b, "uts"), "box-one\npods.example\n");
    // The host's names are untouched.
    assert_eq!(fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host_name);
    assert_eq!(fs::read_to_string("/proc/sys/kernel/domainname").unwrap(), host_domain);
}

#[test]
#[ignore = "needs root"]
fn every_listed_namespace_is_new() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("new"));
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    b.write();
    let pid = rt.create_and_start(&b, "new");
    for kind in DEFAULT_NEW.iter().chain(&["time"]) {
        assert_ne!(ns_of(pid, kind), ns_of("self", kind), "the container's {kind} namespace is the host's");
    }
    // Not listed, so shared with the host.
    assert_eq!(ns_of(pid, "user"), ns_of("self", "user"));
    rt.ok(&["delete", "--force", "new"]);
}

#[test]
#[ignore = "needs root"]
fn namespaces_not_listed_are_shared_with_the_host() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("shared"));
    // Only pid and mount: the container uses the host's network, ipc, uts and cgroup.
    b.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.write();
    let pid = rt.create_and_start(&b, "shared");
    for kind in ["net", "ipc", "uts", "cgroup", "time", "user"] {
        assert_eq!(ns_of(pid, kind), ns_of("self", kind), "{kind}");
    }
    for kind in ["pid", "mnt"] {
        assert_ne!(ns_of(pid, kind), ns_of("self", kind), "{kind}");
    }
    rt.ok(&["delete", "--force", "shared"]);
}

#[test]
#[ignore = "needs root"]
fn new_network_namespace_has_only_loopback() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["sh", "-c", "sed 1,2d /proc/net/dev | cut -d: -f1 | tr -d ' '; ls /sys/class/net"], &cg.child("net"));
    assert_eq!(rt.run_ok(&b, "net"), "lo\nlo\n");
}

#[test]
#[ignore = "needs root"]
fn cgroup_namespace_shows_the_container_cgroup_as_root() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["cat", "/proc/self/cgroup"], &cg.child("cgns"));
    let out = rt.run_ok(&b, "cgns");
    assert!(out.lines().any(|l| l == "0::/"), "{out}");
    // Every hierarchy (v1 ones too on a hybrid host) is rooted at the namespace's cgroup.
    assert!(out.lines().all(|l| l.ends_with(":/")), "{out}");
    // Without a cgroup namespace the host's path shows.
    let mut b = Bundle::busybox(&["cat", "/proc/self/cgroup"], &cg.child("nocgns"));
    b.config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "cgroup");
    b.write();
    let out = rt.run_ok(&b, "nocgns");
    let want = format!("0::/{}/nocgns", cg.name);
    assert!(out.lines().any(|l| l == want), "want {want} in {out}");
}

#[test]
#[ignore = "needs root"]
fn time_namespace_applies_the_offsets() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    const YEAR: i64 = 365 * 24 * 3600;
    let mut b = Bundle::busybox(&["sh", "-c", "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime"], &cg.child("time"));
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"monotonic": {"secs": YEAR, "nanosecs": 5}, "boottime": {"secs": 2 * YEAR}});
    b.write();
    let out = rt.run_ok(&b, "time");
    let offsets: Vec<Vec<&str>> = out.lines().take(2).map(|l| l.split_whitespace().collect()).collect();
    assert!(offsets.contains(&vec!["monotonic", &YEAR.to_string(), "5"]), "{out}");
    assert!(offsets.contains(&vec!["boottime", &(2 * YEAR).to_string(), "0"]), "{out}");
    // /proc/uptime counts boot time: it is shifted by the boottime offset.
    let uptime: i64 = out.lines().nth(2).unwrap().parse().unwrap();
    let host_uptime: i64 = fs::read_to_string("/proc/uptime").unwrap().split('.').next().unwrap().parse().unwrap();
    assert!(uptime >= 2 * YEAR && uptime <= 2 * YEAR + host_uptime + 60, "uptime {uptime}, host {host_uptime}");
}

#[test]
#[ignore = "needs root"]
fn second_container_joins_the_first_ones_namespaces_by_path() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // The pod pattern: a sandbox owns net, ipc and uts; the app container joins them.
    let mut sandbox = Bundle::busybox(&["sleep", "1000"], &cg.child("sandbox"));
    sandbox.config["hostname"] = json!("pod-host");
    sandbox.write();
    let spid = rt.create_and_start(&sandbox, "sandbox");

    let mut app = Bundle::busybox(
        &["sh", "-c", "hostname; for n in net ipc uts mnt; do readlink /proc/self/ns/$n; done"],
        &cg.child("app"),
    );
    app.config.as_object_mut().unwrap().remove("hostname");
    let ns = app.config["linux"]["namespaces"].as_array_mut().unwrap();
    for n in ns.iter_mut() {
        let proc_name = match n["type"].as_str().unwrap() {
            "network" => "net",
            "ipc" => "ipc",
            "uts" => "uts",
            _ => continue,
        };
        n["path"] = json!(format!("/proc/{spid}/ns/{proc_name}"));
    }
    app.write();
    let out = rt.run_ok(&app, "app");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pod-host", "{out}");
    assert_eq!(lines[1], ns_of(spid, "net"));
    assert_eq!(lines[2], ns_of(spid, "ipc"));
    assert_eq!(lines[3], ns_of(spid, "uts"));
    // Its mount namespace is its own.
    assert_ne!(lines[4], ns_of(spid, "mnt"));
    rt.ok(&["delete", "--force", "sandbox"]);
}

#[test]
#[ignore = "needs root"]
fn joining_a_namespace_path_that_does_not_exist_fails_clearly() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["true"], &cg.child("badns"));
    b.config["linux"]["namespaces"][1]["path"] = json!("/proc/999999999/ns/net");
    b.write();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), "badns"]);
    assert!(err.contains("/proc/999999999/ns/net"), "{err}");
    rt.assert_gone("badns", &cg);
}

#[test]
#[ignore = "needs root"]
fn user_namespace_maps_container_root_to_the_host_range() {
    require_root();
    const BASE: u32 = 100000;
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(
        &[
            "sh",
            "-c",
            "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/made-inside; \
             stat -c '%t,%T' /dev/null; echo discarded > /dev/null && echo null-ok; \
             grep -c ' /dev/null ' /proc/self/mountinfo",
        ],
        &cg.child("userns"),
    );
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["root"]["readonly"] = json!(false);
    b.write();
    // The container's root is host uid 100000: it owns the image (and can reach it, the
    // bundle's temporary directory being 0755).
    shift_ownership(&b.rootfs(), BASE);

    let out = rt.run_ok(&b, "userns");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "root inside: {out}");
    assert_eq!(lines[1], "0", "{out}");
    let want = vec!["0".to_string(), BASE.to_string(), "65536".to_string()];
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), want, "uid_map: {out}");
    assert_eq!(lines[3].split_whitespace().collect::<Vec<_>>(), want, "gid_map: {out}");
    // mknod is refused in a user namespace: /dev/null is the host's node, bound.
    assert_eq!(lines[4], "1,3", "{out}");
    assert_eq!(lines[5], "null-ok", "{out}");
    assert_eq!(lines[6], "1", "/dev/null is a bind mount: {out}");
    // What the container's root creates belongs to the mapped host id.
    let md = fs::metadata(b.rootfs().join("tmp/made-inside")).unwrap();
    assert_eq!((md.uid(), md.gid()), (BASE, BASE));
}

#[test]
#[ignore = "needs root"]
fn user_namespace_is_new_and_unprivileged_on_the_host() {
    require_root();
    const BASE: u32 = 200000;
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("userns2"));
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.write();
    shift_ownership(&b.rootfs(), BASE);
    let pid = rt.create_and_start(&b, "userns2");
    assert_ne!(ns_of(pid, "user"), ns_of("self", "user"));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some(BASE.to_string().as_str()), "{status}");
    rt.ok(&["delete", "--force", "userns2"]);
}
