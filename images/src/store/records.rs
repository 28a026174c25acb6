//! Image records: a reference name (`docker.io/library/busybox:latest`) and the digests of
//! its manifest, config and layers, one JSON file per name under `records/`, written
//! atomically. The file is named by the sha256 of the name, so any name is a safe file name.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, io_err, write_atomic};
use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    /// The layer blobs, base first; their snapshots are `snapshots/<hex>/fs`.
    pub layers: Vec<Digest>,
}

impl Store {
    fn record_path(&self, name: &str) -> PathBuf {
        self.records_dir().join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// Adds or replaces the record for `record.name`.
    pub fn put_record(&self, record: &ImageRecord) -> Result<(), StoreError> {
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::RecordJson { path: path.clone(), source })?;
        write_atomic(self, &path, &json)
    }

    /// The record for a reference name.
    pub fn get_record(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let path = self.record_path(name);
        let data = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::RecordNotFound(name.into()),
            _ => StoreError::Io { path: path.clone(), source: e },
        })?;
        serde_json::from_slice(&data).map_err(|source| StoreError::RecordJson { path, source })
    }

    /// The records whose manifest is `manifest` (several names may point at one image).
    pub fn records_by_digest(&self, manifest: &Digest) -> Result<Vec<ImageRecord>, StoreError> {
        Ok(self.list_records()?.into_iter().filter(|r| r.manifest == *manifest).collect())
    }

    /// Every record, sorted by name.
    pub fn list_records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.records_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let data = fs::read(&path).map_err(io_err(&path))?;
            out.push(serde_json::from_slice(&data).map_err(|source| StoreError::RecordJson { path, source })?);
        }
        out.sort_by(|a: &ImageRecord, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the record for `name`; its content stays until garbage collection.
    pub fn remove_record(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let record = self.get_record(name)?;
        let path = self.record_path(name);
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(name: &str, seed: &str) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            manifest: Digest::of(format!("m{seed}").as_bytes()),
            config: Digest::of(format!("c{seed}").as_bytes()),
            layers: vec![Digest::of(format!("l{seed}").as_bytes())],
        }
    }

    #[test]
    fn records_are_put_listed_got_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = record("docker.io/library/busybox:latest", "1");
        let b = record("localhost:5000/app:v1", "2");
        let mut a2 = a.clone();
        a2.name = "docker.io/library/busybox:1.36".into();
        for r in [&a, &b, &a2] {
            s.put_record(r).unwrap();
        }
        assert_eq!(s.get_record(&b.name).unwrap(), b);
        assert_eq!(s.list_records().unwrap(), vec![a2.clone(), a.clone(), b.clone()]);
        assert_eq!(s.records_by_digest(&a.manifest).unwrap(), vec![a2.clone(), a.clone()]);
        // Replacing a record keeps one file per name.
        let mut b2 = record(&b.name, "3");
        b2.layers.push(Digest::of(b"x"));
        s.put_record(&b2).unwrap();
        assert_eq!(s.get_record(&b.name).unwrap(), b2);
        assert_eq!(s.remove_record(&a.name).unwrap(), a);
        assert!(matches!(s.get_record(&a.name), Err(StoreError::RecordNotFound(n)) if n == a.name));
        assert_eq!(s.list_records().unwrap().len(), 2);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
