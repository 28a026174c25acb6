//! Kernel calls the runtime makes while it builds a container, behind a small trait.
//!
//! The code that decides *which* calls to make (rootfs layout, devices, masking, user and
//! capability changes) takes a `&dyn Syscall`; production passes [`Linux`], unit tests pass a
//! [`Recorder`] and assert on the calls, so that logic is tested without root. The real
//! kernel is covered by the root-only integration tests under `tests/`.

mod linux;
mod recorder;

pub use linux::Linux;
pub use recorder::{Call, Recorder};

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};

/// What kind of filesystem node a path is, or should be created as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
}

/// A path inside the container's root, resolved so that no symlink in the image can make it
/// point outside the root. The real implementation holds an `O_PATH` descriptor and hands
/// `/proc/self/fd/N` to the kernel, so the path cannot be swapped between check and use.
#[derive(Debug)]
pub struct Target {
    /// Where the node is, as the runtime sees it (rootfs + resolved path); for messages.
    pub host: PathBuf,
    /// What the node is.
    pub kind: NodeKind,
    fd: Option<OwnedFd>,
    fd_path: Option<PathBuf>,
}

impl Target {
    pub fn new(host: PathBuf, kind: NodeKind, fd: Option<OwnedFd>) -> Self {
        let fd_path = fd.as_ref().map(|fd| PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())));
        Target { host, kind, fd, fd_path }
    }

    /// The path to give to a system call that acts on this node.
    pub fn path(&self) -> &Path {
        self.fd_path.as_deref().unwrap_or(&self.host)
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.fd.as_ref().map(|f| f.as_fd())
    }
}

/// The kernel calls used to set up a container's root filesystem and its process.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// The flags of the mount at `path` that a remount must keep (`nosuid`, `nodev`, `noexec`,
    /// `ro`, atime flags): in a user namespace the kernel refuses to clear locked ones.
    fn mount_flags(&self, path: &Path) -> nix::Result<MsFlags>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    /// Open a directory to come back to later with [`Syscall::fchdir`].
    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd>;
    fn fchdir(&self, fd: BorrowedFd<'_>) -> nix::Result<()>;
    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn setdomainname(&self, name: &str) -> nix::Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()>;
    fn symlink(&self, original: &Path, link: &Path) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()>;
    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Write a whole small file: sysctls, `oom_score_adj`, id maps.
    fn write_file(&self, path: &Path, data: &str) -> io::Result<()>;
    /// Resolve `path` (absolute, as the container sees it) inside `root`, creating the missing
    /// components when `create` says what the last one should be.
    fn resolve_in_root(&self, root: &Path, path: &Path, create: Option<NodeKind>) -> io::Result<Target>;
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()>;
    fn drop_bounding_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError>;
    fn set_capabilities(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), caps::errors::CapsError>;
    fn raise_ambient_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError>;
    fn set_keep_capabilities(&self, keep: bool) -> nix::Result<()>;
    fn setgroups(&self, gids: &[u32]) -> nix::Result<()>;
    fn setresgid(&self, gid: u32) -> nix::Result<()>;
    fn setresuid(&self, uid: u32) -> nix::Result<()>;
    fn set_no_new_privileges(&self) -> nix::Result<()>;
    fn umask(&self, mask: u32);
}
