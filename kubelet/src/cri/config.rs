//! Where the CRI service keeps its state, and the programs it drives.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct CriConfig {
    /// Persistent state: `images/` (the image store), `sandboxes/`, `containers/`.
    pub root: PathBuf,
    /// Runtime state that a reboot clears: namespace files, the OCI runtime's root.
    pub state_dir: PathBuf,
    /// The gRPC socket.
    pub socket: PathBuf,
    /// The OCI runtime binary (runc command line): runtime-rs, runc or crun.
    pub oci_runtime: PathBuf,
    /// Network configuration lists; the first valid one is the pod network.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for (`CNI_PATH`).
    pub cni_bin_dirs: Vec<PathBuf>,
    /// libcni's result cache.
    pub cni_cache_dir: PathBuf,
    /// Registry configuration for pulls (`<registry>/hosts.toml`).
    pub hosts_dir: PathBuf,
    /// Registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Where the streaming server (Exec, PortForward URLs) listens; port 0: any free port.
    pub stream_address: std::net::SocketAddr,
    /// The `kubelet-rs` binary that runs container monitors; `None`: this process's own
    /// executable (tests that serve in-process name the built binary).
    pub monitor_program: Option<PathBuf>,
}

impl CriConfig {
    /// The defaults of `kubelet-rs cri`.
    pub fn new(root: PathBuf, state_dir: PathBuf) -> CriConfig {
        CriConfig {
            socket: state_dir.join("cri.sock"),
            root,
            state_dir,
            oci_runtime: PathBuf::from("runtime-rs"),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            cni_cache_dir: PathBuf::from("/var/lib/cni"),
            hosts_dir: PathBuf::from("/etc/kubelet-rs/certs.d"),
            insecure_registries: Vec::new(),
            monitor_program: None,
            stream_address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The OCI runtime's state root (its `--root`).
    pub fn oci_root(&self) -> PathBuf {
        self.state_dir.join("oci")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
}
