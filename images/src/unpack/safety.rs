//! Where a tar entry may be written. Entry names are cleaned into relative paths of plain
//! components (`..`, absolute paths and NUL refused), and every parent directory is checked
//! with lstat to be a real directory, never a symlink, before anything is created in it.
//! Checking and then using a path is safe here because the snapshot is a fresh private temp
//! directory that only this unpacker writes, one entry at a time.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

/// The longest entry or link name accepted.
pub const MAX_NAME: usize = 4096;

/// Why an entry is refused; the caller adds the entry's name.
pub type Refusal = String;

/// Cleans a tar name into a relative path of plain components (empty for the root).
pub fn clean_path(raw: &[u8]) -> Result<PathBuf, Refusal> {
    if raw.len() > MAX_NAME {
        return Err(format!("name is {} bytes, longer than {MAX_NAME}", raw.len()));
    }
    if raw.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    if raw.first() == Some(&b'/') {
        return Err("absolute path".into());
    }
    let mut out = PathBuf::new();
    for c in Path::new(std::ffi::OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a .. component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(out)
}

/// Makes sure every parent of `rel` under `root` is a real directory, creating missing ones
/// (tars often omit them), and returns the full path of `rel`.
pub fn prepare_parents(root: &Path, rel: &Path) -> Result<PathBuf, Refusal> {
    walk_parents(root, rel, true)
}

/// Like `prepare_parents` but creates nothing: for hardlink targets, which must exist.
pub fn check_parents(root: &Path, rel: &Path) -> Result<PathBuf, Refusal> {
    walk_parents(root, rel, false)
}

fn walk_parents(root: &Path, rel: &Path, create: bool) -> Result<PathBuf, Refusal> {
    let mut cur = root.to_path_buf();
    let mut shown = PathBuf::new();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        shown.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("path goes through the symlink {}", shown.display()));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("parent {} is not a directory", shown.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new().mode(0o755).create(&cur).map_err(|e| format!("creating {}: {e}", shown.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", shown.display())),
        }
    }
    Ok(root.join(rel))
}

/// Clears the way for a new entry at `path`: a later entry replaces an earlier one, except
/// that a directory entry over an existing directory keeps it (and its contents).
/// Returns whether a directory was kept.
pub fn clear_target(path: &Path, entry_is_dir: bool) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && entry_is_dir => Ok(true),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map(|()| false),
        Ok(_) => fs::remove_file(path).map(|()| false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean_path(b"./a/b/./c").unwrap(), Path::new("a/b/c"));
        assert_eq!(clean_path(b"./").unwrap(), Path::new(""));
        assert_eq!(clean_path(b"a//b/").unwrap(), Path::new("a/b"));
        assert!(clean_path(b"/etc/passwd").unwrap_err().contains("absolute"));
        assert!(clean_path(b"a/../../b").unwrap_err().contains(".."));
        assert!(clean_path(b"..").unwrap_err().contains(".."));
        assert!(clean_path(&[b'a'; 5000]).unwrap_err().contains("longer"));
    }

    #[test]
    fn parents_through_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink("real", root.join("link")).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        assert_eq!(prepare_parents(root, Path::new("real/new/x")).unwrap(), root.join("real/new/x"));
        assert!(root.join("real/new").is_dir());
        assert!(prepare_parents(root, Path::new("link/x")).unwrap_err().contains("symlink link"));
        assert!(prepare_parents(root, Path::new("file/x")).unwrap_err().contains("not a directory"));
        assert!(check_parents(root, Path::new("missing/x")).is_err());
        assert!(!root.join("missing").exists());
    }
}
