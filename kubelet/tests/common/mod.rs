//! The harness of the CRI service's root tests: a `kubelet-rs cri` of the test's own,
//! serving on a socket in a tempdir, inside a "node" network namespace (`nsenter --net`, so
//! it keeps the host's mounts and cgroups) so the bridge and its rules never touch the host's
//! network; the busybox test image imported; pods' cgroups under a `krs-test-*` cgroup (for
//! runc, through a wrapper that shows it that cgroup as /sys/fs/cgroup: see
//! [`RUNC_WRAPPER`]). Dropping the service removes every pod through it, stops it and
//! unmounts what is left. Each test file uses a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cri_api::runtime::v1 as cri;
use cri_api::{ImageServiceClient, RuntimeServiceClient};
use test_support::netns::TestNetns;
use test_support::{CgroupParent, require_root};

pub mod cluster;
pub mod raw_ws;

pub const BUSYBOX: &str = "docker.io/library/busybox:latest";

pub fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(path).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// The OCI runtime the service is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    RuntimeRs,
    /// runc: on a hybrid host through a wrapper (written into the service's directory) that
    /// gives it a pure cgroup v2 view (see [`RUNC_WRAPPER`]); where /sys/fs/cgroup is
    /// cgroup v2 (the test guest), as it is.
    Runc,
    /// crun, the same way as runc.
    Crun,
}

impl Runtime {
    /// The program's name, for runc and crun.
    fn program(self) -> Option<&'static str> {
        match self {
            Runtime::RuntimeRs => None,
            Runtime::Runc => Some("runc"),
            Runtime::Crun => Some("crun"),
        }
    }
}

/// runc (or crun: `runc` is replaced) in a private mount and cgroup namespace where our test
/// cgroup (`$KRS_CG`, a `krs-test-*` directory of the cgroup v2 hierarchy) is bind-mounted
/// over /sys/fs/cgroup: on a hybrid host runc would otherwise create cgroups in the v1
/// hierarchies. Every verb goes through unchanged; the mount namespace is a copy of the
/// service's, so bundles, the runtime root and the pod's bind-mounted namespace files are all
/// reachable. unshare and sh exec, so the service's pid for the runtime is runc's and the
/// monitor's stdio reaches it.
pub const RUNC_WRAPPER: &str = r#"#!/bin/sh
exec unshare --mount --propagation private --cgroup sh -c 'mount --bind "$0" /sys/fs/cgroup && exec runc "$@"' "$KRS_CG" "$@"
"#;

/// Whether /sys/fs/cgroup itself is the cgroup v2 hierarchy (the test guest), rather than the
/// v1 hierarchies of a hybrid host that runc and crun must not touch.
pub fn cgroup2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists()
}

/// `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Whether this process has CAP_SYS_RESOURCE (crun's create raises RLIMIT_MEMLOCK, which
/// needs it; root in some sandboxes lacks it).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(0)).unwrap_or(0);
    eff & (1 << CAP_SYS_RESOURCE) != 0
}

/// Why `runtime` cannot run here, if it cannot: a test given this skips, printing it.
pub fn unavailable(runtime: Runtime) -> Option<String> {
    let name = runtime.program()?;
    if which(name).is_none() {
        return Some(format!("{name} is not installed (apt-get install {name})"));
    }
    if runtime == Runtime::Crun && !has_cap_sys_resource() {
        return Some("crun's create raises RLIMIT_MEMLOCK, which needs CAP_SYS_RESOURCE, and root lacks it here; the cgroup v2 guest (scripts/test) runs it".into());
    }
    None
}

/// A `kubelet-rs cri` of the test's own: its directories, its node namespace, its process.
pub struct Service {
    pub node: TestNetns,
    pub dir: tempfile::TempDir,
    /// The test's cgroup, removed with whatever is left in it on drop.
    pub cgroup: CgroupParent,
    pub oci_runtime: PathBuf,
    /// The pods' `linux.cgroup_parent`, as the runtime sees the cgroup tree.
    pub cgroup_parent: String,
    /// Where that parent is on the host.
    pub pods_cgroup: PathBuf,
    pub child: Option<Child>,
}

impl Service {
    pub fn start(runtime: Runtime) -> Service {
        require_root();
        let plugins = test_support::bins::workspace_bin("cni", "krs-bridge");
        for p in ["krs-host-local", "krs-portmap"] {
            test_support::bins::workspace_bin("cni", p);
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        // The busybox test image, imported (the node namespace cannot reach the registry).
        let layout = test_support::test_images::test_image("busybox");
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args(["image", "--root"])
            .arg(&root)
            .arg("import")
            .arg(&layout)
            .args(["--name", BUSYBOX])
            .output()
            .unwrap();
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("10-test.conflist"),
            serde_json::json!({
                "cniVersion": "1.1.0", "name": "krs-cri-test",
                "plugins": [
                    {"type": "krs-bridge", "bridge": "cni0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
                     "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]], "dataDir": dir.path().join("ipam")}},
                    {"type": "krs-portmap", "capabilities": {"portMappings": true}}
                ]
            })
            .to_string(),
        )
        .unwrap();
        let _ = plugins;
        let cgroup = CgroupParent::new();
        // The containers below get every controller the hierarchy offers us (none on a
        // hybrid host; all of them in the guest).
        cgroup.enable_controllers();
        let (oci_runtime, cgroup_parent, pods_cgroup) = match runtime.program() {
            None => (test_support::bins::workspace_bin("runtime-rs", "runtime-rs"), format!("/{}", cgroup.name), cgroup.path.clone()),
            Some(name) => {
                let bin = which(name).unwrap_or_else(|| panic!("{name} is not installed (apt-get install {name})"));
                if cgroup2_only() {
                    (bin, format!("/{}", cgroup.name), cgroup.path.clone())
                } else {
                    let wrapper = dir.path().join(format!("{name}-wrapper"));
                    let script = RUNC_WRAPPER.replace("\"$KRS_CG\"", &format!("'{}'", cgroup.path.display())).replace("exec runc", &format!("exec {}", bin.display()));
                    std::fs::write(&wrapper, script).unwrap();
                    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
                    // Our cgroup is the runtime's /sys/fs/cgroup: the pods go below it.
                    (wrapper, "/pods".to_string(), cgroup.path.join("pods"))
                }
            }
        };
        let mut s = Service { node: TestNetns::new(), dir, cgroup, oci_runtime, cgroup_parent, pods_cgroup, child: None };
        s.spawn();
        s
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    pub fn spawn(&mut self) {
        let d = self.dir.path();
        let log = File::create(d.join("service.log")).unwrap();
        let (socket, root, state, conf, cache) = (self.socket(), d.join("root"), d.join("state"), d.join("net.d"), d.join("cni-cache"));
        let service = test_support::cri_service::CriService {
            kubelet_rs: Path::new(env!("CARGO_BIN_EXE_kubelet-rs")),
            netns: &self.node.path(),
            socket: &socket,
            root: &root,
            state_dir: &state,
            oci_runtime: &self.oci_runtime,
            cni_conf_dir: &conf,
            cni_cache_dir: &cache,
        };
        let child = service
            .command()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "service did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: the containers (and their monitors) keep running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    pub async fn clients(&self) -> (RuntimeServiceClient<tonic::transport::Channel>, ImageServiceClient<tonic::transport::Channel>) {
        let channel = cri_api::connect(self.socket()).await.unwrap();
        (RuntimeServiceClient::new(channel.clone()), ImageServiceClient::new(channel))
    }

    /// A pod of this service: hostPort 8080 to its port 80, pid namespace per container.
    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        let options = cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let port = cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() };
        self.pod_config_with(name, Some(options), vec![port])
    }

    /// A pod with these namespace options (`None`: none at all, as a minimal `crictl runp`
    /// config has) and port mappings.
    pub fn pod_config_with(&self, name: &str, options: Option<cri::NamespaceOption>, port_mappings: Vec<cri::PortMapping>) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "default".into(), attempt: 0 }),
            hostname: name.into(),
            log_directory: self.dir.path().join("logs").join(name).display().to_string(),
            port_mappings,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: options.map(|o| cri::LinuxSandboxSecurityContext { namespace_options: Some(o), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The pod init the sandbox's record names: (pid, start time).
    pub fn recorded_init(&self, pod: &str) -> Option<(i32, u64)> {
        let record = std::fs::read(self.dir.path().join("root/sandboxes").join(pod).join("sandbox.json")).ok()?;
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        let init = record.get("init")?;
        Some((init["pid"].as_i64()? as i32, init["start_time"].as_u64()?))
    }

    /// Every pod init any record names.
    pub fn all_recorded_inits(&self) -> Vec<(i32, u64)> {
        let Ok(dirs) = std::fs::read_dir(self.dir.path().join("root/sandboxes")) else { return Vec::new() };
        dirs.flatten().filter_map(|d| self.recorded_init(&d.file_name().to_string_lossy())).collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Whatever a failed test left: remove every pod through the service, then stop it.
        if self.child.is_some() {
            test_support::cri_service::remove_all_pods(&self.socket());
        }
        self.stop();
        // Pod inits the service did not stop (it was gone, or a test failed first): by
        // recorded pid and start time only.
        for (pid, start) in self.all_recorded_inits() {
            if start_time(pid) == Some(start) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for m in test_support::mounts_under(self.dir.path()).iter().rev() {
            // umount2 rather than umount(8): the guest's busybox umount has no --lazy.
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

pub fn container_config(name: &str, command: &[&str]) -> cri::ContainerConfig {
    container_config_with(name, command, Some(cri::NamespaceMode::Container))
}

/// A container whose pid namespace mode is `pid` (`None`: no namespace options at all,
/// which means POD for every namespace).
pub fn container_config_with(name: &str, command: &[&str], pid: Option<cri::NamespaceMode>) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: pid.map(|pid| cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: pid as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `/proc/<pid>/stat` field 22, None for a process that is gone (or a zombie).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    (fields[0] != "Z").then(|| fields[19].parse().ok()).flatten()
}

pub async fn wait_state(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, state: cri::ContainerState) -> cri::ContainerStatus {
    let start = Instant::now();
    loop {
        let status = rt.container_status(cri::ContainerStatusRequest { container_id: id.into(), verbose: false }).await.unwrap().into_inner().status.unwrap();
        if status.state == state as i32 {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "container {id} stayed {:?}", status.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn exec(rt: &mut RuntimeServiceClient<tonic::transport::Channel>, id: &str, cmd: &[&str]) -> cri::ExecSyncResponse {
    rt.exec_sync(cri::ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 })
        .await
        .unwrap()
        .into_inner()
}

pub fn tcp_get(ns: &Path, to: String) -> Result<String, String> {
    in_ns(ns, move || {
        let addr: SocketAddr = to.parse().unwrap();
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("connect {to}: {e}"))?;
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).map_err(|e| e.to_string())?;
        Ok(s.trim().to_string())
    })
}

