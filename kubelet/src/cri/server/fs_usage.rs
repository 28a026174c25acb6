//! How much of its filesystem the image store takes: bytes allocated and inodes, by a walk
//! of the store (hard links counted once), as `du` would report them.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::image_service::ImageServiceError;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// The usage of everything under `root`, `root` included. Files removed during the walk (a
/// concurrent garbage collection) are skipped.
pub(super) fn usage(root: &Path) -> Result<Usage, ImageServiceError> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = Usage::default();
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageServiceError::Usage { path, source }
    };
    while let Some(path) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(&path)(e)),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            total.inodes += 1;
            total.bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err(&path)(e)),
            };
            for entry in entries {
                pending.push(entry.map_err(err(&path))?.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_dirs_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), vec![7u8; 10_000]).unwrap();
        std::fs::hard_link(root.join("a/b/file"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("b/file", root.join("a/sym")).unwrap();
        let u = usage(&root).unwrap();
        // store, a, a/b, file (= link), sym
        assert_eq!(u.inodes, 5);
        assert!(u.bytes >= 10_000, "{u:?}");
        assert_eq!(usage(&dir.path().join("missing")).unwrap(), Usage::default());
    }
}
