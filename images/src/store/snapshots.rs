//! Layer snapshots in the store: a stored layer blob unpacked once into
//! `snapshots/<layer-hex>/fs` (see `crate::unpack`), ready to be an overlayfs lowerdir.

use super::{Store, StoreError};
use crate::digest::Digest;
use crate::unpack::{self, Unpacked};

impl Store {
    /// Unpacks the stored layer blob `layer` into its snapshot, unless already done.
    /// `media_type` (from the manifest) is checked against the compression found.
    pub fn unpack_layer(&self, layer: &Digest, media_type: Option<&str>) -> Result<Unpacked, StoreError> {
        let wrap = |source| StoreError::Unpack { layer: layer.clone(), source };
        if let Some(done) = unpack::existing(&self.snapshots_dir(), layer.hex()).map_err(wrap)? {
            return Ok(done);
        }
        let blob = std::io::BufReader::with_capacity(1 << 20, self.open_blob(layer)?);
        unpack::unpack_layer(&self.snapshots_dir(), layer.hex(), media_type, blob).map_err(wrap)
    }

    /// The snapshot of `layer`, if unpacked.
    pub fn snapshot(&self, layer: &Digest) -> Result<Option<Unpacked>, StoreError> {
        unpack::existing(&self.snapshots_dir(), layer.hex()).map_err(|source| StoreError::Unpack { layer: layer.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ImageRecord;
    use super::*;

    #[test]
    fn a_stored_layer_is_unpacked_once_and_collected_with_its_image() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(2);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, "etc/hostname", &b"hi"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let layer = s.ingest_bytes(&zstd::encode_all(&tar[..], 1).unwrap()).unwrap();
        assert!(s.snapshot(&layer).unwrap().is_none());
        let u = s.unpack_layer(&layer, Some("application/vnd.oci.image.layer.v1.tar+zstd")).unwrap();
        assert_eq!((u.diff_id.clone(), u.existed), (Digest::of(&tar), false));
        assert_eq!(std::fs::read(u.fs.join("etc/hostname")).unwrap(), b"hi");
        assert!(s.unpack_layer(&layer, None).unwrap().existed);
        assert_eq!(s.snapshot(&layer).unwrap(), Some(Unpacked { existed: true, ..u }));

        let (m, c) = (s.ingest_bytes(b"m").unwrap(), s.ingest_bytes(b"c").unwrap());
        s.put_record(&ImageRecord { name: "x:1".into(), manifest: m, config: c, layers: vec![layer.clone()] }).unwrap();
        assert!(s.gc().unwrap().snapshots_removed.is_empty());
        s.remove_record("x:1").unwrap();
        assert_eq!(s.gc().unwrap().snapshots_removed, vec![layer.hex().to_string()]);
        assert!(s.snapshot(&layer).unwrap().is_none());
        assert!(matches!(s.unpack_layer(&layer, None), Err(StoreError::BlobNotFound(_))));
    }
}
