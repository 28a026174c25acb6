//! The monitor process (`kubelet-rs monitor`), step by step:
//!
//! 1. detach: fork, the first process exits (its starter reaps it), the second starts a
//!    session of its own; it becomes a child subreaper and takes SIGCHLD and SIGUSR1 through
//!    a signalfd (blocked first: SIGUSR1 would otherwise kill it);
//! 2. create: `<runtime> --root <oci-root> create --bundle <b> --pid-file <p> <id>` with the
//!    container's stdout and stderr on two pipes (and its stdin on a third with `--stdin`);
//!    with `--tty`, `--console-socket <bundle>/console.sock` too, on which the runtime hands
//!    over the terminal's master (SCM_RIGHTS); the init the runtime leaves behind is
//!    re-parented to us, so we can wait for it. The runtime's own output (there is no
//!    container output before `start`) becomes the `Failed` message, or goes to our stderr;
//! 3. copy: the pipes (and the terminal, as stdout) into the CRI log file and to the
//!    clients of the attach socket (`attach_server`) until the init has exited and the
//!    pipes are drained; SIGUSR1 reopens the log file;
//! 4. record: the exit file, then exit.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};

use super::MonitorArgs;
use super::attach::{AttachError, CONSOLE_SOCKET, ShortPath};
use super::attach_server::{AttachServer, Stdin};
use super::exit::{self, ExitRecord};
use super::log_writer::{CriLogWriter, Stream, SystemClock};
use super::protocol::{FromMonitor, MonitorEnd};

#[derive(Debug, thiserror::Error)]
pub enum MonitorProcessError {
    #[error("detach: {0}")]
    Detach(nix::Error),
    #[error("become a child subreaper: {0}")]
    Subreaper(io::Error),
    #[error("signals: {0}")]
    Signals(nix::Error),
    #[error("pipes: {0}")]
    Pipes(nix::Error),
    #[error("log file {path}: {source}")]
    Log { path: String, source: io::Error },
    #[error("run {runtime}: {source}")]
    Runtime { runtime: String, source: io::Error },
    #[error("{0}")]
    Protocol(#[from] super::protocol::ProtocolError),
    #[error("wait for the container: {0}")]
    Wait(nix::Error),
    #[error(transparent)]
    ExitFile(#[from] exit::ExitFileError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("console socket: {0}")]
    Console(String),
}

/// Longest runtime output kept for the `Failed` message.
const MAX_RUNTIME_OUTPUT: usize = 32 * 1024;
/// After the init exited: how long the pipes may stay quiet before we stop reading (a
/// process that inherited them may outlive the init when the container shares the host's
/// pid namespace).
const DRAIN_IDLE: Duration = Duration::from_millis(500);
/// After the init exited: how long we read at most, however much keeps coming (from such a
/// process) before the exit is recorded.
const DRAIN_MAX: Duration = Duration::from_secs(5);

type LogWriter = CriLogWriter<fs::File, SystemClock>;

/// The monitor's main: returns the process's exit status. `sync_fd` is the starter's channel.
pub fn run(args: &MonitorArgs, sync_fd: RawFd) -> i32 {
    // SAFETY: the starter passed this descriptor for us to own.
    let sync = unsafe { OwnedFd::from_raw_fd(sync_fd) };
    // Neither the runtime nor the container may inherit the channel: the starter would not
    // see it close.
    if let Err(e) = fcntl(&sync, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        eprintln!("kubelet-rs monitor {}: sync fd {sync_fd}: {e}", args.id);
        return 1;
    }
    // Relative paths are taken from where we were started, before we leave it.
    let args = match args.absolute() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kubelet-rs monitor {}: {e}", args.id);
            return 1;
        }
    };
    if let Err(e) = detach() {
        eprintln!("kubelet-rs monitor {}: {e}", args.id);
        return 1;
    }
    let channel = MonitorEnd::from_fd(sync);
    match monitor(&args, channel) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kubelet-rs monitor {}: {e}", args.id);
            1
        }
    }
}

/// Fork; the parent exits so that the monitor is re-parented away from its starter, and the
/// child leads a new session (no terminal, no process group shared with kubelet-rs).
fn detach() -> Result<(), MonitorProcessError> {
    // SAFETY: the process is single-threaded here (the monitor runs before any runtime or
    // thread is started), so the child may do anything.
    match unsafe { fork() }.map_err(MonitorProcessError::Detach)? {
        ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
        ForkResult::Child => {}
    }
    setsid().map_err(MonitorProcessError::Detach)?;
    // Hold no directory of the starter's busy (it may be a mount to be unmounted).
    nix::unistd::chdir("/").map_err(MonitorProcessError::Detach)?;
    Ok(())
}

fn monitor(args: &MonitorArgs, channel: MonitorEnd) -> Result<(), MonitorProcessError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(MonitorProcessError::Subreaper(io::Error::last_os_error()));
    }
    let signals = block_signals()?;
    channel.send(&FromMonitor::Started { monitor_pid: std::process::id() as i32 })?;

    let mut children = Children::default();
    let created = open_log(&args.log_path).and_then(|log| {
        let (pipes, init, stdin) = create(args, &signals, &mut children)?;
        // Bound before `Created`: an attach right after `start` finds the socket.
        let attach = AttachServer::bind(&args.bundle, stdin, args.stdin_once).map_err(MonitorProcessError::from)?;
        Ok((log, pipes, init, attach))
    });
    let (log, pipes, init, mut attach) = match created {
        Ok(c) => c,
        Err(e) => {
            let message = match e {
                CreateError::Runtime(m) => m,
                CreateError::Monitor(e) => e.to_string(),
            };
            channel.send(&FromMonitor::Failed { message })?;
            return Ok(());
        }
    };
    channel.send(&FromMonitor::Created { pid: init.as_raw() })?;
    drop(channel);

    let mut writer = CriLogWriter::new(log, SystemClock);
    let (status, finished_at) = copy_until_exit(args, &mut writer, pipes, &mut attach, &signals, &mut children, init)?;
    // Clients see the end of the stream; the socket goes.
    drop(attach);
    let mut record = match status {
        WaitStatus::Signaled(_, sig, _) => ExitRecord::killed(sig as i32, finished_at),
        WaitStatus::Exited(_, code) => ExitRecord::exited(code, finished_at),
        other => unreachable!("only exits are recorded, not {other:?}"),
    };
    record.oom_killed = args.cgroup_path.as_deref().is_some_and(exit::oom_killed);
    exit::write(&args.exit_file, &record)?;
    Ok(())
}

/// SIGCHLD and SIGUSR1, blocked, read from a signalfd.
fn block_signals() -> Result<SignalFd, MonitorProcessError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGUSR1);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(MonitorProcessError::Signals)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(MonitorProcessError::Signals)
}

fn open_log(path: &Path) -> Result<fs::File, CreateError> {
    let log_err = |source| CreateError::Monitor(MonitorProcessError::Log { path: path.display().to_string(), source });
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(log_err)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().append(true).create(true).mode(0o640).open(path).map_err(log_err)
}

/// Why `create` did not give us a container.
enum CreateError {
    /// The runtime failed; its output.
    Runtime(String),
    Monitor(MonitorProcessError),
}

impl From<MonitorProcessError> for CreateError {
    fn from(e: MonitorProcessError) -> Self {
        CreateError::Monitor(e)
    }
}

/// The read ends of the container's stdout and stderr, and its terminal's master.
struct Pipes {
    stdout: Option<fs::File>,
    stderr: Option<fs::File>,
    pty: Option<fs::File>,
}

/// Exit statuses of children we reaped before we knew which one is the init.
#[derive(Default)]
struct Children {
    reaped: HashMap<Pid, WaitStatus>,
    /// Once the init is known, only its status is kept.
    init: Option<Pid>,
}

impl Children {
    /// Reap every child that has exited.
    fn reap(&mut self) -> Result<(), MonitorProcessError> {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(MonitorProcessError::Wait(e)),
                Ok(st @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _))) => {
                    if self.init.is_none_or(|init| init == pid) {
                        self.reaped.insert(pid, st);
                    }
                }
                Ok(_) => {}
            }
        }
    }

    fn status(&self, pid: Pid) -> Option<WaitStatus> {
        self.reaped.get(&pid).copied()
    }
}

fn create(args: &MonitorArgs, signals: &SignalFd, children: &mut Children) -> Result<(Pipes, Pid, Stdin), CreateError> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(MonitorProcessError::Pipes)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(MonitorProcessError::Pipes)?;
    for r in [&out_r, &err_r] {
        fcntl(r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(MonitorProcessError::Pipes)?;
    }
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("--root").arg(&args.oci_root).arg("create").arg("--bundle").arg(&args.bundle);
    cmd.arg("--pid-file").arg(&args.pid_file);
    let console = if args.tty { Some(bind_console(&args.bundle)?) } else { None };
    if let Some((short, _)) = &console {
        // The runtime is our child: it reaches our descriptor of the directory.
        cmd.arg("--console-socket").arg(short.for_pid(std::process::id()));
    }
    cmd.arg(&args.id);
    // A terminal is the container's stdin too; without one, a pipe we keep the write end of.
    let mut stdin = Stdin::None;
    if args.stdin && !args.tty {
        let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).map_err(MonitorProcessError::Pipes)?;
        fcntl(&in_w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(MonitorProcessError::Pipes)?;
        stdin = Stdin::Pipe(fs::File::from(in_w));
        cmd.stdin(Stdio::from(in_r));
    } else {
        cmd.stdin(Stdio::null());
    }
    cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    // The runtime, and through it the container, would inherit our blocked SIGCHLD and
    // SIGUSR1 (std does not reset the mask): unblock everything before exec.
    // SAFETY: sigprocmask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(io::Error::from));
    }
    let runtime = cmd.spawn().map_err(|source| MonitorProcessError::Runtime { runtime: args.runtime.display().to_string(), source })?;
    // Our copies of the write ends go with the command: only the container holds them now,
    // so the pipes read as ended once it is gone.
    drop(cmd);
    let runtime_pid = Pid::from_raw(runtime.id() as i32);
    let mut pipes = Pipes { stdout: Some(fs::File::from(out_r)), stderr: Some(fs::File::from(err_r)), pty: None };
    let mut output = Vec::new();
    // Read the runtime's output while it runs, so that a talkative runtime never blocks on a
    // full pipe.
    let status = loop {
        read_runtime_output(&mut pipes, &mut output);
        children.reap().map_err(CreateError::Monitor)?;
        if let Some(st) = children.status(runtime_pid) {
            break st;
        }
        wait_readable(&pipes, signals, None, PollTimeout::from(100u8));
        drain_signals(signals);
    };
    read_runtime_output(&mut pipes, &mut output);
    let output = String::from_utf8_lossy(&output).trim().to_string();
    if status != WaitStatus::Exited(runtime_pid, 0) {
        let what = match status {
            WaitStatus::Exited(_, code) => format!("exit status {code}"),
            WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
            other => format!("{other:?}"),
        };
        let message = if output.is_empty() { format!("{} create: {what}", args.runtime.display()) } else { output };
        return Err(CreateError::Runtime(message));
    }
    if !output.is_empty() {
        eprintln!("kubelet-rs monitor {}: runtime create said: {output}", args.id);
    }
    let pid = read_pid_file(&args.pid_file).map_err(CreateError::Runtime)?;
    children.init = Some(pid);
    children.reaped.retain(|p, _| *p == pid);
    if let Some((short, listener)) = console {
        let master = receive_console(&listener)?;
        let _ = fs::remove_file(short.path());
        if args.stdin {
            stdin = Stdin::Pty(master.try_clone().map_err(|e| MonitorProcessError::Console(format!("duplicate the terminal: {e}")))?);
        }
        pipes.pty = Some(master);
    }
    Ok((pipes, pid, stdin))
}

/// Listen on `<bundle>/console.sock` for the runtime's terminal.
fn bind_console(bundle: &Path) -> Result<(ShortPath, UnixListener), MonitorProcessError> {
    let short = ShortPath::new(bundle, CONSOLE_SOCKET)?;
    let _ = fs::remove_file(short.path());
    let listener = UnixListener::bind(short.path()).map_err(|e| MonitorProcessError::Console(format!("bind {}: {e}", bundle.join(CONSOLE_SOCKET).display())))?;
    Ok((short, listener))
}

/// The terminal's master, which the runtime sent before its `create` exited (the
/// connection waits in the listener's backlog); non-blocking.
fn receive_console(listener: &UnixListener) -> Result<fs::File, MonitorProcessError> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let err = |m: String| MonitorProcessError::Console(m);
    listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
    let (stream, _) = listener.accept().map_err(|e| err(format!("the runtime did not hand over the terminal: {e}")))?;
    stream.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| err(e.to_string()))?;
    let mut buf = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(|e| err(format!("receive the terminal: {e}")))?;
    let mut received = None;
    for c in msg.cmsgs().map_err(|e| err(e.to_string()))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: SCM_RIGHTS gave us this descriptor; nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(owned);
            }
        }
    }
    let master = received.ok_or_else(|| err("the runtime's message carried no descriptor".into()))?;
    fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| err(e.to_string()))?;
    Ok(fs::File::from(master))
}

fn read_pid_file(path: &Path) -> Result<Pid, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("pid file {}: {e}", path.display()))?;
    text.trim().parse::<i32>().ok().filter(|p| *p > 0).map(Pid::from_raw).ok_or_else(|| format!("pid file {}: no pid in {text:?}", path.display()))
}

/// Whatever the pipes hold now (never waits: a half-created init may hold them open).
fn read_runtime_output(pipes: &mut Pipes, output: &mut Vec<u8>) {
    for f in [&mut pipes.stdout, &mut pipes.stderr].into_iter().flatten() {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = f.read(&mut buf) {
            let keep = n.min(MAX_RUNTIME_OUTPUT.saturating_sub(output.len()));
            output.extend_from_slice(&buf[..keep]);
        }
    }
}

/// Wait until a pipe, the signalfd or (given) the attach socket or a client is readable,
/// or `timeout`; returns whether any is.
fn wait_readable(pipes: &Pipes, signals: &SignalFd, attach: Option<&AttachServer>, timeout: PollTimeout) -> bool {
    let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    for f in [&pipes.stdout, &pipes.stderr, &pipes.pty].into_iter().flatten() {
        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
    }
    for fd in attach.map(AttachServer::poll_fds).unwrap_or_default() {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// Read the pending signals; returns whether SIGUSR1 was among them.
fn drain_signals(signals: &SignalFd) -> bool {
    let mut reopen = false;
    while let Ok(Some(info)) = signals.read_signal() {
        reopen |= info.ssi_signo == Signal::SIGUSR1 as u32;
    }
    reopen
}

/// Copy the container's output into the log until the init exited and the pipes are drained;
/// returns the init's status and when we saw it.
fn copy_until_exit(
    args: &MonitorArgs,
    writer: &mut LogWriter,
    mut pipes: Pipes,
    attach: &mut AttachServer,
    signals: &SignalFd,
    children: &mut Children,
    init: Pid,
) -> Result<(WaitStatus, SystemTime), MonitorProcessError> {
    let mut complained = false;
    let mut exited = None;
    let mut drain_until = None;
    loop {
        let data = copy_available(writer, &mut pipes, attach, &mut complained);
        attach.serve();
        if drain_signals(signals) {
            reopen(args, writer);
        }
        if exited.is_none() {
            children.reap()?;
            exited = children.status(init).map(|st| (st, SystemTime::now()));
            drain_until = exited.map(|_| Instant::now() + DRAIN_MAX);
        }
        let open = pipes.stdout.is_some() || pipes.stderr.is_some() || pipes.pty.is_some();
        let drained = drain_until.is_some_and(|t| Instant::now() >= t);
        match exited {
            Some(st) if !open || drained => return finish(writer, st),
            // Quiet pipes after the exit: whoever still holds them is not the container.
            Some(st) if !data && !wait_readable(&pipes, signals, None, PollTimeout::try_from(DRAIN_IDLE).unwrap_or(PollTimeout::MAX)) => {
                return finish(writer, st);
            }
            Some(_) => {}
            None => {
                wait_readable(&pipes, signals, Some(attach), PollTimeout::NONE);
            }
        }
    }
}

fn finish(writer: &mut LogWriter, status: (WaitStatus, SystemTime)) -> Result<(WaitStatus, SystemTime), MonitorProcessError> {
    for s in [Stream::Stdout, Stream::Stderr] {
        if let Err(e) = writer.finish(s) {
            eprintln!("kubelet-rs monitor: write the log: {e}");
        }
    }
    Ok(status)
}

/// Reads of one pipe per round, so that a container writing without pause to one stream
/// neither starves the other nor delays signals.
const READS_PER_ROUND: usize = 16;

/// Copy what the pipes hold (up to [`READS_PER_ROUND`] reads each) into the log; a pipe that
/// ended is closed and its last line flushed. Returns whether anything was read.
fn copy_available(writer: &mut LogWriter, pipes: &mut Pipes, attach: &mut AttachServer, complained: &mut bool) -> bool {
    let mut any = false;
    let mut buf = vec![0u8; 64 * 1024];
    // A terminal has one output: stdout, as containerd logs it.
    let pty_open = pipes.pty.is_some();
    for (slot, stream) in [(&mut pipes.stdout, Stream::Stdout), (&mut pipes.stderr, Stream::Stderr), (&mut pipes.pty, Stream::Stdout)] {
        let Some(f) = slot else { continue };
        for _ in 0..READS_PER_ROUND {
            match f.read(&mut buf) {
                Ok(0) => {
                    *slot = None;
                    // With a terminal, the stdout pipe (the runtime's, quiet) may end while the
                    // terminal's line, logged as stdout too, is still unfinished.
                    if (stream, pty_open) != (Stream::Stdout, true)
                        && let Err(e) = writer.finish(stream)
                    {
                        complain(complained, &e);
                    }
                    break;
                }
                Ok(n) => {
                    any = true;
                    attach.broadcast(stream, &buf[..n]);
                    // A failed write loses this output but the pipe is still drained, so the
                    // container never blocks on a full disk.
                    if let Err(e) = writer.write(stream, &buf[..n]) {
                        complain(complained, &e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A terminal's master says EIO once no process holds the terminal any more.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    *slot = None;
                    if let Err(e) = writer.finish(stream) {
                        complain(complained, &e);
                    }
                    break;
                }
                Err(_) => break, // WouldBlock: nothing more now
            }
        }
    }
    any
}

fn complain(complained: &mut bool, e: &io::Error) {
    if !*complained {
        eprintln!("kubelet-rs monitor: write the log: {e}");
        *complained = true;
    }
}

/// Open the log path anew (the kubelet renamed the old file); on failure keep writing to the
/// old one.
fn reopen(args: &MonitorArgs, writer: &mut LogWriter) {
    match open_log(&args.log_path) {
        Ok(f) => {
            writer.replace_output(f);
        }
        Err(CreateError::Monitor(e)) => eprintln!("kubelet-rs monitor {}: reopen the log: {e}", args.id),
        Err(CreateError::Runtime(m)) => eprintln!("kubelet-rs monitor {}: reopen the log: {m}", args.id),
    }
}
