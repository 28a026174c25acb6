//! The built-in profile for Kubernetes' `RuntimeDefault`: refuse (EPERM) every syscall that is
//! not on an allowlist of what ordinary programs use, and open the privileged ones only to a
//! container that holds the capability the kernel would check anyway, so the filter narrows the
//! kernel's attack surface without changing what a correctly-capable container can do.
//!
//! Never allowed, whatever the capabilities: loading kernels (`kexec_*`), the kernel keyring
//! (`keyctl`, `add_key`, `request_key`: not namespaced), `open_by_handle_at` (escapes bind
//! mounts), `userfaultfd` (exploit aid), obsolete or host-wide calls (`nfsservctl`, `uselib`,
//! `sysfs`, `_sysctl`, `ustat`, `vm86`, `swapon`/`swapoff`). `bpf` and `perf_event_open` only
//! with CAP_SYS_ADMIN (or CAP_BPF / CAP_PERFMON).
//!
//! Written from that intent for runtime-rs; the names are those libseccomp 2.5 knows.

use caps::{Capability, CapsHashSet};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

/// Syscalls every container may make.
const ALLOWED: &[&str] = &[
    // files and directories
    "access", "chdir", "chmod", "chown", "chown32", "close", "close_range", "copy_file_range", "creat", "dup", "dup2",
    "dup3", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat",
    "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
    "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "getcwd", "getdents", "getdents64", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "mkdir", "mkdirat", "mknod",
    "mknodat", "newfstatat", "open", "openat", "openat2", "pipe", "pipe2", "pread64", "preadv", "preadv2",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "removexattr",
    "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64", "setxattr", "splice", "stat", "stat64",
    "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
    "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vmsplice",
    "write", "writev", "fanotify_mark",
    // polling, events, asynchronous I/O
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ioctl", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64", "select", "_newselect", "signalfd",
    "signalfd4", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
    // memory
    "brk", "madvise", "membarrier", "memfd_create", "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
    "remap_file_pages",
    // processes and threads
    "arch_prctl", "capget", "capset", "clone", "execve", "execveat", "exit", "exit_group", "fork", "futex",
    "futex_time64", "futex_waitv", "get_robust_list", "get_thread_area", "getcpu", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "getrusage", "getsid", "gettid", "getuid", "getuid32", "ioprio_get", "ioprio_set", "kill",
    "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64", "restart_syscall", "rseq", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "set_robust_list", "set_thread_area",
    "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "setsid", "setuid", "setuid32",
    "ugetrlimit", "vfork", "wait4", "waitid", "waitpid", "tgkill", "tkill", "uname", "olduname", "oldolduname",
    "sysinfo", "times", "alarm", "pause", "nanosleep", "clock_nanosleep", "clock_nanosleep_time64",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "seccomp",
    // signals
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaction", "sigaltstack", "signal",
    "sigpending", "sigprocmask", "sigreturn", "sigsuspend",
    // time (reading only)
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "gettimeofday", "time",
    // networking
    "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen", "recv",
    "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send", "sendmmsg", "sendmsg", "sendto", "setsockopt",
    "shutdown", "socket", "socketcall", "socketpair",
    // System V and POSIX IPC (scoped by the IPC namespace)
    "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
    // 32-bit ARM's own (skipped on other architectures)
    "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls",
];

/// Syscalls opened by a capability the container holds (in its bounding set).
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::CAP_SYS_ADMIN,
        &[
            "bpf", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
            "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
        ],
    ),
    (Capability::CAP_BPF, &["bpf"]),
    (Capability::CAP_PERFMON, &["perf_event_open"]),
    (Capability::CAP_SYS_BOOT, &["reboot"]),
    (Capability::CAP_SYS_CHROOT, &["chroot"]),
    (Capability::CAP_SYS_MODULE, &["delete_module", "init_module", "finit_module"]),
    (Capability::CAP_SYS_PACCT, &["acct"]),
    (
        Capability::CAP_SYS_PTRACE,
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    (Capability::CAP_SYS_RAWIO, &["iopl", "ioperm"]),
    (Capability::CAP_SYS_TIME, &["settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime", "clock_adjtime64"]),
    (Capability::CAP_SYS_TTY_CONFIG, &["vhangup"]),
    (Capability::CAP_SYS_NICE, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node", "move_pages", "migrate_pages"]),
    (Capability::CAP_SYSLOG, &["syslog"]),
];

/// Namespace flags `clone` may not carry without CAP_SYS_ADMIN: CLONE_NEWNS, NEWCGROUP,
/// NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `personality` values that change nothing dangerous: PER_LINUX, PER_LINUX32, UNAME26 with
/// either, and 0xffffffff (a query). ADDR_NO_RANDOMIZE and the rest stay refused.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The profile for a container whose bounding capabilities are `caps`.
pub fn runtime_default(caps: &CapsHashSet) -> LinuxSeccomp {
    let mut allowed: Vec<&str> = ALLOWED.to_vec();
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(cap) {
            allowed.extend(names.iter().copied());
        }
    }
    allowed.sort_unstable();
    allowed.dedup();
    let mut syscalls: Vec<Value> = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    for p in PERSONALITIES {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]}));
    }
    if !caps.contains(&Capability::CAP_SYS_ADMIN) {
        // clone without new namespaces; clone3 passes its flags in memory, out of the filter's
        // sight, so it gets ENOSYS and the C library falls back to clone.
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": clone_flags_arg(), "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    }
    let value = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": architectures(),
        "syscalls": syscalls,
    });
    serde_json::from_value(value).expect("the built-in profile is a valid LinuxSeccomp")
}

/// The native architecture and the ones its processes may also use.
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    } else {
        vec!["SCMP_ARCH_NATIVE"]
    }
}

/// `clone`'s flags are its first argument, except on s390 where they are the second.
fn clone_flags_arg() -> u32 {
    if cfg!(target_arch = "s390x") { 1 } else { 0 }
}
