//! The persisted record of one container, and its status derived from the live system.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::process_info::ProcessInfo;
use crate::cgroups::{CgroupManager, CgroupV2};

/// What `state.json` holds. The status is not stored: it is read from the system each time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The init process, as the runtime's pid namespace sees it.
    pub pid: i32,
    /// Its start time, to tell it from a later process that reuses the pid.
    pub pid_start_time: u64,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    /// The uid that created the container.
    pub owner_uid: u32,
    /// The container's cgroup directory, when it has one.
    pub cgroup: Option<PathBuf>,
    /// The spec as it was at create time; later changes to the bundle do not affect it.
    pub spec: Spec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Container {
    /// Whether the init process is still the one we started, and alive.
    pub fn init_running(&self) -> bool {
        ProcessInfo::read(self.pid).is_some_and(|i| i.is_running() && i.start_time == self.pid_start_time)
    }

    pub fn cgroup(&self) -> Option<CgroupV2> {
        self.cgroup.clone().map(CgroupV2::new)
    }

    /// The status, from the system: stopped once init is gone; created while init waits on
    /// its exec fifo; paused while the cgroup is frozen; running otherwise.
    pub fn status(&self, dir: &Path) -> Status {
        if !self.init_running() {
            return Status::Stopped;
        }
        if dir.join(super::store::EXEC_FIFO).exists() {
            return Status::Created;
        }
        if self.cgroup().is_some_and(|c| c.is_frozen().unwrap_or(false)) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The runtime-spec state object, as `state` prints it and hooks receive it.
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": self.spec.version(),
            "id": self.id,
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
        });
        if let Some(a) = self.spec.annotations().as_ref().filter(|a| !a.is_empty()) {
            v["annotations"] = serde_json::to_value(a).unwrap_or_default();
        }
        v
    }
}
