//! [`LogRuntime`] over any CRI runtime: the running containers' log paths from
//! ListContainers and ContainerStatus, and ReopenContainerLog.

use std::path::PathBuf;

use async_trait::async_trait;
use cri_api::RuntimeServiceClient;
use cri_api::runtime::v1 as cri;
use cri_api::tonic::transport::Channel;

use super::rotate::{ContainerLog, LogRuntime};

#[derive(Clone)]
pub struct CriLogRuntime {
    pub runtime: RuntimeServiceClient<Channel>,
}

#[async_trait]
impl LogRuntime for CriLogRuntime {
    async fn running_container_logs(&self) -> Vec<ContainerLog> {
        let mut client = self.runtime.clone();
        let filter = cri::ContainerFilter { state: Some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 }), ..Default::default() };
        let containers = match client.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await {
            Ok(r) => r.into_inner().containers,
            Err(e) => {
                tracing::warn!(error = %e.message(), "listing running containers for log rotation failed");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for c in containers {
            // The status names the log file in full (the sandbox's log directory joined).
            let Ok(status) = client.container_status(cri::ContainerStatusRequest { container_id: c.id.clone(), verbose: false }).await else { continue };
            let Some(status) = status.into_inner().status else { continue };
            if !status.log_path.is_empty() {
                out.push(ContainerLog { container_id: c.id, path: PathBuf::from(status.log_path) });
            }
        }
        out
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<(), String> {
        self.runtime.clone().reopen_container_log(cri::ReopenContainerLogRequest { container_id: container_id.into() }).await.map(|_| ()).map_err(|e| e.message().to_string())
    }
}
