//! Protection of the runtime binary against a container that would overwrite it
//! (CVE-2019-5736): before anything runs in a container, the runtime re-executes itself from
//! a copy that cannot be written, so `/proc/<pid>/exe` of every process it puts in a
//! container names that copy, never the writable file on disk.
//!
//! The copy is, by preference, the binary seen through a private read-only overlayfs mount
//! that is never attached anywhere (no data is copied; runc 1.2 protects itself the same
//! way). Where that mount cannot be made (a kernel before 6.8, no overlayfs, no
//! CAP_SYS_ADMIN), it is a sealed memfd holding a full copy of the binary.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether we already run from a copy that cannot be written: a sealed memfd, or a file on a
/// read-only overlayfs mount.
pub fn is_sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else { return false };
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & SEALS == SEALS {
        return true;
    }
    on_read_only_overlay(&f)
}

fn on_read_only_overlay(f: &File) -> bool {
    let Ok(fs) = nix::sys::statfs::fstatfs(f) else { return false };
    let Ok(vfs) = nix::sys::statvfs::fstatvfs(f) else { return false };
    fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC && vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
}

/// Re-execute our binary, with the same arguments and environment, from a copy that cannot be
/// written. Returns only on failure.
pub fn reexec_sealed() -> io::Error {
    let copy = read_only_view().or_else(|e| {
        tracing::debug!("no read-only overlayfs view of the runtime binary ({e}); copying it into a sealed memfd");
        sealed_copy()
    });
    match copy {
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

/// Our binary, opened through a detached read-only overlayfs mount of its directory. An
/// overlay needs two lower layers when it has no upper one; the second is an empty, also
/// detached, tmpfs, which can never overlap the binary's directory.
fn read_only_view() -> io::Result<File> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(io::Error::other(format!("{} has no directory", exe.display())));
    };
    let empty = detached_mount("tmpfs", &[])?;
    let empty_path = format!("/proc/self/fd/{}", empty.as_raw_fd());
    // "lowerdir+" is Linux 6.8's; on older kernels this fails and the caller uses a memfd.
    let overlay = detached_mount("overlay", &[("lowerdir+", dir), ("lowerdir+", Path::new(&empty_path))])?;
    let file = nix::fcntl::openat(&overlay, Path::new(name), nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())?;
    // If the binary was replaced on disk since we started, readlink says "... (deleted)",
    // the open fails and the caller copies the original into a memfd instead.
    Ok(File::from(file))
}

/// A new mount of `fstype` with string options, read-only and attached nowhere: its only
/// handle is the returned descriptor.
fn detached_mount(fstype: &str, options: &[(&str, &Path)]) -> io::Result<OwnedFd> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let fstype = cstr(fstype.as_bytes())?;
    // SAFETY: plain syscalls on valid C strings; every returned fd is owned at once.
    unsafe {
        let fs = check(libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC))?;
        let fs = OwnedFd::from_raw_fd(fs as i32);
        for (key, value) in options {
            let key = cstr(key.as_bytes())?;
            let value = cstr(std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str()))?;
            check(libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), libc::FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0))?;
        }
        check(libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), libc::FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0))?;
        let attrs = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID;
        let mnt = check(libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, attrs))?;
        Ok(OwnedFd::from_raw_fd(mnt as i32))
    }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_memfd_copy_is_whole_and_sealed_against_writes() {
        let copy = sealed_copy().unwrap();
        let exe_len = std::fs::metadata("/proc/self/exe").unwrap().len();
        assert_eq!(copy.metadata().unwrap().len(), exe_len);
        let seals = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & SEALS, SEALS);
        let mut w = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", copy.as_raw_fd())).unwrap();
        assert!(w.write_all(b"x").is_err(), "a sealed memfd took a write");
    }

    #[test]
    #[ignore = "needs root"]
    fn the_overlay_view_is_our_binary_and_read_only() {
        assert!(nix::unistd::geteuid().is_root(), "run as root");
        let view = read_only_view().unwrap();
        assert!(on_read_only_overlay(&view));
        assert_eq!(view.metadata().unwrap().len(), std::fs::metadata("/proc/self/exe").unwrap().len());
        let err = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", view.as_raw_fd())).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        // The mount is attached nowhere.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let dir = exe.parent().unwrap().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.lines().any(|l| l.contains(" - overlay ") && l.contains(&dir)), "{mounts}");
    }
}
