//! The agent's main loop: connects to the API server and the CRI runtime, registers the
//! node, and applies pod updates from the sources to the pod manager (being written: issue 9).

use std::future::Future;

use tokio::sync::mpsc;

use super::config::AgentConfig;
use super::sources::{self, PodUpdate};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the API server: {0}")]
    Client(#[from] apiserver_lite::controllers::ClientError),
}

pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let client = apiserver_lite::controllers::kubeconfig_client(&config.kubeconfig).await?;
    let (tx, mut rx) = mpsc::channel::<PodUpdate>(1024);
    tokio::spawn(sources::api::watch(client.clone(), config.node_name.clone(), tx.clone()));
    if let Some(dir) = config.manifest_dir.clone() {
        tokio::spawn(sources::static_pods::watch(dir, config.node_name.clone(), tx));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            update = rx.recv() => match update {
                Some(update) => tracing::info!(?update, "pod update"),
                None => return Ok(()),
            },
        }
    }
}
