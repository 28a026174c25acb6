//! Making the prepared root filesystem the container's `/`.

use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::RootfsError;
use crate::syscall::Syscall;

/// How to enter the root: `pivot_root` (the default), a mount move plus chroot (`--no-pivot`,
/// for roots on a ramdisk where `pivot_root` is refused), or a bare chroot when the container
/// has no mount namespace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    PivotRoot,
    MoveMount,
    Chroot,
}

pub fn pivot(sys: &dyn Syscall, rootfs: &Path, method: Method) -> Result<(), RootfsError> {
    let err = |step, source| RootfsError::Pivot { rootfs: rootfs.into(), step, source };
    let dot = Path::new(".");
    let slash = Path::new("/");
    // Held across pivot_root to name the old root afterwards.
    let old_root = match method {
        Method::PivotRoot => Some(sys.open_dir(slash).map_err(|e| err("open the old root", e))?),
        _ => None,
    };
    sys.chdir(rootfs).map_err(|e| err("chdir", e))?;
    match method {
        Method::PivotRoot => {
            // pivot_root(".", ".") stacks the old root on top of the new one; then we detach it.
            sys.pivot_root(dot, dot).map_err(|e| err("pivot_root", e))?;
            // "." is still the new root (the directory, under the stacked old root): go to the
            // old root itself, or the rslave below would change the container's own mounts
            // and undo a shared rootfsPropagation (as runc, which does the same fchdir).
            let old_root = old_root.expect("opened for PivotRoot");
            sys.fchdir(old_root.as_fd()).map_err(|e| err("fchdir to the old root", e))?;
            // Keep the unmount of the old root from reaching the host.
            sys.mount(None, dot, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None).map_err(|e| err("make old root rslave", e))?;
            sys.umount2(dot, MntFlags::MNT_DETACH).map_err(|e| err("detach old root", e))?;
        }
        Method::MoveMount => {
            sys.mount(Some(rootfs), slash, None, MsFlags::MS_MOVE, None).map_err(|e| err("move mount", e))?;
            sys.chroot(dot).map_err(|e| err("chroot", e))?;
        }
        Method::Chroot => sys.chroot(dot).map_err(|e| err("chroot", e))?,
    }
    sys.chdir(slash).map_err(|e| err("chdir /", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recorder};

    #[test]
    fn pivot_root_detaches_the_old_root() {
        let sys = Recorder::new();
        pivot(&sys, Path::new("/b/rootfs"), Method::PivotRoot).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::OpenDir("/".into()),
                Call::Chdir("/b/rootfs".into()),
                Call::PivotRoot { new_root: ".".into(), put_old: ".".into() },
                // The rslave and the detach act on the old root, not on the new one.
                Call::Fchdir("/".into()),
                Call::Mount { source: None, target: ".".into(), fstype: None, flags: MsFlags::MS_SLAVE | MsFlags::MS_REC, data: None },
                Call::Umount { target: ".".into(), flags: MntFlags::MNT_DETACH },
                Call::Chdir("/".into()),
            ]
        );
    }

    #[test]
    fn no_pivot_moves_the_mount_then_chroots() {
        let sys = Recorder::new();
        pivot(&sys, Path::new("/r"), Method::MoveMount).unwrap();
        let calls = sys.calls();
        assert!(matches!(&calls[1], Call::Mount { flags, .. } if *flags == MsFlags::MS_MOVE));
        assert_eq!(calls[2], Call::Chroot(".".into()));
    }
}
