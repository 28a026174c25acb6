//! The container process, between fork and the user's program: for `create` the container's
//! init, for `exec` a new process in a running container.
//!
//! Init, in order: wait to be placed in its cgroup; cgroup namespace; session; keyring;
//! rootfs (mounts, devices); sysctls; hostname; console; read-only and masked paths;
//! oom_score_adj; createRuntime hooks (run by the runtime); createContainer hooks;
//! pivot_root; create a missing cwd; read-only root; rlimits; [seccomp without no_new_privs];
//! identity and capabilities (no_new_privs last); cwd; find the program; report Ready; wait for
//! `start` on the exec fifo; startContainer hooks; [seccomp with no_new_privs]; execve (which
//! closes the fifo, telling `start` the program runs; a failure is written to the fifo instead).
//! An exec process: session; console; oom_score_adj; the same steps from rlimits to execve,
//! without the fifo and hooks.
//!
//! Seccomp (the filter was compiled by the runtime before forking) goes where runc puts it:
//! - with `noNewPrivileges`, as late as possible, right before execve: the filter then only
//!   has to allow `execve` itself (and `write` + `exit_group` to report a failed exec);
//! - without it, the kernel only lets a process with CAP_SYS_ADMIN load a filter, so it is
//!   loaded before the identity change drops capabilities. The runtime's remaining calls then
//!   pass through it: setgroups, setresgid, setresuid, prctl (keepcaps, bounding set, ambient,
//!   no_new_privs), capget/capset, umask, chdir, stat/access (finding the program),
//!   close_range, openat and write (the exec fifo), getpid, fork/clone/wait4 and execve for
//!   startContainer hooks, execve. The built-in default profile allows all of them; a
//!   profile that denies one makes the container fail with that step's error, as with runc.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, openat, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

use super::channel::{ChannelError, ChildEnd};
use super::credentials;
use super::keyring;
use super::launch::{setgroups_allowed, Launch, Role};
use super::message::{FromChild, FromParent};
use super::program;
use super::ChildError;
use crate::console;
use crate::hooks::{self, HookPoint};
use crate::namespaces::NsType;
use crate::rootfs::{self, pivot::Method};
use crate::seccomp::Program;
use crate::spec::ProcessConfig;
use crate::syscall::{Linux, NodeKind, Syscall};

pub fn run(l: &Launch, ch: &ChildEnd, filter: Option<&Program>) -> ! {
    let res = match &l.role {
        Role::Init { id, exec_fifo, no_pivot, no_new_keyring } => init(l, ch, filter, id, *exec_fifo, *no_pivot, *no_new_keyring),
        Role::Exec { container_pid } => exec(l, ch, filter, *container_pid),
    };
    let err = match res {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // Before Ready the runtime is listening; after it (init waiting for `start`), the
    // channel's other end is gone and stderr is all that is left.
    if ch.send(&FromChild::Error { message: err.0.clone() }).is_err() {
        eprintln!("runtime-rs: {}", err.0);
    }
    unsafe { libc::_exit(127) }
}

enum Never {}

fn chan(e: ChannelError) -> ChildError {
    ChildError(e.to_string())
}

fn proceed(ch: &ChildEnd) -> Result<String, ChildError> {
    match ch.expect("Proceed", |m| matches!(m, FromParent::Proceed { .. })).map_err(chan)? {
        FromParent::Proceed { state } => Ok(state),
        _ => unreachable!("expect checked the variant"),
    }
}

fn init(l: &Launch, ch: &ChildEnd, filter: Option<&Program>, id: &str, exec_fifo: RawFd, no_pivot: bool, no_new_keyring: bool) -> Result<Never, ChildError> {
    let sys = Linux;
    let config = l.config;
    let process = l.process;
    let state = proceed(ch)?;
    if l.namespaces.is_new(NsType::Cgroup) {
        sys.unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| ChildError::new("create cgroup namespace", e))?;
    }
    nix::unistd::setsid().map_err(|e| ChildError::new("setsid", e))?;
    if !no_new_keyring {
        keyring::join_session_keyring(id).map_err(|e| ChildError::new("join a new session keyring", e))?;
    }
    let own_mounts = l.namespaces.is_new(NsType::Mount);
    if own_mounts {
        let env = rootfs::Environment {
            user_namespace: l.namespaces.contains(NsType::User),
            cgroup_dir: l.cgroup.map(|c| c.path().to_path_buf()),
        };
        rootfs::prepare(&sys, config, &env).map_err(|e| ChildError::new("prepare the root filesystem", e))?;
    }
    write_sysctls(&sys, &config.sysctls)?;
    if let Some(h) = &config.hostname {
        sys.sethostname(h).map_err(|e| ChildError::new(&format!("set hostname {h:?}"), e))?;
    }
    if let Some(d) = &config.domainname {
        sys.setdomainname(d).map_err(|e| ChildError::new(&format!("set domain name {d:?}"), e))?;
    }
    // Our copy of the runtime's O_PATH descriptor of the fifo (see Role::Init); reopened
    // for writing through /proc/self/fd, which checks only the fifo's own permissions.
    // SAFETY: inherited across fork and owned by nothing else in this process.
    let fifo = unsafe { OwnedFd::from_raw_fd(exec_fifo) };
    let fd_dir = open("/proc/self/fd", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| ChildError::new("open /proc/self/fd", e))?;
    if process.terminal {
        attach_console(&sys, l, &config.rootfs, own_mounts)?;
    }
    if own_mounts {
        rootfs::protect(&sys, config).map_err(|e| ChildError::new("protect paths", e))?;
    }
    set_oom_score_adj(&sys, process.oom_score_adj)?;

    ch.send(&FromChild::RunCreateRuntimeHooks).map_err(chan)?;
    ch.expect("HooksDone", |m| matches!(m, FromParent::HooksDone)).map_err(chan)?;
    hooks::run(HookPoint::CreateContainer, l.hooks(), &state).map_err(|e| ChildError(e.to_string()))?;

    let method = match (own_mounts, no_pivot) {
        (false, _) => Method::Chroot,
        (true, true) => Method::MoveMount,
        (true, false) => Method::PivotRoot,
    };
    rootfs::pivot(&sys, &config.rootfs, method).map_err(|e| ChildError(e.to_string()))?;
    rootfs::create_cwd(&sys, &process.cwd).map_err(|e| ChildError(e.to_string()))?;
    if own_mounts {
        rootfs::finalize(&sys, config).map_err(|e| ChildError(e.to_string()))?;
    }
    let ready = prepare_process(&sys, l, filter)?;

    ch.send(&FromChild::Ready).map_err(chan)?;
    let mut started = wait_for_start(&fd_dir, &fifo)?;
    drop(fifo);
    drop(fd_dir);
    let state = with_status(&state, "created");
    let res = hooks::run(HookPoint::StartContainer, l.hooks(), &state)
        .map_err(|e| ChildError(e.to_string()))
        .and_then(|()| seccomp_before_exec(l, filter))
        .and_then(|()| exec_program(&ready));
    // Only a failure comes back here: tell `start`, which reads the fifo until our end closes.
    let err = match res {
        Ok(never) => match never {},
        Err(e) => e,
    };
    use std::io::Write;
    let _ = started.write_all(err.0.as_bytes());
    Err(err)
}

/// The state JSON with another `status` (runc gives startContainer hooks "created").
fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = status.into();
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

fn exec(l: &Launch, ch: &ChildEnd, filter: Option<&Program>, container_pid: i32) -> Result<Never, ChildError> {
    let sys = Linux;
    proceed(ch)?;
    nix::unistd::setsid().map_err(|e| ChildError::new("setsid", e))?;
    if !l.namespaces.contains(NsType::Mount) {
        // No mount namespace to join: the container is a chroot; follow it there.
        let root = PathBuf::from(format!("/proc/{container_pid}/root"));
        rootfs::pivot(&sys, &root, Method::Chroot).map_err(|e| ChildError(e.to_string()))?;
    }
    if l.process.terminal {
        attach_console(&sys, l, Path::new("/"), false)?;
    }
    set_oom_score_adj(&sys, l.process.oom_score_adj)?;
    let ready = prepare_process(&sys, l, filter)?;
    seccomp_before_exec(l, filter)?;
    exec_program(&ready)
}

/// Load the filter while the process may still (CAP_SYS_ADMIN): without no_new_privs, before
/// the identity change.
fn seccomp_while_privileged(p: &ProcessConfig, filter: Option<&Program>) -> Result<(), ChildError> {
    match filter {
        Some(f) if !p.no_new_privileges => f.install().map_err(|e| ChildError(e.to_string())),
        _ => Ok(()),
    }
}

/// Load the filter right before execve when no_new_privs is set (and so allows it).
fn seccomp_before_exec(l: &Launch, filter: Option<&Program>) -> Result<(), ChildError> {
    match filter {
        Some(f) if l.process.no_new_privileges => f.install().map_err(|e| ChildError(e.to_string())),
        _ => Ok(()),
    }
}

/// What is left to do once the process is ready: exec.
struct ReadyProcess {
    program: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

/// rlimits, seccomp (without no_new_privs), identity, cwd, program and environment; fds beyond the preserved ones are closed
/// at exec.
fn prepare_process(sys: &dyn Syscall, l: &Launch, filter: Option<&Program>) -> Result<ReadyProcess, ChildError> {
    let p = l.process;
    credentials::apply_rlimits(sys, &p.rlimits).map_err(|e| ChildError(e.to_string()))?;
    // Read before changing user: /etc/passwd may not be readable afterwards.
    let passwd = std::fs::read_to_string("/etc/passwd").ok();
    seccomp_while_privileged(p, filter)?;
    let supported = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    let warnings = credentials::apply_identity(sys, p, &supported, setgroups_allowed()).map_err(|e| ChildError(e.to_string()))?;
    for w in warnings {
        tracing::debug!("{w}");
    }
    sys.chdir(&p.cwd).map_err(|e| ChildError(format!("chdir to cwd ({:?}) set in config.json failed: {}", p.cwd, e.desc().to_lowercase())))?;
    let program = program::find_program(p).map_err(ChildError)?;
    let mut env = program::environment(p, passwd.as_deref());
    if let Ok(n) = std::env::var("LISTEN_FDS") {
        // Socket activation passes through, as with runc: the fds follow stdio.
        env.push(CString::new(format!("LISTEN_FDS={n}")).expect("no NUL"));
        env.push(CString::new("LISTEN_PID=1").expect("no NUL"));
    }
    mark_cloexec_from(3 + l.preserve_fds);
    Ok(ReadyProcess {
        program: CString::new(program.as_os_str().as_bytes()).map_err(|_| ChildError("program path contains NUL".into()))?,
        args: p.args.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(|_| ChildError("process.args contains NUL".into()))?,
        env,
    })
}

fn exec_program(p: &ReadyProcess) -> Result<Never, ChildError> {
    let err = nix::unistd::execve(&p.program, &p.args, &p.env).unwrap_err();
    Err(ChildError(format!("exec {:?}: {}", p.program, err.desc().to_lowercase())))
}

fn write_sysctls(sys: &dyn Syscall, sysctls: &[(String, String)]) -> Result<(), ChildError> {
    for (key, value) in sysctls {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        sys.write_file(&path, value).map_err(|e| ChildError::new(&format!("set sysctl {key}={value}"), e))?;
    }
    Ok(())
}

fn set_oom_score_adj(sys: &dyn Syscall, adj: Option<i32>) -> Result<(), ChildError> {
    let Some(adj) = adj else { return Ok(()) };
    sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string()).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied { " (lowering it needs CAP_SYS_RESOURCE)" } else { "" };
        ChildError(format!("cannot set oom_score_adj to {adj}: {e}{hint}"))
    })
}

/// Make a pty in the container's devpts, bind its slave at /dev/console (when the container
/// has its own mounts), hand the master to the console socket, and take the slave as our
/// stdio and controlling terminal.
fn attach_console(sys: &dyn Syscall, l: &Launch, root: &Path, own_mounts: bool) -> Result<(), ChildError> {
    let socket = l.console_socket.as_ref().ok_or_else(|| ChildError("a terminal was requested but there is no console socket".into()))?;
    let ptmx = sys
        .resolve_in_root(root, Path::new("/dev/pts/ptmx"), None)
        .map_err(|e| ChildError::new("find /dev/pts/ptmx in the container (is devpts mounted at /dev/pts?)", e))?;
    let pty = console::open_pty(ptmx.path()).map_err(|e| ChildError(e.to_string()))?;
    if own_mounts {
        let slave = sys
            .resolve_in_root(root, &PathBuf::from(format!("/dev/pts/{}", pty.index)), None)
            .map_err(|e| ChildError::new("find the pty slave", e))?;
        let target = sys
            .resolve_in_root(root, Path::new("/dev/console"), Some(NodeKind::File))
            .map_err(|e| ChildError::new("create /dev/console", e))?;
        sys.mount(Some(slave.path()), target.path(), None, nix::mount::MsFlags::MS_BIND, None)
            .map_err(|e| ChildError::new("bind the terminal at /dev/console", e))?;
    }
    if let Some((rows, cols)) = l.process.console_size {
        console::set_window_size(pty.master.as_fd(), rows, cols).map_err(|e| ChildError::new("set the terminal size", e))?;
    }
    console::send_fd(socket.as_fd(), pty.master.as_fd(), "/dev/ptmx").map_err(|e| ChildError(e.to_string()))?;
    drop(pty.master);
    console::become_controlling(&pty.slave).map_err(|e| ChildError(e.to_string()))
}

/// Block until `start` opens the exec fifo for reading, then tell it we are going. The
/// returned writer is close-on-exec: `start` sees the fifo's end when the program runs.
fn wait_for_start(fd_dir: &OwnedFd, fifo: &OwnedFd) -> Result<File, ChildError> {
    let name = fifo.as_raw_fd().to_string();
    let fd = openat(fd_dir, name.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| ChildError::new("open the exec fifo for writing", e))?;
    let mut f = File::from(fd);
    use std::io::Write;
    f.write_all(b"0").map_err(|e| ChildError::new("write to the exec fifo", e))?;
    Ok(f)
}

/// Close-on-exec for every descriptor from `first` up: only stdio and the preserved ones
/// reach the user's program.
fn mark_cloexec_from(first: i32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let res = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if res < 0 {
        // Old kernel: walk /proc/self/fd.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
            for fd in fds.into_iter().filter(|fd| *fd >= first) {
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}
