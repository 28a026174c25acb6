//! The per-container monitor: a process of its own for each container (the role conmon plays
//! for CRI-O and the shim for containerd). It runs `<runtime> create`, becomes the parent of
//! the container's init (as a child subreaper), copies the container's stdout and stderr into
//! the CRI log file, and writes the exit file when the init exits. It runs in a session of
//! its own, detached from whoever started it, so restarting `kubelet-rs` leaves it running.
//!
//! - `protocol` — the typed messages from a starting monitor to its starter.
//! - `log_writer` — the CRI log format (pure).
//! - `exit` — the exit file.
//! - `attach` — the attach socket's framing, and how a client reaches it.
//! - `attach_server` — the monitor's side of the attach socket (clients, the container's stdin).
//! - `process` — the monitor itself (`kubelet-rs monitor`, a hidden subcommand).
//!
//! [`spawn_monitor`] starts one and returns once the container is created (or creating it
//! failed). Later the CRI service talks to it only through files and signals: the exit file
//! ([`exit::read`]), and SIGUSR1 to reopen the log ([`reopen_log`]).

pub mod attach;
pub mod attach_server;
pub mod exit;
pub mod log_writer;
pub mod process;
pub mod protocol;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use protocol::{FromMonitor, ProtocolError};

/// What a monitor needs: the `kubelet-rs monitor` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorArgs {
    /// The container's id, as the OCI runtime knows it.
    pub id: String,
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc command line).
    pub runtime: PathBuf,
    /// The OCI runtime's `--root`.
    pub oci_root: PathBuf,
    /// The CRI log file (`ContainerConfig.log_path` under the sandbox's log directory).
    pub log_path: PathBuf,
    /// Where the exit record goes when the container exits.
    pub exit_file: PathBuf,
    /// The runtime's `--pid-file`.
    pub pid_file: PathBuf,
    /// The container's cgroup directory (cgroup v2), to tell OOM kills; optional.
    pub cgroup_path: Option<PathBuf>,
    /// Where the monitor's own diagnostics go (its stderr, appended); none: nowhere.
    pub monitor_log: Option<PathBuf>,
    /// The container has a terminal (`process.terminal`): the runtime hands its master over
    /// `<bundle>/console.sock`, and its output is logged as stdout.
    pub tty: bool,
    /// The container's stdin stays open for attach clients (a pipe, or the terminal).
    pub stdin: bool,
    /// The first attach client to detach closes the container's stdin.
    pub stdin_once: bool,
}

/// A monitor whose container was created: it waits for `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorHandle {
    pub monitor_pid: i32,
    /// The container's init, as the host sees it.
    pub container_pid: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("container {id}: cannot find the kubelet-rs binary to run the monitor: {source}")]
    Program { id: String, source: io::Error },
    #[error("container {id}: monitor log {path}: {source}")]
    MonitorLog { id: String, path: PathBuf, source: io::Error },
    #[error("container {id}: start the monitor {program}: {source}")]
    Spawn { id: String, program: PathBuf, source: io::Error },
    #[error("container {id}: the monitor failed before detaching ({status}); see its log")]
    Detach { id: String, status: std::process::ExitStatus },
    #[error("container {id}: {source}")]
    Protocol { id: String, source: ProtocolError },
    #[error("container {id}: create failed: {message}")]
    CreateFailed { id: String, message: String },
    #[error("container {id}: no monitor with pid {pid} runs for it")]
    NotRunning { id: String, pid: i32 },
    #[error("container {id}: signal the monitor {pid}: {source}")]
    Signal { id: String, pid: i32, source: nix::Error },
    #[error("container {id}: the monitor did not reopen {path} within {timeout:?}")]
    ReopenTimeout { id: String, path: PathBuf, timeout: Duration },
}

/// How long a monitor may take to create its container.
pub const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(120);

impl MonitorArgs {
    /// The arguments after `kubelet-rs monitor`, without `--sync-fd`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: &std::ffi::OsStr| {
            a.push(flag.into());
            a.push(value.to_owned());
        };
        push("--id", self.id.as_ref());
        push("--bundle", self.bundle.as_os_str());
        push("--runtime", self.runtime.as_os_str());
        push("--oci-root", self.oci_root.as_os_str());
        push("--log-path", self.log_path.as_os_str());
        push("--exit-file", self.exit_file.as_os_str());
        push("--pid-file", self.pid_file.as_os_str());
        if let Some(cg) = &self.cgroup_path {
            push("--cgroup-path", cg.as_os_str());
        }
        for (flag, on) in [("--tty", self.tty), ("--stdin", self.stdin), ("--stdin-once", self.stdin_once)] {
            if on {
                a.push(flag.into());
            }
        }
        a
    }
}

impl MonitorArgs {
    /// The same arguments with every path absolute (relative ones taken from the current
    /// directory), for a process that changes directory.
    pub fn absolute(&self) -> io::Result<MonitorArgs> {
        let abs = |p: &Path| std::path::absolute(p);
        // A bare program name is looked up in PATH, not in the current directory.
        let runtime = if self.runtime.components().count() > 1 { abs(&self.runtime)? } else { self.runtime.clone() };
        Ok(MonitorArgs {
            id: self.id.clone(),
            bundle: abs(&self.bundle)?,
            runtime,
            oci_root: abs(&self.oci_root)?,
            log_path: abs(&self.log_path)?,
            exit_file: abs(&self.exit_file)?,
            pid_file: abs(&self.pid_file)?,
            cgroup_path: self.cgroup_path.as_deref().map(abs).transpose()?,
            monitor_log: self.monitor_log.as_deref().map(abs).transpose()?,
            ..self.clone()
        })
    }
}

/// Start a monitor for `args` with this very binary (`kubelet-rs`), and wait until it has
/// created the container.
pub fn spawn_monitor(args: &MonitorArgs) -> Result<MonitorHandle, MonitorError> {
    let program = std::env::current_exe().map_err(|source| MonitorError::Program { id: args.id.clone(), source })?;
    spawn_monitor_with(&program, args, DEFAULT_CREATE_TIMEOUT)
}

/// Start a monitor with `program` (a `kubelet-rs` binary) and wait up to `timeout` for the
/// container to be created. On a timeout the monitor's process group (the monitor, the
/// runtime, a half-created init) is killed.
pub fn spawn_monitor_with(program: &Path, args: &MonitorArgs, timeout: Duration) -> Result<MonitorHandle, MonitorError> {
    let id = &args.id;
    let proto = |source| MonitorError::Protocol { id: id.clone(), source };
    let (starter, monitor_end) = protocol::pair().map_err(proto)?;
    let stderr = match &args.monitor_log {
        Some(path) => Stdio::from(open_append(path).map_err(|source| MonitorError::MonitorLog { id: id.clone(), path: path.clone(), source })?),
        None => Stdio::null(),
    };
    let sync_fd = monitor_end.as_fd().as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.arg("monitor").args(args.to_args()).arg("--sync-fd").arg(sync_fd.to_string());
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // The monitor's end of the channel is the one descriptor it inherits.
            if libc::fcntl(sync_fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| MonitorError::Spawn { id: id.clone(), program: program.to_path_buf(), source })?;
    // Ours closed, the channel reads as closed once the monitor is gone.
    drop(monitor_end);
    drop(cmd);
    // The process we started forks the monitor proper and exits at once, so the monitor is
    // nobody's child here (no zombie for us to reap, nothing tying it to kubelet-rs).
    let status = child.wait().map_err(|source| MonitorError::Spawn { id: id.clone(), program: program.to_path_buf(), source })?;
    if !status.success() {
        return Err(MonitorError::Detach { id: id.clone(), status });
    }
    let deadline = Instant::now() + timeout;
    let monitor_pid = starter.expect_started(deadline).map_err(proto)?;
    match starter.expect_outcome(deadline) {
        Ok(FromMonitor::Created { pid }) => Ok(MonitorHandle { monitor_pid, container_pid: pid }),
        Ok(FromMonitor::Failed { message }) => Err(MonitorError::CreateFailed { id: id.clone(), message }),
        Ok(FromMonitor::Started { .. }) => unreachable!("expect_outcome returns only outcomes"),
        Err(e) => {
            if matches!(e, ProtocolError::Timeout { .. }) {
                // The monitor leads its own process group: the runtime it runs is in it too.
                let _ = kill(Pid::from_raw(-monitor_pid), Signal::SIGKILL);
            }
            Err(proto(e))
        }
    }
}

fn open_append(path: &Path) -> io::Result<fs::File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::OpenOptions::new().append(true).create(true).open(path)
}

/// Whether `pid` is the monitor of container `id`. Checked from its command line, because
/// after a restart of kubelet-rs a recorded pid may have been reused by another process.
pub fn is_monitor_of(pid: i32, id: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.iter().any(|a| *a == b"monitor") && args.windows(2).any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
}

/// Ask the monitor of container `id` to reopen its log file (`ReopenContainerLog`: the
/// kubelet renamed the file), and wait until the new file at `log_path` exists.
pub fn reopen_log(monitor_pid: i32, id: &str, log_path: &Path, timeout: Duration) -> Result<(), MonitorError> {
    if !is_monitor_of(monitor_pid, id) {
        return Err(MonitorError::NotRunning { id: id.to_string(), pid: monitor_pid });
    }
    kill(Pid::from_raw(monitor_pid), Signal::SIGUSR1).map_err(|source| MonitorError::Signal { id: id.to_string(), pid: monitor_pid, source })?;
    let deadline = Instant::now() + timeout;
    while !log_path.exists() {
        if Instant::now() > deadline {
            return Err(MonitorError::ReopenTimeout { id: id.to_string(), path: log_path.to_path_buf(), timeout });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> MonitorArgs {
        MonitorArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime: "/usr/bin/runc".into(),
            oci_root: "/run/oci".into(),
            log_path: "/var/log/pods/p/c/0.log".into(),
            exit_file: "/s/exit.json".into(),
            pid_file: "/s/pid".into(),
            cgroup_path: Some("/sys/fs/cgroup/c1".into()),
            monitor_log: Some("/s/monitor.log".into()),
            tty: false,
            stdin: false,
            stdin_once: false,
        }
    }

    #[test]
    fn arguments_name_every_field_the_monitor_needs() {
        let a: Vec<String> = args().to_args().into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(
            a,
            [
                "--id", "c1", "--bundle", "/b", "--runtime", "/usr/bin/runc", "--oci-root", "/run/oci", "--log-path",
                "/var/log/pods/p/c/0.log", "--exit-file", "/s/exit.json", "--pid-file", "/s/pid", "--cgroup-path",
                "/sys/fs/cgroup/c1"
            ]
        );
        let a: Vec<String> = MonitorArgs { tty: true, stdin_once: true, ..args() }.to_args().into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(a[a.len() - 2..], ["--tty", "--stdin-once"]);
    }

    #[test]
    fn relative_paths_become_absolute_and_a_bare_runtime_name_stays() {
        let cwd = std::env::current_dir().unwrap();
        let rel = MonitorArgs { bundle: "b".into(), runtime: "runc".into(), log_path: "logs/0.log".into(), ..args() };
        let abs = rel.absolute().unwrap();
        assert_eq!(abs.bundle, cwd.join("b"));
        assert_eq!(abs.log_path, cwd.join("logs/0.log"));
        assert_eq!(abs.runtime, PathBuf::from("runc"));
        assert_eq!(MonitorArgs { runtime: "bin/runc".into(), ..args() }.absolute().unwrap().runtime, cwd.join("bin/runc"));
        assert_eq!(args().absolute().unwrap(), args());
    }

    #[test]
    fn a_process_that_is_no_monitor_is_not_signalled() {
        let me = std::process::id() as i32;
        assert!(!is_monitor_of(me, "c1"));
        let err = reopen_log(me, "c1", Path::new("/nonexistent"), Duration::from_millis(10)).unwrap_err();
        assert!(matches!(err, MonitorError::NotRunning { .. }), "{err}");
    }
}
