//! The bpf(2) calls that load a device program and attach it to a cgroup, behind
//! [`DeviceKernel`] so the install logic is tested without root.
//!
//! Each command takes its own part of `union bpf_attr`; a struct with just that part is
//! passed with its own size, which the kernel accepts (it zero-fills the rest).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::insn::{encode_all, Insn};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The program's name in `bpftool prog` (at most 15 bytes).
pub const PROGRAM_NAME: &[u8] = b"krs_devices";
/// Device programs need no GPL-only helper; this is the project's license.
const LICENSE: &str = "Apache-2.0";

/// Why loading failed: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadFailure {
    pub source: io::Error,
    pub log: String,
}

/// The kernel as the device controller uses it.
pub trait DeviceKernel {
    type Cgroup;
    type Program;
    fn open_cgroup(&self, path: &Path) -> io::Result<Self::Cgroup>;
    fn load(&self, program: &[Insn]) -> Result<Self::Program, LoadFailure>;
    /// Ids of the device programs attached to this cgroup itself (not its ancestors').
    fn attached(&self, cgroup: &Self::Cgroup) -> io::Result<Vec<u32>>;
    /// Attach alongside what is there (`BPF_F_ALLOW_MULTI`).
    fn attach(&self, cgroup: &Self::Cgroup, program: &Self::Program) -> io::Result<()>;
    /// Detach the program with this id; `NotFound` when it is already gone.
    fn detach(&self, cgroup: &Self::Cgroup, id: u32) -> io::Result<()>;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bpf;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, initialized #[repr(C)] prefix of union bpf_attr for cmd, and
    // its size is passed with it; the pointers inside it point at buffers that outlive the
    // call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as libc::c_uint) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn fd_from(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

impl DeviceKernel for Bpf {
    type Cgroup = OwnedFd;
    type Program = OwnedFd;

    fn open_cgroup(&self, path: &Path) -> io::Result<OwnedFd> {
        let dir = std::fs::File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        Ok(dir.into())
    }

    fn load(&self, program: &[Insn]) -> Result<OwnedFd, LoadFailure> {
        let code = encode_all(program);
        let license = CString::new(LICENSE).expect("no NUL in the license");
        let mut log = vec![0u8; 64 * 1024];
        let mut name = [0u8; 16];
        name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME);
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: program.len() as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        // Without a log first: with one, the kernel fails a good program whose log does not fit.
        if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
            return Ok(fd_from(fd));
        }
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(fd_from(fd)),
            Err(source) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(LoadFailure { source, log: String::from_utf8_lossy(&log[..end]).trim().to_string() })
            }
        }
    }

    fn attached(&self, cgroup: &OwnedFd) -> io::Result<Vec<u32>> {
        let mut ids = vec![0u32; 64];
        loop {
            let mut attr = QueryAttr {
                target_fd: cgroup.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                prog_ids: ids.as_mut_ptr() as u64,
                prog_cnt: ids.len() as u32,
                ..Default::default()
            };
            match bpf(BPF_PROG_QUERY, &mut attr) {
                Ok(_) => {
                    ids.truncate(attr.prog_cnt as usize);
                    return Ok(ids);
                }
                // The kernel said how many there are.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() => {
                    ids = vec![0u32; attr.prog_cnt as usize];
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn attach(&self, cgroup: &OwnedFd, program: &OwnedFd) -> io::Result<()> {
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..Default::default()
        };
        bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
    }

    fn detach(&self, cgroup: &OwnedFd, id: u32) -> io::Result<()> {
        let mut get = GetFdByIdAttr { prog_id: id, ..Default::default() };
        let program = fd_from(bpf(BPF_PROG_GET_FD_BY_ID, &mut get)?);
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut attr).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_union_bpf_attr() {
        // Offsets from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 64);
        assert_eq!(std::mem::offset_of!(AttachAttr, attach_flags), 12);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::size_of::<GetFdByIdAttr>(), 12);
        assert!(PROGRAM_NAME.len() < 16);
    }
}
