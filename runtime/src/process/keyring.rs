//! A session keyring of the container's own, so containers do not share the caller's keys.

use std::ffi::CString;
use std::io;

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_SETPERM: libc::c_long = 5;
const KEYCTL_DESCRIBE: libc::c_long = 6;
/// Possessor and user may "search"; a non-root container user must reach its own keys.
const KEY_USR_SEARCH_AND_POS_ALL: u32 = 0x3f08_0000;

/// Join a new anonymous-to-others session keyring named after the container. A kernel
/// without keyrings is not an error.
pub fn join_session_keyring(id: &str) -> io::Result<()> {
    let name = CString::new(format!("_ses.{id}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let key = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if key < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOSYS) { Ok(()) } else { Err(e) };
    }
    let mut desc = vec![0u8; 512];
    let n = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_DESCRIBE, key, desc.as_mut_ptr(), desc.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let text = String::from_utf8_lossy(&desc[..(n as usize).min(desc.len())]).trim_end_matches('\0').to_string();
    let perm = text.split(';').nth(3).and_then(|p| u32::from_str_radix(p, 16).ok()).unwrap_or(0);
    let res = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, perm | KEY_USR_SEARCH_AND_POS_ALL) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
