//! `linux.maskedPaths` (hidden: /dev/null over files, an empty read-only tmpfs over
//! directories) and `linux.readonlyPaths` (bound read-only onto themselves).

use std::io;
use std::path::Path;

use nix::mount::MsFlags;

use super::RootfsError;
use crate::syscall::{NodeKind, Syscall};

pub fn mask(sys: &dyn Syscall, rootfs: &Path, path: &Path) -> Result<(), RootfsError> {
    let Some(t) = existing(sys, rootfs, path)? else { return Ok(()) };
    let res = match t.kind {
        NodeKind::Dir => sys.mount(Some(Path::new("tmpfs")), t.path(), Some("tmpfs"), MsFlags::MS_RDONLY, None),
        NodeKind::File => sys.mount(Some(Path::new("/dev/null")), t.path(), None, MsFlags::MS_BIND, None),
    };
    res.map_err(|source| RootfsError::Mount { what: "a mask".into(), dest: path.into(), source })
}

pub fn readonly(sys: &dyn Syscall, rootfs: &Path, path: &Path) -> Result<(), RootfsError> {
    let Some(t) = existing(sys, rootfs, path)? else { return Ok(()) };
    let err = |source| RootfsError::Mount { what: "a read-only bind".into(), dest: path.into(), source };
    sys.mount(Some(t.path()), t.path(), None, MsFlags::MS_BIND | MsFlags::MS_REC, None).map_err(err)?;
    // Resolve again: the descriptor still names the node under the new mount.
    let Some(t) = existing(sys, rootfs, path)? else { return Ok(()) };
    let keep = sys.mount_flags(t.path()).unwrap_or(MsFlags::empty());
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | keep;
    sys.mount(None, t.path(), None, flags, None).map_err(err)
}

fn existing(sys: &dyn Syscall, rootfs: &Path, path: &Path) -> Result<Option<crate::syscall::Target>, RootfsError> {
    match sys.resolve_in_root(rootfs, path, None) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RootfsError::Destination { dest: path.into(), source }),
    }
}
