//! The exit file: how a container ended, written by its monitor when the container's init
//! exits, read by the CRI service (which may have restarted since the container started).
//!
//! `{"exit_code": 137, "signal": 9, "finished_at_ns": 1700000000123456789, "oom_killed": false}`
//!
//! It is written to a temporary file in the same directory, synced, and renamed into place,
//! so a reader sees the whole record or none.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status; 128 + the signal for a process a signal killed, as runc reports it.
    pub exit_code: i32,
    /// The signal that killed the process, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// When the monitor saw the exit, in nanoseconds since the Unix epoch.
    pub finished_at_ns: i64,
    /// The container's cgroup counted an OOM kill.
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExitFileError {
    #[error("exit file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("exit file {path}: {source}")]
    Decode { path: PathBuf, source: serde_json::Error },
}

impl ExitRecord {
    /// The record of a process that exited with `code`.
    pub fn exited(code: i32, finished_at: SystemTime) -> ExitRecord {
        ExitRecord { exit_code: code, signal: None, finished_at_ns: nanos_since_epoch(finished_at), oom_killed: false }
    }

    /// The record of a process `signal` killed.
    pub fn killed(signal: i32, finished_at: SystemTime) -> ExitRecord {
        ExitRecord { exit_code: 128 + signal, signal: Some(signal), finished_at_ns: nanos_since_epoch(finished_at), oom_killed: false }
    }
}

fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos().min(i64::MAX as u128) as i64).unwrap_or(0)
}

/// Write `record` to `path` atomically.
pub fn write(path: &Path, record: &ExitRecord) -> Result<(), ExitFileError> {
    let io_err = |source| ExitFileError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err)?;
    let mut tmp = tempfile_in(dir, path).map_err(io_err)?;
    let json = serde_json::to_vec(record).map_err(|source| ExitFileError::Decode { path: path.to_path_buf(), source })?;
    let done = tmp.1.write_all(&json).and_then(|_| tmp.1.sync_all()).and_then(|_| fs::rename(&tmp.0, path));
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp.0);
        return Err(io_err(e));
    }
    // The rename is durable once the directory is synced too.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file next to `path`, named for it and this process.
fn tempfile_in(dir: &Path, path: &Path) -> io::Result<(PathBuf, fs::File)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "exit".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    Ok((tmp, f))
}

/// The record at `path`, or `None` while the container has not exited.
pub fn read(path: &Path) -> Result<Option<ExitRecord>, ExitFileError> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|source| ExitFileError::Decode { path: path.to_path_buf(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExitFileError::Io { path: path.to_path_buf(), source }),
    }
}

/// Whether the cgroup at `cgroup_dir` (cgroup v2) counted an OOM kill, from `memory.events`.
/// A cgroup without the memory controller counts none.
pub fn oom_killed(cgroup_dir: &Path) -> bool {
    let events = fs::read_to_string(cgroup_dir.join("memory.events")).unwrap_or_default();
    parse_oom_kills(&events) > 0
}

fn parse_oom_kills(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == "oom_kill")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_record_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/exit.json");
        assert_eq!(read(&path).unwrap(), None);
        let at = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let rec = ExitRecord::killed(9, at);
        write(&path, &rec).unwrap();
        assert_eq!(read(&path).unwrap(), Some(rec));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["exit.json"], "no temporary file is left");
    }

    #[test]
    fn signal_deaths_count_as_128_plus_the_signal() {
        let rec = ExitRecord::killed(9, UNIX_EPOCH);
        assert_eq!((rec.exit_code, rec.signal), (137, Some(9)));
        let rec = ExitRecord::exited(3, UNIX_EPOCH + Duration::from_nanos(5));
        assert_eq!((rec.exit_code, rec.signal, rec.finished_at_ns), (3, None, 5));
    }

    #[test]
    fn the_json_has_the_documented_fields() {
        let rec = ExitRecord::exited(3, UNIX_EPOCH + Duration::from_nanos(5));
        assert_eq!(serde_json::to_string(&rec).unwrap(), r#"{"exit_code":3,"signal":null,"finished_at_ns":5,"oom_killed":false}"#);
        let old: ExitRecord = serde_json::from_str(r#"{"exit_code":1,"finished_at_ns":2}"#).unwrap();
        assert_eq!(old, ExitRecord { exit_code: 1, signal: None, finished_at_ns: 2, oom_killed: false });
    }

    #[test]
    fn a_garbled_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        fs::write(&path, "{").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("exit.json"), "{err}");
    }

    #[test]
    fn oom_kills_come_from_memory_events() {
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n"), 1);
        assert_eq!(parse_oom_kills("low 0\noom_kill 0\n"), 0);
        assert_eq!(parse_oom_kills(""), 0);
        assert!(!oom_killed(Path::new("/nonexistent-cgroup")));
    }
}
