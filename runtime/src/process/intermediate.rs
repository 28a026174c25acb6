//! The intermediate process: joins the namespaces given by path, creates the new ones, and
//! forks the container process into them (a new pid or time namespace only applies to
//! children). It then reports the child's pid and exits.

use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult};

use super::channel::{ChildEnd, ChannelError};
use super::container_process;
use super::launch::Launch;
use super::message::{FromChild, FromParent};
use super::ChildError;
use crate::namespaces::NsType;
use crate::seccomp::Program;
use crate::syscall::{Linux, Syscall};

pub fn run(l: &Launch, ch: ChildEnd, filter: Option<&Program>) -> ! {
    let code = match intermediate(l, &ch, filter) {
        Ok(()) => 0,
        Err(e) => {
            let _ = ch.send(&FromChild::Error { message: e.0 });
            1
        }
    };
    // _exit: no destructors, no flushing of buffers that belong to the parent.
    unsafe { libc::_exit(code) }
}

fn intermediate(l: &Launch, ch: &ChildEnd, filter: Option<&Program>) -> Result<(), ChildError> {
    let sys = Linux;
    // Until the user's program is exec'd, nothing in the container may ptrace us or open
    // /proc/<pid>/exe: the runtime's memory and binary are none of its business.
    nix::sys::prctl::set_dumpable(false).map_err(|e| ChildError::new("prctl(PR_SET_DUMPABLE)", e))?;

    // Open every namespace first: once we join a mount namespace, paths mean something else.
    let mut to_join = Vec::new();
    for (t, path) in l.namespaces.to_join() {
        let f = File::open(path).map_err(|e| ChildError::new(&format!("open {t} namespace {}", path.display()), e))?;
        to_join.push((t, f));
    }
    for (t, f) in &to_join {
        sys.setns(f.as_fd(), t.clone_flag())
            .map_err(|e| ChildError::new(&format!("join {t} namespace"), e))?;
    }

    if l.namespaces.is_new(NsType::User) {
        sys.unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| ChildError::new("create user namespace", e))?;
        ch.send(&FromChild::UserNamespaceCreated).map_err(chan)?;
        ch.expect("IdMapsWritten", |m| matches!(m, FromParent::IdMapsWritten)).map_err(chan)?;
        // Become the namespace's root where it is mapped (a rootless mapping may not map 0).
        let _ = sys.setresgid(0);
        let _ = sys.setresuid(0);
    }

    // The cgroup namespace is made by the container process once it is in its cgroup.
    let mut flags = CloneFlags::empty();
    for t in l.namespaces.to_create() {
        if t != NsType::User && t != NsType::Cgroup {
            flags |= t.clone_flag();
        }
    }
    if !flags.is_empty() {
        sys.unshare(flags).map_err(|e| ChildError::new(&format!("create namespaces ({flags:?})"), e))?;
    }
    if !l.config.time_offsets.is_empty() && l.is_init() {
        // Written by the runtime, as runc's parent does: /proc/self of this non-dumpable
        // process belongs to the host's root, which a user namespace's root is not.
        ch.send(&FromChild::TimeNamespaceCreated).map_err(chan)?;
        ch.expect("TimeOffsetsWritten", |m| matches!(m, FromParent::TimeOffsetsWritten)).map_err(chan)?;
    }

    // SAFETY: single-threaded; the child runs our code and then execs.
    match unsafe { fork() }.map_err(|e| ChildError::new("fork the container process", e))? {
        ForkResult::Child => container_process::run(l, ch, filter),
        ForkResult::Parent { child } => {
            ch.send(&FromChild::ProcessForked { pid: child.as_raw() }).map_err(chan)?;
            Ok(())
        }
    }
}

fn chan(e: ChannelError) -> ChildError {
    ChildError(e.to_string())
}
