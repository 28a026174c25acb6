//! Finding the cgroup v2 hierarchy and a container's cgroup in it.

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC)
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified`
/// on a hybrid one, else the first cgroup2 mount in our mount namespace.
pub fn find_hierarchy() -> Result<PathBuf, CgroupError> {
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if is_cgroup2(Path::new(candidate)) {
            return Ok(PathBuf::from(candidate));
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            right.starts_with("cgroup2 ").then(|| PathBuf::from(left.split(' ').nth(4).unwrap_or("")))
        })
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or(CgroupError::NoHierarchy)
}

/// Our own cgroup in the v2 hierarchy, from `/proc/self/cgroup` text (`0::/some/path`).
pub fn own_cgroup(proc_self_cgroup: &str) -> PathBuf {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The container's cgroup directory. An absolute `cgroupsPath` is taken from the hierarchy's
/// root; a relative one, or none (then the container id), from the runtime's own cgroup, as
/// runc does. `..` components are dropped so the result stays inside the hierarchy.
pub fn container_cgroup(hierarchy: &Path, own: &Path, cgroups_path: Option<&Path>, id: &str) -> PathBuf {
    let (base, rel) = match cgroups_path {
        Some(p) if p.is_absolute() => (Path::new("/"), p.to_path_buf()),
        Some(p) => (own, p.to_path_buf()),
        None => (own, PathBuf::from(id)),
    };
    let mut out = hierarchy.to_path_buf();
    for c in base.join(rel).components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// A systemd unit's slice (`a-b.slice`) as a cgroup path: every dash opens a nested slice,
/// `/a.slice/a-b.slice`, as systemd lays them out; `-.slice` is the root.
fn expand_slice(slice: &str) -> Result<PathBuf, String> {
    let name = slice.strip_suffix(".slice").filter(|n| !n.is_empty()).ok_or_else(|| format!("{slice:?} is not a slice name (NAME.slice)"))?;
    if slice.contains('/') {
        return Err(format!("slice {slice:?} must not contain '/'"));
    }
    let mut out = PathBuf::from("/");
    if name == "-" {
        return Ok(out);
    }
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(format!("slice {slice:?} has an empty part between dashes"));
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Ok(out)
}

/// `linux.cgroupsPath` in systemd's `slice:prefix:name` form (with `--systemd-cgroup`), as
/// the cgroupfs path systemd would give the unit, from the hierarchy's root:
/// `system.slice:docker:abc` is `/system.slice/docker-abc.scope`. No systemd is asked: the
/// path is made with the cgroupfs driver. Empty: `system.slice:runtime-rs:<id>`, as runc
/// does with its own prefix; an empty slice is `system.slice`.
pub fn systemd_cgroup_path(cgroups_path: Option<&str>, id: &str) -> Result<PathBuf, CgroupError> {
    let given = cgroups_path.unwrap_or("");
    let err = |message: String| CgroupError::SystemdPath { path: given.to_string(), message };
    let (slice, prefix, name) = if given.is_empty() {
        ("system.slice", "runtime-rs", id)
    } else {
        let parts: Vec<&str> = given.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(err("with --systemd-cgroup it must have the form slice:prefix:name".into()));
        };
        (if slice.is_empty() { "system.slice" } else { slice }, prefix, name)
    };
    if name.is_empty() || name.contains('/') || prefix.contains('/') || name == "." || name == ".." {
        return Err(err("the unit name and prefix must be non-empty file names".into()));
    }
    let mut path = expand_slice(slice).map_err(err)?;
    if name.ends_with(".slice") {
        path.push(name);
    } else if prefix.is_empty() {
        path.push(format!("{name}.scope"));
    } else {
        path.push(format!("{prefix}-{name}.scope"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_expand_like_systemd_lays_them_out() {
        let p = |s: &str| systemd_cgroup_path(Some(s), "id1");
        assert_eq!(p("system.slice:docker:abc").unwrap(), Path::new("/system.slice/docker-abc.scope"));
        assert_eq!(p("kubepods-burstable-pod12.slice:cri-containerd:c1").unwrap(), Path::new("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-c1.scope"));
        assert_eq!(p(":crio:c1").unwrap(), Path::new("/system.slice/crio-c1.scope"));
        assert_eq!(p("-.slice::c1").unwrap(), Path::new("/c1.scope"));
        assert_eq!(p("user.slice:x:sub.slice").unwrap(), Path::new("/user.slice/sub.slice"));
        assert_eq!(systemd_cgroup_path(None, "id1").unwrap(), Path::new("/system.slice/runtime-rs-id1.scope"));
        for bad in ["/a/b", "a:b", "system:docker:abc", "a--b.slice:p:n", "-a.slice:p:n", ".slice:p:n", "a.slice:p:", "a.slice:p:../x"] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("linux.cgroupsPath {bad:?}: ")), "{bad}: {e}");
        }
    }

    #[test]
    fn own_cgroup_reads_the_v2_line() {
        assert_eq!(own_cgroup("4:memory:/x\n0::/user.slice/session-1.scope\n"), Path::new("/user.slice/session-1.scope"));
        assert_eq!(own_cgroup("4:memory:/x\n"), Path::new("/"));
    }

    #[test]
    fn container_cgroup_paths() {
        let h = Path::new("/sys/fs/cgroup");
        let own = Path::new("/runtime.slice");
        assert_eq!(container_cgroup(h, own, Some(Path::new("/kubepods/pod1/c1")), "c1"), Path::new("/sys/fs/cgroup/kubepods/pod1/c1"));
        assert_eq!(container_cgroup(h, own, Some(Path::new("sub/c1")), "c1"), Path::new("/sys/fs/cgroup/runtime.slice/sub/c1"));
        assert_eq!(container_cgroup(h, own, None, "c1"), Path::new("/sys/fs/cgroup/runtime.slice/c1"));
        assert_eq!(container_cgroup(h, own, Some(Path::new("/../../etc")), "c1"), Path::new("/sys/fs/cgroup/etc"));
    }
}
