//! Blobs: streamed in, verified against the expected size and digest before they become
//! visible under `blobs/sha256/<hex>`, and stored once however many images share them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use super::{Store, StoreError, io_err, sync_dir};
use crate::digest::{Digest, DigestWriter};

/// The held lock of one digest's ingest (see [`Store::lock_blob`]); released on drop.
pub struct BlobLock {
    digest: Digest,
    _lock: Flock<File>,
}

impl Store {
    /// The path a blob has (or would have) in the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound(digest.clone()),
            _ => StoreError::Io { path, source: e },
        })
    }

    /// Reads a whole stored blob (manifests, configs).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut data = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut data).map_err(io_err(&self.blob_path(digest)))?;
        Ok(data)
    }

    /// Streams `reader` into the store as the blob `expected` of `expected_size` bytes and
    /// returns its path. Returns at once if the blob is already stored. The data goes to a
    /// temp file which is verified and fsynced before the rename, so a corrupt or short
    /// blob is never visible; a mismatch is an error naming both digests and sizes. Ingests
    /// of one digest are serialised by an flock on `locks/<hex>`, so concurrent pulls of one
    /// layer download it once: the others find it stored when they get the lock. Reading
    /// stops one byte past `expected_size`, so a lying source cannot fill the disk.
    pub fn ingest(&self, expected: &Digest, expected_size: u64, reader: impl Read) -> Result<PathBuf, StoreError> {
        let path = self.blob_path(expected);
        if path.is_file() {
            return Ok(path);
        }
        let lock = self.lock_blob(expected)?;
        self.ingest_locked(&lock, expected, expected_size, reader)
    }

    /// Take the lock that serialises ingests of `digest` (blocking until it is free). A pull
    /// holds it across the download, so a concurrent pull of the same layer waits and then
    /// finds it stored instead of downloading it again.
    pub fn lock_blob(&self, digest: &Digest) -> Result<BlobLock, StoreError> {
        let lock_path = self.locks_dir().join(digest.hex());
        let lock_file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| StoreError::Io { path: lock_path.clone(), source: errno.into() })?;
        Ok(BlobLock { digest: digest.clone(), _lock: lock })
    }

    /// [`ingest`](Store::ingest) for a caller that holds the digest's lock.
    pub fn ingest_locked(&self, lock: &BlobLock, expected: &Digest, expected_size: u64, reader: impl Read) -> Result<PathBuf, StoreError> {
        assert_eq!(&lock.digest, expected, "the lock held is for another digest");
        let path = self.blob_path(expected);
        if path.is_file() {
            return Ok(path);
        }
        let tmp = self.temp_path(&format!("blob-{}", expected.hex()));
        let result = (|| {
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut writer = DigestWriter::new(BufWriter::new(file));
            io::copy(&mut reader.take(expected_size.saturating_add(1)), &mut writer).map_err(io_err(&tmp))?;
            let (actual, actual_size, buffered) = writer.finish();
            if actual != *expected || actual_size != expected_size {
                return Err(StoreError::Mismatch { expected: expected.clone(), expected_size, actual, actual_size });
            }
            let file = buffered.into_inner().map_err(|e| StoreError::Io { path: tmp.clone(), source: e.into_error() })?;
            file.sync_all().map_err(io_err(&tmp))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
            sync_dir(&self.blobs_dir())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }

    /// Stores `data`, whose digest is computed here (manifests written by the store's user).
    pub fn ingest_bytes(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(data);
        self.ingest(&digest, data.len() as u64, data)?;
        Ok(digest)
    }

    /// Every stored blob's digest.
    pub fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if let Some(d) = entry.file_name().to_str().and_then(|h| format!("sha256:{h}").parse().ok()) {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a blob (used by garbage collection); absent is fine.
    pub(crate) fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::Io { path, source: e }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_blob_is_stored_and_read_back() {
        let (_d, s) = store();
        let data = b"layer bytes";
        let digest = Digest::of(data);
        let path = s.ingest(&digest, data.len() as u64, &data[..]).unwrap();
        assert_eq!(path, s.blob_path(&digest));
        assert_eq!(s.read_blob(&digest).unwrap(), data);
        assert_eq!(s.list_blobs().unwrap(), vec![digest.clone()]);
        // Already stored: the reader is not even read.
        let mut failing = FailingReader;
        s.ingest(&digest, data.len() as u64, &mut failing).unwrap();
    }

    struct FailingReader;
    impl Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("must not be read"))
        }
    }

    #[test]
    fn a_corrupt_blob_is_refused_and_not_stored() {
        let (_d, s) = store();
        let digest = Digest::of(b"the real content");
        let err = s.ingest(&digest, 16, &b"evil content 123"[..]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Mismatch { actual_size: 16, .. }), "{msg}");
        assert!(msg.contains(&digest.to_string()) && msg.contains(&Digest::of(b"evil content 123").to_string()), "{msg}");
        assert!(!s.has_blob(&digest));
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0, "temp file left behind");
    }

    #[test]
    fn a_short_or_long_blob_is_refused() {
        let (_d, s) = store();
        let data = b"0123456789";
        let digest = Digest::of(data);
        let err = s.ingest(&digest, 10, &data[..5]).unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { expected_size: 10, actual_size: 5, .. }), "{err}");
        let mut long = data.to_vec();
        long.extend_from_slice(&[b'x'; 1000]);
        let err = s.ingest(&digest, 10, &long[..]).unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { actual_size: 11, .. }), "{err}");
        assert!(!s.has_blob(&digest));
    }

    /// Counts how many ingests actually read their source.
    struct CountingReader<'a> {
        data: &'a [u8],
        reads: &'a std::sync::atomic::AtomicUsize,
        counted: bool,
    }
    impl Read for CountingReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.counted {
                self.counted = true;
                self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            let n = buf.len().min(self.data.len()).min(4096);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_ingest_waits_for_the_lock_holder_and_then_reads_nothing() {
        struct MustNotRead;
        impl Read for MustNotRead {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                panic!("the blob was stored by the lock holder; this ingest must not read")
            }
        }
        let (_dir, store) = store();
        let data = b"downloaded once".to_vec();
        let digest = Digest::of(&data);
        let lock = store.lock_blob(&digest).unwrap();
        let waiter = {
            let (store, digest) = (store.clone(), digest.clone());
            std::thread::spawn(move || store.ingest(&digest, 15, MustNotRead).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!waiter.is_finished(), "ingest must wait while another holds the digest's lock");
        store.ingest_locked(&lock, &digest, data.len() as u64, &data[..]).unwrap();
        drop(lock);
        assert_eq!(waiter.join().unwrap(), store.blob_path(&digest));
        assert_eq!(store.read_blob(&digest).unwrap(), data);
    }

    #[test]
    fn concurrent_ingests_of_one_digest_do_the_work_once() {
        let (_d, s) = store();
        let data: Arc<Vec<u8>> = Arc::new((0..200_000u32).map(|i| (i * 7 % 251) as u8).collect());
        let digest = Digest::of(&data);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, data, digest, reads) = (s.clone(), data.clone(), digest.clone(), reads.clone());
                std::thread::spawn(move || {
                    let r = CountingReader { data: &data, reads: &reads, counted: false };
                    s.ingest(&digest, data.len() as u64, r).unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1, "the blob was downloaded more than once");
        assert_eq!(s.read_blob(&digest).unwrap(), *data);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }
}
