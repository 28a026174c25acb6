//! Seccomp filters from `linux.seccomp`, on the real kernel: errno actions, kill, argument
//! filters, the built-in RuntimeDefault profile, exec processes, with and without
//! no_new_privs, and bad profiles refused with nothing left behind.
//! Root-only: run through scripts/test as root. Needs no cgroup controller.

use serde_json::{json, Value};
use test_support::{require_root, shift_ownership, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// A profile that allows everything but `names`, which get `action` (and `errnoRet`).
fn deny(names: &[&str], action: &str, errno: Option<u32>) -> Value {
    let mut rule = json!({"names": names, "action": action});
    if let Some(e) = errno {
        rule["errnoRet"] = json!(e);
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
}

/// A busybox bundle running `args` under `profile`.
fn bundle(cg: &CgroupParent, id: &str, args: &[&str], profile: Value) -> Bundle {
    let mut b = Bundle::busybox(args, &cg.child(id));
    b.config["linux"]["seccomp"] = profile;
    b.write();
    b
}

const MKDIR: &[&str] = &["mkdir", "mkdirat"];

#[test]
#[ignore = "needs root"]
fn a_denied_syscall_fails_with_eperm_and_the_rest_works() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, "eperm", &["sh", "-c", "mkdir /dev/shm/x; echo status=$?; ls -d /dev/shm"], deny(MKDIR, "SCMP_ACT_ERRNO", Some(1)));
    let out = rt.run_bundle(&b, "eperm");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(stdout, "status=1\n/dev/shm\n");
}

#[test]
#[ignore = "needs root"]
fn errno_ret_is_returned_and_filter_flags_are_accepted() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut profile = deny(MKDIR, "SCMP_ACT_ERRNO", Some(28));
    profile["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"]);
    let b = bundle(&cg, "enospc", &["mkdir", "/dev/shm/x"], profile);
    let out = rt.run_bundle(&b, "enospc");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("No space left on device"), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs root"]
fn kill_process_ends_the_container_with_sigsys() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, "sigsys", &["mkdir", "/dev/shm/x"], deny(MKDIR, "SCMP_ACT_KILL_PROCESS", None));
    let out = rt.run_bundle(&b, "sigsys");
    // 128 + SIGSYS (31)
    assert_eq!(out.status.code(), Some(159), "{}", text(&out.stderr));
}

#[test]
#[ignore = "needs root"]
fn arguments_are_filtered() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // personality(PER_LINUX32) is refused; personality(PER_LINUX) is not.
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]});
    let b = bundle(&cg, "args", &["sh", "-c", "linux64 true && echo linux64 ok; linux32 true || echo linux32 refused"], profile);
    let out = rt.run_bundle(&b, "args");
    assert_eq!(text(&out.stdout), "linux64 ok\nlinux32 refused\n", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Operation not permitted"), "{}", text(&out.stderr));

    // MASKED_EQ: socket(AF_INET, type) refused when the type's low bits (flags such as
    // SOCK_CLOEXEC masked off) are `valueTwo`. nc makes a TCP socket (SOCK_STREAM = 1).
    for (id, sock_type, refused) in [("masked-tcp", 1, true), ("masked-udp", 2, false)] {
        let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
             "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 15, "valueTwo": sock_type, "op": "SCMP_CMP_MASKED_EQ"}]}]});
        let b = bundle(&cg, id, &["nc", "-w", "1", "127.0.0.1", "9"], profile);
        let out = rt.run_bundle(&b, id);
        assert!(!out.status.success());
        // errno 97 is EAFNOSUPPORT; unfiltered, the connection fails otherwise (nothing listens).
        let stderr = text(&out.stderr);
        assert_eq!(stderr.contains("Address family not supported"), refused, "{id}: {stderr}");
    }
}

/// The built-in profile as `runtime-rs spec --seccomp-runtime-default` writes it, for the
/// default spec's capabilities (no CAP_SYS_ADMIN, no CAP_SYS_PTRACE).
fn runtime_default_profile(rt: &Runtime) -> Value {
    let dir = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--seccomp-runtime-default", "--bundle", dir.path().to_str().unwrap()]);
    let spec: Value = serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    spec["linux"]["seccomp"].clone()
}

#[test]
#[ignore = "needs root"]
fn the_runtime_default_profile_runs_ordinary_programs_and_refuses_the_dangerous_ones() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let profile = runtime_default_profile(&rt);
    let script = "ls / >/dev/null && cat /etc/passwd >/dev/null && sleep 0.1 && echo hi | sed s/hi/ordinary/ && \
                  grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; \
                  unshare -U true || echo unshare refused; \
                  mount -t tmpfs t /tmp || echo mount refused";
    let b = bundle(&cg, "default", &["sh", "-c", script], profile.clone());
    let out = rt.run_bundle(&b, "default");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        stdout,
        "ordinary\nNoNewPrivs:\t1\nSeccomp:\t2\nunshare refused\nmount refused\n",
        "stderr: {stderr}"
    );
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // The control: without the filter, unshare(CLONE_NEWUSER) needs no capability and works.
    let b = Bundle::busybox(&["sh", "-c", "unshare -U true && echo unshare works"], &cg.child("default-control"));
    assert_eq!(rt.run_ok(&b, "default-control"), "unshare works\n");

    // Even with CAP_SYS_ADMIN in its sets, a container under the profile made without it
    // cannot mount: the filter refuses before the kernel looks at capabilities.
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    for (id, seccomp, want) in [("admin-filtered", Some(profile), "mount refused\n"), ("admin-control", None, "mounted\n")] {
        let mut b = Bundle::busybox(&["sh", "-c", "mount -t tmpfs t /tmp && echo mounted || echo mount refused"], &cg.child(id));
        if let Some(p) = seccomp {
            b.config["linux"]["seccomp"] = p;
        }
        b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        b.write();
        assert_eq!(rt.run_ok(&b, id), want);
    }
}

#[test]
#[ignore = "needs root"]
fn the_filter_applies_with_and_without_no_new_privs_and_for_another_user() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    for (i, (nnp, uid)) in [(true, 0), (false, 0), (false, 1000), (true, 1000)].into_iter().enumerate() {
        let id = format!("nnp{i}");
        let mut b = bundle(&cg, &id, &["sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; id -u; mkdir /dev/shm/x"], deny(MKDIR, "SCMP_ACT_ERRNO", Some(28)));
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["process"]["user"] = json!({"uid": uid, "gid": uid});
        b.write();
        let out = rt.run_bundle(&b, &id);
        let want = format!("NoNewPrivs:\t{}\nSeccomp:\t2\n{uid}\n", u8::from(nnp));
        assert_eq!(text(&out.stdout), want, "nnp={nnp} uid={uid}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("No space left on device"), "nnp={nnp} uid={uid}: {}", text(&out.stderr));
    }
}

#[test]
#[ignore = "needs root"]
fn exec_processes_get_the_containers_filter() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    for nnp in [true, false] {
        let id = format!("exec-{nnp}");
        let mut b = bundle(&cg, &id, &["sleep", "999"], deny(MKDIR, "SCMP_ACT_ERRNO", Some(28)));
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.write();
        rt.create_and_start(&b, &id);
        let out = rt.run(&["exec", &id, "mkdir", "/dev/shm/x"]);
        assert_eq!(out.status.code(), Some(1), "nnp={nnp}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("No space left on device"), "nnp={nnp}: {}", text(&out.stderr));
        // --no-new-privs on exec moves the load to just before execve; still filtered.
        let out = rt.run(&["exec", "--no-new-privs", &id, "mkdir", "/dev/shm/y"]);
        assert!(text(&out.stderr).contains("No space left on device"), "nnp={nnp}: {}", text(&out.stderr));
        assert_eq!(rt.ok(&["exec", &id, "grep", "^Seccomp:", "/proc/self/status"]), "Seccomp:\t2\n");
        rt.ok(&["delete", "--force", &id]);
        rt.assert_gone(&id, &cg);
    }
}

#[test]
#[ignore = "needs root"]
fn bad_profiles_fail_create_and_leave_nothing_behind() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let cases: [(&str, Value, &[&str]); 4] = [
        (
            "unknown",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG"}, {"names": ["write", "foo_bar"], "action": "SCMP_ACT_ERRNO"}]}),
            &["linux.seccomp.syscalls[1].names[1]: unknown syscall", "foo_bar"],
        ),
        (
            "action",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}),
            &["linux.seccomp.syscalls[0].action", "SCMP_ACT_MAYBE"],
        ),
        (
            "notify",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            &["linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY (seccomp user notification) is not supported"],
        ),
        (
            "index",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
            &["linux.seccomp.syscalls[0].args[0].index: 6 is out of range"],
        ),
    ];
    for (id, profile, want) in cases {
        let b = bundle(&cg, id, &["true"], profile);
        let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), id]);
        for w in want {
            assert!(err.contains(w), "{id}: missing {w:?} in {err}");
        }
        rt.assert_gone(id, &cg);
    }
}

#[test]
#[ignore = "needs root"]
fn without_no_new_privs_the_runtimes_last_calls_pass_the_filter_and_a_refusal_cleans_up() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // Without no_new_privs the filter is loaded before the switch to uid 1000, so a profile
    // that refuses setresuid stops the runtime there: create fails naming the step, and the
    // container (state, cgroup) is gone.
    let mut b = bundle(&cg, "setuid", &["true"], deny(&["setresuid", "setuid"], "SCMP_ACT_ERRNO", Some(1)));
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), "setuid"]);
    assert!(err.contains("cannot set uid 1000"), "{err}");
    rt.assert_gone("setuid", &cg);
    // With no_new_privs the filter comes after the identity change, right before execve.
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.write();
    rt.run_ok(&b, "setuid");
}

#[test]
#[ignore = "needs root"]
fn in_a_user_namespace_the_filter_loads_without_no_new_privs() {
    require_root();
    const BASE: u32 = 100000;
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // CAP_SYS_ADMIN of the container's own user namespace is what the kernel asks for.
    let mut b = bundle(&cg, "userns", &["sh", "-c", "grep '^Seccomp:' /proc/self/status; mkdir /dev/shm/x"], deny(MKDIR, "SCMP_ACT_ERRNO", Some(28)));
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": BASE, "size": 65536}]);
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.write();
    shift_ownership(&b.rootfs(), BASE);
    let out = rt.run_bundle(&b, "userns");
    assert_eq!(text(&out.stdout), "Seccomp:\t2\n", "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("No space left on device"), "{}", text(&out.stderr));
}
