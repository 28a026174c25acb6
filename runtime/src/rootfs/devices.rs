//! Device nodes under `/dev` (the spec's `linux.devices` plus the defaults every container
//! gets) and the usual `/dev` links.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, Mode, SFlag};

use super::RootfsError;
use crate::spec::{Config, Device, DeviceKind};
use crate::syscall::{NodeKind, Syscall};

/// `(path, major, minor)` of the character devices every container gets, as with runc.
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Devices are made unless `/dev` is bound from elsewhere, which then brings its own.
pub fn needs_dev_setup(config: &Config) -> bool {
    !config.mounts.iter().any(|m| m.destination == Path::new("/dev") && m.is_bind())
}

pub fn create(sys: &dyn Syscall, rootfs: &Path, devices: &[Device], user_namespace: bool) -> Result<(), RootfsError> {
    let defaults = DEFAULT_DEVICES
        .iter()
        .filter(|(p, _, _)| !devices.iter().any(|d| d.path == Path::new(p)))
        .map(|(p, major, minor)| Device {
            path: PathBuf::from(p),
            kind: DeviceKind::Char,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect::<Vec<_>>();
    for d in defaults.iter().chain(devices) {
        let res = if user_namespace { bind_from_host(sys, rootfs, d) } else { make_node(sys, rootfs, d) };
        res.map_err(|source| RootfsError::Device { path: d.path.clone(), source })?;
    }
    Ok(())
}

/// In a user namespace `mknod` is refused: bind the host's node onto an empty file.
fn bind_from_host(sys: &dyn Syscall, rootfs: &Path, d: &Device) -> io::Result<()> {
    let target = sys.resolve_in_root(rootfs, &d.path, Some(NodeKind::File))?;
    sys.mount(Some(&d.path), target.path(), None, MsFlags::MS_BIND, None).map_err(io::Error::from)
}

fn make_node(sys: &dyn Syscall, rootfs: &Path, d: &Device) -> io::Result<()> {
    let parent = d.path.parent().unwrap_or(Path::new("/"));
    let name = d.path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "device path has no file name"))?;
    let dir = sys.resolve_in_root(rootfs, parent, Some(NodeKind::Dir))?;
    let path = dir.host.join(name);
    let kind = match d.kind {
        DeviceKind::Char => SFlag::S_IFCHR,
        DeviceKind::Block => SFlag::S_IFBLK,
        DeviceKind::Fifo => SFlag::S_IFIFO,
    };
    match sys.mknod(&path, kind, Mode::from_bits_truncate(d.mode), makedev(d.major, d.minor)) {
        // An image may ship its own /dev entries; like runc, keep them.
        Err(Errno::EEXIST) => return Ok(()),
        other => other.map_err(io::Error::from)?,
    }
    // mknod's mode went through the umask; set it exactly.
    sys.chmod(&path, d.mode)?;
    sys.chown(&path, d.uid, d.gid).map_err(io::Error::from)
}

/// `/dev/fd`, `/dev/std{in,out,err}`, `/dev/core`, and `/dev/ptmx` pointing into `/dev/pts`.
pub fn links(sys: &dyn Syscall, rootfs: &Path, config: &Config) -> Result<(), RootfsError> {
    let dev = sys
        .resolve_in_root(rootfs, Path::new("/dev"), Some(NodeKind::Dir))
        .map_err(|source| RootfsError::Destination { dest: "/dev".into(), source })?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if config.mounts.iter().any(|m| m.destination == Path::new("/dev/pts") && m.typ.as_deref() == Some("devpts")) {
        links.push(("pts/ptmx", "ptmx"));
    }
    for (original, name) in links {
        let link = dev.host.join(name);
        match sys.symlink(Path::new(original), &link) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => other.map_err(|source| RootfsError::Device { path: Path::new("/dev").join(name), source })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recorder};

    fn fuse() -> Device {
        Device { path: "/dev/fuse".into(), kind: DeviceKind::Char, major: 10, minor: 229, mode: 0o600, uid: 5, gid: 6 }
    }

    #[test]
    fn nodes_are_made_with_exact_mode_and_owner() {
        let sys = Recorder::new();
        create(&sys, Path::new("/r"), &[fuse()], false).unwrap();
        let calls = sys.calls();
        let fuse_at = calls
            .iter()
            .position(|c| c == &Call::Mknod { path: "/r/dev/fuse".into(), kind: SFlag::S_IFCHR, perm: 0o600, dev: makedev(10, 229) })
            .expect("mknod of /dev/fuse");
        assert_eq!(calls[fuse_at + 1], Call::Chmod { path: "/r/dev/fuse".into(), mode: 0o600 });
        assert_eq!(calls[fuse_at + 2], Call::Chown { path: "/r/dev/fuse".into(), uid: 5, gid: 6 });
        let mknods = calls.iter().filter(|c| matches!(c, Call::Mknod { .. })).count();
        assert_eq!(mknods, DEFAULT_DEVICES.len() + 1);
    }

    #[test]
    fn spec_device_replaces_the_default_at_the_same_path() {
        let sys = Recorder::new();
        let null = Device { path: "/dev/null".into(), kind: DeviceKind::Char, major: 1, minor: 3, mode: 0o600, uid: 0, gid: 0 };
        create(&sys, Path::new("/r"), &[null], false).unwrap();
        let nulls: Vec<_> = sys.calls().into_iter().filter(|c| matches!(c, Call::Mknod { path, .. } if path == Path::new("/r/dev/null"))).collect();
        assert_eq!(nulls.len(), 1);
        assert!(matches!(nulls[0], Call::Mknod { perm: 0o600, .. }));
    }

    #[test]
    fn user_namespace_binds_host_nodes() {
        let sys = Recorder::new();
        create(&sys, Path::new("/r"), &[], true).unwrap();
        let calls = sys.calls();
        assert!(!calls.iter().any(|c| matches!(c, Call::Mknod { .. })));
        assert!(calls.contains(&Call::Mount {
            source: Some("/dev/tty".into()),
            target: "/r/dev/tty".into(),
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None
        }));
    }
}
