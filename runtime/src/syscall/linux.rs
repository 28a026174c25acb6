//! The real kernel behind [`Syscall`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};

use super::{NodeKind, Syscall, Target};

/// Calls straight into the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn mount_flags(&self, path: &Path) -> nix::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags;
        let st = nix::sys::statvfs::statvfs(path)?;
        let f = st.flags();
        let mut out = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(fs) {
                out |= ms;
            }
        }
        Ok(out)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn open_dir(&self, path: &Path) -> nix::Result<OwnedFd> {
        use nix::fcntl::OFlag;
        nix::fcntl::open(path, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> nix::Result<()> {
        nix::unistd::fchdir(fd)
    }

    fn setns(&self, fd: BorrowedFd<'_>, nstype: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(fd, nstype)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        let res = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(res).map(drop)
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }

    fn symlink(&self, original: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(original, link)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
    }

    fn chmod(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn write_file(&self, path: &Path, data: &str) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn resolve_in_root(&self, root: &Path, path: &Path, create: Option<NodeKind>) -> io::Result<Target> {
        resolve_in_root(root, path, create)
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> nix::Result<()> {
        nix::sys::resource::setrlimit(resource, soft, hard)
    }

    fn drop_bounding_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError> {
        caps::drop(None, CapSet::Bounding, cap)
    }

    fn set_capabilities(&self, set: CapSet, caps: &CapsHashSet) -> Result<(), caps::errors::CapsError> {
        caps::set(None, set, caps)
    }

    fn raise_ambient_capability(&self, cap: Capability) -> Result<(), caps::errors::CapsError> {
        caps::raise(None, CapSet::Ambient, cap)
    }

    fn set_keep_capabilities(&self, keep: bool) -> nix::Result<()> {
        nix::sys::prctl::set_keepcaps(keep)
    }

    fn setgroups(&self, gids: &[u32]) -> nix::Result<()> {
        let gids: Vec<nix::unistd::Gid> = gids.iter().map(|g| (*g).into()).collect();
        nix::unistd::setgroups(&gids)
    }

    fn setresgid(&self, gid: u32) -> nix::Result<()> {
        // The raw syscall, not libc's wrapper: glibc would broadcast the change to all
        // threads with signals, which is pointless (we are single-threaded) and unsafe after fork.
        let res = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
        nix::errno::Errno::result(res).map(drop)
    }

    fn setresuid(&self, uid: u32) -> nix::Result<()> {
        let res = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        nix::errno::Errno::result(res).map(drop)
    }

    fn set_no_new_privileges(&self) -> nix::Result<()> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }
}

/// `openat2(RESOLVE_IN_ROOT)`: symlinks (absolute or `..`) are resolved as if `root` were `/`.
fn openat2_in_root(dirfd: BorrowedFd<'_>, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: open_how is plain data; all-zero is its documented neutral value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN: a concurrent rename in the tree; the kernel asks us to retry.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

fn kind_of(fd: &OwnedFd) -> io::Result<NodeKind> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR {
        NodeKind::Dir
    } else {
        NodeKind::File
    })
}

fn host_path_of(fd: &OwnedFd) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Resolve `path` inside `root` with `openat2(RESOLVE_IN_ROOT)`, creating missing components
/// (directories, and a file or directory for the last one) with `*at` calls relative to
/// descriptors already known to be inside the root.
pub fn resolve_in_root(root: &Path, path: &Path, create: Option<NodeKind>) -> io::Result<Target> {
    use std::os::fd::AsFd;
    let root_fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let rel = normalize(path);
    if rel.as_os_str().is_empty() {
        return Ok(Target::new(host_path_of(&root_fd), NodeKind::Dir, Some(root_fd)));
    }
    match openat2_in_root(root_fd.as_fd(), &rel, libc::O_PATH) {
        Ok(fd) => return Ok(Target::new(host_path_of(&fd), kind_of(&fd)?, Some(fd))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create.is_some() => {}
        Err(e) => return Err(e),
    }
    let want = create.unwrap_or(NodeKind::Dir);
    // Walk down from the root. Every prefix is resolved again from the root, so a symlink met
    // on the way stays confined; what is missing is created relative to the resolved parent.
    // A dangling symlink is followed: its target (inside the root) is what gets created.
    let mut rel = rel;
    let mut symlinks_followed = 0;
    'restart: loop {
        let comps: Vec<PathBuf> = rel.components().map(|c| PathBuf::from(c.as_os_str())).collect();
        let mut parent: Option<OwnedFd> = None;
        let mut so_far = PathBuf::new();
        for (i, comp) in comps.iter().enumerate() {
            let prefix = so_far.clone();
            so_far.push(comp);
            match openat2_in_root(root_fd.as_fd(), &so_far, libc::O_PATH) {
                Ok(fd) => {
                    parent = Some(fd);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let dir = parent.as_ref().map_or(root_fd.as_raw_fd(), |p| p.as_raw_fd());
            let kind = if i + 1 == comps.len() { want } else { NodeKind::Dir };
            match create_at(dir, comp.as_os_str().as_bytes(), kind) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    // Present, yet it did not resolve: a dangling symlink. Follow it.
                    symlinks_followed += 1;
                    if symlinks_followed > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = readlink_at(dir, comp.as_os_str().as_bytes())?;
                    let rest: PathBuf = comps[i + 1..].iter().collect();
                    let base = if target.is_absolute() { PathBuf::new() } else { prefix };
                    rel = normalize(&base.join(target).join(rest));
                    if rel.as_os_str().is_empty() {
                        return Ok(Target::new(host_path_of(&root_fd), NodeKind::Dir, Some(root_fd)));
                    }
                    continue 'restart;
                }
                Err(e) => return Err(e),
            }
            parent = Some(openat2_in_root(root_fd.as_fd(), &so_far, libc::O_PATH)?);
        }
        let fd = parent.expect("a non-empty path has at least one component");
        return Ok(Target::new(host_path_of(&fd), kind_of(&fd)?, Some(fd)));
    }
}

fn readlink_at(dir: i32, name: &[u8]) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// Lexically clean a path relative to the root: drop `/` and `.`, let `..` stop at the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn create_at(dir: i32, name: &[u8], kind: NodeKind) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let res = match kind {
        NodeKind::Dir => unsafe { libc::mkdirat(dir, name.as_ptr(), 0o755) },
        NodeKind::File => {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
            let fd = unsafe { libc::openat(dir, name.as_ptr(), flags, 0o644) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            fd.min(0)
        }
    };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_symlink_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("real/etc")).unwrap();
        std::os::unix::fs::symlink("/real", root.path().join("link")).unwrap();
        let t = resolve_in_root(root.path(), Path::new("/link/etc"), None).unwrap();
        assert_eq!(t.host, root.path().join("real/etc").canonicalize().unwrap());
        assert_eq!(t.kind, NodeKind::Dir);
    }

    #[test]
    fn dotdot_symlink_cannot_escape() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        std::os::unix::fs::symlink("../../../../../../tmp", root.path().join("escape")).unwrap();
        let t = resolve_in_root(root.path(), Path::new("/escape/x"), Some(NodeKind::Dir)).unwrap();
        // `..` at the root stays at the root, so the directory is made in the root's /tmp.
        assert_eq!(t.host, root.path().canonicalize().unwrap().join("tmp/x"));
        assert!(root.path().join("tmp/x").is_dir());
    }

    #[test]
    fn dangling_symlink_is_followed_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.path().join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../../../../../outside", root.path().join("up")).unwrap();
        let t = resolve_in_root(root.path(), Path::new("/var/run/secrets/token"), Some(NodeKind::File)).unwrap();
        assert_eq!(t.host, root.path().canonicalize().unwrap().join("run/secrets/token"));
        assert!(root.path().join("run/secrets/token").is_file());
        let t = resolve_in_root(root.path(), Path::new("/up/x"), Some(NodeKind::Dir)).unwrap();
        assert_eq!(t.host, root.path().canonicalize().unwrap().join("outside/x"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/b", root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", root.path().join("b")).unwrap();
        let err = resolve_in_root(root.path(), Path::new("/a/x"), Some(NodeKind::Dir)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn creates_missing_file_and_parents() {
        let root = tempfile::tempdir().unwrap();
        let t = resolve_in_root(root.path(), Path::new("/a/b/c.txt"), Some(NodeKind::File)).unwrap();
        assert_eq!(t.kind, NodeKind::File);
        assert!(root.path().join("a/b/c.txt").is_file());
        assert!(t.path().starts_with("/proc/self/fd/"));
    }

    #[test]
    fn missing_without_create_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let err = resolve_in_root(root.path(), Path::new("/nope"), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

}
