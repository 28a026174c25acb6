//! The runtime's side of starting a container process.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Hooks;

use super::channel::{self, ChannelError, ParentEnd};
use super::message::{FromChild, FromParent};
use super::fork::{fork_into, Forked};
use super::intermediate;
use crate::cgroups::{CgroupError, CgroupManager};
use crate::hooks::{self, HookError, HookPoint};
use crate::namespaces::Namespaces;
use crate::seccomp::{self, SeccompError};
use crate::spec::{id_map_lines, Config, ProcessConfig};

/// Which process is being started.
#[derive(Debug, Clone)]
pub enum Role {
    /// The container's init, at `create`: it waits on the exec fifo until `start`.
    /// `exec_fifo` is an `O_PATH` descriptor of it, opened by the runtime and inherited
    /// across the forks: the init may be a user namespace's root, which cannot always reach
    /// the state directory by path (runc hands the fifo over the same way).
    Init { id: String, exec_fifo: RawFd, no_pivot: bool, no_new_keyring: bool },
    /// A new process in a running container whose init is `container_pid`.
    Exec { container_pid: i32 },
}

/// Everything the forked processes need; they read it from their copy of our memory.
pub struct Launch<'a> {
    pub config: &'a Config,
    pub process: &'a ProcessConfig,
    pub role: Role,
    /// For `create` the spec's namespaces; for `exec` the container's, joined through /proc.
    pub namespaces: Namespaces,
    pub cgroup: Option<&'a dyn CgroupManager>,
    pub console_socket: Option<OwnedFd>,
    /// How many descriptors from 3 up the process inherits (`--preserve-fds` + `LISTEN_FDS`).
    pub preserve_fds: i32,
    /// The runtime-spec state for hooks; `pid` is filled in once the process exists.
    pub state: serde_json::Value,
}

impl Launch<'_> {
    pub fn hooks(&self) -> Option<&Hooks> {
        self.config.spec.hooks().as_ref()
    }

    pub fn is_init(&self) -> bool {
        matches!(self.role, Role::Init { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("cannot fork: {0}")]
    Fork(nix::Error),
    #[error("{0}")]
    Child(String),
    #[error("the container process setup ended unexpectedly ({0})")]
    Died(String),
    #[error("cannot write {file} for the user namespace: {source}")]
    IdMap { file: PathBuf, source: std::io::Error },
    #[error("cannot write the time namespace offsets (linux.timeOffsets) to {file}: {source}")]
    TimeOffsets { file: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

/// Start the process; returns its pid as the runtime sees it. For an init, it returns once
/// the init waits for `start`; for exec, once the program was executed.
pub fn launch(l: &Launch) -> Result<i32, LaunchError> {
    // Compiled here, before anything is forked: the container process only loads the bytes.
    // `exec` processes get the container's filter, as with runc.
    let filter = l.config.seccomp.as_ref().map(seccomp::compile).transpose()?;
    let (parent, child) = channel::pair()?;
    let target = match l.cgroup {
        Some(cg) => cg.clone_target()?,
        None => None,
    };
    // SAFETY: the runtime is single-threaded here; the child only runs our code, then execs.
    match unsafe { fork_into(target.as_ref().map(|fd| fd.as_fd())) }.map_err(LaunchError::Fork)? {
        Forked::Child => {
            drop(parent);
            drop(target);
            intermediate::run(l, child, filter.as_ref())
        }
        Forked::Parent { child: intermediate_pid, in_cgroup } => {
            drop(child);
            drop(target);
            let mut pid = None;
            let res = drive(l, &parent, intermediate_pid, in_cgroup, &mut pid);
            if res.is_err() {
                if let Some(pid) = pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = kill(intermediate_pid, Signal::SIGKILL);
                let _ = waitpid(intermediate_pid, None);
            }
            res
        }
    }
}

fn drive(l: &Launch, ch: &ParentEnd, intermediate: Pid, in_cgroup: bool, pid_out: &mut Option<i32>) -> Result<i32, LaunchError> {
    let pid = loop {
        match ch.recv()? {
            Some(FromChild::UserNamespaceCreated) => {
                write_id_maps(l.config, intermediate.as_raw())?;
                ch.send(&FromParent::IdMapsWritten)?;
            }
            Some(FromChild::TimeNamespaceCreated) => {
                write_time_offsets(l.config, intermediate.as_raw())?;
                ch.send(&FromParent::TimeOffsetsWritten)?;
            }
            Some(FromChild::ProcessForked { pid }) => break pid,
            Some(FromChild::Error { message }) => return Err(LaunchError::Child(message)),
            Some(other) => return Err(ChannelError::Unexpected { expected: "ProcessForked", got: format!("{other:?}") }.into()),
            None => return Err(LaunchError::Died(describe_exit(intermediate))),
        }
    };
    *pid_out = Some(pid);
    match waitpid(intermediate, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        other => return Err(LaunchError::Died(format!("intermediate process: {other:?}"))),
    }
    // Born in the cgroup (with the intermediate), or moved there before it runs anything of
    // the container's.
    if let (Some(cg), false) = (l.cgroup, in_cgroup) {
        cg.add_process(pid)?;
    }
    let mut state = l.state.clone();
    state["pid"] = pid.into();
    let state = state.to_string();
    ch.send(&FromParent::Proceed { state: state.clone() })?;
    if l.is_init() {
        expect(ch, "RunCreateRuntimeHooks", |m| matches!(m, FromChild::RunCreateRuntimeHooks))?;
        hooks::run(HookPoint::Prestart, l.hooks(), &state)?;
        hooks::run(HookPoint::CreateRuntime, l.hooks(), &state)?;
        ch.send(&FromParent::HooksDone)?;
        expect(ch, "Ready", |m| matches!(m, FromChild::Ready))?;
    } else {
        // The channel closes on a successful execve.
        match ch.recv()? {
            None => {}
            Some(FromChild::Error { message }) => return Err(LaunchError::Child(message)),
            Some(other) => return Err(ChannelError::Unexpected { expected: "end of channel", got: format!("{other:?}") }.into()),
        }
    }
    Ok(pid)
}

fn expect(ch: &ParentEnd, what: &'static str, ok: impl Fn(&FromChild) -> bool) -> Result<(), LaunchError> {
    match ch.recv()? {
        Some(m) if ok(&m) => Ok(()),
        Some(FromChild::Error { message }) => Err(LaunchError::Child(message)),
        Some(other) => Err(ChannelError::Unexpected { expected: what, got: format!("{other:?}") }.into()),
        None => Err(LaunchError::Died(format!("the container process exited before {what}"))),
    }
}

fn describe_exit(pid: Pid) -> String {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("intermediate process exited with status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("intermediate process killed by {sig}"),
        other => format!("intermediate process: {other:?}"),
    }
}

/// Write the user namespace's id maps. As root we may map any range; otherwise the kernel
/// requires `setgroups` to be denied first.
fn write_id_maps(config: &Config, pid: i32) -> Result<(), LaunchError> {
    let write = |name: &str, data: &str| {
        let file = Path::new("/proc").join(pid.to_string()).join(name);
        std::fs::write(&file, data).map_err(|source| LaunchError::IdMap { file, source })
    };
    if !nix::unistd::geteuid().is_root() {
        write("setgroups", "deny")?;
    }
    write("uid_map", &id_map_lines(&config.uid_mappings))?;
    write("gid_map", &id_map_lines(&config.gid_mappings))
}

/// Write `linux.timeOffsets` for the time namespace `pid` made for its children.
fn write_time_offsets(config: &Config, pid: i32) -> Result<(), LaunchError> {
    let file = Path::new("/proc").join(pid.to_string()).join("timens_offsets");
    std::fs::write(&file, time_offset_lines(&config.time_offsets)).map_err(|source| LaunchError::TimeOffsets { file, source })
}

/// Offsets as `/proc/<pid>/timens_offsets` takes them: `<clock> <secs> <nanosecs>` lines.
fn time_offset_lines(offsets: &[(String, i64, u32)]) -> String {
    offsets.iter().map(|(clock, s, ns)| format!("{clock} {s} {ns}\n")).collect()
}

/// Whether `setgroups(2)` is allowed in our user namespace.
pub(crate) fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_offsets_are_one_line_per_clock() {
        let lines = time_offset_lines(&[("boottime".into(), -5, 7), ("monotonic".into(), 86400, 0)]);
        assert_eq!(lines, "boottime -5 7\nmonotonic 86400 0\n");
    }
}
