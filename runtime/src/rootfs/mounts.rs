//! One entry of the spec's `mounts`, mounted inside the root filesystem.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::{Environment, RootfsError};
use crate::namespaces::NsType;
use crate::spec::{Config, MountEntry};
use crate::syscall::{NodeKind, Syscall, Target};

pub fn mount_entry(sys: &dyn Syscall, rootfs: &Path, m: &MountEntry, config: &Config, env: &Environment) -> Result<(), RootfsError> {
    let what = m.typ.clone().unwrap_or_else(|| "bind".into());
    let err = |source| RootfsError::Mount { what: what.clone(), dest: m.destination.clone(), source };
    if m.is_bind() {
        let src = m.source.as_deref().expect("validation requires a source for bind mounts");
        bind(sys, rootfs, src, &m.destination, m, true)?;
    } else {
        match m.typ.as_deref() {
            Some("cgroup" | "cgroup2") => cgroup(sys, rootfs, m, config, env)?,
            Some(typ) => {
                let target = resolve(sys, rootfs, &m.destination, NodeKind::Dir)?;
                let source = m.source.clone().unwrap_or_else(|| typ.into());
                let data = m.options.data_string();
                match sys.mount(Some(&source), target.path(), Some(typ), m.options.flags, data.as_deref()) {
                    // sysfs belongs to the network namespace; in a user namespace without a
                    // network namespace of its own the kernel refuses it: bind the host's.
                    Err(Errno::EPERM) if typ == "sysfs" && env.user_namespace && !config.namespaces.is_new(NsType::Network) => {
                        bind(sys, rootfs, Path::new("/sys"), &m.destination, m, false)?;
                    }
                    other => other.map_err(err)?,
                }
            }
            None => unreachable!("validation requires a type for non-bind mounts"),
        }
    }
    if !m.options.propagation.is_empty() {
        let target = resolve(sys, rootfs, &m.destination, NodeKind::Dir)?;
        for flags in &m.options.propagation {
            sys.mount(None, target.path(), None, *flags, None).map_err(err)?;
        }
    }
    Ok(())
}

/// Bind `src` (a host path) at `dest`, then remount to apply flags such as `ro` that a bind
/// mount ignores on its first call.
fn bind(sys: &dyn Syscall, rootfs: &Path, src: &Path, dest: &Path, m: &MountEntry, as_given: bool) -> Result<(), RootfsError> {
    let what = format!("bind of {}", src.display());
    let err = |source| RootfsError::Mount { what: what.clone(), dest: dest.into(), source };
    let kind = match std::fs::metadata(src) {
        Ok(md) if md.is_dir() => NodeKind::Dir,
        Ok(_) => NodeKind::File,
        Err(e) => return Err(RootfsError::Destination { dest: src.into(), source: e }),
    };
    let target = resolve(sys, rootfs, dest, kind)?;
    let mut flags = MsFlags::MS_BIND;
    if m.options.recursive || !as_given {
        flags |= MsFlags::MS_REC;
    }
    sys.mount(Some(src), target.path(), None, flags, None).map_err(err)?;
    if m.options.needs_bind_remount() {
        // Resolve again: the old descriptor names the node under the new mount.
        let target = resolve(sys, rootfs, dest, kind)?;
        let keep = sys.mount_flags(target.path()).unwrap_or(MsFlags::empty()) & !m.options.cleared;
        sys.mount(None, target.path(), None, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | m.options.flags | keep, None)
            .map_err(err)?;
    }
    Ok(())
}

/// A `cgroup` or `cgroup2` mount: the cgroup v2 filesystem when the container has its own
/// cgroup namespace (it then sees its cgroup as the root), else its cgroup bound from the host.
fn cgroup(sys: &dyn Syscall, rootfs: &Path, m: &MountEntry, config: &Config, env: &Environment) -> Result<(), RootfsError> {
    if config.namespaces.contains(NsType::Cgroup) {
        let target = resolve(sys, rootfs, &m.destination, NodeKind::Dir)?;
        let data = m.options.data_string();
        return sys
            .mount(Some(Path::new("cgroup2")), target.path(), Some("cgroup2"), m.options.flags, data.as_deref())
            .map_err(|source| RootfsError::Mount { what: "cgroup2".into(), dest: m.destination.clone(), source });
    }
    match &env.cgroup_dir {
        Some(dir) => bind(sys, rootfs, dir, &m.destination, m, true),
        None => Ok(()),
    }
}

fn resolve(sys: &dyn Syscall, rootfs: &Path, dest: &Path, kind: NodeKind) -> Result<Target, RootfsError> {
    sys.resolve_in_root(rootfs, dest, Some(kind)).map_err(|source| RootfsError::Destination { dest: dest.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::tests::config;
    use crate::syscall::{Call, Recorder};

    #[test]
    fn read_only_bind_is_bound_then_remounted() {
        let src = tempfile::tempdir().unwrap();
        let c = config(&format!(
            r#"{{"root":{{"path":"rootfs"}},"linux":{{"namespaces":[{{"type":"mount"}}]}},
            "mounts":[{{"destination":"/data","source":"{}","options":["rbind","ro","nosuid","rprivate"]}}]}}"#,
            src.path().display()
        ));
        let sys = Recorder::new();
        mount_entry(&sys, Path::new("/b/rootfs"), &c.mounts[0], &c, &Environment::default()).unwrap();
        let m = sys.mounts();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], ("/b/rootfs/data".into(), None, MsFlags::MS_BIND | MsFlags::MS_REC));
        assert_eq!(m[1].2, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(m[2].2, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn bind_of_a_file_creates_a_file_destination() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(&file, "nameserver 10.96.0.10\n").unwrap();
        let c = config(&format!(
            r#"{{"root":{{"path":"rootfs"}},"linux":{{"namespaces":[{{"type":"mount"}}]}},
            "mounts":[{{"destination":"/etc/resolv.conf","type":"bind","source":"{}","options":["bind"]}}]}}"#,
            file.display()
        ));
        let sys = Recorder::new();
        mount_entry(&sys, Path::new("/b/rootfs"), &c.mounts[0], &c, &Environment::default()).unwrap();
        let t = sys.resolve_in_root(Path::new("/b/rootfs"), Path::new("/etc/resolv.conf"), None).unwrap();
        assert_eq!(t.kind, NodeKind::File);
        assert_eq!(sys.mounts().len(), 1);
    }

    #[test]
    fn missing_bind_source_names_it() {
        let c = config(
            r#"{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"}]},
            "mounts":[{"destination":"/data","source":"/definitely/not/here","options":["bind"]}]}"#,
        );
        let err = mount_entry(&Recorder::new(), Path::new("/b/rootfs"), &c.mounts[0], &c, &Environment::default()).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");
    }

    #[test]
    fn cgroup_mount_uses_cgroup2_with_a_cgroup_namespace_and_a_bind_without() {
        let json = |ns: &str| {
            format!(
                r#"{{"root":{{"path":"rootfs"}},"linux":{{"namespaces":[{{"type":"mount"}}{ns}]}},
                "mounts":[{{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid"]}}]}}"#
            )
        };
        let c = config(&json(r#",{"type":"cgroup"}"#));
        let sys = Recorder::new();
        mount_entry(&sys, Path::new("/r"), &c.mounts[0], &c, &Environment::default()).unwrap();
        assert_eq!(sys.mounts(), vec![("/r/sys/fs/cgroup".into(), Some("cgroup2".into()), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)]);

        let c = config(&json(""));
        let sys = Recorder::new();
        let cg = tempfile::tempdir().unwrap();
        let env = Environment { cgroup_dir: Some(cg.path().into()), ..Default::default() };
        mount_entry(&sys, Path::new("/r"), &c.mounts[0], &c, &env).unwrap();
        let m = sys.mounts();
        assert_eq!(m[0].2, MsFlags::MS_BIND);
        assert!(matches!(&sys.calls()[0], Call::Mount { source: Some(s), .. } if s == cg.path()));
        assert!(m[1].2.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY));
    }

    #[test]
    fn sysfs_falls_back_to_a_bind_in_a_user_namespace_without_its_own_network() {
        let c = config(
            r#"{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"},{"type":"user"}],
              "uidMappings":[{"containerID":0,"hostID":1000,"size":1}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]},
            "mounts":[{"destination":"/sys","type":"sysfs","source":"sysfs","options":["ro"]}]}"#,
        );
        let sys = Recorder::new().fail_mount("/r/sys", Errno::EPERM);
        // The failing first call is recorded too; then the bind of the host's /sys follows.
        let env = Environment { user_namespace: true, ..Default::default() };
        let res = mount_entry(&sys, Path::new("/r"), &c.mounts[0], &c, &env);
        // Our recorder fails every mount on /r/sys, so the fallback bind fails too; what matters
        // is that it was attempted with the host's /sys as source.
        assert!(res.is_err());
        let calls = sys.calls();
        assert!(calls.iter().any(|c| matches!(c, Call::Mount { source: Some(s), flags, .. } if s == Path::new("/sys") && flags.contains(MsFlags::MS_BIND))), "{calls:?}");
    }
}
