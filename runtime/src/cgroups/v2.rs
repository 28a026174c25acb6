//! The cgroupfs v2 driver.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CgroupError, CgroupManager, Resources, Stats};

#[derive(Debug, Clone)]
pub struct CgroupV2 {
    path: PathBuf,
}

impl CgroupV2 {
    pub fn new(path: PathBuf) -> Self {
        CgroupV2 { path }
    }

    /// The cgroup's ancestors that do not exist yet, top-down: what `create` will make
    /// (besides the cgroup itself), and what a failed create removes again.
    pub fn missing_parents(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.path.ancestors().skip(1).take_while(|d| !d.exists()).map(Path::to_path_buf).collect();
        out.reverse();
        out
    }

    /// Remove `parents` (from [`missing_parents`](Self::missing_parents)) deepest first, each
    /// only if empty: another container may have been created below one meanwhile.
    pub fn remove_parents(parents: &[PathBuf]) {
        for d in parents.iter().rev() {
            if let Err(e) = fs::remove_dir(d) {
                tracing::debug!("cgroup {}: left in place: {e}", d.display());
            }
        }
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

/// Let `dir`'s children have every controller `dir` has. Only for cgroups we created; a
/// controller that cannot be enabled is reported by `apply` if a limit needs it.
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).map_err(CgroupError::io(dir, "read cgroup.controllers"))?;
    for c in offered.split_whitespace() {
        if let Err(e) = write_existing(&dir.join("cgroup.subtree_control"), &format!("+{c}")) {
            tracing::warn!("cgroup {}: cannot enable the {c} controller for its children: {e}", dir.display());
        }
    }
    Ok(())
}

/// Write to a file that must exist: cgroupfs files are never created by writing.
fn write_existing(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write as _;
    fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

/// Why `controller` is not in `leaf`'s cgroup.controllers, from its ancestors' files: the
/// nearest one that has it but does not pass it down, or the hierarchy's root lacking it.
pub(crate) fn missing_controller_reason(leaf: &Path, controller: &str, read: &dyn Fn(&Path) -> Option<String>) -> String {
    let mut top: Option<(&Path, String)> = None;
    let mut dir = leaf.parent();
    while let Some(d) = dir {
        let Some(offered) = read(&d.join("cgroup.controllers")) else { break };
        if offered.split_whitespace().any(|c| c == controller) {
            let enabled = read(&d.join("cgroup.subtree_control")).unwrap_or_default();
            return format!(
                "{} has but does not enable for its children (cgroup.subtree_control: {:?}); runtime-rs enables controllers only in cgroups it created",
                d.display(),
                enabled.trim()
            );
        }
        top = Some((d, offered));
        dir = d.parent();
    }
    match top {
        Some((d, offered)) => format!("{} does not offer (cgroup.controllers: {:?})", d.display(), offered.trim()),
        None => format!("{} does not offer (its parent's cgroup.controllers cannot be read)", leaf.display()),
    }
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
        // The directories this call makes: only those are ours to configure.
        let made = self.missing_parents();
        fs::create_dir_all(&self.path).map_err(CgroupError::io(&self.path, "create"))?;
        for d in &made {
            enable_controllers(d)?;
        }
        let count = self.processes()?.len();
        if count > 0 {
            return Err(CgroupError::NotEmpty { path: self.path.clone(), count });
        }
        Ok(())
    }

    fn apply(&self, resources: &Resources) -> Result<(), CgroupError> {
        let writes = resources.writes();
        if writes.is_empty() {
            return Ok(());
        }
        let offered = self.read("cgroup.controllers")?;
        for w in &writes {
            let c = w.controller();
            if c != "cgroup" && !offered.split_whitespace().any(|o| o == c) {
                let why = missing_controller_reason(&self.path, c, &|p| fs::read_to_string(p).ok());
                return Err(CgroupError::MissingController { field: w.field.clone(), controller: c.to_string(), why });
            }
        }
        for w in &writes {
            let path = self.path.join(&w.file);
            if w.optional && !path.exists() {
                continue;
            }
            write_existing(&path, &w.value)
                .map_err(|source| CgroupError::Apply { field: w.field.clone(), path, value: w.value.clone(), source })?;
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        if !self.path.is_dir() {
            return Err(CgroupError::Io { path: self.path.clone(), what: "read statistics".into(), source: io::ErrorKind::NotFound.into() });
        }
        Ok(Stats::read_dir(&self.path))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = files.iter().map(|(p, c)| (PathBuf::from(p), c.to_string())).collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn missing_parents_are_listed_top_down() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let cg = CgroupV2::new(dir.path().join("a/b/c/leaf"));
        let made = cg.missing_parents();
        assert_eq!(made, vec![dir.path().join("a/b"), dir.path().join("a/b/c")]);
        std::fs::create_dir_all(dir.path().join("a/b/c/other")).unwrap();
        CgroupV2::remove_parents(&made);
        assert!(dir.path().join("a/b/c/other").exists(), "a parent in use must stay");
        std::fs::remove_dir(dir.path().join("a/b/c/other")).unwrap();
        CgroupV2::remove_parents(&made);
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a").exists(), "what existed before stays");
    }

    #[test]
    fn a_controller_the_hierarchy_lacks_is_blamed_on_its_root() {
        let read = reader(&[
            ("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n"),
            ("/sys/fs/cgroup/unified/krs-p/cgroup.controllers", "\n"),
        ]);
        let why = missing_controller_reason(Path::new("/sys/fs/cgroup/unified/krs-p/c1"), "memory", &read);
        assert_eq!(why, "/sys/fs/cgroup/unified does not offer (cgroup.controllers: \"hugetlb\")");
    }

    #[test]
    fn a_controller_not_passed_down_is_blamed_on_that_parent() {
        let read = reader(&[
            ("/sys/fs/cgroup/cgroup.controllers", "cpu memory pids"),
            ("/sys/fs/cgroup/cgroup.subtree_control", "cpu memory pids"),
            ("/sys/fs/cgroup/kubepods/cgroup.controllers", "cpu memory pids"),
            ("/sys/fs/cgroup/kubepods/cgroup.subtree_control", "cpu"),
            ("/sys/fs/cgroup/kubepods/pod/cgroup.controllers", "cpu"),
        ]);
        let why = missing_controller_reason(Path::new("/sys/fs/cgroup/kubepods/pod/c1"), "pids", &read);
        assert_eq!(why, "/sys/fs/cgroup/kubepods has but does not enable for its children (cgroup.subtree_control: \"cpu\"); runtime-rs enables controllers only in cgroups it created");
    }
}
