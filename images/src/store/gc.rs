//! Garbage collection: removes blobs and layer snapshots that no image record references,
//! and temp files left by an interrupted ingest or unpack. Run it while no pull is under
//! way: a pull's blobs are unreferenced until its record is written.

use std::collections::HashSet;
use std::fs;

use super::{Store, StoreError, io_err};
use crate::digest::Digest;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    /// The layer digests whose snapshots were removed.
    pub snapshots_removed: Vec<String>,
    pub bytes_freed: u64,
}

impl Store {
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut keep = HashSet::new();
        for r in self.list_records()? {
            keep.insert(r.manifest);
            keep.insert(r.config);
            keep.extend(r.layers);
        }
        let mut report = GcReport::default();
        for blob in self.list_blobs()? {
            if !keep.contains(&blob) {
                report.bytes_freed += fs::symlink_metadata(self.blob_path(&blob)).map(|m| m.len()).unwrap_or(0);
                self.remove_blob(&blob)?;
                report.blobs_removed.push(blob);
            }
        }
        let keep_hex: HashSet<&str> = keep.iter().map(|d| d.hex()).collect();
        let snapshots = self.snapshots_dir();
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&snapshots).map_err(io_err(&snapshots))? {
            names.push(entry.map_err(io_err(&snapshots))?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            // Temp dirs (".tmp-...") of unpacks that died, and lock files, are removed too.
            if keep_hex.contains(name.as_str()) {
                continue;
            }
            let path = snapshots.join(&name);
            if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            } else {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            if !name.starts_with('.') {
                report.snapshots_removed.push(name);
            }
        }
        let tmp = self.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let path = entry.map_err(io_err(&tmp))?.path();
            let _ = fs::remove_file(&path);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ImageRecord;
    use super::*;

    #[test]
    fn gc_removes_exactly_the_unreferenced_content() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let blob = |data: &[u8]| s.ingest_bytes(data).unwrap();
        let (m1, c1, shared, l1) = (blob(b"manifest1"), blob(b"config1"), blob(b"shared layer"), blob(b"layer1"));
        let (m2, c2, l2) = (blob(b"manifest2"), blob(b"config2"), blob(b"layer2"));
        let orphan = blob(b"orphan");
        for l in [&shared, &l1, &l2, &orphan] {
            fs::create_dir_all(s.snapshots_dir().join(l.hex()).join("fs/etc")).unwrap();
        }
        fs::create_dir_all(s.snapshots_dir().join(".tmp-dead")).unwrap();
        fs::write(s.snapshots_dir().join(format!(".lock-{}", l1.hex())), b"").unwrap();
        let r1 = ImageRecord { name: "a:1".into(), manifest: m1.clone(), config: c1.clone(), layers: vec![shared.clone(), l1.clone()] };
        let r2 = ImageRecord { name: "b:1".into(), manifest: m2.clone(), config: c2.clone(), layers: vec![shared.clone(), l2.clone()] };
        s.put_record(&r1).unwrap();
        s.put_record(&r2).unwrap();

        let report = s.gc().unwrap();
        assert_eq!(report.blobs_removed, vec![orphan.clone()]);
        assert_eq!(report.snapshots_removed, vec![orphan.hex().to_string()]);
        assert_eq!(report.bytes_freed, 6);
        assert!(!s.snapshots_dir().join(".tmp-dead").exists());
        assert!(!s.snapshots_dir().join(format!(".lock-{}", l1.hex())).exists());

        s.remove_record("b:1").unwrap();
        let report = s.gc().unwrap();
        let mut gone = vec![m2, c2, l2.clone()];
        gone.sort();
        assert_eq!(report.blobs_removed, gone);
        assert_eq!(report.snapshots_removed, vec![l2.hex().to_string()]);
        let mut left = vec![m1, c1, shared.clone(), l1.clone()];
        left.sort();
        assert_eq!(s.list_blobs().unwrap(), left);
        assert!(s.snapshots_dir().join(shared.hex()).join("fs/etc").is_dir());
        assert!(s.snapshots_dir().join(l1.hex()).is_dir());
    }
}
