//! Pod sandboxes without a pause process: a sandbox is a set of namespaces held open by
//! bind-mounted files (`namespaces`), the files its containers mount (`files`), its sysctls
//! (`sysctls`), its attachment to the pod network (`network`), and a record persisted as JSON
//! (`store`) so a restarted service finds it. Ids and name reservation are in `id`. A pod
//! that shares one pid namespace (`pid: POD`) gets an init process of ours (`pod_init`).
//!
//! Lifecycle, as containerd's: run creates everything (and undoes everything on failure);
//! stop detaches the network (CNI DEL), stops the pod init (which ends every process left in
//! the pod's pid namespace) and marks the sandbox NOTREADY; remove stops if needed,
//! then unmounts the namespace files and the shm and deletes the directories. Stop and remove
//! of an unknown id succeed, so the kubelet's retries are harmless.

mod files;
pub mod id;
pub(crate) mod mounts;
mod namespaces;
mod network;
pub mod pod_init;
mod store;
mod sysctls;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1::{NamespaceMode, PodSandboxConfig, PodSandboxFilter};
use nix::sched::CloneFlags;

use crate::cri::config::CriConfig;
pub use namespaces::NamespacePaths;
pub use network::{DEFAULT_CONFLIST, DEFAULT_NETWORK, DEFAULT_SUBNET, PodAttachment};
pub use store::{Metadata, Modes, Sandbox, State};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sandbox {id:?} not found")]
    NotFound { id: String },
    #[error("invalid sandbox config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Id(#[from] id::Error),
    #[error(transparent)]
    Namespaces(#[from] namespaces::Error),
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error(transparent)]
    Sysctl(#[from] sysctls::Error),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    PodInit(#[from] pod_init::Error),
    #[error("sandbox {id:?}: cannot find the kubelet-rs binary for the pod init: {source}")]
    Program { id: String, source: std::io::Error },
    #[error("sandbox directory {}: {source}", path.display())]
    Dir { path: PathBuf, source: std::io::Error },
}

/// The sandboxes of this node.
pub struct SandboxManager {
    /// `<root>/sandboxes`
    records_dir: PathBuf,
    /// `<state_dir>/sandboxes`
    state_dir: PathBuf,
    network: network::PodNetwork,
    /// The node's files copied for host-network pods and empty DNS configs (tests point these
    /// elsewhere).
    host_resolv_conf: PathBuf,
    host_hosts: PathBuf,
    /// The `kubelet-rs` binary that runs pod inits (`CriConfig::monitor_program`); `None`:
    /// this process's own executable.
    init_program: Option<PathBuf>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sandboxes: HashMap<String, Arc<Mutex<Sandbox>>>,
    names: id::Names,
}

impl SandboxManager {
    /// Loads the sandboxes a previous run left (a READY one whose namespace files are gone,
    /// after a reboot, or whose pod init died, is NOTREADY; a live init is simply kept), cleans up directories of runs that crashed before
    /// recording anything, and writes the default network configuration if there is none.
    pub fn new(config: &CriConfig) -> Result<SandboxManager> {
        let records_dir = config.root.join("sandboxes");
        let state_dir = config.state_dir.join("sandboxes");
        for dir in [&records_dir, &state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir { path: dir.clone(), source })?;
        }
        let network = network::PodNetwork::new(config)?;
        let manager = SandboxManager {
            records_dir,
            state_dir,
            network,
            host_resolv_conf: PathBuf::from(files::HOST_RESOLV_CONF),
            host_hosts: PathBuf::from(files::HOST_HOSTS),
            init_program: config.monitor_program.clone(),
            inner: Mutex::new(Inner::default()),
        };
        let (records, orphans) = store::load_all(&manager.records_dir)?;
        for dir in orphans {
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                tracing::warn!(sandbox = id, "removing the leftovers of a sandbox whose run did not finish");
                manager.remove_dirs(&dir, &manager.state_dir.join(id));
            }
        }
        let mut inner = manager.inner.lock().unwrap();
        for mut sandbox in records {
            if sandbox.state == State::Ready && !sandbox.alive() {
                sandbox.state = State::NotReady;
                sandbox.save()?;
            }
            inner.names.reserve(&sandbox.name, &sandbox.id)?;
            inner.sandboxes.insert(sandbox.id.clone(), Arc::new(Mutex::new(sandbox)));
        }
        drop(inner);
        Ok(manager)
    }

    /// Where the node's `resolv.conf` and `hosts` are read from (default `/etc/...`).
    pub fn with_host_files(mut self, resolv_conf: impl Into<PathBuf>, hosts: impl Into<PathBuf>) -> SandboxManager {
        self.host_resolv_conf = resolv_conf.into();
        self.host_hosts = hosts.into();
        self
    }

    /// Creates and starts a sandbox; returns its id. On any failure everything created so far
    /// is undone before the error is returned.
    pub fn run(&self, config: &PodSandboxConfig) -> Result<String> {
        self.run_with_handler(config, "")
    }

    pub fn run_with_handler(&self, config: &PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let plan = Plan::from_config(config)?;
        let id = id::new_id()?;
        let name = id::sandbox_name(&plan.metadata.to_cri());
        self.inner.lock().unwrap().names.reserve(&name, &id)?;
        let mut sandbox = Sandbox {
            id: id.clone(),
            name,
            metadata: plan.metadata.clone(),
            state: State::NotReady,
            created_at: now_ns(),
            hostname: plan.hostname.clone(),
            log_directory: config.log_directory.clone(),
            runtime_handler: runtime_handler.to_string(),
            cgroup_parent: config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default(),
            labels: config.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            annotations: config.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            sysctls: plan.sysctl_map.clone(),
            modes: plan.modes,
            namespaces: NamespacePaths::default(),
            init: None,
            dir: self.records_dir.join(&id),
            state_dir: self.state_dir.join(&id),
            shm: None,
            network: None,
            attachment: None,
            ips: Vec::new(),
        };
        match self.set_up(&mut sandbox, config, &plan) {
            Ok(()) => {
                self.inner.lock().unwrap().sandboxes.insert(id.clone(), Arc::new(Mutex::new(sandbox)));
                Ok(id)
            }
            Err(err) => {
                tracing::warn!(sandbox = %id, "run failed, undoing: {err}");
                if let Err(e) = self.tear_down(&mut sandbox) {
                    tracing::warn!(sandbox = %id, "undoing a failed run: {e}");
                }
                self.inner.lock().unwrap().names.release(&sandbox.name, &id);
                Err(err)
            }
        }
    }

    /// The steps of run, in order. Each records its intent in the sandbox before acting, so
    /// that tear_down (now, or after a crash through stop/remove) undoes whatever was done.
    fn set_up(&self, sandbox: &mut Sandbox, config: &PodSandboxConfig, plan: &Plan) -> Result<()> {
        for dir in [&sandbox.dir, &sandbox.state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir { path: dir.clone(), source })?;
        }
        let ns_dir = sandbox.state_dir.join("ns");
        let expected = |own: bool, kind: &str| own.then(|| ns_dir.join(kind));
        sandbox.namespaces = NamespacePaths {
            net: expected(plan.ns.net, "net"),
            ipc: expected(plan.ns.ipc, "ipc"),
            uts: expected(plan.ns.uts, "uts"),
            pid: expected(plan.pid, "pid"),
        };
        if plan.ns.ipc {
            sandbox.shm = Some(sandbox.state_dir.join("shm"));
        }
        sandbox.save()?;

        sandbox.namespaces = NamespacePaths { pid: sandbox.namespaces.pid.take(), ..namespaces::create(&ns_dir, &plan.ns)? };
        if plan.pid {
            self.start_init(sandbox)?;
        }
        self.write_files(sandbox, config)?;
        if let Some(shm) = &sandbox.shm {
            files::mount_shm(shm)?;
        }
        if let Some(netns) = sandbox.namespaces.net.clone() {
            self.attach(sandbox, config, &netns)?;
            if !sandbox.ips.is_empty() {
                files::write_atomic(&sandbox.hosts_path(), files::render_hosts(&sandbox.hostname, &sandbox.ips).as_bytes())?;
            }
        }
        self.apply_sysctls(sandbox, &plan.sysctls)?;
        sandbox.state = State::Ready;
        sandbox.save()?;
        Ok(())
    }

    /// The pod init in the sandbox's namespaces, recorded, and its pid namespace bind-mounted
    /// at the path recorded before.
    fn start_init(&self, sandbox: &mut Sandbox) -> Result<()> {
        let program = match &self.init_program {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|source| Error::Program { id: sandbox.id.clone(), source })?,
        };
        let ns = &sandbox.namespaces;
        let args = pod_init::PodInitArgs { sandbox: sandbox.id.clone(), net: ns.net.clone(), ipc: ns.ipc.clone(), uts: ns.uts.clone() };
        let init = pod_init::start(&program, &args)?;
        sandbox.init = Some(init);
        sandbox.save()?;
        let path = sandbox.namespaces.pid.clone().expect("the pid namespace file is recorded before the init starts");
        pod_init::bind_namespace(&init, &path)?;
        Ok(())
    }

    /// Ends the pod init, and with it every process left in the pod's pid namespace.
    fn stop_init(&self, sandbox: &Sandbox) -> Result<()> {
        if let Some(init) = &sandbox.init {
            pod_init::stop(&sandbox.id, init, pod_init::STOP_GRACE)?;
        }
        Ok(())
    }

    fn write_files(&self, sandbox: &Sandbox, config: &PodSandboxConfig) -> Result<()> {
        let hostname = if sandbox.hostname.is_empty() {
            // Host network with no hostname given: the node's.
            nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            sandbox.hostname.clone()
        };
        files::write_atomic(&sandbox.hostname_path(), format!("{hostname}\n").as_bytes())?;
        let hosts = if sandbox.host_network() { files::read(&self.host_hosts)? } else { files::render_hosts(&hostname, &[]) };
        files::write_atomic(&sandbox.hosts_path(), hosts.as_bytes())?;
        let resolv = match config.dns_config.as_ref().and_then(files::render_resolv_conf) {
            Some(resolv) => resolv,
            None => files::read(&self.host_resolv_conf)?,
        };
        files::write_atomic(&sandbox.resolv_conf_path(), resolv.as_bytes())?;
        Ok(())
    }

    fn attach(&self, sandbox: &mut Sandbox, config: &PodSandboxConfig, netns: &Path) -> Result<()> {
        let list = self.network.current()?;
        let pod = PodAttachment {
            sandbox_id: sandbox.id.clone(),
            namespace: sandbox.metadata.namespace.clone(),
            name: sandbox.metadata.name.clone(),
            uid: sandbox.metadata.uid.clone(),
            netns: netns.to_path_buf(),
            port_mappings: network::port_mappings(&config.port_mappings),
        };
        sandbox.network = Some(list.name.clone());
        sandbox.attachment = Some(pod.clone());
        sandbox.save()?;
        match self.network.attach(&list, &pod) {
            Ok(ips) => {
                sandbox.ips = ips;
                Ok(())
            }
            Err(e) => {
                // The runtime already DELeted the chain of the failed ADD.
                sandbox.network = None;
                sandbox.attachment = None;
                Err(e.into())
            }
        }
    }

    /// After the network, so `net.ipv4.conf.eth0.*` find the pod's interface.
    fn apply_sysctls(&self, sandbox: &Sandbox, checked: &[sysctls::Sysctl]) -> Result<()> {
        let kinds = [
            (sysctls::Kind::Net, sandbox.namespaces.net.as_deref(), CloneFlags::CLONE_NEWNET),
            (sysctls::Kind::Ipc, sandbox.namespaces.ipc.as_deref(), CloneFlags::CLONE_NEWIPC),
        ];
        for (kind, path, flag) in kinds {
            if let Some(path) = path
                && checked.iter().any(|s| s.kind == kind)
            {
                namespaces::run_in(&[(path, flag)], || sysctls::apply(checked, kind))??;
            }
        }
        Ok(())
    }

    /// Detaches the network, stops the pod init and marks the sandbox NOTREADY; its namespace
    /// files stay until remove.
    /// An unknown id is fine.
    pub fn stop(&self, id: &str) -> Result<()> {
        let Some(entry) = self.lookup(id)? else { return Ok(()) };
        let mut sandbox = entry.lock().unwrap();
        self.stop_locked(&mut sandbox)
    }

    fn stop_locked(&self, sandbox: &mut Sandbox) -> Result<()> {
        self.detach(sandbox)?;
        self.stop_init(sandbox)?;
        if sandbox.state != State::NotReady {
            sandbox.state = State::NotReady;
            sandbox.save()?;
        }
        Ok(())
    }

    fn detach(&self, sandbox: &mut Sandbox) -> Result<()> {
        if let (Some(network), Some(pod)) = (sandbox.network.clone(), sandbox.attachment.clone()) {
            self.network.detach(&network, &pod)?;
            sandbox.network = None;
            sandbox.attachment = None;
            sandbox.save()?;
        }
        Ok(())
    }

    /// Stops the sandbox if needed, then removes its namespaces, shm, files and record. An
    /// unknown id is fine.
    pub fn remove(&self, id: &str) -> Result<()> {
        let Some(entry) = self.lookup(id)? else { return Ok(()) };
        let mut sandbox = entry.lock().unwrap();
        self.stop_locked(&mut sandbox)?;
        self.tear_down(&mut sandbox)?;
        let mut inner = self.inner.lock().unwrap();
        inner.sandboxes.remove(&sandbox.id);
        inner.names.release(&sandbox.name, &sandbox.id);
        Ok(())
    }

    /// Undoes whatever of run was done, in reverse; repeatable.
    fn tear_down(&self, sandbox: &mut Sandbox) -> Result<()> {
        self.detach(sandbox)?;
        self.stop_init(sandbox)?;
        if let Some(shm) = &sandbox.shm {
            files::unmount_shm(shm)?;
        }
        namespaces::release(&sandbox.namespaces)?;
        for dir in [&sandbox.state_dir, &sandbox.dir] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Dir { path: dir.clone(), source }),
            }
        }
        Ok(())
    }

    /// Best-effort removal of a directory pair with no record: nothing in it was attached to
    /// the network (the record is written before ADD), but it may hold mounts.
    fn remove_dirs(&self, dir: &Path, state_dir: &Path) {
        let mut mounted: Vec<PathBuf> = ["ns/net", "ns/ipc", "ns/uts", "ns/pid", "shm"].iter().map(|p| state_dir.join(p)).collect();
        mounted.retain(|p| mounts::is_mount_point(p));
        for path in mounted {
            if let Err(e) = mounts::unmount_all(&path) {
                tracing::warn!(path = %path.display(), "unmounting a leftover: {e}");
            }
        }
        for d in [state_dir, dir] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// The sandbox with this id or unique id prefix; its state is refreshed (a READY sandbox
    /// whose namespaces vanished is NOTREADY).
    pub fn get(&self, id: &str) -> Result<Sandbox> {
        let entry = self.lookup(id)?.ok_or_else(|| Error::NotFound { id: id.to_string() })?;
        let mut sandbox = entry.lock().unwrap();
        if sandbox.state == State::Ready && !sandbox.alive() {
            sandbox.state = State::NotReady;
            sandbox.save()?;
        }
        Ok(sandbox.clone())
    }

    /// `PodSandboxStatus`'s record; `NotFound` for an unknown id.
    pub fn status(&self, id: &str) -> Result<Sandbox> {
        self.get(id)
    }

    /// The sandboxes matching `filter` (all with `None`), oldest first.
    pub fn list(&self, filter: Option<&PodSandboxFilter>) -> Vec<Sandbox> {
        let entries: Vec<_> = self.inner.lock().unwrap().sandboxes.values().cloned().collect();
        let mut out: Vec<Sandbox> =
            entries.iter().map(|e| e.lock().unwrap().clone()).filter(|s| filter.is_none_or(|f| s.matches(f))).collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        out
    }

    fn lookup(&self, id: &str) -> Result<Option<Arc<Mutex<Sandbox>>>> {
        let inner = self.inner.lock().unwrap();
        Ok(id::resolve(inner.sandboxes.keys(), id)?.and_then(|full| inner.sandboxes.get(&full).cloned()))
    }
}

/// A checked config: what run will create.
struct Plan {
    metadata: Metadata,
    hostname: String,
    modes: Modes,
    ns: namespaces::Request,
    /// A pid namespace shared by the pod's containers, held by a pod init.
    pid: bool,
    sysctl_map: BTreeMap<String, String>,
    sysctls: Vec<sysctls::Sysctl>,
}

impl Plan {
    fn from_config(config: &PodSandboxConfig) -> Result<Plan> {
        let m = config.metadata.as_ref().ok_or(Error::InvalidConfig { field: "metadata", reason: "missing".into() })?;
        for (field, value) in [("metadata.name", &m.name), ("metadata.namespace", &m.namespace), ("metadata.uid", &m.uid)] {
            if value.is_empty() {
                return Err(Error::InvalidConfig { field, reason: "empty".into() });
            }
        }
        let options = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone());
        // No options means POD for every namespace, the CRI's default.
        let options = options.unwrap_or_default();
        let modes = Modes { network: options.network, pid: options.pid, ipc: options.ipc };
        let own = |field: &'static str, mode: i32| -> Result<bool> {
            match NamespaceMode::try_from(mode) {
                // A sandbox has no container of its own, so CONTAINER is the pod's namespace.
                Ok(NamespaceMode::Pod | NamespaceMode::Container) => Ok(true),
                Ok(NamespaceMode::Node) => Ok(false),
                Ok(NamespaceMode::Target) => Err(Error::InvalidConfig { field, reason: "TARGET is for containers, not sandboxes".into() }),
                Err(_) => Err(Error::InvalidConfig { field, reason: format!("unknown namespace mode {mode}") }),
            }
        };
        let net = own("namespace_options.network", options.network)?;
        let ipc = own("namespace_options.ipc", options.ipc)?;
        own("namespace_options.pid", options.pid)?;
        // CONTAINER: each container has its own (no namespace for the sandbox to hold).
        let pid = options.pid == NamespaceMode::Pod as i32;
        if options.userns_options.as_ref().is_some_and(|u| u.mode != NamespaceMode::Node as i32) {
            return Err(Error::Unsupported("user namespaces for pods are not supported yet".into()));
        }
        let hostname = if config.hostname.is_empty() && net { m.name.clone() } else { config.hostname.clone() };
        let sysctl_map: BTreeMap<String, String> =
            config.linux.as_ref().map(|l| l.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        let sysctls = sysctls::validate(&sysctl_map, net, ipc)?;
        Ok(Plan {
            metadata: Metadata { name: m.name.clone(), uid: m.uid.clone(), namespace: m.namespace.clone(), attempt: m.attempt },
            hostname: hostname.clone(),
            modes,
            // A host-network pod keeps the node's hostname too (the kubelet sets hostNetwork
            // pods' UTS to the node's): only a pod with its own network gets its own UTS.
            ns: namespaces::Request { net, ipc, uts: net, hostname: hostname.clone() },
            pid,
            sysctl_map,
            sysctls,
        })
    }
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use cri_api::runtime::v1 as cri;

    use super::*;

    fn config(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> PodSandboxConfig {
        let options = cri::NamespaceOption { network: network as i32, pid: pid as i32, ipc: ipc as i32, ..Default::default() };
        PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "ns".into(), attempt: 2 }),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(options), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn plans_follow_the_namespace_modes() {
        use NamespaceMode::*;
        let p = Plan::from_config(&config(Pod, Container, Pod)).unwrap();
        assert_eq!(p.ns, namespaces::Request { net: true, ipc: true, uts: true, hostname: "web".into() });
        assert_eq!(p.metadata.attempt, 2);
        let p = Plan::from_config(&config(Node, Node, Node)).unwrap();
        assert_eq!(p.ns, namespaces::Request::default());
        let p = Plan::from_config(&config(Node, Container, Pod)).unwrap();
        assert!(!p.ns.net && p.ns.ipc && !p.ns.uts && !p.pid);
    }

    #[test]
    fn a_shared_pid_namespace_is_planned_also_when_no_options_are_given() {
        use NamespaceMode::*;
        assert!(Plan::from_config(&config(Pod, Pod, Pod)).unwrap().pid);
        assert!(Plan::from_config(&config(Node, Pod, Node)).unwrap().pid);
        assert!(!Plan::from_config(&config(Pod, Container, Pod)).unwrap().pid);
        assert!(!Plan::from_config(&config(Pod, Node, Pod)).unwrap().pid);
        // No namespace options at all means POD everywhere, pid included (a minimal
        // `crictl runp` config).
        let mut bare = config(Pod, Container, Pod);
        bare.linux = None;
        let p = Plan::from_config(&bare).unwrap();
        assert!(p.pid && p.ns.net && p.ns.ipc && p.ns.uts);
    }

    #[test]
    fn unsupported_and_invalid_configs_are_refused_naming_why() {
        use NamespaceMode::*;
        let mut userns = config(Pod, Pod, Pod);
        let options = userns.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options.as_mut().unwrap();
        options.userns_options = Some(cri::UserNamespace { mode: Pod as i32, ..Default::default() });
        assert!(matches!(Plan::from_config(&userns), Err(Error::Unsupported(_))));
        let err = Plan::from_config(&config(Pod, Target, Pod)).err().unwrap();
        assert!(err.to_string().contains("namespace_options.pid"), "{err}");
        let err = Plan::from_config(&config(Target, Container, Pod)).err().unwrap();
        assert!(err.to_string().contains("namespace_options.network"), "{err}");
        let mut no_meta = config(Pod, Container, Pod);
        no_meta.metadata.as_mut().unwrap().uid.clear();
        assert!(Plan::from_config(&no_meta).err().unwrap().to_string().contains("metadata.uid"));
        let mut net_sysctl_on_host = config(Node, Container, Pod);
        net_sysctl_on_host.linux.as_mut().unwrap().sysctls = [("net.core.somaxconn".to_string(), "1".to_string())].into();
        assert!(matches!(Plan::from_config(&net_sysctl_on_host), Err(Error::Sysctl(_))));
    }

    /// A manager over records left by a previous run (no root needed: host-network records
    /// hold no mounts).
    #[test]
    fn a_restarted_manager_loads_records_and_cleans_up_unfinished_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = CriConfig::new(dir.path().join("root"), dir.path().join("state"));
        cfg.cni_conf_dir = dir.path().join("net.d");
        cfg.cni_cache_dir = dir.path().join("cni");
        let records = cfg.root.join("sandboxes");
        let mut ready = store::tests::sample(&records, "aaaa1111");
        ready.namespaces = NamespacePaths::default();
        ready.modes.network = NamespaceMode::Node as i32;
        ready.network = None;
        let mut gone = store::tests::sample(&records, "bbbb2222");
        gone.namespaces = NamespacePaths { net: Some(dir.path().join("no-such-ns")), ipc: None, uts: None, pid: None };
        gone.network = None;
        for s in [&ready, &gone] {
            std::fs::create_dir_all(&s.dir).unwrap();
            s.save().unwrap();
        }
        let unfinished = records.join("cccc3333");
        std::fs::create_dir_all(&unfinished).unwrap();

        let m = SandboxManager::new(&cfg).unwrap();
        assert!(!unfinished.exists(), "the unfinished run's directory was kept");
        assert_eq!(m.list(None).len(), 2);
        assert_eq!(m.get("aaaa").unwrap().state, State::Ready);
        // Its namespace file is gone (a reboot): NOTREADY, and saved so.
        assert_eq!(m.get("bbbb").unwrap().state, State::NotReady);
        let filter = cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 }),
            ..Default::default()
        };
        assert_eq!(m.list(Some(&filter)).iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["aaaa1111"]);
        assert!(matches!(m.status("ffff"), Err(Error::NotFound { .. })));
        m.stop("ffff").unwrap();
        m.remove("ffff").unwrap();

        m.stop("aaaa1111").unwrap();
        assert_eq!(m.get("aaaa1111").unwrap().state, State::NotReady);
        m.remove("aaaa1111").unwrap();
        m.remove("aaaa1111").unwrap();
        assert!(!ready.dir.exists());
        assert_eq!(m.list(None).len(), 1);
        drop(m);
        let again = SandboxManager::new(&cfg).unwrap();
        assert_eq!(again.list(None).iter().map(|s| (s.id.as_str(), s.state)).collect::<Vec<_>>(), [("bbbb2222", State::NotReady)]);
    }
}
