//! The cgroupfs v2 driver.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CgroupError, CgroupManager};

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    path: PathBuf,
}

impl CgroupV2 {
    pub fn new(path: PathBuf) -> Self {
        CgroupV2 { path }
    }

    fn read(&self, file: &str) -> Result<String, CgroupError> {
        fs::read_to_string(self.path.join(file)).map_err(CgroupError::io(&self.path, format!("read {file}")))
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        fs::write(self.path.join(file), value).map_err(CgroupError::io(&self.path, format!("write {value:?} to {file}")))
    }

    fn events_field(&self, key: &str) -> Result<Option<String>, CgroupError> {
        let text = self.read("cgroup.events")?;
        Ok(text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')).map(str::to_string)))
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool, CgroupError>) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        while !done()? {
            if start.elapsed() > timeout {
                return Err(CgroupError::Timeout { path: self.path.clone(), what: format!("timed out after {timeout:?} waiting until {what}") });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn pids_in(dir: &Path, out: &mut Vec<i32>) -> io::Result<()> {
    let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            pids_in(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Remove `dir` and its descendant cgroups, deepest first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    // A cgroup whose last process just exited can be busy for a moment.
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => return other,
        }
    }
}

impl CgroupManager for CgroupV2 {
    fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<(), CgroupError> {
        fs::create_dir_all(&self.path).map_err(CgroupError::io(&self.path, "create"))?;
        let count = self.processes()?.len();
        if count > 0 {
            return Err(CgroupError::NotEmpty { path: self.path.clone(), count });
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn clone_target(&self) -> Result<Option<OwnedFd>, CgroupError> {
        // A process born into a frozen cgroup (exec --ignore-paused) would stop before it
        // set itself up; moving it in once set up is what runc does there.
        if self.is_frozen()? {
            return Ok(None);
        }
        let dir = fs::File::open(&self.path).map_err(CgroupError::io(&self.path, "open"))?;
        Ok(Some(dir.into()))
    }

    fn set_devices(&self, rules: &[super::devices::DeviceRule]) -> Result<(), CgroupError> {
        Ok(super::devices::replace(&super::devices::Bpf, &self.path, rules)?)
    }

    fn processes(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        match pids_in(&self.path, &mut out) {
            Ok(()) => Ok(out),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(out),
            Err(e) => Err(CgroupError::Io { path: self.path.clone(), what: "list processes".into(), source: e }),
        }
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", "1")?;
        self.wait_for("the cgroup is frozen", Duration::from_secs(10), || Ok(self.events_field("frozen")?.as_deref() == Some("1")))
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", "0")?;
        self.wait_for("the cgroup is thawed", Duration::from_secs(10), || Ok(self.events_field("frozen")?.as_deref() != Some("1")))
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        match fs::read_to_string(self.path.join("cgroup.freeze")) {
            Ok(s) => Ok(s.trim() == "1"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CgroupError::Io { path: self.path.clone(), what: "read cgroup.freeze".into(), source: e }),
        }
    }

    fn signal_all(&self, signal: Signal) -> Result<(), CgroupError> {
        if signal == Signal::SIGKILL && self.path.join("cgroup.kill").exists() {
            return self.write("cgroup.kill", "1");
        }
        for pid in self.processes()? {
            // A process may exit between listing and signalling.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        Ok(())
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        if !self.path.exists() {
            return Ok(());
        }
        if !self.processes()?.is_empty() {
            self.signal_all(Signal::SIGKILL)?;
            // A frozen cgroup's processes only die once thawed.
            if self.is_frozen()? {
                self.write("cgroup.freeze", "0")?;
            }
            self.wait_for("its processes are gone", Duration::from_secs(10), || Ok(self.processes()?.is_empty()))?;
        }
        remove_tree(&self.path).map_err(CgroupError::io(&self.path, "remove"))
    }
}
