//! Control groups: where a container's cgroup is, and a driver behind [`CgroupManager`].
//!
//! The cgroupfs v2 driver is the only one so far. On a hybrid host (v1 controllers plus a
//! cgroup2 mount at `/sys/fs/cgroup/unified`) the v2 hierarchy is used for what it has:
//! process tracking, freezing and killing work with no controller at all. A resource limit
//! whose controller the container's cgroup does not get is an error naming both, never
//! skipped.
//! Device rules are enforced with an eBPF program (`devices/`), which needs no controller.

pub mod devices;
mod path;
mod resources;
mod stats;
mod v2;

pub use path::{container_cgroup, find_hierarchy, own_cgroup, systemd_cgroup_path};
pub use resources::{Limit, Resources, Write};
pub use stats::{oom_kills, Stats};
pub use v2::CgroupV2;

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 hierarchy is mounted (looked at /sys/fs/cgroup, /sys/fs/cgroup/unified and /proc/self/mountinfo); runtime-rs needs one")]
    NoHierarchy,
    #[error("cgroup {path}: {what}: {source}")]
    Io { path: PathBuf, what: String, source: io::Error },
    #[error("cgroup {path} already holds {count} process(es); a container needs a cgroup of its own")]
    NotEmpty { path: PathBuf, count: usize },
    #[error("cgroup {path}: {what}")]
    Timeout { path: PathBuf, what: String },
    #[error(transparent)]
    Devices(#[from] devices::DevicesError),
    /// A limit needs a controller the container's cgroup does not get; `why` says where
    /// along the hierarchy it is lost.
    #[error("{field} needs the cgroup v2 {controller:?} controller, which {why}")]
    MissingController { field: String, controller: String, why: String },
    #[error("{field}: cannot write {value:?} to {path}: {source}")]
    Apply { field: String, path: PathBuf, value: String, source: io::Error },
    #[error("linux.cgroupsPath {path:?}: {message}")]
    SystemdPath { path: String, message: String },
}

impl CgroupError {
    pub(crate) fn io(path: &Path, what: impl Into<String>) -> impl FnOnce(io::Error) -> CgroupError + '_ {
        let what = what.into();
        move |source| CgroupError::Io { path: path.to_path_buf(), what, source }
    }
}

/// What the runtime does with a container's cgroup.
pub trait CgroupManager {
    /// The cgroup's directory on the host.
    fn path(&self) -> &Path;
    /// Create the cgroup (and missing parents); an existing one must hold no process. In
    /// the parents it creates, and only there, the controllers they offer are enabled for
    /// their children.
    fn create(&self) -> Result<(), CgroupError>;
    /// Move a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;
    /// The cgroup's directory, open for `clone3(CLONE_INTO_CGROUP)`, so a new process is
    /// born in it; `None` when processes must be moved with [`add_process`] instead.
    ///
    /// [`add_process`]: CgroupManager::add_process
    fn clone_target(&self) -> Result<Option<OwnedFd>, CgroupError>;
    /// Enforce these device rules (replacing any earlier ones) for every process in the cgroup.
    fn set_devices(&self, rules: &[devices::DeviceRule]) -> Result<(), CgroupError>;
    /// Write the resources' files (see [`Resources::writes`]); fails, writing nothing, when
    /// a controller they need is not available to the cgroup.
    fn apply(&self, resources: &Resources) -> Result<(), CgroupError>;
    /// Usage and limits as the cgroup's files report them; absent files are left out.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Every process in the cgroup and its descendants.
    fn processes(&self) -> Result<Vec<i32>, CgroupError>;
    fn freeze(&self) -> Result<(), CgroupError>;
    fn thaw(&self) -> Result<(), CgroupError>;
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    /// Send `signal` to every process in the cgroup.
    fn signal_all(&self, signal: Signal) -> Result<(), CgroupError>;
    /// Kill what is left and remove the cgroup and its descendants. Absent is fine.
    fn destroy(&self) -> Result<(), CgroupError>;
}
