//! A pod's `fsGroup` on its volumes, as the kubelet applies it: every file and directory gets
//! the group, group read (and write, unless the volume is read-only) permission, and
//! directories the setgid bit so that files created later inherit the group.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("applying fsGroup {gid} to {path}: {source}")]
pub struct OwnershipError {
    pub gid: u32,
    pub path: PathBuf,
    pub source: std::io::Error,
}

const RW: u32 = 0o660;
const RO: u32 = 0o440;
const DIR_EXTRA: u32 = 0o2110;

/// The mode `apply` gives a file of mode `mode`.
pub fn file_mode(mode: u32, read_only: bool) -> u32 {
    mode | if read_only { RO } else { RW }
}

/// Give everything at and below `root` group `gid` (symlinks are not followed).
pub fn apply(root: &Path, gid: u32, read_only: bool) -> Result<(), OwnershipError> {
    let error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OwnershipError { gid, path, source }
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(error(&path))?;
        std::os::unix::fs::lchown(&path, None, Some(gid)).map_err(error(&path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mask = if read_only { RO } else { RW };
        if meta.is_dir() {
            mask |= DIR_EXTRA;
            for entry in fs::read_dir(&path).map_err(error(&path))? {
                stack.push(entry.map_err(error(&path))?.path());
            }
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode | mask != mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode | mask))
                .map_err(error(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn group_and_modes() {
        // Our own group: changing to it needs no privilege.
        let gid = nix::unistd::getegid().as_raw();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("v");
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("sub/f"), "x").unwrap();
        fs::set_permissions(dir.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("link")).unwrap();
        apply(&dir, gid, true).unwrap();
        let meta = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap();
        assert_eq!(meta("sub/f").mode() & 0o7777, 0o640);
        assert_eq!(meta("sub").mode() & 0o7777, 0o2755);
        assert_eq!(meta("sub/f").gid(), gid);
        apply(&dir, gid, false).unwrap();
        assert_eq!(meta("sub/f").mode() & 0o7777, 0o660);
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o2775);
    }
}
