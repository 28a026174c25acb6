//! `kubelet-rs cri`: the CRI server (`kubelet_rs::cri::server`) on its socket until SIGTERM
//! or SIGINT.
use kubelet_rs::cri::config::CriConfig;
use kubelet_rs::cri::server::{self, ServeError};
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::CriArgs;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("installing the {signal} handler: {source}")]
    Signal { signal: &'static str, source: std::io::Error },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

pub async fn run(args: CriArgs) -> Result<(), CriError> {
    let config = config(args);
    let mut term = signal(SignalKind::terminate()).map_err(|source| CriError::Signal { signal: "SIGTERM", source })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| CriError::Signal { signal: "SIGINT", source })?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    server::serve(config, shutdown).await?;
    Ok(())
}

/// The command line over the defaults of `CriConfig::new`.
fn config(args: CriArgs) -> CriConfig {
    let mut config = CriConfig::new(args.root, args.state_dir);
    if let Some(socket) = args.socket {
        config.socket = socket;
    }
    config.oci_runtime = args.oci_runtime;
    if let Some(dir) = args.cni_conf_dir {
        config.cni_conf_dir = dir;
    }
    if !args.cni_bin_dirs.is_empty() {
        config.cni_bin_dirs = args.cni_bin_dirs;
    }
    if let Some(dir) = args.cni_cache_dir {
        config.cni_cache_dir = dir;
    }
    if let Some(dir) = args.hosts_dir {
        config.hosts_dir = dir;
    }
    config.insecure_registries = args.insecure;
    config
}
