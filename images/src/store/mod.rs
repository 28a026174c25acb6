//! The content-addressed store: verified blobs under `blobs/sha256/<hex>`, image records
//! (reference name → manifest, config and layer digests) under `records/`, unpacked layer
//! snapshots under `snapshots/<layer-hex>/fs`, and garbage collection of what no record
//! references. Every file appears by rename only, after it is complete and verified, so a
//! crash leaves at most temp files under `tmp/`, never a half-written blob or record in use.

mod blobs;
mod gc;
mod records;
mod snapshots;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;

pub use gc::GcReport;
pub use records::ImageRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {expected}: expected {expected_size} bytes, got {actual_size} bytes with digest {actual}")]
    Mismatch { expected: Digest, expected_size: u64, actual: Digest, actual_size: u64 },
    #[error("blob {0}: not in the store")]
    BlobNotFound(Digest),
    #[error("image {0:?}: no such image record")]
    RecordNotFound(String),
    #[error("image record {path}: {source}")]
    RecordJson { path: PathBuf, source: serde_json::Error },
    #[error("layer {layer}: {source}")]
    Unpack { layer: Digest, source: crate::unpack::UnpackError },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// A store rooted at a directory (the caller picks it, e.g. `/var/lib/kubelet-rs/images`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let store = Store { root: root.into() };
        for dir in [store.blobs_dir(), store.records_dir(), store.snapshots_dir(), store.tmp_dir(), store.locks_dir()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    pub(crate) fn records_dir(&self) -> PathBuf {
        self.root.join("records")
    }
    /// Where layer snapshots live: `<snapshots_dir>/<layer-hex>/fs`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// A fresh temp path in the store's filesystem, so a rename from it is atomic.
    pub(crate) fn temp_path(&self, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp_dir().join(format!("{what}-{}-{n}", std::process::id()))
    }
}

/// Writes `data` to `path` atomically: temp file in `tmp/`, fsync, rename, fsync of the
/// parent directory.
pub(crate) fn write_atomic(store: &Store, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let tmp = store.temp_path("record");
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}
