//! The command line of a `kubelet-rs cri` service for tests: in a test's network namespace,
//! on the test's directories, with the OCI runtime and the workspace's CNI plugins given.
//! The caller adds its output files and spawns it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
