//! OCI whiteouts (image-spec layer.md) turned into what overlayfs reads in a lower layer:
//! `.wh.<name>` becomes a character device 0:0 named `<name>`, and `.wh..wh..opq` marks its
//! directory opaque with the xattr `trusted.overlay.opaque=y`. Both need root.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// Other `.wh..wh.` names are AUFS bookkeeping (hardlink dirs) and carry nothing to unpack.
pub const META_PREFIX: &[u8] = b".wh..wh.";

pub enum Whiteout<'a> {
    /// The entry's directory hides everything below it in lower layers.
    Opaque,
    /// The named sibling is deleted.
    Remove(&'a OsStr),
    /// AUFS metadata: skipped.
    Meta,
}

/// Classifies the last component of an entry's path.
pub fn classify(name: &OsStr) -> Option<Whiteout<'_>> {
    let b = name.as_bytes();
    if b == OPAQUE {
        Some(Whiteout::Opaque)
    } else if b.starts_with(META_PREFIX) {
        Some(Whiteout::Meta)
    } else {
        b.strip_prefix(PREFIX).map(|rest| Whiteout::Remove(OsStr::from_bytes(rest)))
    }
}

/// Makes `path` an overlayfs whiteout: a character device with number 0:0.
pub fn make_whiteout(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks the directory at `dir` opaque for overlayfs.
pub fn make_opaque(dir: &Path) -> io::Result<()> {
    xattr::set(dir, "trusted.overlay.opaque", b"y")
}
