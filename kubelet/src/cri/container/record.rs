//! A container's record, kept as JSON in `<root>/containers/<id>/container.json` so a
//! restarted service finds its containers; its state is derived, not stored: the monitor's
//! exit file says whether (and how) it ended.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cri_api::runtime::v1 as cri;
use serde::{Deserialize, Serialize};

use crate::cri::monitor::exit::ExitRecord;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// The reserved name (`<name>_<sandbox name>_<attempt>`).
    pub name: String,
    pub metadata_name: String,
    pub attempt: u32,
    /// The image as the request named it, and the image's id (its config digest).
    pub image: String,
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    /// Where the monitor writes the container's output (empty: nowhere the kubelet reads).
    pub log_path: PathBuf,
    pub monitor_pid: i32,
    pub pid: i32,
    /// `<root>/containers/<id>`: this record, the bundle (config.json), the rootfs overlay.
    pub dir: PathBuf,
    /// The container's terminal and stdin, as `ContainerConfig` asked (for `Attach`).
    #[serde(default)]
    pub stdio: StdioConfig,
}

/// `ContainerConfig.tty`, `stdin` and `stdin_once`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioConfig {
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
}

/// The container's state, as CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Exited(ExitRecord),
}

impl ContainerRecord {
    pub fn record_path(dir: &Path) -> PathBuf {
        dir.join("container.json")
    }

    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    pub fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("fs")
    }

    pub fn cri_state(status: &Status) -> cri::ContainerState {
        match status {
            Status::Created => cri::ContainerState::ContainerCreated,
            Status::Running => cri::ContainerState::ContainerRunning,
            Status::Exited(_) => cri::ContainerState::ContainerExited,
        }
    }

    fn metadata(&self) -> cri::ContainerMetadata {
        cri::ContainerMetadata { name: self.metadata_name.clone(), attempt: self.attempt }
    }

    fn labels(&self) -> HashMap<String, String> {
        self.labels.clone().into_iter().collect()
    }

    fn annotations(&self) -> HashMap<String, String> {
        self.annotations.clone().into_iter().collect()
    }

    pub fn to_list_item(&self, status: &Status) -> cri::Container {
        cri::Container {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: Some(self.metadata()),
            image: Some(cri::ImageSpec { image: self.image.clone(), ..Default::default() }),
            image_ref: self.image_ref.clone(),
            state: Self::cri_state(status) as i32,
            created_at: self.created_at,
            labels: self.labels(),
            annotations: self.annotations(),
            ..Default::default()
        }
    }

    /// CRI's status: exit code, times and the reason users know (`Completed`, `Error`,
    /// `OOMKilled`).
    pub fn to_status(&self, status: &Status) -> cri::ContainerStatus {
        let (exit_code, finished_at, reason) = match status {
            Status::Exited(e) => {
                let reason = if e.oom_killed {
                    "OOMKilled"
                } else if e.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                (e.exit_code, e.finished_at_ns, reason.to_string())
            }
            _ => (0, 0, String::new()),
        };
        cri::ContainerStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: Self::cri_state(status) as i32,
            created_at: self.created_at,
            started_at: self.started_at.unwrap_or(0),
            finished_at,
            exit_code,
            image: Some(cri::ImageSpec { image: self.image.clone(), ..Default::default() }),
            image_ref: self.image_ref.clone(),
            reason,
            labels: self.labels(),
            annotations: self.annotations(),
            log_path: self.log_path.display().to_string(),
            ..Default::default()
        }
    }

    pub fn matches(&self, status: &Status, filter: &cri::ContainerFilter) -> bool {
        (filter.id.is_empty() || self.id.starts_with(&filter.id))
            && (filter.pod_sandbox_id.is_empty() || self.sandbox_id.starts_with(&filter.pod_sandbox_id))
            && filter.state.as_ref().is_none_or(|s| s.state == Self::cri_state(status) as i32)
            && filter.label_selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}
