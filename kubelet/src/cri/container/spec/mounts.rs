//! The container's mounts and devices.
//!
//! Mounts, in order: the standard ones (/proc, /dev, /dev/pts, /dev/mqueue, /sys, the
//! cgroup filesystem; /sys and the cgroup filesystem read-only unless privileged), then the
//! sandbox's /etc/hosts, /etc/resolv.conf, /etc/hostname and /dev/shm and the CRI mounts,
//! parents before children. A CRI mount replaces the sandbox file or standard mount at the
//! same place, and standard mounts below it. Bind mounts are recursive, `rprivate` unless
//! the CRI asks for host-to-container (`rslave`) or bidirectional (`rshared`) propagation;
//! then the rootfs propagation follows so that the events reach the mount.
//!
//! Devices: each CRI device (or each device below a CRI device directory) as a node in
//! the container and a device cgroup rule with its permissions; privileged: every host
//! device and every device allowed.

use std::path::{Path, PathBuf};

use cri_api::runtime::v1::{LinuxContainerSecurityContext, MountPropagation};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, Mount, MountBuilder,
};

use super::{SpecError, SpecInput, invalid};

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn standard_mounts(privileged: bool) -> Result<Vec<Mount>, SpecError> {
    let rw = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", rw])?,
    ])
}

/// One bind mount to add, before ordering.
struct Bind {
    dest: PathBuf,
    source: PathBuf,
    options: Vec<String>,
}

/// The mounts, and the rootfs propagation that the CRI mounts' propagation needs.
pub(super) fn mounts(input: &SpecInput, sc: &LinuxContainerSecurityContext) -> Result<(Vec<Mount>, Option<String>), SpecError> {
    let mut binds = Vec::new();
    let mut rootfs_propagation: Option<&str> = None;
    for (i, m) in input.config.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = PathBuf::from(&m.container_path);
        if !dest.is_absolute() || dest.components().any(|c| c.as_os_str() == "..") {
            return Err(invalid(format!("{field}.container_path"), format!("{:?} must be an absolute path without \"..\"", m.container_path)));
        }
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(SpecError::Unsupported { field: format!("{field}.image"), message: "image volumes".into() });
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(SpecError::Unsupported { field: format!("{field}.uidMappings"), message: "id-mapped mounts".into() });
        }
        let source = PathBuf::from(&m.host_path);
        if !source.is_absolute() {
            return Err(invalid(format!("{field}.host_path"), format!("{:?} must be an absolute path", m.host_path)));
        }
        let propagation = match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationPrivate) => "rprivate",
            Ok(MountPropagation::PropagationHostToContainer) => {
                rootfs_propagation = Some(rootfs_propagation.filter(|p| *p == "rshared").unwrap_or("rslave"));
                "rslave"
            }
            Ok(MountPropagation::PropagationBidirectional) => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
            Err(_) => return Err(invalid(format!("{field}.propagation"), format!("{} is not a propagation", m.propagation))),
        };
        let mut options = vec!["rbind".to_string(), propagation.to_string(), if m.readonly { "ro" } else { "rw" }.to_string()];
        if m.recursive_read_only {
            if !m.readonly || propagation != "rprivate" {
                return Err(invalid(format!("{field}.recursive_read_only"), "needs readonly and private propagation"));
            }
            options.push("rro".into());
        }
        binds.push(Bind { dest, source, options });
    }

    let ro = if sc.readonly_rootfs { "ro" } else { "rw" };
    let sandbox = input.sandbox;
    for (dest, source, extra) in [
        ("/etc/hosts", &sandbox.hosts_file, &[][..]),
        ("/etc/resolv.conf", &sandbox.resolv_conf, &[][..]),
        ("/etc/hostname", &sandbox.hostname_file, &[][..]),
        ("/dev/shm", &sandbox.shm, &["nosuid", "nodev", "noexec"][..]),
    ] {
        let Some(source) = source else { continue };
        if binds.iter().any(|b| b.dest == Path::new(dest)) {
            continue;
        }
        let mut options = vec!["rbind".to_string(), "rprivate".to_string(), if dest == "/dev/shm" { "rw" } else { ro }.to_string()];
        options.extend(extra.iter().map(|s| s.to_string()));
        binds.push(Bind { dest: dest.into(), source: source.clone(), options });
    }
    // Parents before children; equal depths keep their order.
    binds.sort_by_key(|b| b.dest.components().count());

    let mut out: Vec<Mount> = standard_mounts(sc.privileged)?
        .into_iter()
        .filter(|m| !binds.iter().any(|b| m.destination().starts_with(&b.dest)))
        .collect();
    for b in binds {
        out.push(MountBuilder::default().destination(b.dest).typ("bind").source(b.source).options(b.options).build()?);
    }
    Ok((out, rootfs_propagation.map(str::to_string)))
}

pub(super) struct Devices {
    pub nodes: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn node(path: PathBuf, d: &crate::cri::container::host::HostDevice) -> Result<LinuxDevice, SpecError> {
    Ok(LinuxDeviceBuilder::default()
        .path(path)
        .typ(d.kind)
        .major(d.major)
        .minor(d.minor)
        .file_mode(d.mode)
        .uid(d.uid)
        .gid(d.gid)
        .build()?)
}

pub(super) fn devices(input: &SpecInput, privileged: bool) -> Result<Devices, SpecError> {
    let mut nodes = Vec::new();
    // Deny everything, then allow what is listed (the runtime adds its standard devices).
    let mut rules = vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?];
    if privileged {
        let all = input.host.devices(Path::new("/dev")).map_err(|source| SpecError::Host {
            field: "linux.security_context.privileged".into(),
            path: "/dev".into(),
            source,
        })?;
        for d in &all {
            nodes.push(node(d.path.clone(), d)?);
        }
        rules = vec![LinuxDeviceCgroupBuilder::default().allow(true).access("rwm").build()?];
    }
    for (i, dev) in input.config.devices.iter().enumerate() {
        let field = format!("devices[{i}]");
        let host_path = Path::new(&dev.host_path);
        if !host_path.is_absolute() {
            return Err(invalid(format!("{field}.host_path"), format!("{:?} must be an absolute path", dev.host_path)));
        }
        let container_path = Path::new(&dev.container_path);
        if !container_path.is_absolute() || container_path.components().any(|c| c.as_os_str() == "..") {
            return Err(invalid(format!("{field}.container_path"), format!("{:?} must be an absolute path without \"..\"", dev.container_path)));
        }
        let access = if dev.permissions.is_empty() { "rwm" } else { dev.permissions.as_str() };
        if access.chars().any(|c| !"rwm".contains(c)) {
            return Err(invalid(format!("{field}.permissions"), format!("{:?} is not a combination of r, w and m", dev.permissions)));
        }
        let found = input.host.devices(host_path).map_err(|source| SpecError::Host {
            field: format!("{field}.host_path"),
            path: host_path.to_path_buf(),
            source,
        })?;
        for d in found {
            // A directory's devices keep their place below the container path.
            let rel = d.path.strip_prefix(host_path).unwrap_or(Path::new(""));
            let path = if rel.as_os_str().is_empty() { container_path.to_path_buf() } else { container_path.join(rel) };
            nodes.retain(|n: &LinuxDevice| n.path() != &path);
            nodes.push(node(path, &d)?);
            if !privileged {
                let kind = if d.kind == LinuxDeviceType::B { LinuxDeviceType::B } else { LinuxDeviceType::C };
                rules.push(
                    LinuxDeviceCgroupBuilder::default().allow(true).typ(kind).major(d.major).minor(d.minor).access(access).build()?,
                );
            }
        }
    }
    Ok(Devices { nodes, rules })
}
