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

#[cfg(test)]
mod tests {
    use super::*;

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
