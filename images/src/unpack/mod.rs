//! Unpacking one layer (tar, gzip or zstd) into its own snapshot directory
//! `<snapshots>/<key>/fs`, once: the layer goes into a temp directory which is renamed into
//! place when complete, with a `diffid` file beside `fs` (the sha256 of the uncompressed tar,
//! computed while unpacking). Whiteouts become overlayfs whiteouts (`whiteouts.rs`); hostile
//! entries are refused, naming the entry, and nothing is written outside the snapshot
//! (`safety.rs`).

mod limits;
mod safety;
mod whiteouts;

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tar::EntryType;

use crate::digest::{Digest, DigestWriter};
use whiteouts::Whiteout;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("snapshot {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("snapshot key {0:?}: expected a plain file name")]
    Key(String),
    #[error("layer media type {media_type}: the data is {found}")]
    MediaType { media_type: String, found: &'static str },
    #[error("reading the layer tar: {0}")]
    Tar(io::Error),
    #[error("tar entry {entry:?} refused: {reason}")]
    Refused { entry: String, reason: String },
    #[error("tar entry {entry:?}: {what} needs root")]
    NeedsRoot { entry: String, what: &'static str },
    #[error("tar entry {entry:?}: writing {path}: {source}")]
    Write { entry: String, path: PathBuf, source: io::Error },
}

/// A layer's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The unpacked tree, `<snapshots>/<key>/fs`: a lowerdir for overlayfs.
    pub fs: PathBuf,
    /// The sha256 of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// False if this call unpacked it, true if it was already there.
    pub existed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// By magic bytes: gzip `1f 8b`, zstd `28 b5 2f fd`, else plain tar.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::None => "not compressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The snapshot of `key` (a layer digest's hex) under `snapshots`, if complete.
pub fn existing(snapshots: &Path, key: &str) -> Result<Option<Unpacked>, UnpackError> {
    let dir = snapshots.join(key);
    let diffid_path = dir.join("diffid");
    match fs::read_to_string(&diffid_path) {
        Ok(s) => {
            let diff_id = s.trim().parse().map_err(|e| UnpackError::Io { path: diffid_path, source: io::Error::other(e) })?;
            Ok(Some(Unpacked { fs: dir.join("fs"), diff_id, existed: true }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(UnpackError::Io { path: diffid_path, source: e }),
    }
}

/// Unpacks the layer read from `reader` into `<snapshots>/<key>/fs` unless that snapshot is
/// already complete. `media_type`, if given, is checked against the compression found by
/// magic bytes when it names one (`+gzip`, `+zstd`, Docker's `.tar.gzip`).
pub fn unpack_layer(snapshots: &Path, key: &str, media_type: Option<&str>, reader: impl Read) -> Result<Unpacked, UnpackError> {
    if key.is_empty() || key.starts_with('.') || key.contains('/') {
        return Err(UnpackError::Key(key.into()));
    }
    if let Some(done) = existing(snapshots, key)? {
        return Ok(done);
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = snapshots.join(format!(".tmp-{key}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UnpackError::Io { path, source }
    };
    fs::create_dir_all(snapshots).map_err(io_err(snapshots))?;
    // Concurrent unpacks of one layer: the first does the work, the others wait and find it.
    let lock_path = snapshots.join(format!(".lock-{key}"));
    let lock_file = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| UnpackError::Io { path: lock_path.clone(), source: errno.into() })?;
    if let Some(done) = existing(snapshots, key)? {
        return Ok(done);
    }
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        let fs_dir = tmp.join("fs");
        fs::create_dir(&fs_dir).map_err(io_err(&fs_dir))?;
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755)).map_err(io_err(&fs_dir))?;
        let diff_id = unpack_tar(&fs_dir, media_type, reader)?;
        fs::write(tmp.join("diffid"), diff_id.to_string()).map_err(io_err(&tmp))?;
        sync_fs(&tmp).map_err(io_err(&tmp))?;
        Ok(diff_id)
    })();
    let diff_id = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let dir = snapshots.join(key);
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(Unpacked { fs: dir.join("fs"), diff_id, existed: false }),
        // Another process without the lock (an older binary) finished first; its result is
        // as good as ours.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
            let _ = fs::remove_dir_all(&tmp);
            existing(snapshots, key)?.ok_or(UnpackError::Io { path: dir, source: e })
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(UnpackError::Io { path: dir, source: e })
        }
    }
}

/// syncfs on the filesystem holding `dir`, so the snapshot's files are on disk before the
/// rename makes it visible.
fn sync_fs(dir: &Path) -> io::Result<()> {
    let d = fs::File::open(dir)?;
    // SAFETY: the fd is valid for the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&d)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Passes reads through while hashing them: the diffID of the uncompressed stream.
struct HashingReader<R> {
    inner: R,
    hash: DigestWriter<io::Sink>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        io::Write::write_all(&mut self.hash, &buf[..n])?;
        Ok(n)
    }
}

/// Unpacks a (possibly compressed) tar into `root` and returns its diffID.
pub fn unpack_tar(root: &Path, media_type: Option<&str>, reader: impl Read) -> Result<Digest, UnpackError> {
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    let compression = Compression::detect(buffered.fill_buf().map_err(UnpackError::Tar)?);
    if let Some(mt) = media_type {
        let claimed = if mt.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("zstd") {
            Some(Compression::Zstd)
        } else {
            None
        };
        if claimed.is_some_and(|c| c != compression) {
            return Err(UnpackError::MediaType { media_type: mt.into(), found: compression.name() });
        }
    }
    let decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(buffered).map_err(UnpackError::Tar)?),
    };
    let hashing = HashingReader { inner: decoded, hash: DigestWriter::new(io::sink()) };
    let mut archive = tar::Archive::new(limits::HeaderGuard::new(hashing));
    let mut unpacker = Unpacker { root, privileged: nix::unistd::geteuid().is_root(), written: HashSet::new(), dirs: Vec::new() };
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        unpacker.entry(entry.map_err(UnpackError::Tar)?)?;
    }
    unpacker.finish()?;
    // The end-of-archive blocks and any padding are part of the diffID too.
    let mut rest = archive.into_inner().into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Tar)?;
    Ok(rest.hash.finish().0)
}

struct Unpacker<'a> {
    root: &'a Path,
    privileged: bool,
    /// Non-directory entries written by this layer: the only valid hardlink targets.
    written: HashSet<PathBuf>,
    /// Directories and their mtimes, set at the end since writing into them changes them.
    dirs: Vec<(PathBuf, u64)>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: String| UnpackError::Refused { entry: name.clone(), reason };
        let rel = safety::clean_path(&entry.path_bytes()).map_err(refuse)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let mtime = header.mtime().map_err(|e| refuse(format!("bad mtime: {e}")))?;
        let mode = header.mode().map_err(|e| refuse(format!("bad mode: {e}")))? & 0o7777;
        let (uid, gid) = (
            header.uid().map_err(|e| refuse(format!("bad uid: {e}")))?,
            header.gid().map_err(|e| refuse(format!("bad gid: {e}")))?,
        );
        let write_err = |path: &Path| {
            let (entry, path) = (name.clone(), path.to_path_buf());
            move |source| UnpackError::Write { entry, path, source }
        };

        if rel.as_os_str().is_empty() {
            // "./": the layer's root directory; only its metadata applies.
            if kind != EntryType::Directory {
                return Err(refuse("the root entry is not a directory".into()));
            }
            self.metadata(&name, self.root, uid, gid, mode, Vec::new(), false)?;
            self.dirs.push((self.root.to_path_buf(), mtime));
            return Ok(());
        }

        if let Some(w) = rel.file_name().and_then(whiteouts::classify) {
            let parent = rel.parent().unwrap_or(Path::new(""));
            match w {
                Whiteout::Meta => return Ok(()),
                Whiteout::Opaque => {
                    if !self.privileged {
                        return Err(UnpackError::NeedsRoot { entry: name, what: "an opaque directory (trusted.overlay.opaque)" });
                    }
                    let dir = safety::prepare_parents(self.root, &parent.join("x")).map_err(refuse)?;
                    let dir = dir.parent().unwrap_or(self.root).to_path_buf();
                    whiteouts::make_opaque(&dir).map_err(write_err(&dir))?;
                }
                Whiteout::Remove(target) => {
                    let t = target.as_bytes();
                    if t.is_empty() || t == b"." || t == b".." || t.contains(&b'/') {
                        return Err(refuse("whiteout of an invalid name".into()));
                    }
                    if !self.privileged {
                        return Err(UnpackError::NeedsRoot { entry: name, what: "a whiteout (character device 0:0)" });
                    }
                    let rel_target = parent.join(target);
                    let path = safety::prepare_parents(self.root, &rel_target).map_err(refuse)?;
                    safety::clear_target(&path, false).map_err(write_err(&path))?;
                    whiteouts::make_whiteout(&path).map_err(write_err(&path))?;
                    self.written.remove(&rel_target);
                }
            }
            return Ok(());
        }

        let path = safety::prepare_parents(self.root, &rel).map_err(refuse)?;
        let xattrs = pax_xattrs(&mut entry).map_err(|e| refuse(format!("bad pax header: {e}")))?;
        let kept_dir = safety::clear_target(&path, kind == EntryType::Directory).map_err(write_err(&path))?;
        if !kept_dir {
            // A directory replaced by this entry takes its hardlink targets with it.
            self.written.retain(|w| !w.starts_with(&rel));
        }
        match kind {
            EntryType::Directory => {
                if !kept_dir {
                    fs::DirBuilder::new().create(&path).map_err(write_err(&path))?;
                }
                self.metadata(&name, &path, uid, gid, mode, xattrs, false)?;
                self.dirs.push((path, mtime));
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err(&path))?;
                io::copy(&mut entry, &mut file).map_err(write_err(&path))?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symlink without a target".into()))?;
                if target.is_empty() || target.len() > safety::MAX_NAME {
                    return Err(refuse(format!("symlink target of {} bytes", target.len())));
                }
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path).map_err(write_err(&path))?;
                self.metadata(&name, &path, uid, gid, mode, Vec::new(), true)?;
                set_mtime(&path, mtime).map_err(write_err(&path))?;
                self.written.insert(rel);
                return Ok(());
            }
            EntryType::Link => {
                let raw = entry.link_name_bytes().ok_or_else(|| refuse("hardlink without a target".into()))?;
                let target_rel = safety::clean_path(&raw).map_err(|r| refuse(format!("hardlink target: {r}")))?;
                let shown = String::from_utf8_lossy(&raw);
                if !self.written.contains(&target_rel) {
                    return Err(refuse(format!("hardlink target {shown:?} is not an earlier entry of this layer")));
                }
                let target = safety::check_parents(self.root, &target_rel).map_err(|r| refuse(format!("hardlink target: {r}")))?;
                match fs::symlink_metadata(&target) {
                    Ok(m) if !m.is_dir() => {}
                    _ => return Err(refuse(format!("hardlink target {shown:?} is missing or a directory"))),
                }
                // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
                fs::hard_link(&target, &path).map_err(write_err(&path))?;
                self.written.insert(rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_type, what) = match kind {
                    EntryType::Char => (libc::S_IFCHR, "a character device"),
                    EntryType::Block => (libc::S_IFBLK, "a block device"),
                    _ => (libc::S_IFIFO, "a fifo"),
                };
                if file_type != libc::S_IFIFO && !self.privileged {
                    return Err(UnpackError::NeedsRoot { entry: name, what });
                }
                let (mut major, mut minor) = (0, 0);
                if file_type != libc::S_IFIFO {
                    major = header.device_major().map_err(|e| refuse(format!("bad device number: {e}")))?.unwrap_or(0);
                    minor = header.device_minor().map_err(|e| refuse(format!("bad device number: {e}")))?.unwrap_or(0);
                }
                let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| write_err(&path)(e.into()))?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), file_type | 0o600, libc::makedev(major, minor)) } != 0 {
                    return Err(write_err(&path)(io::Error::last_os_error()));
                }
            }
            other => return Err(refuse(format!("unsupported entry type {other:?}"))),
        }
        self.metadata(&name, &path, uid, gid, mode, xattrs, false)?;
        set_mtime(&path, mtime).map_err(write_err(&path))?;
        self.written.insert(rel);
        Ok(())
    }

    /// Ownership (as root), mode (not for symlinks) and xattrs, in that order: chown clears
    /// setuid bits and file capabilities, so both come after it.
    #[allow(clippy::too_many_arguments)]
    fn metadata(&self, name: &str, path: &Path, uid: u64, gid: u64, mode: u32, xattrs: Vec<(String, Vec<u8>)>, symlink: bool) -> Result<(), UnpackError> {
        let err = |source| UnpackError::Write { entry: name.into(), path: path.to_path_buf(), source };
        if self.privileged {
            let id = |v: u64| u32::try_from(v).map_err(|_| UnpackError::Refused { entry: name.into(), reason: format!("owner id {v} out of range") });
            std::os::unix::fs::lchown(path, Some(id(uid)?), Some(id(gid)?)).map_err(err)?;
        }
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
            for (key, value) in xattrs {
                let wanted = key.starts_with("user.") || (self.privileged && (key.starts_with("trusted.") || key.starts_with("security.")));
                if wanted {
                    xattr::set(path, &key, &value).map_err(err)?;
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        for (dir, mtime) in self.dirs.drain(..).rev() {
            set_mtime(&dir, mtime).map_err(|source| UnpackError::Io { path: dir.clone(), source })?;
        }
        Ok(())
    }
}

/// The `SCHILY.xattr.*` records of an entry's PAX header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Sets atime and mtime of `path` itself (a symlink is not followed).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let t = libc::timespec { tv_sec: mtime as libc::time_t, tv_nsec: 0 };
    let times = [t, t];
    // SAFETY: c is a valid path and times points to two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
