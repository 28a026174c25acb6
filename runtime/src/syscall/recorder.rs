//! A [`Syscall`] that records calls instead of making them, for unit tests.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};

use super::{NodeKind, Syscall, Target};

/// One recorded call, with the arguments that matter to the logic under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount { source: Option<PathBuf>, target: PathBuf, fstype: Option<String>, flags: MsFlags, data: Option<String> },
    Umount { target: PathBuf, flags: MntFlags },
    PivotRoot { new_root: PathBuf, put_old: PathBuf },
    Chroot(PathBuf),
    Chdir(PathBuf),
    OpenDir(PathBuf),
    /// A change of directory to a descriptor from `open_dir`, named by the path it was opened at.
    Fchdir(PathBuf),
    Setns(CloneFlags),
    Unshare(CloneFlags),
    Sethostname(String),
    Setdomainname(String),
    Mknod { path: PathBuf, kind: SFlag, perm: u32, dev: u64 },
    Symlink { original: PathBuf, link: PathBuf },
    Chown { path: PathBuf, uid: u32, gid: u32 },
    Chmod { path: PathBuf, mode: u32 },
    WriteFile { path: PathBuf, data: String },
    Setrlimit { resource: Resource, soft: u64, hard: u64 },
    DropBounding(Capability),
    /// The set by name (`Effective`, ...): the caps crate's `CapSet` is not comparable.
    SetCaps { set: String, caps: Vec<Capability> },
    RaiseAmbient(Capability),
    KeepCaps(bool),
    Setgroups(Vec<u32>),
    Setresgid(u32),
    Setresuid(u32),
    NoNewPrivs,
    Umask(u32),
}

/// Records every call; `resolve_in_root` answers from a small fake filesystem.
#[derive(Default)]
pub struct Recorder {
    calls: RefCell<Vec<Call>>,
    /// Paths (as the container sees them) that exist, and what they are.
    existing: RefCell<HashMap<PathBuf, NodeKind>>,
    /// Calls that fail, by a short name ("mount:/proc"), with the errno to return.
    failures: RefCell<HashMap<String, Errno>>,
    failing_writes: RefCell<HashSet<PathBuf>>,
    /// What `open_dir` opened, by descriptor number, so `fchdir` can be recorded by path.
    opened_dirs: RefCell<HashMap<i32, PathBuf>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pretend that `path` (as the container sees it) exists and is a `kind`.
    pub fn with_node(self, path: &str, kind: NodeKind) -> Self {
        self.existing.borrow_mut().insert(PathBuf::from(path), kind);
        self
    }

    /// Make `mount` onto `target` (host path) fail with `errno`.
    pub fn fail_mount(self, target: &str, errno: Errno) -> Self {
        self.failures.borrow_mut().insert(format!("mount:{target}"), errno);
        self
    }

    /// Make writes to `path` fail with EPERM.
    pub fn fail_write(self, path: &str) -> Self {
        self.failing_writes.borrow_mut().insert(PathBuf::from(path));
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Only the mount calls, as (target, fstype, flags) for compact assertions.
    pub fn mounts(&self) -> Vec<(PathBuf, Option<String>, MsFlags)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Mount { target, fstype, flags, .. } => Some((target, fstype, flags)),
                _ => None,
            })
            .collect()
    }

    fn push(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }
}

fn container_path(path: &Path) -> PathBuf {
    let mut p = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::ParentDir => {
                p.pop();
            }
            _ => {}
        }
    }
    p
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.push(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        });
        match self.failures.borrow().get(&format!("mount:{}", target.display())) {
            Some(errno) => Err(*errno),
            None => Ok(()),
        }
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.push(Call::Umount { target: target.to_path_buf(), flags });
        Ok(())
    }

    fn mount_flags(&self, _path: &Path) -> nix::Result<MsFlags> {
        Ok(MsFlags::empty())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.push(Call::PivotRoot { new_root: new_root.into(), put_old: put_old.into() });
        Ok(())
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.push(Call::Chroot(path.into()));
        Ok(())
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.push(Call::Chdir(path.into()));
        Ok(())
    }

    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
        self.push(Call::OpenDir(path.to_path_buf()));
        // A real descriptor (of /dev/null: nothing is opened at `path`) to hand back.
        let fd = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())?;
        self.opened_dirs.borrow_mut().insert(fd.as_raw_fd(), path.to_path_buf());
        Ok(fd)
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> nix::Result<()> {
        let path = self.opened_dirs.borrow().get(&fd.as_raw_fd()).cloned().unwrap_or_default();
        self.push(Call::Fchdir(path));
        Ok(())
    }

    fn setns(&self, _fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()> {
        self.push(Call::Setns(nstype));
        Ok(())
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.push(Call::Unshare(flags));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.push(Call::Sethostname(name.into()));
        Ok(())
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        self.push(Call::Setdomainname(name.into()));
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        self.push(Call::Mknod { path: path.into(), kind, perm: perm.bits(), dev });
        Ok(())
    }

    fn symlink(&self, original: &Path, link: &Path) -> io::Result<()> {
        self.push(Call::Symlink { original: original.into(), link: link.into() });
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        self.push(Call::Chown { path: path.into(), uid, gid });
        Ok(())
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.push(Call::Chmod { path: path.into(), mode });
        Ok(())
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        self.push(Call::WriteFile { path: path.into(), data: data.into() });
        if self.failing_writes.borrow().contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    fn resolve_in_root(&self, root: &Path, path: &Path, create: Option<NodeKind>) -> io::Result<Target> {
        let inside = container_path(path);
        let rel = inside.strip_prefix("/").unwrap_or(&inside);
        let host = if rel.as_os_str().is_empty() { root.to_path_buf() } else { root.join(rel) };
        if let Some(kind) = self.existing.borrow().get(&inside) {
            return Ok(Target::new(host, *kind, None));
        }
        match create {
            Some(kind) => {
                self.existing.borrow_mut().insert(inside, kind);
                Ok(Target::new(host, kind, None))
            }
            None if rel.as_os_str().is_empty() => Ok(Target::new(host, NodeKind::Dir, None)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()> {
        self.push(Call::Setrlimit { resource, soft, hard });
        Ok(())
    }

    fn drop_bounding_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError> {
        self.push(Call::DropBounding(cap));
        Ok(())
    }

    fn set_capabilities(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
        let mut caps: Vec<Capability> = caps.iter().copied().collect();
        caps.sort_by_key(|c| c.index());
        self.push(Call::SetCaps { set: format!("{set:?}"), caps });
        Ok(())
    }

    fn raise_ambient_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError> {
        self.push(Call::RaiseAmbient(cap));
        Ok(())
    }

    fn set_keep_capabilities(&self, keep: bool) -> nix::Result<()> {
        self.push(Call::KeepCaps(keep));
        Ok(())
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        self.push(Call::Setgroups(gids.to_vec()));
        Ok(())
    }

    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        self.push(Call::Setresgid(gid));
        Ok(())
    }

    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        self.push(Call::Setresuid(uid));
        Ok(())
    }

    fn set_no_new_privileges(&self) -> nix::Result<()> {
        self.push(Call::NoNewPrivs);
        Ok(())
    }

    fn umask(&self, mask: u32) {
        self.push(Call::Umask(mask));
    }
}
