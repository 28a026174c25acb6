//! The pod's init, for sandboxes whose pid namespace is POD (`shareProcessNamespace`). A pid
//! namespace cannot be held open by a bind mount alone: it lives as long as its first
//! process, and no process can enter it once that one is gone. So such a sandbox starts a
//! tiny init of its own, `kubelet-rs pod-init` (`process`), as pid 1 of a new pid namespace
//! in the pod's other namespaces; containers join its namespace through
//! `<state_dir>/sandboxes/<id>/ns/pid`, a bind mount of `/proc/<init>/ns/pid`.
//!
//! The init runs in a session of its own, so it survives restarts of kubelet-rs; the record
//! keeps its pid and start time ([`PodInit`]) so that a recycled pid is never taken for it.
//! Stopping the init ends the namespace: the kernel kills every process left in it.
//!
//! - `protocol` — the typed messages from a starting init to the sandbox manager.
//! - `process` — the init itself.

pub mod process;
mod protocol;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::MsFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use process::PodInitArgs;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sandbox {id}: start the pod init {}: {source}", program.display())]
    Spawn { id: String, program: PathBuf, source: std::io::Error },
    #[error("sandbox {id}: the pod init exited before it started ({status})")]
    Detach { id: String, status: std::process::ExitStatus },
    #[error("sandbox {id}: pod init: {source}")]
    Protocol { id: String, source: protocol::Error },
    #[error("sandbox {id}: the pod init {pid} vanished as it started")]
    Vanished { id: String, pid: i32 },
    #[error("sandbox {id}: signal the pod init {pid}: {source}")]
    Signal { id: String, pid: i32, source: nix::Error },
    #[error("sandbox {id}: the pod init {pid} outlived SIGKILL")]
    Unkillable { id: String, pid: i32 },
    #[error("creating namespace file {}: {source}", path.display())]
    CreateFile { path: PathBuf, source: std::io::Error },
    #[error("bind-mounting the pod's pid namespace on {}: {source}", path.display())]
    Mount { path: PathBuf, source: nix::Error },
}

/// How long an init may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGTERMed init may take to exit before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The running init, as recorded: its pid (as the node sees it) and its start time (clock
/// ticks after boot, `/proc/<pid>/stat` field 22), which a recycled pid does not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInit {
    pub pid: i32,
    pub start_time: u64,
}

impl PodInit {
    /// Whether the recorded init still runs (a zombie does not).
    pub fn alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z' && s.state != 'X')
    }
}

/// The two fields of `/proc/<pid>/stat` we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    state: char,
    start_time: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so the fields
/// are counted from the last `)`; the state is field 3, the start time field 22.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Starts `program pod-init` for the sandbox `args.sandbox` and waits until its init runs.
pub fn start(program: &Path, args: &PodInitArgs) -> Result<PodInit, Error> {
    let id = &args.sandbox;
    let proto = |source| Error::Protocol { id: id.clone(), source };
    let (starter, init_end) = protocol::pair().map_err(proto)?;
    let sync_fd = init_end.as_fd().as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.arg("pod-init").args(args.to_args()).arg("--sync-fd").arg(sync_fd.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(sync_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawn_err = |source| Error::Spawn { id: id.clone(), program: program.to_path_buf(), source };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(init_end);
    drop(cmd);
    // The process we started forks the init and exits at once.
    let status = child.wait().map_err(spawn_err)?;
    let deadline = Instant::now() + START_TIMEOUT;
    let pid = match starter.expect_started(deadline) {
        Ok(pid) => pid,
        Err(protocol::Error::Closed { .. }) if !status.success() => return Err(Error::Detach { id: id.clone(), status }),
        Err(e) => return Err(proto(e)),
    };
    // Read before Ready: until the init is recorded, nothing else waits for it.
    let stat = proc_stat(pid);
    if let Err(e) = starter.expect_ready(deadline) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        return Err(proto(e));
    }
    match stat {
        Some(s) => Ok(PodInit { pid, start_time: s.start_time }),
        None => Err(Error::Vanished { id: id.clone(), pid }),
    }
}

/// Bind-mounts the init's pid namespace on `path`, for containers to join by path.
pub fn bind_namespace(init: &PodInit, path: &Path) -> Result<(), Error> {
    File::create(path).map_err(|source| Error::CreateFile { path: path.to_path_buf(), source })?;
    let source = PathBuf::from(format!("/proc/{}/ns/pid", init.pid));
    nix::mount::mount(Some(&source), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|source| Error::Mount { path: path.to_path_buf(), source })
}

/// SIGTERM, and SIGKILL if it still runs after `grace`; an init that is gone already is fine.
pub fn stop(id: &str, init: &PodInit, grace: Duration) -> Result<(), Error> {
    for (signal, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, Duration::from_secs(5))] {
        if !init.alive() {
            return Ok(());
        }
        match kill(Pid::from_raw(init.pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => return Err(Error::Signal { id: id.to_string(), pid: init.pid, source }),
        }
        let deadline = Instant::now() + wait;
        while init.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if init.alive() { Err(Error::Unkillable { id: id.to_string(), pid: init.pid }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (kubelet-rs (pod) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 12345 100";
        assert_eq!(parse_stat(line), Some(ProcStat { state: 'S', start_time: 987654 }));
        assert_eq!(parse_stat("12 (short) R 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        let me = proc_stat(std::process::id() as i32).unwrap();
        assert!(me.start_time > 0 && me.state != 'Z', "{me:?}");
    }

    #[test]
    fn a_recycled_pid_is_not_the_init_and_is_never_signalled() {
        let me = proc_stat(std::process::id() as i32).unwrap();
        let recorded = PodInit { pid: std::process::id() as i32, start_time: me.start_time + 1 };
        assert!(!recorded.alive());
        stop("s1", &recorded, Duration::from_millis(10)).unwrap();
        assert!(PodInit { pid: std::process::id() as i32, start_time: me.start_time }.alive());
    }

    #[test]
    fn stop_ends_a_live_process_and_a_zombie_counts_as_gone() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        let init = PodInit { pid, start_time: proc_stat(pid).unwrap().start_time };
        assert!(init.alive());
        // Our child: once dead it stays a zombie until waited for.
        stop("s1", &init, Duration::from_secs(2)).unwrap();
        assert!(!init.alive());
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
}
