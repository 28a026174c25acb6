//! What the spec builder needs to know about the node, behind a trait so that the builder
//! stays pure and its tests need neither root nor particular devices: device nodes (CRI
//! devices, and every device for a privileged container), the capabilities the kernel
//! knows, seccomp profile files, and whether swap is accounted.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxDeviceType};

/// A device node on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub path: PathBuf,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

pub trait Host {
    /// The device node at `path`, or every device node below it when it is a directory
    /// (as containerd and cri-o treat a CRI device naming a directory).
    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>>;
    /// Every capability the running kernel knows (what "ALL" and privileged mean).
    fn all_capabilities(&self) -> Vec<Capability>;
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// Whether the memory controller accounts swap (`memory.swap.max` exists), so that a
    /// memory limit can also forbid swapping.
    fn swap_accounting(&self) -> bool;
}

/// The real node.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeHost;

/// Parts of /dev that hold no devices of their own or belong to the container runtime.
const SKIPPED_UNDER_DEV: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

impl Host for NodeHost {
    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
        let meta = fs::metadata(path)?;
        if meta.is_dir() {
            let mut out = Vec::new();
            walk_devices(path, &mut out)?;
            out.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(out);
        }
        device_of(path, &meta).map(|d| vec![d]).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a device node"))
    }

    fn all_capabilities(&self) -> Vec<Capability> {
        let mut all: Vec<Capability> =
            caps::runtime::thread_all_supported().into_iter().filter_map(|c| c.to_string().strip_prefix("CAP_")?.parse().ok()).collect();
        all.sort_by_key(|c| c.to_string());
        all
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        fs::read_to_string(path)
    }

    fn swap_accounting(&self) -> bool {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/').to_string();
        ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].iter().any(|root| Path::new(root).join(&own).join("memory.swap.max").exists())
    }
}

fn device_of(path: &Path, meta: &fs::Metadata) -> Option<HostDevice> {
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(HostDevice {
        path: path.to_path_buf(),
        kind,
        major: i64::from(libc::major(rdev)),
        minor: i64::from(libc::minor(rdev)),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

fn walk_devices(dir: &Path, out: &mut Vec<HostDevice>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            let name = entry.file_name();
            if dir == Path::new("/dev") && SKIPPED_UNDER_DEV.iter().any(|s| name == *s) {
                continue;
            }
            walk_devices(&path, out)?;
        } else if ft.is_symlink() {
            continue;
        } else if let Ok(meta) = entry.metadata()
            && let Some(d) = device_of(&path, &meta)
        {
            // /dev/console is the runtime's to give (the container's terminal).
            if path != Path::new("/dev/console") {
                out.push(d);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_a_character_device() {
        let d = NodeHost.devices(Path::new("/dev/null")).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].kind, d[0].major, d[0].minor), (LinuxDeviceType::C, 1, 3));
        assert!(NodeHost.devices(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn the_kernel_knows_the_default_capabilities() {
        let all = NodeHost.all_capabilities();
        assert!(all.contains(&Capability::Chown) && all.contains(&Capability::SysAdmin), "{all:?}");
    }
}
