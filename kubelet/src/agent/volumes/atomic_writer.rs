//! Writing a volume's files (configMap, secret, downwardAPI, projected) so a container never
//! sees a half-updated set, as the kubelet's AtomicWriter does: the files go into a fresh
//! `..<timestamp>` directory, the `..data` symlink is swapped to it with one rename, and the
//! names the user sees are symlinks through `..data`. Nothing is written when the contents
//! and modes are already what the payload says.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use super::ownership;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("invalid path {path:?} in volume payload: {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ownership(#[from] ownership::OwnershipError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError + '_ {
    move |source| AtomicWriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the write changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Written,
}

/// Make `dir` (which must exist) hold exactly `payload`, its files in group `fs_group`
/// (group-readable) if given.
pub fn write(
    dir: &Path,
    payload: &Payload,
    fs_group: Option<u32>,
) -> Result<Outcome, AtomicWriteError> {
    for path in payload.keys() {
        validate(path)?;
    }
    let data_link = dir.join(DATA_DIR);
    let old_ts = fs::read_link(&data_link).ok().filter(|t| {
        t.to_str()
            .is_some_and(|s| s.starts_with("..") && !s.contains('/'))
    });
    let current = match &old_ts {
        Some(ts) => Some(read_tree(&dir.join(ts))?),
        None => None,
    };
    // What the files look like on disk once fsGroup has added group read.
    let expected: Payload = match fs_group {
        Some(_) => payload
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    FileProjection {
                        data: f.data.clone(),
                        mode: ownership::file_mode(f.mode, true),
                    },
                )
            })
            .collect(),
        None => payload.clone(),
    };
    let changed = current.as_ref() != Some(&expected);
    if changed {
        let ts_name = timestamped_dir(dir)?;
        let ts_dir = dir.join(&ts_name);
        write_tree(&ts_dir, payload)?;
        if let Some(gid) = fs_group {
            ownership::apply(&ts_dir, gid, true)?;
        }
        let tmp = dir.join(DATA_DIR_TMP);
        let _ = fs::remove_file(&tmp);
        symlink(&ts_name, &tmp).map_err(io(&tmp))?;
        fs::rename(&tmp, &data_link).map_err(io(&data_link))?;
    }
    // The user-visible names: one symlink per top-level entry of the payload.
    let wanted: BTreeSet<&str> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA_DIR).join(name);
        if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
            let _ = fs::remove_file(&link);
            symlink(&target, &link).map_err(io(&link))?;
        }
    }
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || wanted.contains(name) {
            continue;
        }
        // Only our own symlinks are removed; anything else was not ours to write.
        if entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
            fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    if changed && let Some(old) = old_ts {
        let old = dir.join(old);
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(if changed {
        Outcome::Written
    } else {
        Outcome::Unchanged
    })
}

fn validate(path: &str) -> Result<(), AtomicWriteError> {
    let bad = |why| {
        Err(AtomicWriteError::InvalidPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.starts_with("..") {
        return bad("must not start with '..'");
    }
    for component in Path::new(path).components() {
        match component {
            Component::Normal(_) => {}
            Component::RootDir => return bad("must be relative"),
            _ => return bad("must not contain '..' or '.'"),
        }
    }
    Ok(())
}

/// A new `..YYYY_MM_DD_hh_mm_ss.<n>` directory in `dir`, as the upstream writer names them.
fn timestamped_dir(dir: &Path) -> Result<String, AtomicWriteError> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S").to_string();
    let mut n = now.subsec_nanosecond().unsigned_abs();
    loop {
        let name = format!("..{stamp}.{n:09}");
        let path = dir.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io(&path))?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n = n.wrapping_add(1),
            Err(e) => return Err(AtomicWriteError::Io { path, source: e }),
        }
    }
}

fn write_tree(root: &Path, payload: &Payload) -> Result<(), AtomicWriteError> {
    for (rel, file) in payload {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(&file.data).map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
        // After the write: the umask does not get a say in the mode asked for.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode)).map_err(io(&path))?;
    }
    Ok(())
}

/// The files below `root` as a payload, to compare with a new one.
fn read_tree(root: &Path) -> Result<Payload, AtomicWriteError> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(AtomicWriteError::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let rel = rel.join(entry.file_name());
            let meta = fs::symlink_metadata(entry.path()).map_err(io(&entry.path()))?;
            if meta.is_dir() {
                stack.push(rel);
            } else {
                let data = fs::read(entry.path()).map_err(io(&entry.path()))?;
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    FileProjection {
                        data,
                        mode: meta.permissions().mode() & 0o7777,
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn ts_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("..") && n != DATA_DIR)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn update_swaps_data_and_removes_the_old_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(
            write(
                dir,
                &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]),
                None
            )
            .unwrap(),
            Outcome::Written
        );
        let first = fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert!(first.to_str().unwrap().starts_with("..20"), "{first:?}");
        assert_eq!(ts_dirs(dir), [first.to_str().unwrap()]);
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(dir.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            fs::metadata(dir.join("sub/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o400
        );
        assert_eq!(
            fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777,
            0o644
        );

        // Same contents: nothing happens.
        assert_eq!(
            write(
                dir,
                &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]),
                None
            )
            .unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(fs::read_link(dir.join(DATA_DIR)).unwrap(), first);

        // A new value and a dropped key: a new dir, the old one gone, the stale link gone.
        assert_eq!(
            write(dir, &payload(&[("a", "changed", 0o600)]), None).unwrap(),
            Outcome::Written
        );
        let second = fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert_ne!(first, second);
        assert_eq!(ts_dirs(dir), [second.to_str().unwrap()]);
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert_eq!(
            fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::symlink_metadata(dir.join("sub")).is_err());

        // A mode change alone is a change.
        assert_eq!(
            write(dir, &payload(&[("a", "changed", 0o644)]), None).unwrap(),
            Outcome::Written
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", "..data", ""] {
            assert!(
                write(tmp.path(), &payload(&[(bad, "", 0o644)]), None).is_err(),
                "{bad}"
            );
        }
        assert!(fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn empty_payload_gives_an_empty_data_dir() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &Payload::new(), None).unwrap();
        assert!(tmp.path().join(DATA_DIR).is_dir());
        assert_eq!(
            write(tmp.path(), &Payload::new(), None).unwrap(),
            Outcome::Unchanged
        );
    }
}
