//! The container's process: environment, working directory, identity, umask, rlimits,
//! capabilities, no_new_privs, oom_score_adj, inherited descriptors.
//! Root-only: run through scripts/test as root.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use serde_json::json;
use test_support::{require_root, run_captured, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// The value of a `Key:\tvalue` line of /proc/<pid>/status text.
fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

/// A capability mask as /proc/<pid>/status prints it, from capability numbers.
fn mask(caps: &[u32]) -> String {
    format!("{:016x}", caps.iter().fold(0u64, |m, c| m | 1 << c))
}

const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;

#[test]
#[ignore = "needs root"]
fn environment_is_exactly_the_spec_plus_home() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["env"], &cg.child("env"));
    b.config["process"]["env"] = json!(["PATH=/bin:/sbin", "GREETING=hello world", "EMPTY="]);
    b.write();
    let out = rt.run_ok(&b, "env");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    // Nothing of the runtime's own environment leaks in; HOME comes from /etc/passwd (root).
    assert_eq!(got, vec!["EMPTY=", "GREETING=hello world", "HOME=/root", "PATH=/bin:/sbin"]);
}

#[test]
#[ignore = "needs root"]
fn home_comes_from_passwd_for_the_user_unless_set() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sh", "-c", "echo $HOME"], &cg.child("home"));
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    assert_eq!(rt.run_ok(&b, "home"), "/home/user\n");
    // A uid without a passwd entry gets /.
    let mut b = Bundle::busybox(&["sh", "-c", "echo $HOME"], &cg.child("home2"));
    b.config["process"]["user"] = json!({"uid": 4242, "gid": 4242});
    b.write();
    assert_eq!(rt.run_ok(&b, "home2"), "/\n");
    // An explicit HOME wins.
    let mut b = Bundle::busybox(&["sh", "-c", "echo $HOME"], &cg.child("home3"));
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["env"].as_array_mut().unwrap().push(json!("HOME=/elsewhere"));
    b.write();
    assert_eq!(rt.run_ok(&b, "home3"), "/elsewhere\n");
}

#[test]
#[ignore = "needs root"]
fn cwd_is_the_working_directory() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["pwd"], &cg.child("cwd"));
    b.config["process"]["cwd"] = json!("/home/user");
    b.write();
    assert_eq!(rt.run_ok(&b, "cwd"), "/home/user\n");
}

#[test]
#[ignore = "needs root"]
fn missing_cwd_is_created_even_with_a_read_only_root() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // As runc: the init creates a missing cwd (mode 0755, root's) before the root goes read-only.
    let mut b = Bundle::busybox(&["sh", "-c", "pwd; stat -c '%a %u' ."], &cg.child("mkcwd"));
    b.config["process"]["cwd"] = json!("/srv/app/data");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    assert_eq!(rt.run_ok(&b, "mkcwd"), "/srv/app/data\n755 0\n");
    assert!(b.rootfs().join("srv/app/data").is_dir());
}

#[test]
#[ignore = "needs root"]
fn user_group_and_additional_groups() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sh", "-c", "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status"], &cg.child("user"));
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 4242]});
    b.write();
    let out = rt.run_ok(&b, "user");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    assert_eq!(status_field(&out, "Uid").split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    assert_eq!(status_field(&out, "Gid").split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    // Exactly the listed supplementary groups: none of the runtime's remain.
    assert_eq!(status_field(&out, "Groups").split_whitespace().collect::<Vec<_>>(), ["5", "4242"]);
}

#[test]
#[ignore = "needs root"]
fn umask_applies_to_new_files() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sh", "-c", "umask; touch /dev/shm/f; mkdir /dev/shm/d; stat -c %a /dev/shm/f /dev/shm/d"], &cg.child("umask"));
    b.config["process"]["user"]["umask"] = json!(0o027);
    b.write();
    assert_eq!(rt.run_ok(&b, "umask"), "0027\n640\n750\n");
}

#[test]
#[ignore = "needs root"]
fn rlimits_set_soft_and_hard() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["sh", "-c", "ulimit -Sn; ulimit -Hn; grep 'Max core file size' /proc/self/limits"], &cg.child("rlimit"));
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096}
    ]);
    b.write();
    let out = rt.run_ok(&b, "rlimit");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["512", "2048"], "{out}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["Max", "core", "file", "size", "0", "4096", "bytes"], "{out}");
}

#[test]
#[ignore = "needs root"]
fn raising_a_hard_rlimit_above_the_hosts_needs_cap_sys_resource() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut host = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut host) }, 0);
    let above = host.rlim_max + 1;
    let mut b = Bundle::busybox(&["sh", "-c", "ulimit -Hn"], &cg.child("hardrl"));
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": above}]);
    b.write();
    if has_cap_sys_resource() {
        // A root with CAP_SYS_RESOURCE (a normal host, the test guest) may raise it.
        assert_eq!(rt.run_ok(&b, "hardrl"), format!("{above}\n"));
        return;
    }
    // Root on this development machine lacks CAP_SYS_RESOURCE: create must fail and say why.
    let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "hardrl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("cannot set RLIMIT_NOFILE to soft 1024 hard {above}")), "{err}");
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
    rt.assert_gone("hardrl", &cg);
}

/// Whether this (root) process has CAP_SYS_RESOURCE in its effective set.
fn has_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = u64::from_str_radix(status_field(&status, "CapEff"), 16).unwrap();
    const CAP_SYS_RESOURCE: u32 = 24;
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

#[test]
#[ignore = "needs root"]
fn capabilities_are_exactly_the_spec_sets() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(
        &["sh", "-c", "grep ^Cap /proc/self/status; touch /dev/shm/f; chown 1000 /dev/shm/f && echo chown-ok"],
        &cg.child("caps"),
    );
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": [],
        "ambient": []
    });
    b.write();
    let out = rt.run_ok(&b, "caps");
    assert_eq!(status_field(&out, "CapBnd"), mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_BIND_SERVICE]), "{out}");
    // With no_new_privs (the default config's), root's program keeps no more than permitted.
    assert_eq!(status_field(&out, "CapPrm"), mask(&[CAP_CHOWN, CAP_KILL]), "{out}");
    assert_eq!(status_field(&out, "CapEff"), mask(&[CAP_CHOWN, CAP_KILL]), "{out}");
    assert_eq!(status_field(&out, "CapInh"), mask(&[]), "{out}");
    assert_eq!(status_field(&out, "CapAmb"), mask(&[]), "{out}");
    assert!(out.ends_with("chown-ok\n"), "{out}");

    // The default set has no CAP_CHOWN: root inside cannot chown.
    let b = Bundle::busybox(&["sh", "-c", "touch /dev/shm/f; chown 1000 /dev/shm/f"], &cg.child("nochown"));
    let out = rt.run_bundle(&b, "nochown");
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("Operation not permitted"), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs root"]
fn ambient_capabilities_reach_a_non_root_program() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["grep", "^Cap", "/proc/self/status"], &cg.child("ambient"));
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    b.write();
    let out = rt.run_ok(&b, "ambient");
    let nbs = mask(&[CAP_NET_BIND_SERVICE]);
    assert_eq!(status_field(&out, "CapBnd"), mask(&[CAP_KILL, CAP_NET_BIND_SERVICE]), "{out}");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_field(&out, set), nbs, "{set}: {out}");
    }
    // Without ambient, a non-root program has nothing.
    let mut b = Bundle::busybox(&["grep", "^Cap", "/proc/self/status"], &cg.child("noambient"));
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    let out = rt.run_ok(&b, "noambient");
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status_field(&out, set), mask(&[]), "{set}: {out}");
    }
}

#[test]
#[ignore = "needs root"]
fn no_new_privileges_follows_the_spec() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    for (id, nnp, want) in [("nnp1", true, "1"), ("nnp0", false, "0")] {
        let mut b = Bundle::busybox(&["grep", "^NoNewPrivs", "/proc/self/status"], &cg.child(id));
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.write();
        let out = rt.run_ok(&b, id);
        assert_eq!(status_field(&out, "NoNewPrivs"), want, "{id}");
    }
}

#[test]
#[ignore = "needs root"]
fn positive_oom_score_adj_is_applied() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["cat", "/proc/self/oom_score_adj"], &cg.child("oom"));
    b.config["process"]["oomScoreAdj"] = json!(500);
    b.write();
    assert_eq!(rt.run_ok(&b, "oom"), "500\n");
}

#[test]
#[ignore = "needs root"]
fn negative_oom_score_adj_needs_cap_sys_resource() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // Lowering oom_score_adj below the runtime's own needs CAP_SYS_RESOURCE.
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    assert!(own > -500);
    let mut b = Bundle::busybox(&["cat", "/proc/self/oom_score_adj"], &cg.child("oomneg"));
    b.config["process"]["oomScoreAdj"] = json!(-500);
    b.write();
    if has_cap_sys_resource() {
        assert_eq!(rt.run_ok(&b, "oomneg"), "-500\n");
        return;
    }
    // Root on this development machine lacks it: create must fail and say so.
    let out = rt.run(&["create", "--bundle", b.path().to_str().unwrap(), "oomneg"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("oom_score_adj to -500"), "{err}");
    assert!(err.contains("CAP_SYS_RESOURCE"), "{err}");
    rt.assert_gone("oomneg", &cg);
}

/// Run `args` through the runtime with `file` open as descriptor 3.
fn run_with_fd3(rt: &Runtime, args: &[&str], file: &fs::File) -> std::process::Output {
    let mut cmd = rt.cmd(args);
    let fd = file.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 leaves fd 3 without close-on-exec,
    // except when the file already is fd 3 (then it does nothing): clear the flag explicitly.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run_captured(cmd, args)
}

#[test]
#[ignore = "needs root"]
fn preserve_fds_passes_extra_descriptors() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let dir = tempfile::Builder::new().prefix("krs-test-fds-").tempdir().unwrap();
    let path = dir.path().join("fd3");
    let file = fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let b = Bundle::busybox(&["sh", "-c", "echo through-fd-3 >&3"], &cg.child("fds"));
    let bundle = b.path().to_str().unwrap();
    let out = run_with_fd3(&rt, &["run", "--preserve-fds", "1", "--bundle", bundle, "fds"], &file);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&path).unwrap(), "through-fd-3\n");

    // Without --preserve-fds the descriptor is closed before the program runs.
    let out = run_with_fd3(&rt, &["run", "--bundle", bundle, "nofds"], &file);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("Bad file descriptor"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&path).unwrap(), "through-fd-3\n");
}
