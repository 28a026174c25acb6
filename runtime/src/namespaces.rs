//! Linux namespaces: which a container creates, which it joins by path, and in what order.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;

/// A namespace kind. The declaration order is the order in which namespaces are joined:
/// user first (it grants the rights to join the others), mount last (it changes how the
/// paths of the others would resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsType {
    User,
    Ipc,
    Uts,
    Network,
    Pid,
    Time,
    Cgroup,
    Mount,
}

impl NsType {
    pub const ALL: [NsType; 8] = [
        NsType::User,
        NsType::Ipc,
        NsType::Uts,
        NsType::Network,
        NsType::Pid,
        NsType::Time,
        NsType::Cgroup,
        NsType::Mount,
    ];

    pub fn clone_flag(self) -> CloneFlags {
        match self {
            NsType::User => CloneFlags::CLONE_NEWUSER,
            NsType::Ipc => CloneFlags::CLONE_NEWIPC,
            NsType::Uts => CloneFlags::CLONE_NEWUTS,
            NsType::Network => CloneFlags::CLONE_NEWNET,
            NsType::Pid => CloneFlags::CLONE_NEWPID,
            NsType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            NsType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            NsType::Mount => CloneFlags::CLONE_NEWNS,
        }
    }

    /// The file name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsType::User => "user",
            NsType::Ipc => "ipc",
            NsType::Uts => "uts",
            NsType::Network => "net",
            NsType::Pid => "pid",
            NsType::Time => "time",
            NsType::Cgroup => "cgroup",
            NsType::Mount => "mnt",
        }
    }

    /// The name the runtime spec uses in `linux.namespaces[].type`.
    pub fn spec_name(self) -> &'static str {
        match self {
            NsType::Network => "network",
            NsType::Mount => "mount",
            other => other.proc_name(),
        }
    }
}

impl From<LinuxNamespaceType> for NsType {
    fn from(t: LinuxNamespaceType) -> Self {
        match t {
            LinuxNamespaceType::Mount => NsType::Mount,
            LinuxNamespaceType::Cgroup => NsType::Cgroup,
            LinuxNamespaceType::Uts => NsType::Uts,
            LinuxNamespaceType::Ipc => NsType::Ipc,
            LinuxNamespaceType::User => NsType::User,
            LinuxNamespaceType::Pid => NsType::Pid,
            LinuxNamespaceType::Network => NsType::Network,
            LinuxNamespaceType::Time => NsType::Time,
        }
    }
}

impl fmt::Display for NsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec_name())
    }
}

/// The namespaces of a container: each kind is either absent (shared with the runtime),
/// new, or joined from a path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// Sorted in join order; at most one entry per kind.
    entries: Vec<(NsType, Option<PathBuf>)>,
}

impl Namespaces {
    /// Build from already-validated entries (no duplicates).
    pub fn new(mut entries: Vec<(NsType, Option<PathBuf>)>) -> Self {
        entries.sort_by_key(|(t, _)| *t);
        Namespaces { entries }
    }

    pub fn contains(&self, t: NsType) -> bool {
        self.entries.iter().any(|(k, _)| *k == t)
    }

    /// True when the container gets a fresh namespace of this kind.
    pub fn is_new(&self, t: NsType) -> bool {
        self.entries.iter().any(|(k, p)| *k == t && p.is_none())
    }

    pub fn path(&self, t: NsType) -> Option<&Path> {
        self.entries.iter().find(|(k, _)| *k == t).and_then(|(_, p)| p.as_deref())
    }

    /// Namespaces to join, in join order.
    pub fn to_join(&self) -> impl Iterator<Item = (NsType, &Path)> {
        self.entries.iter().filter_map(|(t, p)| p.as_deref().map(|p| (*t, p)))
    }

    /// Namespaces to create, in join order.
    pub fn to_create(&self) -> impl Iterator<Item = NsType> + '_ {
        self.entries.iter().filter(|(_, p)| p.is_none()).map(|(t, _)| *t)
    }

    pub fn kinds(&self) -> impl Iterator<Item = NsType> + '_ {
        self.entries.iter().map(|(t, _)| *t)
    }

    /// The namespaces of a running container, as paths under `/proc/<pid>/ns`, for `exec`.
    pub fn of_process(&self, pid: i32) -> Namespaces {
        Namespaces::new(
            self.entries
                .iter()
                .map(|(t, _)| (*t, Some(PathBuf::from(format!("/proc/{pid}/ns/{}", t.proc_name())))))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_order_puts_user_first_and_mount_last() {
        let ns = Namespaces::new(vec![
            (NsType::Mount, Some("/m".into())),
            (NsType::Network, Some("/n".into())),
            (NsType::User, Some("/u".into())),
            (NsType::Pid, None),
        ]);
        let order: Vec<_> = ns.to_join().map(|(t, _)| t).collect();
        assert_eq!(order, vec![NsType::User, NsType::Network, NsType::Mount]);
        assert_eq!(ns.to_create().collect::<Vec<_>>(), vec![NsType::Pid]);
        assert!(ns.is_new(NsType::Pid));
        assert!(!ns.is_new(NsType::Network));
        assert!(ns.contains(NsType::Network));
        assert!(!ns.contains(NsType::Uts));
    }

    #[test]
    fn of_process_joins_every_kind_through_proc() {
        let ns = Namespaces::new(vec![(NsType::Pid, None), (NsType::Mount, None)]);
        let joined = ns.of_process(42);
        assert_eq!(joined.path(NsType::Pid), Some(Path::new("/proc/42/ns/pid")));
        assert_eq!(joined.path(NsType::Mount), Some(Path::new("/proc/42/ns/mnt")));
        assert_eq!(joined.to_create().count(), 0);
    }
}
