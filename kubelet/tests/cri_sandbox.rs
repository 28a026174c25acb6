//! Pod sandboxes end to end, as root: real namespaces, mounts and our CNI plugins.
//!
//! The "node" is a network namespace of its own: the manager's calls run on a thread inside
//! it, so the plugins it spawns (and the bridge, addresses and nftables rules they create)
//! live there and vanish with it; the host's network is never touched. Every directory
//! (state, records, CNI configuration, cache and IPAM data) is in a tempdir.
//!
//! The plugin binaries are built by the test itself (`cargo build -p cni --bins`, with the
//! cargo running the tests, into the same target directory), since a test of `kubelet-rs`
//! cannot depend on another package's binaries.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cri_api::runtime::v1 as cri;
use kubelet_rs::cri::config::CriConfig;
use kubelet_rs::cri::sandbox::{DEFAULT_NETWORK, Sandbox, SandboxManager, State};
use test_support::netns::TestNetns;

fn build_plugins() -> PathBuf {
    let mut dir = PathBuf::new();
    for plugin in ["krs-bridge", "krs-host-local", "krs-portmap"] {
        dir = test_support::bins::workspace_bin("cni", plugin).parent().unwrap().to_path_buf();
    }
    dir
}

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_ns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in netns panicked")
}

/// A node: its network namespace, its directories, and a sandbox manager working inside it.
/// Dropping it removes every sandbox left (a failed test's too), then unmounts anything
/// still mounted under its tempdir, then deletes the namespace.
struct Node {
    manager: Option<Arc<SandboxManager>>,
    config: CriConfig,
    dir: tempfile::TempDir,
    ns: TestNetns,
}

impl Node {
    fn new() -> Node {
        Node::with_conf(None)
    }

    /// With `conflist` written in the configuration directory, else the default network.
    fn with_conf(conflist: Option<serde_json::Value>) -> Node {
        test_support::require_root();
        let plugins = build_plugins();
        let ns = TestNetns::new();
        let dir = tempfile::tempdir().unwrap();
        let mut config = CriConfig::new(dir.path().join("root"), dir.path().join("state"));
        config.cni_conf_dir = dir.path().join("net.d");
        config.cni_cache_dir = dir.path().join("cni");
        config.cni_bin_dirs = vec![plugins];
        if let Some(list) = conflist {
            std::fs::create_dir_all(&config.cni_conf_dir).unwrap();
            std::fs::write(config.cni_conf_dir.join("05-test.conflist"), list.to_string()).unwrap();
        }
        std::fs::write(dir.path().join("host-resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        std::fs::write(dir.path().join("host-hosts"), "127.0.0.1 localhost\n192.0.2.9 the-node\n").unwrap();
        let mut node = Node { manager: None, config, dir, ns };
        node.manager = Some(Arc::new(node.start_manager().expect("start the sandbox manager")));
        node
    }

    /// A new manager on this node's directories (as after a restart of the service).
    fn start_manager(&self) -> Result<SandboxManager, String> {
        let (config, dir) = (self.config.clone(), self.dir.path().to_path_buf());
        in_ns(&self.ns.path(), move || {
            SandboxManager::new(&config)
                .map(|m| m.with_host_files(dir.join("host-resolv.conf"), dir.join("host-hosts")))
                .map_err(|e| e.to_string())
        })
    }

    fn restart(&mut self) {
        self.manager = Some(Arc::new(self.start_manager().expect("restart the sandbox manager")));
    }

    /// Calls the manager from inside the node's network namespace.
    fn call<T: Send + 'static>(&self, f: impl FnOnce(&SandboxManager) -> T + Send + 'static) -> T {
        let manager = self.manager.clone().unwrap();
        in_ns(&self.ns.path(), move || f(&manager))
    }

    fn run(&self, config: &cri::PodSandboxConfig) -> Result<String, String> {
        let config = config.clone();
        self.call(move |m| m.run(&config).map_err(|e| e.to_string()))
    }

    fn stop(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        self.call(move |m| m.stop(&id).map_err(|e| e.to_string()))
    }

    fn remove(&self, id: &str) -> Result<(), String> {
        let id = id.to_string();
        self.call(move |m| m.remove(&id).map_err(|e| e.to_string()))
    }

    fn status(&self, id: &str) -> Result<Sandbox, String> {
        let id = id.to_string();
        self.call(move |m| m.status(&id).map_err(|e| e.to_string()))
    }

    fn mounts(&self) -> Vec<String> {
        test_support::mounts_under(self.dir.path())
    }

    /// IPAM allocations of the default network (one file per address).
    fn allocations(&self) -> Vec<String> {
        let dir = self.config.cni_cache_dir.join("networks").join(DEFAULT_NETWORK);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.retain(|n| n != "lock" && !n.starts_with("last_reserved_ip"));
        names
    }

    fn sandbox_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for d in [self.config.root.join("sandboxes"), self.config.state_dir.join("sandboxes")] {
            dirs.extend(std::fs::read_dir(d).map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default());
        }
        dirs
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.manager.is_some() {
            let ids: Vec<String> = self.call(|m| m.list(None).into_iter().map(|s| s.id).collect());
            for id in ids {
                if let Err(e) = self.remove(&id) {
                    eprintln!("cleanup: removing sandbox {id}: {e}");
                }
            }
        }
        let mut left = self.mounts();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn pod_config(name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/default_{name}"),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "kept as is".to_string())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(modes(cri::NamespaceMode::Pod, cri::NamespaceMode::Container, cri::NamespaceMode::Pod)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn modes(network: cri::NamespaceMode, pid: cri::NamespaceMode, ipc: cri::NamespaceMode) -> cri::NamespaceOption {
    cri::NamespaceOption { network: network as i32, pid: pid as i32, ipc: ipc as i32, ..Default::default() }
}

fn set_modes(config: &mut cri::PodSandboxConfig, options: cri::NamespaceOption) {
    config.linux.as_mut().unwrap().security_context.as_mut().unwrap().namespace_options = Some(options);
}

fn nsenter(args: &[&str]) -> String {
    let out = Command::new("nsenter").args(args).output().expect("run nsenter");
    assert!(out.status.success(), "nsenter {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn path_str(p: &Option<PathBuf>) -> String {
    p.as_ref().expect("namespace path").to_str().unwrap().to_string()
}

fn ping(from_netns: &str, ip: &IpAddr) -> bool {
    Command::new("nsenter")
        .args([&format!("--net={from_netns}"), "busybox", "ping", "-c", "1", "-W", "2", &ip.to_string()])
        .output()
        .unwrap()
        .status
        .success()
}

fn is_nsfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == 0x6e73_6673)
}

/// The fields of `/proc/self/mountinfo` for the mount at `path`: its options and fs type.
fn mount_of(path: &Path) -> Option<String> {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().find(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap())).map(str::to_string)
}

#[test]
#[ignore = "needs root"]
fn a_sandbox_has_its_namespaces_files_and_network_until_removed() {
    let mut node = Node::new();
    assert!(node.config.cni_conf_dir.join("10-kubelet-rs.conflist").exists(), "no default network written");

    let mut web_config = pod_config("web");
    web_config.port_mappings = vec![
        cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 80, host_port: 8080, host_ip: String::new() },
        cri::PortMapping { protocol: cri::Protocol::Tcp as i32, container_port: 81, host_port: 0, host_ip: String::new() },
    ];
    web_config.linux.as_mut().unwrap().sysctls =
        [("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string()), ("kernel.shm_rmid_forced".to_string(), "1".to_string())].into();
    let web = node.run(&web_config).unwrap();
    let client = node.run(&pod_config("client")).unwrap();
    assert_eq!(web.len(), 64);

    // Same metadata while the first exists: refused, as containerd's reserved names.
    let err = node.run(&web_config).unwrap_err();
    assert!(err.contains("is reserved"), "{err}");

    let s = node.status(&web[..12]).unwrap();
    assert_eq!(s.id, web);
    assert_eq!(s.state, State::Ready);
    assert!(s.created_at > 0);
    assert_eq!(s.metadata.name, "web");
    assert_eq!(s.annotations["note"], "kept as is");
    let (net, ipc, uts) = (path_str(&s.namespaces.net), path_str(&s.namespaces.ipc), path_str(&s.namespaces.uts));
    for ns in [&net, &ipc, &uts] {
        assert!(is_nsfs(Path::new(ns)), "{ns} holds no namespace");
    }
    assert_ne!(std::fs::read_link("/proc/self/ns/net").unwrap(), Path::new(&nsenter(&[&format!("--net={net}"), "readlink", "/proc/self/ns/net"])));

    // The pod's address, on eth0 inside its netns, from the default range.
    assert_eq!(s.ips.len(), 1, "{:?}", s.ips);
    let ip = s.ips[0];
    let subnet: std::net::Ipv4Addr = "10.88.0.0".parse().unwrap();
    assert!(matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == subnet.octets()[..2]), "{ip}");
    let eth0 = nsenter(&[&format!("--net={net}"), "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(eth0.contains(&format!("{ip}/16")), "{eth0}");
    let status = s.to_status();
    assert_eq!(status.network.unwrap().ip, ip.to_string());

    assert_eq!(nsenter(&[&format!("--uts={uts}"), "hostname"]), "web");
    assert_eq!(std::fs::read_to_string(s.hostname_path()).unwrap(), "web\n");
    assert_eq!(
        std::fs::read_to_string(s.resolv_conf_path()).unwrap(),
        "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    let hosts = std::fs::read_to_string(s.hosts_path()).unwrap();
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n") && hosts.ends_with(&format!("{ip}\tweb\n")), "{hosts}");
    let shm = s.shm.clone().unwrap();
    let shm_mount = mount_of(&shm).expect("shm not mounted");
    assert!(shm_mount.contains(" - tmpfs ") && shm_mount.contains("size=65536k"), "{shm_mount}");
    assert!(["nosuid", "nodev", "noexec"].iter().all(|o| shm_mount.contains(o)), "{shm_mount}");

    // Sysctls inside the sandbox's namespaces, not the node's.
    assert_eq!(nsenter(&[&format!("--net={net}"), "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]), "0");
    assert_eq!(nsenter(&[&format!("--ipc={ipc}"), "cat", "/proc/sys/kernel/shm_rmid_forced"]), "1");

    // The two pods reach each other over the bridge.
    let c = node.status(&client).unwrap();
    let client_net = path_str(&c.namespaces.net);
    assert!(ping(&client_net, &ip), "client cannot ping web");
    assert!(ping(&net, &c.ips[0]), "web cannot ping client");

    // The host port reaches a server in the pod's netns from the node.
    let listener = in_ns(Path::new(&net), || TcpListener::bind(("0.0.0.0", 80)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello from web\n").unwrap();
    });
    let answer = in_ns(&node.ns.path(), || {
        let mut conn = TcpStream::connect_timeout(&"127.0.0.1:8080".parse().unwrap(), Duration::from_secs(3)).expect("connect to the host port");
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut s = String::new();
        conn.read_to_string(&mut s).unwrap();
        s
    });
    assert_eq!(answer, "hello from web\n");
    server.join().unwrap();

    // List and filters.
    let all = node.call(|m| m.list(None));
    assert_eq!(all.len(), 2);
    let filter = cri::PodSandboxFilter { label_selector: [("app".to_string(), "client".to_string())].into(), ..Default::default() };
    let only_client = node.call(move |m| m.list(Some(&filter)));
    assert_eq!(only_client.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![client.clone()]);

    // Stop: the network is gone (address released), the namespaces stay until remove.
    assert_eq!(node.allocations().len(), 2);
    node.stop(&web).unwrap();
    node.stop(&web).unwrap();
    assert_eq!(node.allocations(), vec![c.ips[0].to_string()]);
    let stopped = node.status(&web).unwrap();
    assert_eq!(stopped.state, State::NotReady);
    assert!(is_nsfs(Path::new(&net)));
    let links = nsenter(&[&format!("--net={net}"), "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");

    // Remove: no mount of web's left, its directories gone; again is fine.
    node.remove(&web).unwrap();
    node.remove(&web).unwrap();
    node.stop(&web).unwrap();
    let mounts = node.mounts();
    assert!(mounts.iter().all(|m| !m.contains(&web)), "left mounted: {mounts:?}");
    assert!(!s.dir.exists() && !s.state_dir.exists());
    assert!(node.status(&web).unwrap_err().contains("not found"));
    // Its name is free again.
    let web2 = node.run(&web_config).unwrap();
    node.remove(&web2).unwrap();

    // A restarted manager finds the client, still READY, and can remove it.
    node.restart();
    let found = node.call(|m| m.list(None));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, client);
    assert_eq!(found[0].state, State::Ready);
    assert!(node.run(&pod_config("client")).unwrap_err().contains("is reserved"));
    node.remove(&client).unwrap();
    assert_eq!(node.mounts(), Vec::<String>::new());
    assert_eq!(node.sandbox_dirs(), Vec::<PathBuf>::new());
    assert_eq!(node.allocations(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn host_network_sandboxes_use_the_nodes_namespaces_and_files() {
    let node = Node::new();
    let mut config = pod_config("hostnet");
    config.hostname = String::new();
    config.dns_config = None;
    set_modes(&mut config, modes(cri::NamespaceMode::Node, cri::NamespaceMode::Container, cri::NamespaceMode::Node));
    let id = node.run(&config).unwrap();
    let s = node.status(&id).unwrap();
    assert_eq!(s.namespaces, Default::default());
    assert_eq!(s.shm, None);
    assert!(s.ips.is_empty() && s.network.is_none());
    assert!(s.to_status().network.is_none());
    assert_eq!(s.state, State::Ready);
    assert_eq!(std::fs::read_to_string(s.resolv_conf_path()).unwrap(), "nameserver 192.0.2.53\n");
    assert_eq!(std::fs::read_to_string(s.hosts_path()).unwrap(), "127.0.0.1 localhost\n192.0.2.9 the-node\n");
    let node_hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(std::fs::read_to_string(s.hostname_path()).unwrap(), format!("{node_hostname}\n"));
    assert!(node.allocations().is_empty());
    node.stop(&id).unwrap();
    node.remove(&id).unwrap();
    assert_eq!(node.sandbox_dirs(), Vec::<PathBuf>::new());

    // Own IPC with the node's network: an IPC namespace and shm, no netns.
    set_modes(&mut config, modes(cri::NamespaceMode::Node, cri::NamespaceMode::Container, cri::NamespaceMode::Pod));
    let id = node.run(&config).unwrap();
    let s = node.status(&id).unwrap();
    assert!(s.namespaces.net.is_none() && s.namespaces.uts.is_none());
    assert!(is_nsfs(s.namespaces.ipc.as_ref().unwrap()));
    assert!(mount_of(s.shm.as_ref().unwrap()).is_some());
    node.remove(&id).unwrap();
    assert_eq!(node.mounts(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root"]
fn refused_configs_leave_nothing_behind() {
    let node = Node::new();
    let mut bad_sysctl = pod_config("bad");
    bad_sysctl.linux.as_mut().unwrap().sysctls = [("kernel.panic".to_string(), "1".to_string())].into();
    let err = node.run(&bad_sysctl).unwrap_err();
    assert!(err.contains("kernel.panic") && err.contains("not namespaced"), "{err}");
    bad_sysctl.linux.as_mut().unwrap().sysctls = [("net..x".to_string(), "1".to_string())].into();
    assert!(node.run(&bad_sysctl).unwrap_err().contains("invalid name"));
    // A namespaced sysctl whose file does not exist fails after the namespaces were created.
    bad_sysctl.linux.as_mut().unwrap().sysctls = [("net.ipv4.no_such_sysctl".to_string(), "1".to_string())].into();
    let err = node.run(&bad_sysctl).unwrap_err();
    assert!(err.contains("no_such_sysctl"), "{err}");

    let mut target_pid = pod_config("pid");
    set_modes(&mut target_pid, modes(cri::NamespaceMode::Pod, cri::NamespaceMode::Target, cri::NamespaceMode::Pod));
    assert!(node.run(&target_pid).unwrap_err().contains("namespace_options.pid"));

    assert_eq!(node.call(|m| m.list(None)).len(), 0);
    assert_eq!(node.mounts(), Vec::<String>::new());
    assert_eq!(node.sandbox_dirs(), Vec::<PathBuf>::new());
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    // The failed runs released their names.
    let ok = node.run(&pod_config("bad")).unwrap();
    node.remove(&ok).unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_failing_plugin_undoes_the_run_and_is_named() {
    let node = Node::with_conf(Some(serde_json::json!({
        "cniVersion": "1.1.0",
        "name": "broken",
        "plugins": [{"type": "krs-no-such-plugin"}]
    })));
    assert!(!node.config.cni_conf_dir.join("10-kubelet-rs.conflist").exists(), "the default network was written next to ours");
    let err = node.run(&pod_config("web")).unwrap_err();
    assert!(err.contains("krs-no-such-plugin"), "{err}");
    assert_eq!(node.mounts(), Vec::<String>::new());
    assert_eq!(node.sandbox_dirs(), Vec::<PathBuf>::new());
    assert_eq!(node.call(|m| m.list(None)).len(), 0);
}

#[test]
#[ignore = "needs root"]
fn after_a_reboot_a_sandbox_is_notready_and_removal_still_releases_its_address() {
    let mut node = Node::new();
    let id = node.run(&pod_config("survivor")).unwrap();
    let s = node.status(&id).unwrap();
    assert_eq!(node.allocations().len(), 1);
    // A reboot clears the state directory: the namespace files and the shm are gone.
    for m in node.mounts() {
        nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    std::fs::remove_dir_all(&s.state_dir).unwrap();
    node.restart();
    let after = node.status(&id).unwrap();
    assert_eq!(after.state, State::NotReady);
    assert_eq!(after.ips, s.ips);
    // The kubelet then stops and removes it: DEL without a netns still frees the address.
    node.stop(&id).unwrap();
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    node.remove(&id).unwrap();
    assert_eq!(node.sandbox_dirs(), Vec::<PathBuf>::new());
}
