//! The container's root filesystem, built inside its mount namespace before `pivot_root`.
//!
//! Steps, in order (`prepare`): make the host's mounts unable to receive ours, bind the root
//! onto itself, mount what the spec lists, create device nodes and `/dev` links. Then, still
//! before `pivot_root`: read-only and masked paths (`protect`). Then `pivot` and `finalize`
//! (read-only root, root propagation). Every path inside the root is resolved with
//! [`Syscall::resolve_in_root`], so a symlink in the image cannot send a mount outside it.

mod devices;
mod masking;
mod mounts;
pub mod options;
pub mod pivot;

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::spec::Config;
use crate::syscall::Syscall;

pub use devices::DEFAULT_DEVICES;
pub use pivot::pivot;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot mount {what} on {dest}: {source}")]
    Mount { what: String, dest: PathBuf, source: nix::Error },
    #[error("mount destination {dest} in the root filesystem: {source}")]
    Destination { dest: PathBuf, source: io::Error },
    #[error("cannot create device {path}: {source}")]
    Device { path: PathBuf, source: io::Error },
    #[error("cannot set root propagation: {0}")]
    Propagation(nix::Error),
    #[error("cannot enter the root filesystem {rootfs}: {step}: {source}")]
    Pivot { rootfs: PathBuf, step: &'static str, source: nix::Error },
    #[error("cannot make the root filesystem read-only: {0}")]
    ReadonlyRoot(nix::Error),
    #[error("cannot create the working directory {cwd} (process.cwd): {source}")]
    Cwd { cwd: PathBuf, source: io::Error },
}

/// What `prepare` needs beyond the spec.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The container is in a user namespace: device nodes are bound from the host, not made.
    pub user_namespace: bool,
    /// The container's cgroup on the host, bound at a `cgroup` mount when it has no cgroup
    /// namespace of its own.
    pub cgroup_dir: Option<PathBuf>,
}

/// Build the root filesystem up to (not including) `pivot_root`.
pub fn prepare(sys: &dyn Syscall, config: &Config, env: &Environment) -> Result<(), RootfsError> {
    let flags = config.rootfs_propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys.mount(None, Path::new("/"), None, flags, None).map_err(RootfsError::Propagation)?;
    make_parent_mount_private(sys, &config.rootfs)?;
    sys.mount(Some(&config.rootfs), &config.rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
        .map_err(|source| RootfsError::Mount { what: "the root filesystem".into(), dest: config.rootfs.clone(), source })?;
    for m in &config.mounts {
        mounts::mount_entry(sys, &config.rootfs, m, config, env)?;
    }
    if devices::needs_dev_setup(config) {
        devices::create(sys, &config.rootfs, &config.devices, env.user_namespace)?;
        devices::links(sys, &config.rootfs, config)?;
    }
    Ok(())
}

/// Apply `linux.readonlyPaths` and `linux.maskedPaths`.
pub fn protect(sys: &dyn Syscall, config: &Config) -> Result<(), RootfsError> {
    for p in &config.readonly_paths {
        masking::readonly(sys, &config.rootfs, p)?;
    }
    for p in &config.masked_paths {
        masking::mask(sys, &config.rootfs, p)?;
    }
    Ok(())
}

/// After `pivot_root`, before the root may turn read-only: create the process's working
/// directory if the image lacks it (owned by root, 0755 less the umask), as runc does. The
/// path is resolved inside the new root, so `..` in it cannot leave.
pub fn create_cwd(sys: &dyn Syscall, cwd: &Path) -> Result<(), RootfsError> {
    sys.resolve_in_root(Path::new("/"), cwd, Some(crate::syscall::NodeKind::Dir))
        .map(drop)
        .map_err(|source| RootfsError::Cwd { cwd: cwd.to_path_buf(), source })
}

/// After `pivot_root`: a read-only root and the spec's root propagation.
pub fn finalize(sys: &dyn Syscall, config: &Config) -> Result<(), RootfsError> {
    let root = Path::new("/");
    if config.root_readonly {
        let keep = sys.mount_flags(root).unwrap_or(MsFlags::empty());
        sys.mount(None, root, None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep, None)
            .map_err(RootfsError::ReadonlyRoot)?;
    }
    // Applied after pivot_root so that it changes the container's "/" and never the host's;
    // private was already applied to the root's parent before the pivot.
    if let Some(p) = config.rootfs_propagation {
        if !p.contains(MsFlags::MS_PRIVATE) {
            sys.mount(None, root, None, p, None).map_err(RootfsError::Propagation)?;
        }
    }
    Ok(())
}

/// `pivot_root` refuses a new root whose parent mount is shared: make that mount private (in
/// our mount namespace only).
fn make_parent_mount_private(sys: &dyn Syscall, rootfs: &Path) -> Result<(), RootfsError> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Ok(()) };
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    if let Some((mount_point, true)) = mount_of(&info, parent) {
        sys.mount(None, &mount_point, None, MsFlags::MS_PRIVATE, None).map_err(RootfsError::Propagation)?;
    }
    Ok(())
}

/// The mount point holding `path`, and whether it is shared, from `/proc/self/mountinfo` text.
fn mount_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool)> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mp = PathBuf::from(unescape_mountinfo(mp));
        if !path.starts_with(&mp) {
            continue;
        }
        let optional_end = fields.iter().position(|f| *f == "-").unwrap_or(fields.len());
        let shared = fields.get(6..optional_end).unwrap_or_default().iter().any(|f| f.starts_with("shared:"));
        // Later lines are mounted on top of earlier ones at the same point.
        if best.as_ref().is_none_or(|(b, _)| mp.as_os_str().len() >= b.as_os_str().len()) {
            best = Some((mp, shared));
        }
    }
    best
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, NodeKind, Recorder};
    use std::path::Path;

    pub(crate) fn config(json: &str) -> Config {
        let spec = crate::spec::parse_json(json).unwrap();
        Config::from_spec(Path::new("/b"), spec).unwrap()
    }

    #[test]
    fn missing_cwd_is_created_inside_the_new_root() {
        let sys = Recorder::new();
        create_cwd(&sys, Path::new("/srv/../srv/app")).unwrap();
        let t = sys.resolve_in_root(Path::new("/"), Path::new("/srv/app"), None).unwrap();
        assert_eq!(t.kind, NodeKind::Dir);
        assert!(sys.calls().is_empty(), "only the resolution, which creates, is involved");
    }

    #[test]
    fn mountinfo_finds_the_deepest_mount_and_its_sharing() {
        let info = "22 27 0:21 / /proc rw - proc proc rw\n\
                    27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    40 27 0:40 / /var/lib rw master:3 - ext4 /dev/vdb rw\n\
                    41 27 0:41 / /with\\040space rw shared:9 - tmpfs t rw\n";
        assert_eq!(mount_of(info, Path::new("/var/lib/x")), Some(("/var/lib".into(), false)));
        assert_eq!(mount_of(info, Path::new("/tmp")), Some(("/".into(), true)));
        assert_eq!(mount_of(info, Path::new("/with space/a")), Some(("/with space".into(), true)));
    }

    #[test]
    fn prepare_orders_propagation_bind_mounts_then_devices() {
        let c = config(
            r#"{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]},
            "mounts":[{"destination":"/proc","type":"proc","source":"proc"},
                      {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","mode=755"]}]}"#,
        );
        let sys = Recorder::new();
        prepare(&sys, &c, &Environment::default()).unwrap();
        let calls = sys.calls();
        assert_eq!(
            calls[0],
            Call::Mount { source: None, target: "/".into(), fstype: None, flags: MsFlags::MS_SLAVE | MsFlags::MS_REC, data: None }
        );
        let mounts = sys.mounts();
        let rootfs = Path::new("/b/rootfs");
        let bind_root = mounts.iter().position(|m| m.0 == rootfs).unwrap();
        let proc_ = mounts.iter().position(|m| m.1.as_deref() == Some("proc")).unwrap();
        assert!(bind_root < proc_);
        assert_eq!(mounts[proc_].0, rootfs.join("proc"));
        let dev = mounts.iter().find(|m| m.1.as_deref() == Some("tmpfs")).unwrap();
        assert_eq!(dev.0, rootfs.join("dev"));
        assert_eq!(dev.2, MsFlags::MS_NOSUID);
        // Default devices are made after /dev is mounted, with mknod outside a user namespace.
        let null = calls.iter().position(|c| matches!(c, Call::Mknod { path, .. } if path == &rootfs.join("dev/null"))).unwrap();
        let dev_mount = calls.iter().position(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "tmpfs")).unwrap();
        assert!(dev_mount < null);
        assert!(calls.contains(&Call::Symlink { original: "/proc/self/fd".into(), link: rootfs.join("dev/fd") }));
    }

    #[test]
    fn protect_masks_files_with_dev_null_and_directories_with_tmpfs() {
        let c = config(
            r#"{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"}],
              "maskedPaths":["/proc/kcore","/proc/acpi","/proc/absent"],"readonlyPaths":["/proc/sys"]}}"#,
        );
        let sys = Recorder::new()
            .with_node("/proc/kcore", NodeKind::File)
            .with_node("/proc/acpi", NodeKind::Dir)
            .with_node("/proc/sys", NodeKind::Dir);
        protect(&sys, &c).unwrap();
        let r = Path::new("/b/rootfs");
        assert_eq!(
            sys.calls(),
            vec![
                Call::Mount { source: Some(r.join("proc/sys")), target: r.join("proc/sys"), fstype: None, flags: MsFlags::MS_BIND | MsFlags::MS_REC, data: None },
                Call::Mount {
                    source: None,
                    target: r.join("proc/sys"),
                    fstype: None,
                    flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    data: None
                },
                Call::Mount { source: Some("/dev/null".into()), target: r.join("proc/kcore"), fstype: None, flags: MsFlags::MS_BIND, data: None },
                Call::Mount { source: Some("tmpfs".into()), target: r.join("proc/acpi"), fstype: Some("tmpfs".into()), flags: MsFlags::MS_RDONLY, data: None },
            ]
        );
    }

    #[test]
    fn finalize_remounts_root_read_only_and_applies_shared_propagation() {
        let c = config(r#"{"root":{"path":"rootfs","readonly":true},"linux":{"namespaces":[{"type":"mount"}],"rootfsPropagation":"rshared"}}"#);
        let sys = Recorder::new();
        finalize(&sys, &c).unwrap();
        let m = sys.mounts();
        assert_eq!(m[0].2, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY);
        assert_eq!(m[1].2, MsFlags::MS_SHARED | MsFlags::MS_REC);
    }
}
