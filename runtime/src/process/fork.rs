//! Forking the intermediate process straight into the container's cgroup.
//!
//! Moving a process by writing `cgroup.procs` takes the kernel's cgroup threadgroup lock for
//! writing, which waits for an RCU grace period on hosts whose cgroup2 is not mounted with
//! `favordynmods`: about 15 ms here, the largest single cost of `create`. `clone3` with
//! `CLONE_INTO_CGROUP` (Linux 5.7) places the child in the cgroup as it is born, with no
//! such wait, and the container never runs a moment outside its cgroup. Where `clone3` is
//! missing (older kernels, or a seccomp profile around us that answers ENOSYS), we fork and
//! the caller writes `cgroup.procs` as before.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::unistd::{fork, ForkResult, Pid};

/// What [`fork_into`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent; `in_cgroup` says whether the child already is in the cgroup asked for.
    Parent { child: Pid, in_cgroup: bool },
}

/// `struct clone_args` of linux/sched.h, up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Fork, into the cgroup whose directory `cgroup` is open, if given.
///
/// # Safety
/// As `fork`: the calling process must be single-threaded, and the child must only run code
/// that is safe after a fork. The child of a raw `clone3` also finds glibc's cached thread id
/// stale; glibc (2.34 and later) asks the kernel for it where it matters (`raise`, `abort`),
/// and Rust's locks do not use it.
pub unsafe fn fork_into(cgroup: Option<BorrowedFd>) -> Result<Forked, Errno> {
    if let Some(dir) = cgroup {
        let args = CloneArgs {
            flags: CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: dir.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: args is a valid clone_args of the size given; with no stack the child
        // continues on a copy of ours, as after fork.
        let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
        match ret {
            0 => return Ok(Forked::Child),
            pid if pid > 0 => return Ok(Forked::Parent { child: Pid::from_raw(pid as i32), in_cgroup: true }),
            _ => match Errno::last() {
                Errno::ENOSYS | Errno::E2BIG => {}
                e => return Err(e),
            },
        }
    }
    // SAFETY: as this function's contract.
    match unsafe { fork() }? {
        ForkResult::Child => Ok(Forked::Child),
        ForkResult::Parent { child } => Ok(Forked::Parent { child, in_cgroup: false }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_has_the_kernels_ver2_size() {
        // CLONE_ARGS_SIZE_VER2 in linux/sched.h: the first size that carries `cgroup`.
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    #[test]
    fn without_a_cgroup_it_forks_and_says_the_child_is_not_placed() {
        // SAFETY: the child exits at once without touching shared state.
        match unsafe { fork_into(None) }.unwrap() {
            Forked::Child => unsafe { libc::_exit(7) },
            Forked::Parent { child, in_cgroup } => {
                assert!(!in_cgroup);
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 7));
            }
        }
    }
}
