//! The two mount-table questions a sandbox asks: unmount everything at a path, and whether a
//! namespace file is still a live bind mount of a namespace.

use std::path::Path;

use nix::mount::MntFlags;

/// `statfs` magic of nsfs, the filesystem of `/proc/<pid>/ns/*` and their bind mounts.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Unmounts every mount stacked at `path`; nothing mounted (or no such path) is success, so
/// teardown can be repeated.
pub fn unmount_all(path: &Path) -> nix::Result<()> {
    loop {
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// True if `path` holds a namespace open: after a reboot the file (on a tmpfs state dir) is
/// gone, or left as an empty regular file with nothing mounted on it.
pub fn is_namespace(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// True if anything is mounted exactly at `path` (per this process's mountinfo).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(m) == path)
}
