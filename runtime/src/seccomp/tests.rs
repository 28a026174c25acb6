use super::*;
use crate::spec::parse_json;
use caps::CapsHashSet;
use nix::sys::wait::WaitStatus;

fn seccomp(json: &str) -> LinuxSeccomp {
    parse_json(json).unwrap()
}

fn problems(json: &str) -> Vec<String> {
    match convert(&seccomp(json), "linux.seccomp") {
        Ok(p) => panic!("expected problems, got {p:#?}"),
        Err(p) => p.into_iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_profile_converts_with_actions_errnos_and_arguments() {
    let p = convert(
        &seccomp(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":28},
                        {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
                        {"names":["getpid"],"action":"SCMP_ACT_KILL_PROCESS"},
                        {"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ),
        "linux.seccomp",
    )
    .unwrap();
    assert_eq!(p.default_action, Action::Allow);
    assert_eq!(p.flags, FLAG_LOG);
    let summary: Vec<(&str, Action, usize)> = p.rules.iter().map(|r| (r.name.as_str(), r.action, r.conditions.len())).collect();
    // `read` has the default action and is dropped; ERRNO without errnoRet is EPERM.
    assert_eq!(
        summary,
        vec![("mkdir", Action::Errno(28), 0), ("mkdirat", Action::Errno(28), 0), ("personality", Action::Errno(1), 1), ("getpid", Action::KillProcess, 0)]
    );
    assert_eq!(p.rules[0].nr, libc::SYS_mkdir as i32);
}

#[test]
fn unknown_syscall_names_the_field_and_the_syscall() {
    let got = problems(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"},
            {"names":["write","foo_bar"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let native = arch_short(ScmpArch::native());
    assert_eq!(got, vec![format!("linux.seccomp.syscalls[1].names[1]: unknown syscall \"foo_bar\" for {native}")]);
}

#[test]
fn every_problem_is_reported() {
    let got = problems(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":5,"listenerPath":"/run/l.sock",
            "flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls":[{"names":[],"action":"SCMP_ACT_ERRNO"},
                        {"names":["read"],"action":"SCMP_ACT_NOTIFY"},
                        {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":70000},
                        {"names":["openat"],"action":"SCMP_ACT_KILL","errnoRet":1,"args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let want = [
        "linux.seccomp.defaultErrnoRet: is only meaningful with defaultAction SCMP_ACT_ERRNO",
        "linux.seccomp.listenerPath: seccomp user notification (SCMP_ACT_NOTIFY) is not supported",
        "linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to user notification",
        "linux.seccomp.syscalls[0].names: must name at least one syscall",
        "linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY (seccomp user notification) is not supported",
        "linux.seccomp.syscalls[2].errnoRet: 70000 is not an errno number",
        "linux.seccomp.syscalls[3].errnoRet: is only meaningful with action SCMP_ACT_ERRNO",
        "linux.seccomp.syscalls[3].args[0].index: 6 is out of range",
    ];
    for w in want {
        assert!(got.iter().any(|g| g.starts_with(w)), "missing {w:?} in {got:#?}");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn bad_action_is_a_parse_error_naming_the_field() {
    let err = parse_json::<oci_spec::runtime::Spec>(
        r#"{"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_MAYBE"}]}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.0, "linux.seccomp.syscalls[0].action");
    assert!(err.1.contains("SCMP_ACT_MAYBE"), "{}", err.1);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn names_of_other_architectures_apply_only_where_they_exist() {
    let json = |archs: &str| {
        format!(r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":{archs},
            "syscalls":[{{"names":["_llseek","socketcall","mkdir"],"action":"SCMP_ACT_ERRNO"}}]}}"#)
    };
    // x86_64 alone: the i386-only names are skipped, not errors.
    let p = convert(&seccomp(&json(r#"["SCMP_ARCH_X86_64"]"#)), "linux.seccomp").unwrap();
    assert_eq!(p.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mkdir"]);
    // With x86 in the filter they are kept, and the program compiles.
    let p = convert(&seccomp(&json(r#"["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"]"#)), "linux.seccomp").unwrap();
    assert_eq!(p.rules.len(), 3);
    assert_eq!(p.extra_architectures, vec![ScmpArch::X86, ScmpArch::X32]);
    compile(&p).unwrap();
}

#[test]
fn arguments_on_one_index_become_alternatives() {
    let p = convert(
        &seccomp(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                {"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2,"op":"SCMP_CMP_EQ"},{"index":1,"value":15,"valueTwo":1,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        ),
        "linux.seccomp",
    )
    .unwrap();
    let shape: Vec<(&str, usize)> = p.rules.iter().map(|r| (r.name.as_str(), r.conditions.len())).collect();
    assert_eq!(shape, vec![("personality", 1), ("personality", 1), ("socket", 2)]);
    let masked = p.rules[2].conditions[1].to_scmp();
    assert_eq!(masked, ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(15), 1));
    compile(&p).unwrap();
}

#[test]
fn the_default_profile_resolves_and_compiles_with_and_without_capabilities() {
    let none = CapsHashSet::new();
    let all: CapsHashSet = caps::all();
    for set in [&none, &all] {
        let spec = runtime_default(set);
        let p = convert(&spec, "linux.seccomp").unwrap_or_else(|e| panic!("{e:#?}"));
        let prog = compile(&p).unwrap();
        assert!(prog.instructions.len() > 100, "{}", prog.instructions.len());
    }
    let allowed = |set: &CapsHashSet, name: &str| {
        runtime_default(set).syscalls().clone().unwrap().iter().any(|s| s.names().contains(&name.to_string()) && s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
    };
    for name in ["mount", "unshare", "setns", "ptrace", "bpf", "chroot", "reboot"] {
        assert!(!allowed(&none, name), "{name} allowed without capabilities");
        assert!(allowed(&all, name), "{name} not allowed with every capability");
    }
    for name in ["kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key", "open_by_handle_at", "userfaultfd"] {
        assert!(!allowed(&all, name), "{name} allowed");
    }
    for name in ["read", "execve", "capset", "setresuid", "close_range", "openat", "write", "clone", "wait4"] {
        assert!(allowed(&all, name), "{name} not allowed");
    }
}


/// Fork, set no_new_privs, install `prog`, run `f` and exit with what it returns; the parent
/// gets the child's wait status. The child only makes raw system calls.
fn in_filtered_child(prog: &Program, f: fn() -> i32) -> WaitStatus {
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                if prog.install().is_err() {
                    libc::_exit(101);
                }
                f()
            };
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None).unwrap(),
    }
}

fn errno_of(res: libc::c_long) -> i32 {
    if res < 0 { unsafe { *libc::__errno_location() } } else { 0 }
}

#[test]
fn a_loaded_filter_returns_the_configured_errno() {
    let p = convert(
        &seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat","mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":28}]}"#),
        "linux.seccomp",
    )
    .unwrap();
    let prog = compile(&p).unwrap();
    fn child() -> i32 {
        let r = unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c"/nonexistent-dir/x".as_ptr(), 0o755) };
        if errno_of(r) != libc::ENOSPC {
            return 1;
        }
        // Everything else still works.
        if unsafe { libc::syscall(libc::SYS_getpid) } <= 0 {
            return 2;
        }
        0
    }
    match in_filtered_child(&prog, child) {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("the filtered child failed: {other:?}"),
    }
}

#[test]
fn argument_filters_and_kill_process_act_in_the_kernel() {
    let p = convert(
        &seccomp(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":22,"args":[{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
                {"names":["getppid"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        ),
        "linux.seccomp",
    )
    .unwrap();
    let prog = compile(&p).unwrap();
    fn child() -> i32 {
        // The query is refused with EINVAL (22) by the filter; setting PER_LINUX (0) passes.
        let q = unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
        if errno_of(q) != libc::EINVAL {
            return 1;
        }
        if unsafe { libc::syscall(libc::SYS_personality, 0u64) } < 0 {
            return 2;
        }
        unsafe { libc::syscall(libc::SYS_getppid) };
        3
    }
    match in_filtered_child(&prog, child) {
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _) => {}
        other => panic!("expected death by SIGSYS, got {other:?}"),
    }
}

#[test]
fn of_two_unconditional_rules_for_one_syscall_the_first_wins() {
    // libseccomp keeps the first (as under runc, which uses it too); documented in mod.rs.
    let p = convert(
        &seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":5},{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":28}]}"#),
        "linux.seccomp",
    )
    .unwrap();
    let prog = compile(&p).unwrap();
    fn child() -> i32 {
        let r = unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, c"/nonexistent-dir/x".as_ptr(), 0o755) };
        errno_of(r)
    }
    match in_filtered_child(&prog, child) {
        WaitStatus::Exited(_, code) => assert_eq!(code, libc::EIO),
        other => panic!("{other:?}"),
    }
}
