//! The state directory: `<root>/<id>/state.json` and `<root>/<id>/exec.fifo`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::record::Container;

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("container does not exist")]
    NotFound { id: String },
    #[error("container with id {id} exists")]
    Exists { id: String },
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("state of container {id} in {path}: {source}")]
    Io { id: String, path: PathBuf, source: io::Error },
    #[error("state of container {id} in {path} is corrupt: {source}")]
    Corrupt { id: String, path: PathBuf, source: serde_json::Error },
}

/// Container ids as runc accepts them: letters, digits, `_ + - .`, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let bad = |reason| Err(StoreError::InvalidId { id: id.to_string(), reason });
    if id.is_empty() {
        return bad("it is empty");
    }
    if id == "." || id == ".." {
        return bad("it is a path component");
    }
    if id.len() > 1024 {
        return bad("it is longer than 1024 bytes");
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c)) {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Claim the directory for a new container; fails if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        validate_id(id)?;
        let io_err = |source| StoreError::Io { id: id.into(), path: self.root.clone(), source };
        fs::DirBuilder::new().recursive(true).mode(0o711).create(&self.root).map_err(io_err)?;
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Exists { id: id.into() }),
            Err(source) => Err(StoreError::Io { id: id.into(), path: dir, source }),
        }
    }

    pub fn load(&self, id: &str) -> Result<Container, StoreError> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NotFound { id: id.into() }),
            Err(source) => return Err(StoreError::Io { id: id.into(), path, source }),
        };
        serde_json::from_str(&text).map_err(|source| StoreError::Corrupt { id: id.into(), path, source })
    }

    /// Write `state.json` atomically (a reader sees the old or the new file, never half).
    pub fn save(&self, c: &Container) -> Result<(), StoreError> {
        let dir = self.dir(&c.id);
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let io_err = |source| StoreError::Io { id: c.id.clone(), path: path.clone(), source };
        let data = serde_json::to_vec(c).map_err(|e| io_err(io::Error::other(e)))?;
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io_err)?;
        f.write_all(&data).map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err)
    }

    /// Remove the container's directory and all it holds. Absent is fine.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        validate_id(id)?;
        match fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { id: id.into(), path: self.dir(id), source: e }),
            _ => Ok(()),
        }
    }

    /// Ids of every container with a state file, sorted.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(source) => return Err(StoreError::Io { id: String::new(), path: self.root.clone(), source }),
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["c1", "my_container.v2", "a+b-c", "0123456789abcdef"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", "x\0y"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn save_load_list_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("root"));
        assert!(store.list().unwrap().is_empty());
        store.create_dir("b").unwrap();
        store.create_dir("a").unwrap();
        assert!(matches!(store.create_dir("a"), Err(StoreError::Exists { .. })));
        let c = Container {
            id: "a".into(),
            bundle: "/bundle".into(),
            rootfs: "/bundle/rootfs".into(),
            pid: 1,
            pid_start_time: 2,
            created: "2026-01-01T00:00:00Z".into(),
            owner_uid: 0,
            cgroup: None,
            spec: Default::default(),
        };
        store.save(&c).unwrap();
        // Only directories with a state file are containers.
        assert_eq!(store.list().unwrap(), vec!["a"]);
        assert_eq!(store.load("a").unwrap().bundle, Path::new("/bundle"));
        assert!(matches!(store.load("zzz"), Err(StoreError::NotFound { .. })));
        store.remove("a").unwrap();
        store.remove("a").unwrap();
        assert!(matches!(store.load("a"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path());
        store.create_dir("c").unwrap();
        fs::write(tmp.path().join("c/state.json"), "{not json").unwrap();
        let err = store.load("c").unwrap_err();
        assert!(err.to_string().contains("c/state.json is corrupt"), "{err}");
    }
}
