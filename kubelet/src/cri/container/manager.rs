//! The containers of this node: create (image rootfs overlay, OCI spec, a monitor that runs
//! the OCI runtime's `create` and outlives us), start, stop with a grace period, remove,
//! status, list and synchronous exec. Records persist under `<root>/containers/<id>/`, so a
//! restarted service finds running containers again; whether a container ended is read
//! from its monitor's exit file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1 as cri;
use images::process_config::UserDb;
use images::store::{ImageRecord, Store};
use oci_spec::image::ImageConfiguration;

use super::record::{ContainerRecord, Status, StdioConfig};
use super::{ExecOptions, Namespace, NodeHost, OciCli, OciRuntime, SandboxNamespaces, SandboxParts, SpecInput, build_spec};
use crate::cri::config::CriConfig;
use crate::cri::events::{EventBus, EventKind};
use crate::cri::monitor::{self, MonitorArgs};
use crate::cri::sandbox::Sandbox;
use crate::cri::sandbox::id::new_id;
use crate::cri::sandbox::mounts::is_mount_point;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("invalid container config: {0}")]
    Invalid(String),
    #[error("name {name:?} is reserved for container {id:?}")]
    NameReserved { name: String, id: String },
    #[error("image {0:?} is not present: pull it first")]
    ImageNotFound(String),
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error(transparent)]
    Spec(#[from] super::SpecError),
    #[error(transparent)]
    Oci(#[from] super::OciError),
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Id(#[from] crate::cri::sandbox::id::Error),
    #[error("container {id:?} did not stop within {seconds} s after SIGKILL")]
    StopTimeout { id: String, seconds: u64 },
    #[error("container {id:?} is {state}: {action} needs a running container")]
    NotRunning { id: String, state: &'static str, action: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// A container's cgroup v2 directory as this node sees it, from its spec's
/// `linux.cgroupsPath` resolved as the OCI runtime resolves it (see
/// [`runtime_rs::cgroups::container_cgroup`]); none without a cgroup v2 hierarchy.
pub fn node_cgroup_dir(spec: &oci_spec::runtime::Spec, id: &str) -> Option<PathBuf> {
    let hierarchy = runtime_rs::cgroups::find_hierarchy().ok()?;
    let own = runtime_rs::cgroups::own_cgroup(&fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    Some(spec_cgroup_dir(&hierarchy, &own, spec, id))
}

/// [`node_cgroup_dir`] with the hierarchy and our own cgroup given.
pub fn spec_cgroup_dir(hierarchy: &Path, own: &Path, spec: &oci_spec::runtime::Spec, id: &str) -> PathBuf {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    runtime_rs::cgroups::container_cgroup(hierarchy, own, path.as_deref(), id)
}

pub struct ContainerManager {
    dir: PathBuf,
    oci: OciCli,
    store: Store,
    /// The `kubelet-rs` binary the monitor runs as.
    monitor_program: PathBuf,
    records: Mutex<BTreeMap<String, ContainerRecord>>,
    /// Lifecycle events for `GetContainerEvents`.
    events: EventBus,
}

impl ContainerManager {
    /// Loads the records a previous run left.
    pub fn new(config: &CriConfig) -> Result<ContainerManager> {
        let dir = config.root.join("containers");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let store = Store::open(config.images_dir()).map_err(|e| Error::Image { image: String::new(), message: e.to_string() })?;
        let mut records = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            let path = ContainerRecord::record_path(&entry.path());
            match fs::read(&path).map(|b| serde_json::from_slice::<ContainerRecord>(&b)) {
                Ok(Ok(r)) => {
                    records.insert(r.id.clone(), r);
                }
                Ok(Err(e)) => tracing::warn!("skipping container record {}: {e}", path.display()),
                Err(e) => tracing::warn!("skipping container directory {}: {e}", entry.path().display()),
            }
        }
        let monitor_program = match &config.monitor_program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?,
        };
        let manager = ContainerManager {
            dir,
            oci: OciCli::new(&config.oci_runtime, config.oci_root()),
            store,
            monitor_program,
            records: Mutex::new(records),
            events: EventBus::default(),
        };
        // Containers that ended while we were away are not reported as stopping now.
        let mut reported = manager.events.lock();
        for (record, status) in manager.list(None) {
            if matches!(status, Status::Exited(_)) {
                reported.already_stopped(&record.id);
            }
        }
        drop(reported);
        Ok(manager)
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Reports the stop of every container whose exit is seen for the first time (the
    /// exit watcher runs this every [`crate::cri::events::EXIT_POLL`]).
    pub fn poll_exits(&self) {
        let mut reported = self.events.lock();
        let records: Vec<ContainerRecord> = self.records.lock().expect("records lock").values().cloned().collect();
        for r in records.iter().filter(|r| r.started_at.is_some()) {
            if !reported.has_stopped(&r.id) && matches!(self.status_of(r), Status::Exited(_)) {
                reported.stopped(&r.id, &r.sandbox_id);
            }
        }
    }

    fn save(&self, record: &ContainerRecord) -> Result<()> {
        let path = ContainerRecord::record_path(&record.dir);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(record).expect("records serialise");
        fs::write(&tmp, bytes).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        self.records.lock().expect("records lock").insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// A record by id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<ContainerRecord> {
        let records = self.records.lock().expect("records lock");
        if let Some(r) = records.get(id) {
            return Ok(r.clone());
        }
        let mut matching = records.values().filter(|r| !id.is_empty() && r.id.starts_with(id));
        match (matching.next(), matching.next()) {
            (Some(r), None) => Ok(r.clone()),
            _ => Err(Error::NotFound(id.to_string())),
        }
    }

    /// The container's state: ended if its monitor wrote the exit file, else running once
    /// started. A container whose monitor is gone without an exit file is asked of the
    /// OCI runtime.
    pub fn status_of(&self, record: &ContainerRecord) -> Status {
        if let Ok(Some(exit)) = monitor::exit::read(&record.exit_file()) {
            return Status::Exited(exit);
        }
        if record.started_at.is_none() {
            return Status::Created;
        }
        if !monitor::is_monitor_of(record.monitor_pid, &record.id)
            && let Ok(state) = self.oci.state(&record.id)
            && state.status == super::OciStatus::Stopped
        {
            // The exit went unrecorded (the monitor died first): record it now, once, so its
            // time stays put; 255 says the real status is unknown.
            let exit = monitor::exit::ExitRecord { exit_code: 255, signal: None, finished_at_ns: now_ns(), oom_killed: false };
            if let Err(e) = monitor::exit::write(&record.exit_file(), &exit) {
                tracing::warn!("container {}: recording its unobserved exit: {e}", record.id);
            }
            return Status::Exited(exit);
        }
        Status::Running
    }

    pub fn create(&self, sandbox: &Sandbox, config: &cri::ContainerConfig) -> Result<String> {
        let meta = config.metadata.as_ref().ok_or_else(|| Error::Invalid("metadata is missing".into()))?;
        if meta.name.is_empty() {
            return Err(Error::Invalid("metadata.name is empty".into()));
        }
        let image_spec = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if image_spec.is_empty() {
            return Err(Error::Invalid("image.image is empty".into()));
        }
        let name = format!("{}_{}_{}", meta.name, sandbox.name, meta.attempt);
        if let Some(other) = self.records.lock().expect("records lock").values().find(|r| r.name == name) {
            return Err(Error::NameReserved { name, id: other.id.clone() });
        }
        let (image_id, image_record) = self.find_image(&image_spec)?;
        let image_config = self.image_config(&image_spec, &image_record)?;
        let id = new_id()?;
        let dir = self.dir.join(&id);
        fs::create_dir(&dir).map_err(io(&dir))?;
        let log_path = if sandbox.log_directory.is_empty() || config.log_path.is_empty() {
            dir.join("output.log")
        } else {
            Path::new(&sandbox.log_directory).join(&config.log_path)
        };
        let mut record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox.id.clone(),
            name,
            metadata_name: meta.name.clone(),
            attempt: meta.attempt,
            image: image_spec.clone(),
            image_ref: image_id,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            created_at: now_ns(),
            started_at: None,
            log_path,
            monitor_pid: 0,
            pid: 0,
            dir: dir.clone(),
            stdio: StdioConfig { tty: config.tty, stdin: config.stdin, stdin_once: config.stdin_once },
        };
        match self.create_in(&mut record, sandbox, config, &image_record, &image_config) {
            Ok(()) => {
                self.events.emit(&id, &sandbox.id, EventKind::Created);
                Ok(id)
            }
            Err(e) => {
                let _ = self.oci.delete(&id, true);
                let _ = images::rootfs::unmount_rootfs(&images::rootfs::Rootfs { dir: record.rootfs_dir(), target: record.rootfs_dir().join("rootfs") });
                let _ = fs::remove_dir_all(&dir);
                self.records.lock().expect("records lock").remove(&id);
                Err(e)
            }
        }
    }

    fn create_in(
        &self,
        record: &mut ContainerRecord,
        sandbox: &Sandbox,
        config: &cri::ContainerConfig,
        image: &ImageRecord,
        image_config: &ImageConfiguration,
    ) -> Result<()> {
        let rootfs = images::rootfs::mount_rootfs(&self.store, image, &record.rootfs_dir())
            .map_err(|e| Error::Image { image: record.image.clone(), message: e.to_string() })?;
        let layers_top_first: Vec<PathBuf> = image
            .layers
            .iter()
            .rev()
            .filter_map(|l| self.store.snapshot(l).ok().flatten().map(|s| s.fs))
            .collect();
        let users = UserDb::from_layers(&layers_top_first).map_err(|e| Error::Image { image: record.image.clone(), message: e.to_string() })?;
        let parts = sandbox_parts(sandbox);
        let spec = build_spec(&SpecInput {
            id: &record.id,
            config,
            sandbox: &parts,
            image: image_config,
            image_name: &record.image,
            users: &users,
            rootfs: &rootfs.target,
            host: &NodeHost,
        })?;
        let config_json = record.dir.join("config.json");
        spec.save(&config_json).map_err(|e| Error::Invalid(format!("writing {}: {e}", config_json.display())))?;
        if let Some(parent) = record.log_path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        self.save(record)?;
        let handle = monitor::spawn_monitor_with(
            &self.monitor_program,
            &MonitorArgs {
                id: record.id.clone(),
                bundle: record.dir.clone(),
                runtime: self.oci.binary.clone(),
                oci_root: self.oci.root.clone(),
                log_path: record.log_path.clone(),
                exit_file: record.exit_file(),
                pid_file: record.pid_file(),
                // Where the monitor reads memory.events to tell an OOM kill from another
                // SIGKILL; without it no exit could ever be reported as OOMKilled.
                cgroup_path: node_cgroup_dir(&spec, &record.id),
                monitor_log: Some(record.dir.join("monitor.log")),
                tty: record.stdio.tty,
                stdin: record.stdio.stdin,
                stdin_once: record.stdio.stdin_once,
            },
            Duration::from_secs(120),
        )?;
        record.monitor_pid = handle.monitor_pid;
        record.pid = handle.container_pid;
        self.save(record)
    }

    fn find_image(&self, spec: &str) -> Result<(String, ImageRecord)> {
        let found = crate::cri::server::image_lookup::find(&self.store, spec)
            .map_err(|e| Error::Image { image: spec.to_string(), message: e.to_string() })?
            .ok_or_else(|| Error::ImageNotFound(spec.to_string()))?;
        let record = found.records.first().cloned().ok_or_else(|| Error::ImageNotFound(spec.to_string()))?;
        Ok((found.id.to_string(), record))
    }

    fn image_config(&self, spec: &str, record: &ImageRecord) -> Result<ImageConfiguration> {
        let bytes = self.store.read_blob(&record.config).map_err(|e| Error::Image { image: spec.to_string(), message: e.to_string() })?;
        images::process_config::parse_config(&bytes).map_err(|e| Error::Image { image: spec.to_string(), message: e.to_string() })
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let mut record = self.get(id)?;
        match self.status_of(&record) {
            Status::Created => {}
            other => return Err(Error::Invalid(format!("container {} is {other:?}, not created", record.id))),
        }
        // Taken before `start`: a short-lived process can end before `start` returns.
        let started_at = now_ns();
        self.oci.start(&record.id)?;
        record.started_at = Some(started_at);
        self.save(&record)?;
        self.events.emit(&record.id, &record.sandbox_id, EventKind::Started);
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `timeout`; a container already stopped (or unknown, as
    /// the CRI requires) is fine. Its stop is reported at once rather than at the next poll.
    pub fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        self.end(id, timeout)?;
        if let Ok(record) = self.get(id)
            && record.started_at.is_some()
        {
            self.events.lock().stopped(&record.id, &record.sandbox_id);
        }
        Ok(())
    }

    fn end(&self, id: &str, timeout: Duration) -> Result<()> {
        let record = match self.get(id) {
            Ok(r) => r,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Status::Exited(_) = self.status_of(&record) {
            return Ok(());
        }
        if record.started_at.is_none() {
            // Created, never started: its init waits for `start`; kill it.
            self.oci.kill(&record.id, libc::SIGKILL, false)?;
            return self.wait_exit(&record, Duration::from_secs(10));
        }
        if !timeout.is_zero() {
            self.oci.kill(&record.id, libc::SIGTERM, false)?;
            if self.wait_exit(&record, timeout).is_ok() {
                return Ok(());
            }
        }
        self.oci.kill(&record.id, libc::SIGKILL, true)?;
        self.wait_exit(&record, Duration::from_secs(10))
    }

    fn wait_exit(&self, record: &ContainerRecord, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Status::Exited(_) = self.status_of(record) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::StopTimeout { id: record.id.clone(), seconds: timeout.as_secs() })
    }

    /// Kills the container if needed, deletes it from the OCI runtime, unmounts its rootfs
    /// and removes its directory. Unknown ids are fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let record = match self.get(id) {
            Ok(r) => r,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !matches!(self.status_of(&record), Status::Exited(_)) {
            self.stop(&record.id, Duration::ZERO)?;
        }
        self.oci.delete(&record.id, true)?;
        let fs_dir = record.rootfs_dir();
        let rootfs = images::rootfs::Rootfs { dir: fs_dir.clone(), target: fs_dir.join("rootfs") };
        if is_mount_point(&rootfs.target) {
            images::rootfs::unmount_rootfs(&rootfs).map_err(|e| Error::Image { image: record.image.clone(), message: e.to_string() })?;
        }
        fs::remove_dir_all(&record.dir).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }).map_err(io(&record.dir))?;
        self.records.lock().expect("records lock").remove(&record.id);
        self.events.lock().deleted(&record.id, &record.sandbox_id);
        Ok(())
    }

    pub fn list(&self, filter: Option<&cri::ContainerFilter>) -> Vec<(ContainerRecord, Status)> {
        let records: Vec<ContainerRecord> = self.records.lock().expect("records lock").values().cloned().collect();
        let mut out: Vec<(ContainerRecord, Status)> = records
            .into_iter()
            .map(|r| {
                let s = self.status_of(&r);
                (r, s)
            })
            .filter(|(r, s)| filter.is_none_or(|f| r.matches(s, f)))
            .collect();
        out.sort_by_key(|(r, _)| r.created_at);
        out
    }

    /// Runs `cmd` in the container and returns its exit code and output; `timeout` zero:
    /// no limit but the OCI driver's own.
    pub fn exec_sync(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<super::ExecOutput> {
        let record = self.get(id)?;
        if !matches!(self.status_of(&record), Status::Running) {
            return Err(Error::Invalid(format!("container {} is not running", record.id)));
        }
        let config_json = record.dir.join("config.json");
        let spec = oci_spec::runtime::Spec::load(&config_json).map_err(|e| Error::Invalid(format!("reading {}: {e}", config_json.display())))?;
        let process = super::exec_process(&spec, cmd, false)?;
        let process_json = record.dir.join(format!("exec-{}.json", new_id()?));
        fs::write(&process_json, serde_json::to_vec(&process).expect("process serialises")).map_err(io(&process_json))?;
        let opts = ExecOptions { timeout: (!timeout.is_zero()).then_some(timeout), ..Default::default() };
        let result = self.oci.exec(&record.id, &process_json, &opts);
        let _ = fs::remove_file(&process_json);
        Ok(result?)
    }

    /// `UpdateContainerResources`: the CRI resources as OCI `linux.resources`, applied by
    /// the OCI runtime's `update` (a running or created container) and kept in the
    /// container's config.json (its device rules stay).
    pub fn update_resources(&self, id: &str, resources: &cri::LinuxContainerResources) -> Result<()> {
        let record = self.get(id)?;
        if let Status::Exited(_) = self.status_of(&record) {
            return Err(Error::NotRunning { id: record.id, state: "exited", action: "UpdateContainerResources" });
        }
        let new = super::linux_resources(resources, &NodeHost)?;
        let resources_json = record.dir.join("resources.json");
        fs::write(&resources_json, serde_json::to_vec(&new).expect("resources serialise")).map_err(io(&resources_json))?;
        let updated = self.oci.update(&record.id, &resources_json);
        let _ = fs::remove_file(&resources_json);
        updated?;
        let config_json = record.dir.join("config.json");
        let bad = |e: oci_spec::OciSpecError| Error::Invalid(format!("{}: {e}", config_json.display()));
        let mut spec = oci_spec::runtime::Spec::load(&config_json).map_err(bad)?;
        if let Some(linux) = spec.linux_mut() {
            let mut merged = new;
            merged.set_devices(linux.resources().as_ref().and_then(|r| r.devices().clone()));
            linux.set_resources(Some(merged));
        }
        spec.save(&config_json).map_err(bad)
    }

    /// `ReopenContainerLog`: the monitor of a running container reopens its log file.
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let record = self.get(id)?;
        let state = match self.status_of(&record) {
            Status::Running => return Ok(monitor::reopen_log(record.monitor_pid, &record.id, &record.log_path, Duration::from_secs(10))?),
            Status::Created => "created",
            Status::Exited(_) => "exited",
        };
        Err(Error::NotRunning { id: record.id, state, action: "ReopenContainerLog" })
    }

    /// What a streamed exec in a running container needs: its full id, the OCI runtime and
    /// the container's spec (the exec's process inherits user, env and capabilities).
    pub fn exec_context(&self, id: &str) -> Result<(String, OciCli, oci_spec::runtime::Spec)> {
        let record = self.get(id)?;
        if !matches!(self.status_of(&record), Status::Running) {
            return Err(Error::Invalid(format!("container {} is not running", record.id)));
        }
        let config_json = record.dir.join("config.json");
        let spec = oci_spec::runtime::Spec::load(&config_json).map_err(|e| Error::Invalid(format!("reading {}: {e}", config_json.display())))?;
        Ok((record.id, self.oci.clone(), spec))
    }

    /// What `Attach` needs: the directory holding the monitor's attach socket, and the
    /// container's stdio config; the container must be running.
    pub fn attach_context(&self, id: &str) -> Result<(PathBuf, StdioConfig)> {
        let record = self.get(id)?;
        match self.status_of(&record) {
            Status::Running => Ok((record.dir, record.stdio)),
            Status::Created => Err(Error::NotRunning { id: record.id, state: "created", action: "attach" }),
            Status::Exited(_) => Err(Error::NotRunning { id: record.id, state: "exited", action: "attach" }),
        }
    }

    /// The containers of a sandbox (to stop or remove them with it).
    pub fn ids_in_sandbox(&self, sandbox_id: &str) -> Vec<String> {
        self.records.lock().expect("records lock").values().filter(|r| r.sandbox_id == sandbox_id).map(|r| r.id.clone()).collect()
    }
}

/// What the spec builder needs of the sandbox.
fn sandbox_parts(sandbox: &Sandbox) -> SandboxParts {
    let node = cri::NamespaceMode::Node as i32;
    let ns = |mode: i32, path: &Option<PathBuf>| match path {
        _ if mode == node => Namespace::Node,
        Some(p) => Namespace::Join(p.clone()),
        None => Namespace::New,
    };
    SandboxParts {
        id: sandbox.id.clone(),
        hostname: sandbox.hostname.clone(),
        namespaces: SandboxNamespaces {
            network: ns(sandbox.modes.network, &sandbox.namespaces.net),
            ipc: ns(sandbox.modes.ipc, &sandbox.namespaces.ipc),
            uts: ns(sandbox.modes.network, &sandbox.namespaces.uts),
            // POD: the pod init's namespace, joined by its bind-mounted file.
            pid: match &sandbox.namespaces.pid {
                _ if sandbox.modes.pid == node => Namespace::Node,
                Some(p) if sandbox.modes.pid == cri::NamespaceMode::Pod as i32 => Namespace::Join(p.clone()),
                _ => Namespace::New,
            },
        },
        hosts_file: Some(sandbox.hosts_path()),
        resolv_conf: Some(sandbox.resolv_conf_path()),
        hostname_file: Some(sandbox.hostname_path()),
        shm: sandbox.shm.clone(),
        cgroup_parent: sandbox.cgroup_parent.clone(),
        sysctls: sandbox.sysctls.clone().into_iter().collect(),
    }
}



#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(cgroups_path: Option<&str>) -> oci_spec::runtime::Spec {
        let mut spec = oci_spec::runtime::Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_cgroups_path(cgroups_path.map(PathBuf::from));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn the_monitor_is_given_the_cgroup_the_runtime_makes() {
        let h = Path::new("/sys/fs/cgroup");
        let own = Path::new("/system.slice/krs.service");
        // Absolute: from the hierarchy's root, as the CRI's cgroup parents are.
        assert_eq!(spec_cgroup_dir(h, own, &spec_with(Some("/kubepods/pod1/c1")), "c1"), h.join("kubepods/pod1/c1"));
        // Relative, or none: below our own cgroup, as runc does.
        assert_eq!(spec_cgroup_dir(h, own, &spec_with(Some("pods/c1")), "c1"), h.join("system.slice/krs.service/pods/c1"));
        assert_eq!(spec_cgroup_dir(h, own, &spec_with(None), "c1"), h.join("system.slice/krs.service/c1"));
    }
}
