//! The pod init process (`kubelet-rs pod-init`), step by step:
//!
//! 1. enter: join the sandbox's net, IPC and UTS namespaces (by their bind-mounted files),
//!    block SIGCHLD, SIGTERM and SIGINT (a blocked signal is never dropped, even for a pid
//!    namespace's init, so SIGTERM from the node reaches it), `unshare(CLONE_NEWPID)`;
//! 2. fork: the child is pid 1 of the new pid namespace; the parent reports its pid
//!    (`Started`), lets it go on and exits, so the init belongs to nobody in kubelet-rs;
//! 3. init: a session of its own, `/` as its directory, `Ready`; then it reaps whatever
//!    dies in the pod's pid namespace until SIGTERM or SIGINT. Its exit makes the kernel
//!    kill every process left in the namespace.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};

use super::protocol::{FromInit, InitEnd};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("open namespace file {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("enter namespace {}: {source}", path.display())]
    Enter { path: PathBuf, source: nix::Error },
    #[error("signals: {0}")]
    Signals(nix::Error),
    #[error("unshare the pid namespace: {0}")]
    Unshare(nix::Error),
    #[error("fork the init: {0}")]
    Fork(nix::Error),
    #[error("detach: {0}")]
    Detach(nix::Error),
}

/// What `kubelet-rs pod-init` is given: the sandbox (for its command line) and the
/// namespace files to join (`None`: the node's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInitArgs {
    pub sandbox: String,
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

impl PodInitArgs {
    /// The arguments after `kubelet-rs pod-init`, without `--sync-fd`.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--sandbox".into(), self.sandbox.clone().into()];
        for (flag, path) in [("--net", &self.net), ("--ipc", &self.ipc), ("--uts", &self.uts)] {
            if let Some(p) = path {
                a.push(flag.into());
                a.push(p.into());
            }
        }
        a
    }

    fn namespaces(&self) -> impl Iterator<Item = (&Path, CloneFlags)> {
        [(&self.net, CloneFlags::CLONE_NEWNET), (&self.ipc, CloneFlags::CLONE_NEWIPC), (&self.uts, CloneFlags::CLONE_NEWUTS)]
            .into_iter()
            .filter_map(|(p, f)| p.as_deref().map(|p| (p, f)))
    }
}

/// The pod init's main: returns the exit status of the process that was started (the init
/// itself never returns here). Must run before any thread is started.
pub fn run(args: &PodInitArgs, sync_fd: RawFd) -> i32 {
    // SAFETY: the starter passed this descriptor for us to own.
    let sync = unsafe { OwnedFd::from_raw_fd(sync_fd) };
    if let Err(e) = fcntl(&sync, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
        eprintln!("kubelet-rs pod-init {}: sync fd {sync_fd}: {e}", args.sandbox);
        return 1;
    }
    let channel = InitEnd::from_fd(sync);
    let fail = |e: ProcessError| {
        let _ = channel.send(&FromInit::Failed { message: e.to_string() });
        1
    };
    let signals = match enter(args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // The init waits for this pipe to close, so that `Started` is sent before its `Ready`.
    let (go_r, go_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail(ProcessError::Fork(e)),
    };
    // SAFETY: single-threaded (run before any runtime or thread starts).
    match unsafe { fork() } {
        Err(e) => fail(ProcessError::Fork(e)),
        Ok(ForkResult::Parent { child }) => {
            let _ = channel.send(&FromInit::Started { init_pid: child.as_raw() });
            drop(go_w);
            0
        }
        Ok(ForkResult::Child) => {
            drop(go_w);
            let _ = File::from(go_r).read(&mut [0u8; 1]);
            std::process::exit(init(&args.sandbox, channel, &signals))
        }
    }
}

/// Step 1: the pod's namespaces, the signals blocked, a new pid namespace for our child.
fn enter(args: &PodInitArgs) -> Result<SigSet, ProcessError> {
    for (path, flag) in args.namespaces() {
        let file = File::open(path).map_err(|source| ProcessError::Open { path: path.to_path_buf(), source })?;
        nix::sched::setns(&file, flag).map_err(|source| ProcessError::Enter { path: path.to_path_buf(), source })?;
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).map_err(ProcessError::Signals)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(ProcessError::Unshare)?;
    Ok(signals)
}

/// Step 3: pid 1 of the pod.
fn init(sandbox: &str, channel: InitEnd, signals: &SigSet) -> i32 {
    let detached = setsid().and_then(|_| nix::unistd::chdir("/")).map_err(ProcessError::Detach);
    if let Err(e) = detached {
        let _ = channel.send(&FromInit::Failed { message: e.to_string() });
        return 1;
    }
    if channel.send(&FromInit::Ready).is_err() {
        // The starter is gone and will not record us: nobody would stop us.
        return 1;
    }
    drop(channel);
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGTERM | Signal::SIGINT) => return 0,
            Ok(_) => {}
            Err(e) => {
                eprintln!("kubelet-rs pod-init {sandbox}: sigwait: {e}");
                return 1;
            }
        }
    }
}

/// Every child that has exited: processes of the pod orphaned into our namespace.
fn reap() {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_the_sandbox_and_the_namespaces_to_join() {
        let args = PodInitArgs { sandbox: "s1".into(), net: Some("/s/ns/net".into()), ipc: None, uts: Some("/s/ns/uts".into()) };
        let a: Vec<String> = args.to_args().into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(a, ["--sandbox", "s1", "--net", "/s/ns/net", "--uts", "/s/ns/uts"]);
        let joined: Vec<_> = args.namespaces().map(|(_, f)| f).collect();
        assert_eq!(joined, [CloneFlags::CLONE_NEWNET, CloneFlags::CLONE_NEWUTS]);
    }
}
