//! A container process run in the foreground (`run` without `-d`, `exec` without `-d`):
//! forward the signals we get to it, reap children (we are their subreaper), relay a
//! terminal if we hold its master, and return its exit code.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::Error;
use crate::console::{self, RawMode};

/// Signals a shell or supervisor may send that the container should get instead of us.
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGILL, Signal::SIGFPE, Signal::SIGTRAP, Signal::SIGABRT, Signal::SIGSYS] {
        set.remove(s);
    }
    set
}

pub struct Foreground {
    signals: SignalFd,
}

impl Foreground {
    /// Start catching signals. Call after the container process was forked (so it does not
    /// inherit our blocked mask) but before it can exit, so its SIGCHLD is not missed.
    pub fn setup() -> Result<Foreground, Error> {
        let set = forwarded();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(|e| Error::io("block signals")(e.into()))?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| Error::io("signalfd")(e.into()))?;
        Ok(Foreground { signals })
    }

    /// Wait for `pid` to exit; relay `master` (a pty) meanwhile. Returns the exit code as a
    /// shell reports it (128 + signal when killed).
    pub fn wait(&mut self, pid: i32, master: Option<OwnedFd>) -> Result<i32, Error> {
        let target = Pid::from_raw(pid);
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let _raw = master.as_ref().and_then(|_| RawMode::enter(stdin.as_fd()));
        if let Some(m) = &master {
            if let Ok((rows, cols)) = console::window_size(stdin.as_fd()) {
                let _ = console::set_window_size(m.as_fd(), rows, cols);
            }
        }
        let mut stdin_open = master.is_some();
        let mut master_open = master.is_some();
        let mut exit = reap(target);
        let mut buf = [0u8; 16 * 1024];
        while exit.is_none() || master_open {
            if exit.is_some() {
                // The process is gone: take what the terminal still holds, then stop.
                drain(master.as_ref(), &mut buf, stdout.as_fd());
                break;
            }
            let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            if let (Some(m), true) = (&master, master_open) {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            let stdin_slot = fds.len();
            if stdin_open && master_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::io("poll")(e.into())),
                Ok(_) => {}
            }
            let ev = |i: usize| fds.get(i).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
            let (sig_ev, master_ev, stdin_ev) = (ev(0), if master_open { ev(1) } else { PollFlags::empty() }, if stdin_slot < fds.len() { ev(stdin_slot) } else { PollFlags::empty() });
            if sig_ev.contains(PollFlags::POLLIN) {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGCHLD) => {
                            if let Some(code) = reap(target) {
                                exit = Some(code);
                            }
                        }
                        Ok(Signal::SIGWINCH) => {
                            if let (Some(m), Ok((rows, cols))) = (&master, console::window_size(stdin.as_fd())) {
                                let _ = console::set_window_size(m.as_fd(), rows, cols);
                            }
                        }
                        Ok(sig) => {
                            let _ = kill(target, sig);
                        }
                        Err(_) => {}
                    }
                }
            }
            if let Some(m) = &master {
                if master_ev.contains(PollFlags::POLLIN) {
                    match nix::unistd::read(m.as_fd(), &mut buf) {
                        Ok(0) | Err(Errno::EIO) => master_open = false,
                        Ok(n) => console::write_all(stdout.as_fd(), &buf[..n]).map_err(Error::io("write to stdout"))?,
                        Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                        Err(e) => return Err(Error::io("read the terminal")(e.into())),
                    }
                } else if master_ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    master_open = false;
                }
                if stdin_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
                    match nix::unistd::read(stdin.as_fd(), &mut buf) {
                        Ok(0) => stdin_open = false,
                        Ok(n) => console::write_all(m.as_fd(), &buf[..n]).map_err(Error::io("write to the terminal"))?,
                        Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                        Err(_) => stdin_open = false,
                    }
                }
            }
        }
        // The terminal closed first: the process is exiting; wait for it.
        loop {
            if let Some(code) = exit {
                return Ok(code);
            }
            match waitpid(target, None) {
                Ok(status) => exit = code_of(status),
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => return Ok(0),
                Err(e) => return Err(Error::io("wait for the container process")(e.into())),
            }
        }
    }
}

/// Reap every exited child (orphans of the container reparent to us); report `target`'s code.
fn reap(target: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(status) => {
                if status.pid() == Some(target) {
                    found = code_of(status);
                }
            }
        }
    }
}

fn code_of(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn drain(master: Option<&OwnedFd>, buf: &mut [u8], out: std::os::fd::BorrowedFd<'_>) {
    let Some(m) = master else { return };
    let _ = nix::fcntl::fcntl(m.as_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    while let Ok(n) = nix::unistd::read(m.as_fd(), buf) {
        if n == 0 || console::write_all(out, &buf[..n]).is_err() {
            break;
        }
    }
}

/// Become the subreaper of what we start, so an orphaned container process is ours to reap.
pub fn become_subreaper() -> Result<(), Error> {
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::io("become child subreaper")(e.into()))
}
