//! Rotating container logs by size: every 10 s each running container's log file is
//! checked; one over `max_size` is renamed to `<file>.<YYYYMMDD-HHMMSS>` and the runtime is
//! told to reopen its log (CRI ReopenContainerLog), older rotated files are gzipped and the
//! oldest removed so that at most `max_files` files (the live one included) remain, as
//! upstream's container log manager does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;

/// How often the files are checked (upstream's containerLogMonitorInterval).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_MAX_FILES: usize = 5;

const TMP_SUFFIX: &str = ".tmp";
const GZ_SUFFIX: &str = ".gz";

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("container {id}: the runtime did not reopen its log after rotation: {message}")]
    Reopen { id: String, message: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RotateError {
    let path = path.to_path_buf();
    move |source| RotateError::Io { what, path, source }
}

/// A running container's log, as the rotator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLog {
    pub container_id: String,
    pub path: PathBuf,
}

/// What the rotator needs from the runtime; the integrator implements it over CRI.
#[async_trait]
pub trait LogRuntime: Send + Sync {
    /// The running containers and their log paths (CRI ListContainers + ContainerStatus).
    async fn running_container_logs(&self) -> Vec<ContainerLog>;
    /// CRI ReopenContainerLog: the runtime starts writing to a new file at the log path.
    async fn reopen_container_log(&self, container_id: &str) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// `containerLogMaxSize`.
    pub max_size: u64,
    /// `containerLogMaxFiles`, the live file included; at least 2.
    pub max_files: usize,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy { max_size: DEFAULT_MAX_SIZE, max_files: DEFAULT_MAX_FILES }
    }
}

pub struct LogRotator {
    policy: RotationPolicy,
    runtime: Arc<dyn LogRuntime>,
}

impl LogRotator {
    pub fn new(policy: RotationPolicy, runtime: Arc<dyn LogRuntime>) -> LogRotator {
        let policy = RotationPolicy { max_files: policy.max_files.max(2), ..policy };
        LogRotator { policy, runtime }
    }

    /// Check every running container's log once.
    pub async fn rotate_all(&self) {
        for log in self.runtime.running_container_logs().await {
            if let Err(e) = self.rotate(&log, Timestamp::now()).await {
                tracing::warn!(error = %e, container = %log.container_id, "rotating a container log failed");
            }
        }
    }

    /// Check forever (the caller aborts the task).
    pub async fn run(self) {
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.rotate_all().await;
        }
    }

    /// Rotate one container's log if it is over the size; whether it was rotated.
    pub async fn rotate(&self, log: &ContainerLog, now: Timestamp) -> Result<bool, RotateError> {
        let size = match std::fs::metadata(&log.path) {
            Ok(m) => m.len(),
            // Not there (yet, or the container just went): nothing to rotate.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io("reading the size of", &log.path)(e)),
        };
        if size < self.policy.max_size {
            return Ok(false);
        }
        let path = log.path.clone();
        let policy = self.policy;
        let prepared = tokio::task::spawn_blocking(move || prepare(&path, policy)).await.expect("log rotation task");
        prepared?;
        let rotated = rotated_name(&log.path, now);
        if rotated.exists() {
            // Rotated already within this second: the next check does it.
            return Ok(false);
        }
        std::fs::rename(&log.path, &rotated).map_err(io("renaming", &log.path))?;
        if let Err(message) = self.runtime.reopen_container_log(&log.container_id).await {
            // The runtime still writes to the renamed file: give it its name back.
            let _ = std::fs::rename(&rotated, &log.path);
            return Err(RotateError::Reopen { id: log.container_id.clone(), message });
        }
        Ok(true)
    }
}

/// `<file>.<YYYYMMDD-HHMMSS>` in UTC, upstream's rotated name.
pub fn rotated_name(path: &Path, now: Timestamp) -> PathBuf {
    let stamp = now.to_zoned(TimeZone::UTC).strftime("%Y%m%d-%H%M%S").to_string();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    PathBuf::from(name)
}

/// The rotated files of `path`, oldest first; leftovers of an interrupted compression
/// removed.
fn rotated_files(path: &Path) -> Result<Vec<PathBuf>, RotateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = format!("{}.", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        if name.ends_with(TMP_SUFFIX) {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        out.push(entry.path());
    }
    // The timestamp orders them; `.gz` must not.
    out.sort_by_key(|p| p.to_string_lossy().trim_end_matches(GZ_SUFFIX).to_string());
    Ok(out)
}

/// Before a rotation: room for one more rotated file, and all but the newest gzipped.
fn prepare(path: &Path, policy: RotationPolicy) -> Result<(), RotateError> {
    let mut rotated = rotated_files(path)?;
    let keep = policy.max_files - 2;
    while rotated.len() > keep {
        let oldest = rotated.remove(0);
        std::fs::remove_file(&oldest).map_err(io("removing", &oldest))?;
    }
    // The newest may still be written by the runtime until it reopened; leave it be.
    let newest = rotated.pop();
    for file in rotated.iter().filter(|f| !f.to_string_lossy().ends_with(GZ_SUFFIX)) {
        compress(file)?;
    }
    drop(newest);
    Ok(())
}

/// `file` → `file.gz`, through a temporary so a crash leaves no half archive.
fn compress(file: &Path) -> Result<(), RotateError> {
    let gz = PathBuf::from(format!("{}{GZ_SUFFIX}", file.display()));
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", gz.display()));
    let mut input = std::fs::File::open(file).map_err(io("opening", file))?;
    let output = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    std::io::copy(&mut input, &mut encoder).map_err(io("compressing", file))?;
    encoder.finish().and_then(|mut f| f.flush()).map_err(io("compressing", file))?;
    std::fs::rename(&tmp, &gz).map_err(io("renaming", &tmp))?;
    std::fs::remove_file(file).map_err(io("removing", file))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Runtime {
        logs: Vec<ContainerLog>,
        reopened: Mutex<Vec<String>>,
        fail: bool,
    }

    #[async_trait]
    impl LogRuntime for Runtime {
        async fn running_container_logs(&self) -> Vec<ContainerLog> {
            self.logs.clone()
        }
        async fn reopen_container_log(&self, id: &str) -> Result<(), String> {
            if self.fail {
                return Err("container not running".into());
            }
            self.reopened.lock().unwrap().push(id.to_string());
            Ok(())
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn rotates_compresses_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let log = ContainerLog { container_id: "c1".into(), path: path.clone() };
        let runtime = Arc::new(Runtime { logs: vec![log.clone()], ..Default::default() });
        let rotator = LogRotator::new(RotationPolicy { max_size: 10, max_files: 4 }, runtime.clone());

        std::fs::write(&path, "small").unwrap();
        assert!(!rotator.rotate(&log, Timestamp::from_second(0).unwrap()).await.unwrap());

        for (i, second) in [1, 2, 3, 4].into_iter().enumerate() {
            std::fs::write(&path, format!("entry {i} is long enough")).unwrap();
            assert!(rotator.rotate(&log, Timestamp::from_second(second).unwrap()).await.unwrap());
        }
        assert_eq!(runtime.reopened.lock().unwrap().len(), 4);
        // Four rotations with 4 files at most (the live one has not been written again):
        // the oldest went, the older kept ones are compressed, the newest is not (the
        // runtime was writing it until it reopened).
        assert_eq!(names(dir.path()), ["0.log.19700101-000002.gz", "0.log.19700101-000003", "0.log.19700101-000004"]);
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("0.log.19700101-000002.gz")).unwrap()).read_to_string(&mut text).unwrap();
        assert_eq!(text, "entry 1 is long enough");
    }

    #[tokio::test]
    async fn a_failed_reopen_gives_the_file_its_name_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "more than ten bytes").unwrap();
        std::fs::write(dir.path().join("0.log.x.gz.tmp"), "half").unwrap();
        let log = ContainerLog { container_id: "c1".into(), path: path.clone() };
        let runtime = Arc::new(Runtime { fail: true, ..Default::default() });
        let rotator = LogRotator::new(RotationPolicy { max_size: 10, max_files: 5 }, runtime);
        let err = rotator.rotate(&log, Timestamp::from_second(1).unwrap()).await.unwrap_err();
        assert!(err.to_string().contains("did not reopen"), "{err}");
        assert_eq!(names(dir.path()), ["0.log"], "the leftover temporary is gone too");
    }

    #[test]
    fn rotated_names_carry_the_utc_time() {
        let t: Timestamp = "2024-03-05T06:07:08Z".parse().unwrap();
        assert_eq!(rotated_name(Path::new("/var/log/pods/x/c/0.log"), t), PathBuf::from("/var/log/pods/x/c/0.log.20240305-060708"));
    }
}
