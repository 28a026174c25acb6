//! Hostile or broken input: images whose symlinks point outside, bad config.json files, bad
//! ids, and a container that would overwrite the runtime binary (CVE-2019-5736). Each must
//! fail clearly (naming the field and the bundle), exit 1, and leave nothing behind.
//! Root-only: run through scripts/test as root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;
use test_support::{mounts_under, require_root, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// Removes a host file the runtime must never have created, even when the test fails.
struct MustNotExist(std::path::PathBuf);

impl Drop for MustNotExist {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "needs root"]
fn symlinks_in_the_image_cannot_send_mounts_outside_the_rootfs() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let target = tempfile::Builder::new().prefix("krs-test-hosttarget-").tempdir().unwrap();
    let t = target.path().to_str().unwrap().to_string();
    let injected_name = format!("krs-test-injected-{}", std::process::id());
    let host_injected = MustNotExist(Path::new("/etc").join(&injected_name));
    let file = tempfile::Builder::new().prefix("krs-test-hostile-").tempdir().unwrap();
    fs::write(file.path().join("payload"), "payload\n").unwrap();

    let mut b = Bundle::busybox(&["cat", "/proc/self/mountinfo"], &cg.child("escape"));
    let r = b.rootfs();
    // Absolute, relative-with-dotdot, and one pointing at the host's /etc.
    std::os::unix::fs::symlink(&t, r.join("abs")).unwrap();
    std::os::unix::fs::symlink(format!("../../../../../../../..{t}"), r.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", r.join("hostetc")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/abs/mnt", "type": "tmpfs", "source": "krs-abs"}));
    mounts.push(json!({"destination": "/up/mnt2", "type": "tmpfs", "source": "krs-up"}));
    mounts.push(json!({"destination": format!("/hostetc/{injected_name}"), "type": "bind", "source": file.path().join("payload"), "options": ["bind"]}));
    b.write();
    let out = rt.run_ok(&b, "escape");

    // Nothing was created or mounted on the host's side of the links.
    assert!(fs::read_dir(target.path()).unwrap().next().is_none(), "the runtime created something in the host's {t}");
    assert!(!host_injected.0.exists(), "the runtime created {} on the host", host_injected.0.display());
    assert!(mounts_under(target.path()).is_empty());
    // Everything landed inside the rootfs, where the links point when the rootfs is "/".
    let inside = r.join(t.trim_start_matches('/'));
    assert!(inside.join("mnt").is_dir() && inside.join("mnt2").is_dir());
    assert!(r.join("etc").join(&injected_name).is_file());
    let mount_points: Vec<&str> = out.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    for want in [format!("{t}/mnt"), format!("{t}/mnt2"), format!("/etc/{injected_name}")] {
        assert!(mount_points.contains(&want.as_str()), "{want} is not a mount in the container:\n{out}");
    }
}

#[test]
#[ignore = "needs root"]
fn dotdot_in_a_mount_destination_is_refused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["true"], &cg.child("dotdot"));
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp/../../../etc", "type": "tmpfs", "source": "tmpfs"}));
    b.write();
    let err = create_fails(&rt, &b, "dotdot");
    assert!(err.contains("mounts[7].destination"), "{err}");
    assert!(err.contains("must not contain"), "{err}");
    rt.assert_gone("dotdot", &cg);
}

/// `create` must fail with exit status 1 and an error naming the bundle; returns stderr.
fn create_fails(rt: &Runtime, b: &Bundle, id: &str) -> String {
    let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), id]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(b.path().to_str().unwrap()), "the error names the bundle: {err}");
    err
}

#[test]
#[ignore = "needs root"]
fn malformed_json_names_the_position() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("badjson"));
    fs::write(b.path().join("config.json"), "{\n  \"ociVersion\": \"1.2.0\",\n  \"process\": {,\n}\n").unwrap();
    let err = create_fails(&rt, &b, "badjson");
    assert!(err.contains("line 3 column"), "{err}");
    rt.assert_gone("badjson", &cg);
}

#[test]
#[ignore = "needs root"]
fn wrong_type_names_the_field() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["true"], &cg.child("badtype"));
    b.config["process"]["user"]["uid"] = json!("root");
    b.write();
    let err = create_fails(&rt, &b, "badtype");
    assert!(err.contains("process.user.uid"), "{err}");
    rt.assert_gone("badtype", &cg);
}

#[test]
#[ignore = "needs root"]
fn unknown_capability_names_the_field() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["true"], &cg.child("badcap"));
    b.config["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_NOPE"]);
    b.write();
    let err = create_fails(&rt, &b, "badcap");
    assert!(err.contains("process.capabilities.bounding[1]"), "{err}");
    assert!(err.contains("CAP_NOPE"), "{err}");
    rt.assert_gone("badcap", &cg);
}

#[test]
#[ignore = "needs root"]
fn invalid_specs_name_the_field_and_leave_nothing() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    type Breaker = fn(&mut serde_json::Value);
    let cases: [(&str, Breaker, &[&str]); 5] = [
        ("noargs", |c| drop(c["process"].as_object_mut().unwrap().remove("args")), &["process.args", "must name the program"]),
        ("relcwd", |c| c["process"]["cwd"] = json!("relative/dir"), &["process.cwd", "relative/dir must be an absolute path"]),
        ("norootfs", |c| c["root"]["path"] = json!("no-such-rootfs"), &["root.path", "no-such-rootfs", "No such file or directory"]),
        ("dupns", |c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "pid"})), &["linux.namespaces[6]", "pid namespace is listed twice"]),
        ("mapsnouserns", |c| c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]), &["linux.uidMappings", "no new user namespace"]),
    ];
    for (id, breaker, want) in cases {
        let mut b = Bundle::busybox(&["true"], &cg.child(id));
        breaker(&mut b.config);
        b.write();
        let err = create_fails(&rt, &b, id);
        for w in want {
            assert!(err.contains(w), "{id}: {w:?} missing in: {err}");
        }
        rt.assert_gone(id, &cg);
        // run refuses the same way.
        let out = rt.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), id]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        rt.assert_gone(id, &cg);
    }
}

#[test]
#[ignore = "needs root"]
fn missing_program_fails_at_create_as_runc_words_it() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["no-such-program", "arg"], &cg.child("noprog"));
    let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "noprog"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // The log line quotes the message logfmt-style, so its inner quotes come escaped.
    assert!(err.contains(r#"exec: \"no-such-program\": executable file not found in $PATH"#), "{err}");
    rt.assert_gone("noprog", &cg);

    let b = Bundle::busybox(&["/no/such/program"], &cg.child("noprog2"));
    let err = text(&rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "noprog2"]).stderr);
    assert!(err.contains("stat /no/such/program: no such file or directory"), "{err}");
    rt.assert_gone("noprog2", &cg);
}

#[test]
#[ignore = "needs root"]
fn invalid_container_ids_are_refused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["true"], &cg.child("unused"));
    let outside = rt.root.path().parent().unwrap().join("krs-test-escaped-id");
    for id in ["", ".", "..", "a/b", "../krs-test-escaped-id", "with space", "tab\there"] {
        let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), id]);
        assert_eq!(out.status.code(), Some(1), "{id:?}");
        let err = text(&out.stderr);
        assert!(err.contains("invalid container id"), "{id:?}: {err}");
        let err = rt.fails(&["state", id]);
        assert!(err.contains("invalid container id"), "{id:?}: {err}");
    }
    assert!(!outside.exists(), "an id must never name a path outside the state root");
    assert!(fs::read_dir(rt.root.path()).map(|mut d| d.next().is_none()).unwrap_or(true), "nothing in the state root");
    assert!(fs::read_dir(&cg.path).unwrap().filter_map(Result::ok).all(|e| !e.path().is_dir()), "no cgroup was made");
}

#[test]
#[ignore = "needs root"]
fn runtime_binary_cannot_be_overwritten_from_the_container() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let before = fs::read(BIN).unwrap();
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_DAC_OVERRIDE", "CAP_SYS_PTRACE"]);
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child("cve"));
    // Even a container with CAP_SYS_PTRACE and CAP_DAC_OVERRIDE.
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set] = caps.clone();
    }
    b.write();
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "cve"]);
    let pid = rt.state("cve")["pid"].as_i64().unwrap();

    // The init (the runtime, waiting for `start`) runs from a copy that is not the file on
    // disk: a read-only overlay view of it (named by its path in that detached mount) or a
    // sealed memfd.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let name = exe.to_string_lossy();
    assert!(name.starts_with("/memfd:") || name == "/runtime-rs", "{name}");
    let (ran, on_disk) = (fs::metadata(format!("/proc/{pid}/exe")).unwrap(), fs::metadata(BIN).unwrap());
    assert_ne!((ran.dev(), ran.ino()), (on_disk.dev(), on_disk.ino()), "the init runs the binary on disk");
    // Not writable, even by the host's root.
    match fs::OpenOptions::new().write(true).open(format!("/proc/{pid}/exe")) {
        Err(_) => {}
        Ok(mut f) => assert!(f.write_all(b"#!/bin/sh\necho pwned\n").is_err(), "the sealed copy took a write"),
    }
    // From inside the container (pid 1 is our init, still the runtime): no write either.
    let res = rt.run(&["exec", "cve", "sh", "-c", "echo '#!/bin/sh' > /proc/1/exe && echo WROTE"]);
    assert!(!text(&res.stdout).contains("WROTE"), "the container wrote to the runtime's exe");
    let res = rt.run(&["exec", "cve", "sh", "-c", "exec 3>/proc/1/exe && echo OPENED"]);
    assert!(!text(&res.stdout).contains("OPENED"), "the container opened the runtime's exe for writing");

    rt.ok(&["start", "cve"]);
    assert_eq!(fs::read(BIN).unwrap(), before, "the runtime binary on disk changed");
    rt.ok(&["delete", "--force", "cve"]);
}
