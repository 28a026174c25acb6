//! The command line of a `kubelet-rs cri` service for tests: in a test's network namespace,
//! on the test's directories, with the OCI runtime and the workspace's CNI plugins given.
//! The caller adds its output files and spawns it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;

use crate::bins::workspace_bin;

pub struct CriService<'a> {
    /// The `kubelet-rs` binary.
    pub kubelet_rs: &'a Path,
    /// The network namespace file it runs in.
    pub netns: &'a Path,
    pub socket: &'a Path,
    pub root: &'a Path,
    pub state_dir: &'a Path,
    pub oci_runtime: &'a Path,
    pub cni_conf_dir: &'a Path,
    pub cni_cache_dir: &'a Path,
}

impl CriService<'_> {
    /// `nsenter --net=<netns> -- kubelet-rs cri ...`, stdin closed.
    pub fn command(&self) -> Command {
        let plugins: PathBuf = workspace_bin("cni", "krs-bridge").parent().expect("the plugins' folder").to_path_buf();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .arg(self.kubelet_rs)
            .arg("cri")
            .arg("--socket")
            .arg(self.socket)
            .arg("--root")
            .arg(self.root)
            .arg("--state-dir")
            .arg(self.state_dir)
            .arg("--oci-runtime")
            .arg(self.oci_runtime)
            .arg("--cni-conf-dir")
            .arg(self.cni_conf_dir)
            .arg("--cni-bin-dir")
            .arg(plugins)
            .arg("--cni-cache-dir")
            .arg(self.cni_cache_dir)
            .stdin(Stdio::null());
        cmd
    }
}

/// Stop and remove every pod sandbox of the CRI service at `socket` (what a test left),
/// best effort. Runs on a thread of its own: the caller's runtime may be the one dropping it.
pub fn remove_all_pods(socket: &Path) {
    let socket = socket.to_path_buf();
    let cleanup = move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let Ok(ch) = cri_api::connect(&socket).await else { return };
            let mut c = RuntimeServiceClient::new(ch);
            let Ok(list) = c.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await else { return };
            for s in list.into_inner().items {
                let _ = c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: s.id.clone() }).await;
                let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: s.id }).await;
            }
        });
    };
    let _ = std::thread::spawn(cleanup).join();
}

/// Remove every pod sandbox a stopped node left, through a `kubelet-rs cri` started on its
/// directories (`<data_dir>/cni/net.d`, the generated network) in its namespace, best effort.
pub fn remove_pods_in(netns: &Path, data_dir: &Path, state_dir: &Path) {
    let kubelet_rs = workspace_bin("kubelet-rs", "kubelet-rs");
    let oci_runtime = workspace_bin("runtime-rs", "runtime-rs");
    let socket = data_dir.join("cleanup-cri.sock");
    let (conf, cache) = (data_dir.join("cni/net.d"), data_dir.join("cni/cache"));
    let service = CriService { kubelet_rs: &kubelet_rs, netns, socket: &socket, root: data_dir, state_dir, oci_runtime: &oci_runtime, cni_conf_dir: &conf, cni_cache_dir: &cache };
    let Ok(mut cri) = service.command().stdout(Stdio::null()).stderr(Stdio::null()).spawn() else { return };
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    remove_all_pods(&socket);
    unsafe { libc::kill(cri.id() as i32, libc::SIGTERM) };
    let _ = cri.wait();
}
