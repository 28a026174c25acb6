//! The kernel side of volumes (tmpfs mounts for memory-backed emptyDirs, secrets and
//! projected volumes, and unmounting at teardown) behind a trait, so volume logic is
//! unit-tested with a recording fake and no root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounting tmpfs on {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("unmounting {path}: {source}")]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
}

pub trait Mounter: Send + Sync {
    /// Mount a tmpfs on `target` (an existing directory), at most `size_bytes` big if given.
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError>;
    /// Unmount `target`.
    fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// The mount points at or below `dir`, deepest first (the order to unmount them in).
    fn mounts_under(&self, dir: &Path) -> Result<Vec<PathBuf>, MountError>;
}

/// Whether `path` itself is a mount point.
pub fn is_mounted(mounter: &dyn Mounter, path: &Path) -> Result<bool, MountError> {
    Ok(mounter.mounts_under(path)?.iter().any(|m| m == path))
}

/// The host's mounts, through mount(2) and /proc/self/mountinfo.
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        use nix::mount::{MsFlags, mount};
        let options = size_bytes.map(|s| format!("size={s}"));
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            options.as_deref(),
        )
        .map_err(|source| MountError::Mount {
            path: target.to_path_buf(),
            source,
        })
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        use nix::mount::{MntFlags, umount2};
        match umount2(target, MntFlags::empty()) {
            // Busy: a container still holds it; detach so it goes away when released.
            Err(nix::Error::EBUSY) => umount2(target, MntFlags::MNT_DETACH),
            other => other,
        }
        .map_err(|source| MountError::Unmount {
            path: target.to_path_buf(),
            source,
        })
    }

    fn mounts_under(&self, dir: &Path) -> Result<Vec<PathBuf>, MountError> {
        let info =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(MountError::MountInfo)?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut found: Vec<PathBuf> = info
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(unescape)
            .filter(|p| p.starts_with(&dir))
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        found.dedup();
        Ok(found)
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// A [`Mounter`] that only records: what is "mounted" and every call made.
#[derive(Default)]
pub struct RecordingMounter {
    pub mounted: Mutex<BTreeSet<PathBuf>>,
    /// `mount <path> size=<n>` and `unmount <path>`, in order.
    pub calls: Mutex<Vec<String>>,
}

impl Mounter for RecordingMounter {
    fn mount_tmpfs(&self, target: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        let size = size_bytes.map(|s| format!(" size={s}")).unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push(format!("mount {}{size}", target.display()));
        self.mounted.lock().unwrap().insert(target.to_path_buf());
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), MountError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("unmount {}", target.display()));
        self.mounted.lock().unwrap().remove(target);
        Ok(())
    }

    fn mounts_under(&self, dir: &Path) -> Result<Vec<PathBuf>, MountError> {
        let mut found: Vec<PathBuf> = self
            .mounted
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.starts_with(dir))
            .cloned()
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn host_mounts_include_root() {
        // /proc/self/mountinfo is readable without root.
        assert!(
            HostMounter
                .mounts_under(Path::new("/"))
                .unwrap()
                .contains(&PathBuf::from("/"))
        );
    }
}
