//! A container's writable layer: bytes allocated and inodes under its overlay upper
//! directory, hard links counted once, as `du` reports them.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Everything under `root` (itself included); files that vanish during the walk (the
/// container is writing) are skipped, as is a missing `root`.
pub fn usage(root: &Path) -> io::Result<DiskUsage> {
    let mut seen = HashSet::new();
    let mut total = DiskUsage::default();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total.inodes += 1;
            total.bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => pending.extend(entries.flatten().map(|e| e.path())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_count_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![1u8; 20_000]).unwrap();
        std::fs::hard_link(dir.path().join("d/f"), dir.path().join("link")).unwrap();
        let u = usage(dir.path()).unwrap();
        assert_eq!(u.inodes, 3);
        assert!(u.bytes >= 20_000, "{u:?}");
        assert_eq!(usage(&dir.path().join("none")).unwrap(), DiskUsage::default());
    }
}
