//! Protection of the runtime binary against a container that would overwrite it
//! (CVE-2019-5736): before anything runs in a container, the runtime re-executes itself from
//! a sealed in-memory copy. `/proc/<pid>/exe` of every process it puts in a container then
//! names that copy, which cannot be written, never the file on disk.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether we already run from a sealed copy.
pub fn is_sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else { return false };
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Copy our binary into a sealed memfd and exec it with the same arguments and environment.
/// Returns only on failure.
pub fn reexec_sealed() -> io::Error {
    match sealed_copy() {
        Ok(memfd) => {
            let args: Vec<CString> = std::env::args_os()
                .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())).unwrap_or_default())
                .collect();
            let env: Vec<CString> = std::env::vars_os()
                .filter_map(|(k, v)| {
                    let mut kv = k.into_encoded_bytes();
                    kv.push(b'=');
                    kv.extend(v.into_encoded_bytes());
                    CString::new(kv).ok()
                })
                .collect();
            let empty: &CStr = c"";
            match nix::unistd::execveat(&memfd, empty, &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
                Err(e) => io::Error::from(e),
                Ok(never) => match never {},
            }
        }
        Err(e) => e,
    }
}

fn sealed_copy() -> io::Result<File> {
    let mut exe = File::open("/proc/self/exe")?;
    let fd = unsafe { libc::memfd_create(c"runtime-rs".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut memfd = unsafe { File::from_raw_fd(fd) };
    let len = exe.metadata()?.len();
    memfd.set_len(len)?;
    // copy_file_range/sendfile let the kernel copy from the page cache.
    io::copy(&mut exe, &mut memfd)?;
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}
